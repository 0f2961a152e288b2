#pragma once
// Locating the shared test data (../shared relative to the project root).
#include <gtest/gtest.h>

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <string>

namespace kq::testing {

/// The shared data folder, overridable with the KQ_SHARED_DIR environment variable.
inline std::filesystem::path shared_dir() {
  if (const char* e = std::getenv("KQ_SHARED_DIR")) return e;
  return KQ_SHARED_DIR;
}

/// true when `rel` (e.g. "models/gpt2-tiny") exists under the shared folder.
inline bool have_shared(const std::string& rel) { return std::filesystem::exists(shared_dir() / rel); }

/// A temporary directory removed at scope exit.
struct TempDir {
  std::filesystem::path path;
  TempDir() {
    path = std::filesystem::temp_directory_path() /
           ("kq_test_" + std::to_string(::getpid()) + "_" + std::to_string(counter()++));
    std::filesystem::create_directories(path);
  }
  ~TempDir() { std::error_code ec; std::filesystem::remove_all(path, ec); }
  static int& counter() { static int c = 0; return c; }
};

}  // namespace kq::testing

/// Skips the current test with a clear message when shared data is missing.
#define KQ_REQUIRE_SHARED(rel)                                                          \
  do {                                                                                  \
    if (!::kq::testing::have_shared(rel))                                               \
      GTEST_SKIP() << "shared test data '" << (::kq::testing::shared_dir() / (rel)).string() \
                   << "' not found (set KQ_SHARED_DIR); skipping";                      \
  } while (0)
