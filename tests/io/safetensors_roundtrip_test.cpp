// write_safetensors -> TensorStore round trips: bit-identical bytes for every
// dtype, and a layout the reference reader accepts (contiguous, 8-aligned data).
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <random>

#include <nlohmann/json.hpp>

#include "common/test_data.hpp"
#include "io/io_test_util.hpp"
#include "io/safetensors.hpp"

namespace kq {
namespace {
namespace fs = std::filesystem;
using testing::TempDir;

Tensor random_tensor(DType dt, Shape shape, std::mt19937& rng) {
  Tensor t = Tensor::empty(dt, std::move(shape));
  auto* p = static_cast<unsigned char*>(t.raw_mut());
  for (size_t i = 0; i < t.nbytes(); ++i) p[i] = static_cast<unsigned char>(rng() & 0xff);
  return t;
}

std::map<std::string, Tensor> all_dtypes(std::mt19937& rng) {
  std::map<std::string, Tensor> m;
  m["f32.matrix"] = random_tensor(DType::F32, {3, 5}, rng);
  m["f16.vec"] = random_tensor(DType::F16, {7}, rng);
  m["bf16.matrix"] = random_tensor(DType::BF16, {4, 3}, rng);
  m["f8e4m3"] = random_tensor(DType::F8_E4M3, {2, 9}, rng);
  m["f8e5m2"] = random_tensor(DType::F8_E5M2, {5}, rng);
  m["i8"] = random_tensor(DType::I8, {3}, rng);
  m["u8.packed"] = random_tensor(DType::U8, {6, 2}, rng);
  m["i16"] = random_tensor(DType::I16, {3}, rng);
  m["i32"] = random_tensor(DType::I32, {1, 3}, rng);
  m["i64"] = random_tensor(DType::I64, {2}, rng);
  m["bool"] = random_tensor(DType::BOOL, {5}, rng);
  m["f64"] = random_tensor(DType::F64, {3}, rng);
  m["scalar"] = random_tensor(DType::F32, {}, rng);
  m["empty"] = Tensor::empty(DType::F32, {0, 4});
  return m;
}

void expect_same(const std::map<std::string, Tensor>& want, const TensorStore& got) {
  std::vector<std::string> names;
  for (const auto& [k, v] : want) names.push_back(k);
  EXPECT_EQ(got.names(), names);
  for (const auto& [name, t] : want) {
    ASSERT_TRUE(got.contains(name)) << name;
    const Tensor g = got.get(name);
    EXPECT_EQ(g.dtype(), t.dtype()) << name;
    EXPECT_EQ(g.shape(), t.shape()) << name;
    ASSERT_EQ(g.nbytes(), t.nbytes()) << name;
    if (t.nbytes()) {
      EXPECT_EQ(std::memcmp(g.raw(), t.raw(), t.nbytes()), 0) << name;
    }
  }
}

TEST(SafetensorsRoundTrip, AllDTypesBitIdentical) {
  TempDir tmp;
  std::mt19937 rng(7);
  const auto tensors = all_dtypes(rng);
  const std::map<std::string, std::string> meta{{"format", "pt"}, {"kq.note", "héllo"}};
  const fs::path file = tmp.path / "model.safetensors";
  write_safetensors(file, tensors, meta);
  const TensorStore st = TensorStore::open_file(file);
  expect_same(tensors, st);
  EXPECT_EQ(st.metadata(), meta);
  EXPECT_EQ(st.file_of("i8"), file.string());
  EXPECT_TRUE(st.get("f32.matrix").is_mapped());  // zero copy
  // Only the file itself is left in the folder (the temporary was renamed).
  EXPECT_EQ(std::distance(fs::directory_iterator(tmp.path), fs::directory_iterator()), 1);
}

TEST(SafetensorsRoundTrip, LayoutIsContiguousAndAligned) {
  // Checked with an independent parse of the raw bytes against the reference
  // reader's rules: 8 + N is a multiple of 8, tensors cover the data section
  // back to back, and each tensor is aligned to its element size (and to 8
  // bytes when its size is a multiple of 8).
  TempDir tmp;
  std::mt19937 rng(11);
  const fs::path file = tmp.path / "x.safetensors";
  write_safetensors(file, all_dtypes(rng));
  const std::string bytes = testing::read_bytes(file);
  uint64_t n = 0;
  std::memcpy(&n, bytes.data(), 8);
  EXPECT_EQ((8 + n) % 8, 0u);
  const auto h = nlohmann::json::parse(bytes.substr(8, n));
  std::vector<std::tuple<uint64_t, uint64_t, std::string>> ranges;
  for (const auto& [k, v] : h.items()) {
    if (k == "__metadata__") continue;
    const uint64_t b = v["data_offsets"][0], e = v["data_offsets"][1];
    ranges.emplace_back(b, e, v["dtype"].get<std::string>());
  }
  std::sort(ranges.begin(), ranges.end());
  uint64_t pos = 0;
  for (const auto& [b, e, dt] : ranges) {
    EXPECT_EQ(b, pos);
    const size_t es = dtype_size(*parse_dtype(dt));
    EXPECT_EQ((8 + n + b) % es, 0u) << dt;
    if ((e - b) % 8 == 0) {
      EXPECT_EQ((8 + n + b) % 8, 0u) << dt;
    }
    pos = e;
  }
  EXPECT_EQ(pos, bytes.size() - 8 - n);
}

TEST(SafetensorsRoundTrip, OverwritesExistingFile) {
  TempDir tmp;
  std::mt19937 rng(3);
  const fs::path file = tmp.path / "m.safetensors";
  write_safetensors(file, {{"a", random_tensor(DType::F32, {10}, rng)}});
  const std::map<std::string, Tensor> second{{"b", random_tensor(DType::BF16, {4, 4}, rng)}};
  write_safetensors(file, second);
  expect_same(second, TensorStore::open_file(file));
}

TEST(SafetensorsRoundTrip, SharedModelRewritesIdentically) {
  KQ_REQUIRE_SHARED("models/llama-small");
  TempDir tmp;
  const TensorStore src = TensorStore::open_dir(testing::shared_dir() / "models/llama-small");
  std::map<std::string, Tensor> all;
  for (const auto& n : src.names()) all[n] = src.get(n);
  write_safetensors(tmp.path / "model.safetensors", all, src.metadata());
  const TensorStore back = TensorStore::open_dir(tmp.path);
  expect_same(all, back);
  EXPECT_EQ(back.metadata(), src.metadata());
}

TEST(SafetensorsRead, UnalignedTensorsAreCopiedToAlignedMemory) {
  // Header length 13 (not a multiple of 8): the F32 tensor's bytes start at
  // file offset 21+4. The format allows it; typed access must still be valid.
  TempDir tmp;
  const std::string header = R"({"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},)"
                             R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})";
  std::string data = "\x01\x02\x03\x04";
  const float vals[2] = {1.5f, -2.25f};
  data.append(reinterpret_cast<const char*>(vals), 8);
  std::string padded_header = header;
  while ((8 + padded_header.size()) % 4 != 1) padded_header += ' ';  // data section starts at 1 mod 4
  ASSERT_NE((8 + padded_header.size()) % 4, 0u);
  testing::write_bytes(tmp.path / "u.safetensors", testing::raw_safetensors(padded_header, data));
  const TensorStore st = TensorStore::open_file(tmp.path / "u.safetensors");
  const Tensor b = st.get("b");
  const void* p = b.raw();
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % alignof(float), 0u);
  float got[2];
  std::memcpy(got, p, sizeof got);
  EXPECT_EQ(got[0], 1.5f);
  EXPECT_EQ(got[1], -2.25f);
  EXPECT_TRUE(st.get("a").is_mapped());  // 1-byte elements are always aligned
}

