// io::tensor_checksum against its documented definition, recomputed here with
// xxHash's one-shot XXH3_64bits over the byte string built by hand, and the
// library against the specification's known value (XXH3-64 of no bytes,
// seed 0); what the checksum binds (bytes, name, dtype, shape); and
// TensorChecksums against a record and a store (matched, mismatched, absent).
#include <gtest/gtest.h>

#include <cstring>
#include <string>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "common/test_data.hpp"
#include "io/safetensors.hpp"
#include "io/tensor_checksums.hpp"
#include "io/io_test_util.hpp"
#include "kq/error.hpp"

namespace kq {
namespace {

void append_u64(std::string& s, uint64_t v) { s.append(reinterpret_cast<const char*>(&v), 8); }

/// The byte string tensor_checksum hashes, as tensor_checksums.hpp defines it.
std::string documented_bytes(const std::string& name, const std::string& dtype, const Shape& shape,
                             const std::string& data) {
  std::string s;
  append_u64(s, name.size());
  s += name;
  append_u64(s, dtype.size());
  s += dtype;
  append_u64(s, shape.size());
  for (const int64_t d : shape) append_u64(s, uint64_t(d));
  return s + data;
}

Tensor u8_tensor(const Shape& shape, const std::string& bytes) {
  Tensor t = Tensor::empty(DType::U8, shape);
  std::memcpy(t.raw_mut(), bytes.data(), bytes.size());
  return t;
}

TEST(TensorChecksum, XxhashGivesTheSpecificationsValueForNoBytes) {
  EXPECT_EQ(XXH3_64bits(nullptr, 0), 0x2D06800538D394C2ull);  // xxHash's sanity-check table, len 0, seed 0
}

TEST(TensorChecksum, IsXxh3OfNameDtypeShapeAndBytesAsDocumented) {
  const std::string data = "\x01\x02\x03\x04\x05\x06";
  const Tensor t = u8_tensor({2, 3}, data);
  const std::string bytes = documented_bytes("a.weight", "U8", {2, 3}, data);
  EXPECT_EQ(io::tensor_checksum("a.weight", t), XXH3_64bits(bytes.data(), bytes.size()));
  const Tensor empty = Tensor::empty(DType::BF16, {0, 4});
  const std::string none = documented_bytes("e", "BF16", {0, 4}, "");
  EXPECT_EQ(io::tensor_checksum("e", empty), XXH3_64bits(none.data(), none.size()));
  EXPECT_EQ(io::checksum_hex(0x2D06800538D394C2ull), "2d06800538d394c2");
  EXPECT_EQ(io::checksum_hex(0x1ull), "0000000000000001");
}

TEST(TensorChecksum, BindsBytesNameDtypeAndShape) {
  const std::string data(24, '\x11');
  const uint64_t base = io::tensor_checksum("w", u8_tensor({4, 6}, data));
  std::string flipped = data;
  flipped[23] = '\x10';
  EXPECT_NE(io::tensor_checksum("w", u8_tensor({4, 6}, flipped)), base);
  EXPECT_NE(io::tensor_checksum("v", u8_tensor({4, 6}, data)), base);
  EXPECT_NE(io::tensor_checksum("w", u8_tensor({6, 4}, data)), base);
  EXPECT_NE(io::tensor_checksum("w", u8_tensor({24}, data)), base);
  Tensor i8 = Tensor::empty(DType::I8, {4, 6});
  std::memcpy(i8.raw_mut(), data.data(), data.size());
  EXPECT_NE(io::tensor_checksum("w", i8), base);
}

TEST(TensorChecksums, VerifiesAgainstTheRecordOnceAndNamesTheTensor) {
  testing::TempDir tmp;
  std::map<std::string, Tensor> tensors{{"a", u8_tensor({3}, "abc")}, {"b", u8_tensor({3}, "xyz")}};
  write_safetensors(tmp.path / "model.safetensors", tensors);
  const TensorStore store = TensorStore::open_dir(tmp.path);
  const nlohmann::json record = io::make_checksum_record({{"model.safetensors", &tensors}});
  EXPECT_EQ(record["files"]["model.safetensors"]["a"], io::checksum_hex(io::tensor_checksum("a", tensors["a"])));
  io::TensorChecksums sums(record, "config.json: quantization_config.checksums", store, tmp.path);
  EXPECT_TRUE(sums.recorded());
  EXPECT_EQ(sums.size(), 2u);
  sums.verify("a", store.get("a"));
  sums.verify("a", store.get("a"));
  EXPECT_EQ(sums.verified(), 1u);
  EXPECT_FALSE(sums.mismatched());
  // "b"'s bytes under "a"'s name: a swap.
  io::TensorChecksums fresh(record, "config.json: quantization_config.checksums", store, tmp.path);
  testing::expect_throw_with<FormatError>([&] { fresh.verify("a", store.get("b")); },
                                          {tmp.path.string() + ": model.safetensors: tensor 'a': checksum mismatch"});
  EXPECT_TRUE(fresh.mismatched());
  io::TensorChecksums none;
  EXPECT_FALSE(none.recorded());
  none.verify("a", store.get("b"));  // no record: nothing checked
}

}  // namespace
}  // namespace kq
