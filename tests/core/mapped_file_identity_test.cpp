// core::changed_mapped_files: a file MappedFile mapped that is rewritten in
// place (same size: no SIGBUS, the mapped pages show the new bytes), resized,
// replaced or removed afterwards is reported; an untouched one is not.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>

#include "common/test_data.hpp"
#include "common/test_util.hpp"
#include "core/mapped_file_identity.hpp"
#include "kq/tensor.hpp"

namespace kq {
namespace {

namespace fs = std::filesystem;

/// What changed_mapped_files says about `p` ("" when it is not listed).
std::string change_of(const fs::path& p) {
  for (const core::ChangedFile& c : core::changed_mapped_files())
    if (c.path == p.string()) return c.what;
  return {};
}

TEST(MappedFileIdentity, ChangesAfterTheMapAreReported) {
  testing::TempDir tmp;
  const fs::path same = testing::write_text(tmp.path / "same.bin", "0123456789");
  const fs::path poked = testing::write_text(tmp.path / "poked.bin", "0123456789");
  const fs::path shrunk = testing::write_text(tmp.path / "shrunk.bin", "0123456789");
  const fs::path replaced = testing::write_text(tmp.path / "replaced.bin", "0123456789");
  for (const fs::path& p : {same, poked, shrunk, replaced}) (void)MappedFile::open(p.string());
  EXPECT_EQ(change_of(same), "");
  EXPECT_EQ(change_of(poked), "");
  {  // rewritten in place, same size; the modification time moved on (set explicitly: file system
     // timestamps are coarser than this test is fast)
    std::fstream f(poked, std::ios::in | std::ios::out | std::ios::binary);
    f.write("9", 1);
  }
  fs::last_write_time(poked, fs::last_write_time(poked) + std::chrono::seconds(2));
  fs::resize_file(shrunk, 4);
  fs::rename(testing::write_text(tmp.path / "new.bin", "0123456789"), replaced);
  EXPECT_EQ(change_of(same), "");
  EXPECT_EQ(change_of(poked), "it was modified (its modification time changed)");
  EXPECT_EQ(change_of(shrunk), "its size changed from 10 to 4 bytes");
  EXPECT_EQ(change_of(replaced), "it was replaced by another file");
  fs::remove(same);
  EXPECT_EQ(change_of(same), "it was removed");
}

}  // namespace
}  // namespace kq