TEST(SafetensorsWrite, RejectsBadInput) {
  TempDir tmp;
  const fs::path file = tmp.path / "w.safetensors";
  testing::expect_throw_with<InvalidArgument>([&] { write_safetensors(file, {{"x", Tensor()}}); },
                                              {file.string(), "'x'"});
  testing::expect_throw_with<InvalidArgument>(
      [&] { write_safetensors(file, {{"__metadata__", Tensor::zeros(DType::F32, {1})}}); }, {file.string()});
  testing::expect_throw_with<InvalidArgument>(
      [&] { write_safetensors(file, {{"ok", Tensor::zeros(DType::F32, {1})}}, {{"k", "\xff\xfe"}}); },
      {file.string()});
  EXPECT_FALSE(fs::exists(file));
  EXPECT_TRUE(fs::is_empty(tmp.path));
}

TEST(SafetensorsWrite, IoFailureLeavesNoTemporary) {
  TempDir tmp;
  const auto t = Tensor::zeros(DType::F32, {4});
  // Missing parent folder.
  const fs::path missing = tmp.path / "no/such/dir/m.safetensors";
  testing::expect_throw_with<Error>([&] { write_safetensors(missing, {{"t", t}}); }, {missing.string()});
  // Destination is a folder: the final rename fails after the data was written.
  const fs::path dir = tmp.path / "d.safetensors";
  fs::create_directory(dir);
  testing::expect_throw_with<Error>([&] { write_safetensors(dir, {{"t", t}}); }, {dir.string()});
  EXPECT_EQ(std::distance(fs::directory_iterator(tmp.path), fs::directory_iterator()), 1);  // only d.safetensors/
  EXPECT_TRUE(fs::is_empty(dir));
}

}  // namespace
}  // namespace kq
