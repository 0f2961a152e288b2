// Atomic file and folder writing: complete-or-untouched semantics.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include "common/test_data.hpp"
#include "io/atomic_dir.hpp"
#include "io/atomic_file.hpp"
#include "io/io_test_util.hpp"
#include "io/safetensors.hpp"

namespace kq {
namespace {
namespace fs = std::filesystem;
using testing::read_bytes;
using testing::TempDir;

size_t entries(const fs::path& dir) {
  return size_t(std::distance(fs::directory_iterator(dir), fs::directory_iterator()));
}

TEST(AtomicFile, WritesAndReplaces) {
  TempDir tmp;
  const fs::path f = tmp.path / "a.txt";
  io::write_file_atomic(f, "first");
  io::write_file_atomic(f, "second");
  EXPECT_EQ(read_bytes(f), "second");
  EXPECT_EQ(entries(tmp.path), 1u);
  EXPECT_EQ(fs::status(f).permissions() & fs::perms::owner_read, fs::perms::owner_read);
}

TEST(AtomicFile, FailureKeepsOldContentsAndRemovesTemporary) {
  TempDir tmp;
  const fs::path f = tmp.path / "a.txt";
  io::write_file_atomic(f, "old");
  EXPECT_THROW(io::write_file_atomic(f,
                                     [](io::AtomicFileSink& s) {
                                       s.write("partial new contents");
                                       throw InvalidArgument("stop");
                                     }),
               InvalidArgument);
  EXPECT_EQ(read_bytes(f), "old");
  EXPECT_EQ(entries(tmp.path), 1u);
}

TEST(AtomicFile, RefusesDevicesFifosAndFolders) {
  TempDir tmp;
  const fs::path fifo = tmp.path / "pipe.json";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  for (const fs::path& p : {fifo, fs::path("/dev/null"), tmp.path}) {
    try {
      io::write_file_atomic(p, "{}");
      ADD_FAILURE() << p << " was written over";
    } catch (const InvalidArgument& e) {
      EXPECT_NE(std::string(e.what()).find(p.string()), std::string::npos) << e.what();
    }
  }
  EXPECT_TRUE(fs::is_fifo(fs::symlink_status(fifo)));
  EXPECT_TRUE(fs::is_character_file(fs::status("/dev/null")));
  EXPECT_EQ(entries(tmp.path), 1u);  // no temporary left behind
}

TEST(AtomicFile, WritesThroughASymbolicLink) {
  TempDir tmp;
  const fs::path target = tmp.path / "real.json", link = tmp.path / "link.json";
  io::write_file_atomic(target, "old");
  fs::create_symlink(target, link);
  io::write_file_atomic(link, "new");
  EXPECT_TRUE(fs::is_symlink(fs::symlink_status(link)));
  EXPECT_EQ(read_bytes(target), "new");
  const fs::path dangling = tmp.path / "dangling.json";
  fs::create_symlink(tmp.path / "later.json", dangling);
  io::write_file_atomic(dangling, "created");
  EXPECT_TRUE(fs::is_symlink(fs::symlink_status(dangling)));
  EXPECT_EQ(read_bytes(tmp.path / "later.json"), "created");
  // A loop of links is an error naming the path, and nothing is written.
  fs::create_symlink(tmp.path / "loop-b", tmp.path / "loop-a");
  fs::create_symlink(tmp.path / "loop-a", tmp.path / "loop-b");
  try {
    io::write_file_atomic(tmp.path / "loop-a", "x");
    ADD_FAILURE() << "a symbolic-link loop was written through";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("symbolic links"), std::string::npos) << e.what();
  }
}

/// Sets the umask for the life of the object, then puts the old one back.
class ScopedUmask {
 public:
  explicit ScopedUmask(mode_t mask) : old_(::umask(mask)) {}
  ~ScopedUmask() { ::umask(old_); }

