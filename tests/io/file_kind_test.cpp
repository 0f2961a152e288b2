// Input paths that are not regular files (src/io/file_kind.hpp): each kind is
// named, read_text_file says so naming the file, and nothing is opened (a
// FIFO with no writer would block this test forever if it were).
#include "io/file_kind.hpp"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "common/test_data.hpp"
#include "io/json_strict.hpp"
#include "kq/error.hpp"

namespace fs = std::filesystem;
using kq::io::why_not_regular_file;

namespace {

std::string read_error(const fs::path& p) {
  try {
    (void)kq::io::read_text_file(p, 1 << 20);
  } catch (const kq::FormatError& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace

TEST(FileKind, EachKindIsNamedAndNothingIsOpened) {
  kq::testing::TempDir tmp;
  const fs::path file = tmp.path / "a.txt", fifo = tmp.path / "pipe", link = tmp.path / "link";
  std::ofstream(file) << "text";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  fs::create_symlink("/dev/zero", link);

  EXPECT_EQ(why_not_regular_file(file), std::nullopt);
  EXPECT_EQ(why_not_regular_file(tmp.path / "missing"), "not found");
  EXPECT_EQ(why_not_regular_file(tmp.path), "is a directory, not a file");
  EXPECT_EQ(why_not_regular_file("/dev/zero"), "is a character device, not a regular file");
  EXPECT_EQ(why_not_regular_file(link), "is a character device, not a regular file");  // links are followed
  EXPECT_EQ(why_not_regular_file(fifo), "is a FIFO (named pipe), not a regular file");

  EXPECT_EQ(kq::io::read_text_file(file, 100), "text");
  EXPECT_EQ(read_error(tmp.path), tmp.path.string() + ": is a directory, not a file");
  EXPECT_EQ(read_error("/dev/zero"), "/dev/zero: is a character device, not a regular file");
  EXPECT_EQ(read_error(fifo), fifo.string() + ": is a FIFO (named pipe), not a regular file");
  EXPECT_EQ(read_error(tmp.path / "missing"), (tmp.path / "missing").string() + ": not found");
}

// The folder an output goes in: a file on the way is named as "not a
// directory", a missing folder as missing; existing folders (and "") pass.
TEST(FileKind, OutputFolderNamesTheFileOnTheWay) {
  using kq::io::why_not_folder;
  kq::testing::TempDir tmp;
  const fs::path file = tmp.path / "notes.txt";
  std::ofstream(file) << "text";
  EXPECT_EQ(why_not_folder(tmp.path), std::nullopt);
  EXPECT_EQ(why_not_folder(""), std::nullopt);  // the current folder
  const std::string not_dir = std::string("'") + file.string() + "' is not a directory";
  EXPECT_EQ(why_not_folder(file), not_dir);
  EXPECT_EQ(why_not_folder(file / "sub"), not_dir);
  EXPECT_EQ(why_not_folder(file / "sub" / "deeper"), not_dir);
  EXPECT_EQ(why_not_folder(file.string() + "/"), not_dir);
  EXPECT_EQ(why_not_folder("/dev/null/x"), "'/dev/null' is not a directory");
  EXPECT_EQ(why_not_folder(tmp.path / "a" / "b"),
            std::string("folder '") + (tmp.path / "a" / "b").string() + "' does not exist");
  // A relative path is named as given.
  EXPECT_EQ(why_not_folder("kq-no-such-folder/b"), "folder 'kq-no-such-folder/b' does not exist");
}

// Fresh-user finding: a symbolic link loop was "cannot be accessed (Too many
// levels of symbolic links)", or (model.safetensors, --out) taken for a
// missing file; a dangling link was "not found" though `ls` shows it.
TEST(FileKind, LinkLoopsAndDanglingLinksAreNamedAsSuch) {
  kq::testing::TempDir tmp;
  const fs::path self = tmp.path / "self.json", a = tmp.path / "a", b = tmp.path / "b";
  fs::create_symlink("self.json", self);
  fs::create_symlink("b", a);
  fs::create_symlink("a", b);
  EXPECT_EQ(why_not_regular_file(self), "is a symbolic link loop (Too many levels of symbolic links)");
  EXPECT_EQ(why_not_regular_file(a), "is a symbolic link loop (Too many levels of symbolic links)");
  EXPECT_EQ(why_not_regular_file(a / "config.json"),
            "cannot be accessed: a folder on the way is a symbolic link loop (Too many levels of symbolic links)");
  EXPECT_EQ(read_error(self), self.string() + ": is a symbolic link loop (Too many levels of symbolic links)");
  const fs::path dangling = tmp.path / "dangling.json";
  fs::create_symlink("gone.json", dangling);
  EXPECT_EQ(why_not_regular_file(dangling), "is a symbolic link to 'gone.json', which does not exist");
}
