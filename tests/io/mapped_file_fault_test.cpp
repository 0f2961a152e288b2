// io::exit_on_mapped_file_fault(): reading a memory-mapped file past its end
// after it was truncated raises SIGBUS; with the handler installed the process
// writes the given message and exits with status 1 (and removes the staging
// folders of AtomicDirs when remove_staging_dirs_on_signals() is installed)
// instead of being killed by the signal without a word.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <string>

#include "common/test_data.hpp"
#include "common/test_util.hpp"
#include "io/atomic_dir.hpp"
#include "io/atomic_file.hpp"
#include "io/safetensors.hpp"

namespace kq {
namespace {
namespace fs = std::filesystem;
using testing::TempDir;

constexpr char kMessage[] = "test: a mapped file was truncated\n";

/// fork(); in the child, stderr goes to `err` and SIGBUS has its default action.
pid_t fork_child(const fs::path& err) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    const int e = ::open(err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ::dup2(e, 2);
    ::signal(SIGBUS, SIG_DFL);
  }
  return pid;
}

/// Forks a child that (optionally) installs the handlers, optionally starts an
/// AtomicDir for `out`, maps a 64 KiB file, truncates it to 100 bytes and
/// reads its last page. The child's stderr goes to `err`. Returns its wait status.
int fault_in_child(const fs::path& file, const fs::path& err, bool handler, bool staging,
                   const fs::path& out) {
  const pid_t pid = fork_child(err);
  if (pid == 0) {
    try {
      if (staging) io::remove_staging_dirs_on_signals();
      if (handler) io::exit_on_mapped_file_fault(kMessage);
      std::optional<io::AtomicDir> dir;
      if (staging) {
        dir.emplace(out);
        io::write_file_atomic(dir->file("config.json"), "{}\n");
      }
      const int fd = ::open(file.c_str(), O_RDWR);
      const size_t size = 65536;
      if (fd < 0 || ::ftruncate(fd, off_t(size)) != 0) ::_exit(97);
      auto* p = static_cast<volatile const char*>(::mmap(nullptr, size, PROT_READ, MAP_SHARED, fd, 0));
      if (p == MAP_FAILED) ::_exit(96);
      if (::ftruncate(fd, 100) != 0) ::_exit(95);
      const char c = p[size - 1];  // SIGBUS here
      ::_exit(c == 0 ? 90 : 91);   // not reached
    } catch (...) {
      ::_exit(99);
    }
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  return status;
}

TEST(MappedFileFault, WithoutTheHandlerTheProcessDiesBySigbus) {
  // The reference behaviour the handler fixes (a shell shows 135, no message).
  TempDir tmp;
  const int status =
      fault_in_child(testing::write_text(tmp.path / "w.bin", ""), tmp.path / "err", false, false, {});
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGBUS) << "status " << status;
}

TEST(MappedFileFault, HandlerWritesTheMessageAndExitsWithStatus1) {
  TempDir tmp;
  const int status =
      fault_in_child(testing::write_text(tmp.path / "w.bin", ""), tmp.path / "err", true, false, {});
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 1) << "status " << status;
  EXPECT_EQ(testing::read_all(tmp.path / "err"), kMessage);
}

TEST(MappedFileFault, StagingFoldersAreRemovedBeforeTheExit) {
  TempDir tmp;
  const fs::path out = tmp.path / "q";
  const int status =
      fault_in_child(testing::write_text(tmp.path / "w.bin", ""), tmp.path / "err", true, true, out);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 1) << "status " << status;
  EXPECT_EQ(testing::read_all(tmp.path / "err"), kMessage);
  EXPECT_TRUE(io::staging_leftovers(out).empty()) << io::staging_leftovers(out).front();
  EXPECT_FALSE(fs::exists(out));
}

// The message names the file that was truncated and the tensor being read
// (it said only "a model file changed or was truncated").
TEST(MappedFileFault, MessageNamesTheFileAndTheTensor) {
  TempDir tmp;
  const fs::path file = tmp.path / "model.safetensors", err = tmp.path / "err";
  write_safetensors(file, {{"a", Tensor::zeros(DType::F32, {4})}, {"big", Tensor::zeros(DType::F32, {16384})}});
  const pid_t pid = fork_child(err);
  if (pid == 0) {
    try {
      io::exit_on_mapped_file_fault(kMessage);
      const TensorStore store = TensorStore::open_file(file);
      const Tensor big = store.get("big");
      if (::truncate(file.c_str(), 100) != 0) ::_exit(95);
      const auto* p = static_cast<volatile const char*>(big.raw());
      const char c = p[big.nbytes() - 1];  // SIGBUS here
      ::_exit(c == 0 ? 90 : 91);           // not reached
    } catch (...) {
      ::_exit(99);
    }
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 1) << "status " << status;
  EXPECT_EQ(testing::read_all(err), "test: a mapped file was truncated: " + file.string() + " (tensor 'big')\n");
}

}  // namespace
}  // namespace kq