 private:
  mode_t old_;
};

mode_t mode_of(const fs::path& p) {
  struct stat st {};
  EXPECT_EQ(::stat(p.c_str(), &st), 0) << p;
  return st.st_mode & 07777;
}

// A new file gets 0666 & ~umask, as open(2) and fopen give it (it was always
// 0644, readable by all under umask 077); a replaced file keeps its mode (a
// chmod 600 file became 0644); files in an AtomicDir's folder are new files.
TEST(AtomicFile, ModeFollowsTheUmaskAndTheReplacedFile) {
  TempDir tmp;
  {
    const ScopedUmask mask(077);
    EXPECT_EQ(io::current_umask(), mode_t(077));
    io::write_file_atomic(tmp.path / "private.json", "{}");
    EXPECT_EQ(mode_of(tmp.path / "private.json"), mode_t(0600));
    io::AtomicDir d(tmp.path / "q");
    d.write([&] { io::write_file_atomic(d.file("config.json"), "{}"); });
    d.commit();
    EXPECT_EQ(mode_of(tmp.path / "q"), mode_t(0700));
    EXPECT_EQ(mode_of(tmp.path / "q" / "config.json"), mode_t(0600));
  }
  const ScopedUmask mask(002);
  io::write_file_atomic(tmp.path / "shared.json", "{}");
  EXPECT_EQ(mode_of(tmp.path / "shared.json"), mode_t(0664));
  const fs::path keep = tmp.path / "keep.json";
  io::write_file_atomic(keep, "old");
  ASSERT_EQ(::chmod(keep.c_str(), 0600), 0);
  io::write_file_atomic(keep, "new");
  EXPECT_EQ(mode_of(keep), mode_t(0600));
  ASSERT_EQ(::chmod(keep.c_str(), 0640), 0);
  io::write_file_atomic(keep, "newer");
  EXPECT_EQ(mode_of(keep), mode_t(0640));
  EXPECT_EQ(read_bytes(keep), "newer");
}

TEST(AtomicDir, CommitCreatesFolder) {
  TempDir tmp;
  const fs::path out = tmp.path / "quantized";
  {
    io::AtomicDir d(out);
    EXPECT_EQ(d.staging().parent_path(), tmp.path);  // same file system
    EXPECT_FALSE(fs::exists(out));
    write_safetensors(d.file("model.safetensors"), {{"w", Tensor::zeros(DType::U8, {3})}});
    io::write_file_atomic(d.file("config.json"), "{}");
    fs::create_directory(d.staging() / "sub");
    io::write_file_atomic(d.staging() / "sub" / "x", "x");
    d.commit();
    EXPECT_TRUE(d.committed());
  }
  EXPECT_EQ(entries(tmp.path), 1u);  // no staging folder left
  EXPECT_EQ(entries(out), 3u);
  EXPECT_EQ(TensorStore::open_dir(out).get("w").shape(), (Shape{3}));
}

TEST(AtomicDir, WithoutCommitNothingAppears) {
  TempDir tmp;
  const fs::path out = tmp.path / "q";
  {
    io::AtomicDir d(out);
    io::write_file_atomic(d.file("config.json"), "{}");
  }
  EXPECT_FALSE(fs::exists(out));
  EXPECT_EQ(entries(tmp.path), 0u);
}

TEST(AtomicDir, RefusesNonEmptyUnlessOverwrite) {
  TempDir tmp;
  const fs::path out = tmp.path / "q";
  fs::create_directory(out);
  io::write_file_atomic(out / "old.txt", "old");
  testing::expect_throw_with<InvalidArgument>([&] { io::AtomicDir d(out); }, {out.string(), "overwrite"});
  EXPECT_EQ(entries(tmp.path), 1u);
  {
    io::AtomicDir d(out, /*overwrite=*/true);
    io::write_file_atomic(d.file("new.txt"), "new");
    EXPECT_TRUE(fs::exists(out / "old.txt"));  // untouched until commit
    d.commit();
  }
  EXPECT_FALSE(fs::exists(out / "old.txt"));
  EXPECT_EQ(read_bytes(out / "new.txt"), "new");
  EXPECT_EQ(entries(tmp.path), 1u);  // old folder and staging removed
}

TEST(AtomicDir, EmptyExistingFolderIsReplaced) {
  TempDir tmp;
  const fs::path out = tmp.path / "q";
  fs::create_directory(out);
  io::AtomicDir d(out / "");  // trailing slash tolerated
  io::write_file_atomic(d.file("a"), "a");
  d.commit();
  EXPECT_EQ(read_bytes(out / "a"), "a");
}

// Tester round 18b: an existing folder (empty, or replaced with overwrite) came back 0755 with a new inode,
// losing the user's 0700 / setgid; a mount point was refused only at the rename, after all the work.
TEST(AtomicDir, AReplacedFolderKeepsItsPermissionsAndAMountPointIsRefused) {
  TempDir tmp;
  const fs::path out = tmp.path / "q";
  for (const unsigned mode : {0700u, 02750u, 0755u}) {
    SCOPED_TRACE(mode);
    fs::create_directories(out);
    ASSERT_EQ(::chmod(out.c_str(), mode), 0);
    {
      io::AtomicDir d(out, /*overwrite=*/true);
      io::write_file_atomic(d.file("a"), "a");
      d.commit();
    }
    struct stat st {};
    ASSERT_EQ(::stat(out.c_str(), &st), 0);
    EXPECT_EQ(unsigned(st.st_mode) & 07777u, mode);
    EXPECT_EQ(read_bytes(out / "a"), "a");
  }
  // A folder that did not exist gets mkdir's permissions, as before.
  const fs::path fresh = tmp.path / "fresh";
  {
    io::AtomicDir d(fresh);
    d.commit();
  }
  const mode_t mask = ::umask(0);
  ::umask(mask);
  struct stat st {};
  ASSERT_EQ(::stat(fresh.c_str(), &st), 0);
  EXPECT_EQ(unsigned(st.st_mode) & 07777u, 0777u & ~unsigned(mask));
  // "/" and a mounted file system (here /dev/shm or /proc where they are mount points): refused, nothing made.
  testing::expect_throw_with<InvalidArgument>([&] { io::AtomicDir d("/", true); }, {"is a mount point"});
  for (const char* mnt : {"/dev/shm", "/proc"}) {
    struct stat a {}, b {};
    if (::stat(mnt, &a) != 0 || ::stat((std::string(mnt) + "/..").c_str(), &b) != 0 || a.st_dev == b.st_dev) continue;
    testing::expect_throw_with<InvalidArgument>([&] { io::AtomicDir d(mnt, true); },
                                                {std::string(mnt) + ": is a mount point", "give a folder inside it"});
  }
}

TEST(AtomicDir, CommitFailsIfFolderFilledMeanwhile) {
  TempDir tmp;
  const fs::path out = tmp.path / "q";
  io::AtomicDir d(out);
  fs::create_directory(out);
  io::write_file_atomic(out / "someone_else", "x");
  testing::expect_throw_with<InvalidArgument>([&] { d.commit(); }, {out.string()});
  EXPECT_TRUE(fs::exists(out / "someone_else"));
}

TEST(AtomicDir, RejectsFileTargetAndMissingParent) {
  TempDir tmp;
  io::write_file_atomic(tmp.path / "f", "x");
  testing::expect_throw_with<InvalidArgument>([&] { io::AtomicDir d(tmp.path / "f", true); }, {"not a folder"});
  const fs::path deep = tmp.path / "no" / "such" / "out";
  testing::expect_throw_with<Error>([&] { io::AtomicDir d(deep); }, {deep.string()});
}

// Tester round 18: "L/../q" with L a link to a/b was written to q (lexically_normal() drops "L/.."), while the
// kernel reads it as a/q; with overwrite another folder than the one named could be replaced. A ".." is now
// resolved by the file system; "." names the current folder by its real path.
TEST(AtomicDir, DotDotIsResolvedThroughSymbolicLinks) {
  TempDir tmp;
  fs::create_directories(tmp.path / "a" / "b");
  fs::create_directory_symlink(tmp.path / "a" / "b", tmp.path / "L");
  const fs::path real_a = fs::canonical(tmp.path / "a");
  EXPECT_EQ(io::AtomicDir::resolve_target(tmp.path / "L" / ".." / "q"), real_a / "q");
  EXPECT_EQ(io::AtomicDir::resolve_target(tmp.path / "L" / ".." / "q" / ""), real_a / "q");
  EXPECT_EQ(io::AtomicDir::resolve_target(tmp.path / "L" / ".."), real_a);
  // A ".." after a part that does not exist, a file or a dangling link names nothing for the kernel: refused
  // (it was read as text and could replace tmp/q; tester round 18b).
  io::write_file_atomic(tmp.path / "file", "x");
  fs::create_directory_symlink(tmp.path / "gone", tmp.path / "dangling");
  for (const fs::path& p : {tmp.path / "a" / "none" / ".." / "q", tmp.path / "file" / ".." / "q",
                            tmp.path / "dangling" / ".." / "q"})
    testing::expect_throw_with<InvalidArgument>([&] { (void)io::AtomicDir::resolve_target(p); },
                                                {p.string(), "cannot be resolved"});
  {
    io::AtomicDir d(tmp.path / "L" / ".." / "q");
    io::write_file_atomic(d.file("x"), "1");
    d.commit();
  }
  EXPECT_TRUE(fs::is_regular_file(tmp.path / "a" / "q" / "x"));
  EXPECT_FALSE(fs::exists(tmp.path / "q"));
  // "." is the current folder (here the empty tmp/a/b): a usable output.
  const fs::path cwd = fs::current_path();
  fs::current_path(tmp.path / "a" / "b");
  fs::path dot, dot_slash;
  try {
    dot = io::AtomicDir::resolve_target(".");
    dot_slash = io::AtomicDir::resolve_target("./");
  } catch (...) {
  }
  fs::current_path(cwd);
  EXPECT_EQ(dot, real_a / "b");
  EXPECT_EQ(dot_slash, real_a / "b");
  testing::expect_throw_with<InvalidArgument>([&] { (void)io::AtomicDir::resolve_target(""); }, {"not a usable"});
}

// Fresh-user finding: --out a symbolic link to itself was "a symbolic link to
// 'selfloop', which does not exist"; it is named as a loop, and nothing is created.
TEST(AtomicDir, SymbolicLinkLoopIsNamedAsALoop) {
  TempDir tmp;
  const fs::path loop = tmp.path / "selfloop";
  fs::create_symlink("selfloop", loop);
  const std::string msg = testing::expect_throw_with<InvalidArgument>(
      [&] { io::AtomicDir d(loop); },
      {loop.string() + ": is a symbolic link loop (a link to 'selfloop': Too many levels of symbolic links)"});
  EXPECT_EQ(msg.find("does not exist"), std::string::npos) << msg;
  EXPECT_EQ(entries(tmp.path), 1u);
}

// An output whose folder is a regular file: the message names that file as
// "not a directory" (not a temporary name, not errno's "Not a directory" alone).
TEST(AtomicFile, FolderThatIsAFileIsNamed) {
  TempDir tmp;
  const fs::path file = tmp.path / "notes.txt";
  io::write_file_atomic(file, "x");
  for (const fs::path& out : {file / "out.json", file / "sub" / "out.json"}) {
    const std::string msg = testing::expect_throw_with<Error>(
        [&] { io::write_file_atomic(out, "{}"); },
        {out.string(), std::string("'") + file.string() + "' is not a directory"});
    EXPECT_EQ(msg.find(".tmp-"), std::string::npos) << msg;
  }
  for (const fs::path& out : {file / "q", file / "sub" / "q"}) {
    const std::string msg = testing::expect_throw_with<Error>(
        [&] { io::AtomicDir d(out); },
        {out.string(), std::string("'") + file.string() + "' is not a directory"});
    EXPECT_EQ(msg.find("XXXXXX"), std::string::npos) << msg;
    EXPECT_EQ(msg.find(".tmp-"), std::string::npos) << msg;
  }
  EXPECT_EQ(read_bytes(file), "x");
}

// A name that fits the file system but not with the temporary sibling's
// suffix added: the message names the user's path only (never the
// `.tmp-XXXXXX` template) and says what to do.
TEST(AtomicFile, NameTooLongForTheTemporaryNamesTheUserPathOnly) {
  TempDir tmp;
  const long name_max = ::pathconf(tmp.path.c_str(), _PC_NAME_MAX);
  if (name_max < 32 || name_max > 4096) GTEST_SKIP() << "unusual NAME_MAX " << name_max;
  const fs::path out = tmp.path / std::string(size_t(name_max) - 4, 'n');
  for (int dir = 0; dir < 2; ++dir) {
    const std::string msg = testing::expect_throw_with<Error>(
        [&] {
          if (dir) {
            io::AtomicDir d(out);
          } else {
            io::write_file_atomic(out, "{}");
          }
        },
        {out.string(), "choose a shorter name"});
    EXPECT_EQ(msg.find("XXXXXX"), std::string::npos) << msg;
    EXPECT_EQ(msg.find(".tmp-"), std::string::npos) << msg;
  }
  EXPECT_EQ(entries(tmp.path), 0u);
}

// Tester finding: 'kq eval --json /proc/version' said "cannot create a file in folder '/proc' (No such file or
// directory)" of a folder that exists: /proc's file system gives ENOENT to any file creation. The message names the
// real cause, the kernel's proc file system (which holds no ordinary files), with the system's message as detail.
TEST(AtomicFile, FolderOnAKernelFileSystemIsNamedNotCalledMissing) {
  std::error_code ec;
  if (!fs::is_regular_file("/proc/version", ec)) GTEST_SKIP() << "no /proc";
  for (const fs::path& out : {fs::path("/proc/version"), fs::path("/proc/kq-test.json")}) {
    const std::string msg = testing::expect_throw_with<Error>(
        [&] { io::write_file_atomic(out, "{}"); },
        {out.string() + ": cannot write it: folder '/proc' is on the kernel's proc file system, which holds no "
                        "ordinary files: none can be created there (creating one failed: "});
    EXPECT_EQ(msg.find(".tmp-"), std::string::npos) << msg;
  }
  testing::expect_throw_with<Error>([&] { io::AtomicDir d("/proc/kq-test"); },
                                    {"/proc/kq-test", "folder '/proc' is on the kernel's proc file system"});
}

// Errors while filling the staging folder (e.g. a full disk) name the target
// folder the user asked for, with the exception's type kept.
TEST(AtomicDir, WriteErrorsNameTheTargetNotTheStagingFolder) {
  TempDir tmp;
  const fs::path out = tmp.path / "q";
  io::AtomicDir d(out);
  const std::string msg = testing::expect_throw_with<Error>(
      [&] { d.write([&] { io::write_file_atomic(d.file("sub") / "x.json", "{}"); }); },
      {(out / "sub" / "x.json").string(),
       std::string("folder '") + (out / "sub").string() + "' does not exist"});
  EXPECT_EQ(msg.find(d.staging().string()), std::string::npos) << msg;
  EXPECT_EQ(msg.find(".tmp-"), std::string::npos) << msg;
  testing::expect_throw_with<FormatError>(
      [&] { d.write([&] { raise<FormatError>("{}: bad", d.file("a.json").string()); }); },
      {(out / "a.json").string() + ": bad"});
  EXPECT_THROW(d.write([] { throw std::runtime_error("other"); }), std::runtime_error);
  d.write([&] { io::write_file_atomic(d.file("ok.json"), "{}"); });
  d.commit();
  EXPECT_EQ(read_bytes(out / "ok.json"), "{}");
}

}  // namespace
}  // namespace kq
