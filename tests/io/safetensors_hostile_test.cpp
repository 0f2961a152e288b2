// Corrupt and malicious safetensors files, built byte by byte: every one must
// be rejected with a FormatError naming the file (and the tensor where one is
// at fault) — never a crash, hang or out-of-bounds read.
#include <gtest/gtest.h>

#include <fmt/format.h>

#include "common/test_data.hpp"
#include "io/io_test_util.hpp"
#include "io/safetensors.hpp"

namespace kq {
namespace {
namespace fs = std::filesystem;
using testing::expect_throw_with;
using testing::raw_safetensors;
using testing::raw_safetensors_n;
using testing::TempDir;
using testing::write_bytes;

/// A valid two-tensor file: F32 [2] "a" at [0,8), BF16 [2,2] "b" at [8,16).
std::string valid_header() {
  return R"({"__metadata__":{"format":"pt"},)"
         R"("a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
         R"("b":{"dtype":"BF16","shape":[2,2],"data_offsets":[8,16]}})";
}
std::string valid_data() { return std::string(16, '\x3f'); }

class Hostile : public ::testing::Test {
 protected:
  TempDir tmp;
  /// Writes `bytes` to NAME.safetensors and expects open_file to throw a
  /// FormatError whose message contains the file name and each of `needles`.
  void expect_rejected(const std::string& bytes, std::initializer_list<std::string> needles = {},
                       const std::string& name = "bad.safetensors") {
    const fs::path p = tmp.path / name;
    write_bytes(p, bytes);
    expect_throw_with<FormatError>([&] { TensorStore::open_file(p); }, {p.string()});
    if (needles.size()) expect_throw_with<FormatError>([&] { TensorStore::open_file(p); }, needles);
  }
  std::string tensor_file(const std::string& entries, size_t data_bytes = 16) {
    return raw_safetensors("{" + entries + "}", std::string(data_bytes, '\0'));
  }
};

TEST_F(Hostile, ValidBaseLoads) {
  write_bytes(tmp.path / "ok.safetensors", raw_safetensors(valid_header(), valid_data()));
  const TensorStore st = TensorStore::open_file(tmp.path / "ok.safetensors");
  EXPECT_EQ(st.names(), (std::vector<std::string>{"a", "b"}));
}

// Tester: a 100,000-character tensor name was quoted whole (and a U+202E in it raw): the message keeps its first
// 200 characters, escaped, and says how long it is.
TEST_F(Hostile, ALongTensorNameIsCutInMessages) {
  const std::string name = "\u202E" + std::string(100000, 'n');
  const fs::path p = tmp.path / "long.safetensors";
  write_bytes(p, tensor_file("\"" + name + R"(":{"dtype":"Q9","shape":[2],"data_offsets":[0,8]})", 8));
  try {
    TensorStore::open_file(p);
    ADD_FAILURE() << "opened";
  } catch (const FormatError& e) {
    const std::string m = e.what();
    EXPECT_LT(m.size(), 400u + p.string().size()) << m.substr(0, 300);
    EXPECT_NE(m.find("tensor '\\u202E" + std::string(199, 'n') + "\u2026 (100001 characters)': unknown dtype 'Q9'"),
              std::string::npos)
        << m.substr(0, 400);
  }
}

TEST_F(Hostile, TooShortForHeaderLength) {
  expect_rejected("", {"too short"});
  expect_rejected("\x08\0\0\0\0\0\0", {"too short"});
}

TEST_F(Hostile, TruncatedAtEveryLength) {
  const std::string full = raw_safetensors(valid_header(), valid_data());
  for (size_t len = 0; len < full.size(); ++len) {
    SCOPED_TRACE(len);
    expect_rejected(full.substr(0, len));
  }
}

TEST_F(Hostile, HeaderLengthBeyondFileOrHuge) {
  const std::string h = valid_header(), d = valid_data();
  // One byte more than the file holds after the length field (API-user finding: the message compared the
  // header length with the whole file size, "5915280 exceeds the file size 5915280").
  expect_rejected(raw_safetensors_n(h.size() + d.size() + 1, h, d),
                  {fmt::format("header length {} does not fit in the file: {} bytes after its 8-byte length field",
                               h.size() + d.size() + 1, h.size() + d.size())});
  expect_rejected(raw_safetensors_n(100'000'001, h, d), {"byte limit"});
  expect_rejected(raw_safetensors_n(~uint64_t(0), h, d), {"byte limit"});
  expect_rejected(raw_safetensors_n(uint64_t(1) << 63, h, d), {"byte limit"});
  expect_rejected(raw_safetensors_n(0, h, d), {"JSON object"});
}

TEST_F(Hostile, MalformedJson) {
  expect_rejected(raw_safetensors(R"({"a": )", ""), {"invalid JSON"});
  expect_rejected(raw_safetensors(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})" "garbage", "...."),
                  {"invalid JSON"});
  expect_rejected(raw_safetensors("[1, 2, 3]", ""), {"JSON object"});
  expect_rejected(raw_safetensors("{\"\xff\xfe\":1}", ""), {"invalid JSON"});  // invalid UTF-8
  expect_rejected(raw_safetensors(std::string("{\0}", 3), ""), {"a NUL byte at offset 9"});
  expect_rejected(raw_safetensors(std::string(100000, '[') , ""), {"JSON object"});
  // Deep nesting, unterminated and complete: refused (more than kMaxJsonDepth levels), no stack overflow.
  expect_rejected(raw_safetensors("{\"a\":" + std::string(200000, '['), ""), {"nested more than"});
  expect_rejected(raw_safetensors("{\"a\":" + std::string(200000, '[') + std::string(200000, ']') + "}", ""),
                  {"nested more than"});
  expect_rejected(raw_safetensors("{\"a\":" + std::string(500, '[') + std::string(500, ']') + "}", ""),
                  {"'a'", "not a JSON object"});
}

// The format pads the header with spaces (0x20); the reference implementation
// (serde_json) refuses any other trailing byte. A NUL ended nlohmann's parse:
// NUL padding, or a NUL followed by junk, was accepted unseen.
TEST_F(Hostile, NulInTheHeaderIsRefusedWithItsFileOffset) {
  const std::string h = valid_header();
  expect_rejected(raw_safetensors(h + std::string(6, '\0'), valid_data()),
                  {fmt::format("a NUL byte at offset {} (JSON text cannot contain one)", 8 + h.size())});
  expect_rejected(raw_safetensors(h + std::string(1, '\0') + "{\"junk\": ", valid_data()),
                  {fmt::format("a NUL byte at offset {} ", 8 + h.size())});
  // Padding with spaces is the format's own: it loads.
  write_bytes(tmp.path / "ok.safetensors", raw_safetensors(h + std::string(6, ' '), valid_data()));
  EXPECT_EQ(TensorStore::open_file(tmp.path / "ok.safetensors").names().size(), 2u);
}

TEST_F(Hostile, NonObjectEntries) {
  expect_rejected(tensor_file(R"("w":5)"), {"'w'", "not a JSON object"});
  expect_rejected(tensor_file(R"("w":[0,4])"), {"'w'"});
  expect_rejected(tensor_file(R"("__metadata__":[1])"), {"__metadata__"});
  expect_rejected(tensor_file(R"("__metadata__":{"k":1})"), {"__metadata__", "'k'"});
}

TEST_F(Hostile, BadDType) {
  expect_rejected(tensor_file(R"("w":{"dtype":"F33","shape":[1],"data_offsets":[0,4]})"), {"'w'", "F33"});
  expect_rejected(tensor_file(R"("w":{"dtype":"f32","shape":[1],"data_offsets":[0,4]})"), {"'w'", "f32"});
  expect_rejected(tensor_file(R"("w":{"dtype":4,"shape":[1],"data_offsets":[0,4]})"), {"'w'", "dtype"});
  expect_rejected(tensor_file(R"("w":{"shape":[1],"data_offsets":[0,4]})"), {"'w'", "dtype"});
}

TEST_F(Hostile, BadShapes) {
  expect_rejected(tensor_file(R"("w":{"dtype":"U8","shape":[-1],"data_offsets":[0,4]})"), {"'w'", "-1"});
  expect_rejected(tensor_file(R"("w":{"dtype":"U8","shape":[2.5],"data_offsets":[0,4]})"), {"'w'", "2.5"});
  expect_rejected(tensor_file(R"("w":{"dtype":"U8","shape":["4"],"data_offsets":[0,4]})"), {"'w'"});
  expect_rejected(tensor_file(R"("w":{"dtype":"U8","shape":4,"data_offsets":[0,4]})"), {"'w'", "shape"});
  expect_rejected(tensor_file(R"("w":{"dtype":"U8","data_offsets":[0,4]})"), {"'w'", "shape"});
  expect_rejected(tensor_file(R"("w":{"dtype":"U8","shape":[99999999999999999999],"data_offsets":[0,4]})"),
                  {"'w'"});
  // element-count overflow: 2^32 · 2^32 · 2^32
  expect_rejected(tensor_file(R"("w":{"dtype":"U8","shape":[4294967296,4294967296,4294967296],"data_offsets":[0,4]})"),
                  {"'w'", "overflow"});
  // byte-size overflow: 2^61 F64 elements = 2^64 bytes
  expect_rejected(tensor_file(R"("w":{"dtype":"F64","shape":[2305843009213693952],"data_offsets":[0,0]})"),
                  {"'w'", "overflow"});
  // 2^62 · 2 = 2^63 elements > INT64_MAX
  expect_rejected(tensor_file(R"("w":{"dtype":"U8","shape":[4611686018427387904,2],"data_offsets":[0,0]})"),
                  {"'w'", "overflow"});
}

TEST_F(Hostile, SizeMismatch) {
  expect_rejected(tensor_file(R"("w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,12]})"), {"'w'", "16"});
  expect_rejected(tensor_file(R"("w":{"dtype":"BF16","shape":[3],"data_offsets":[0,3]})"), {"'w'"});
  expect_rejected(tensor_file(R"("w":{"dtype":"F32","shape":[0],"data_offsets":[0,4]})"), {"'w'"});
}

TEST_F(Hostile, BadOffsets) {
  expect_rejected(tensor_file(R"("w":{"dtype":"U8","shape":[1000],"data_offsets":[0,1000]})"),
                  {"'w'", "outside the data section"});
  expect_rejected(tensor_file(R"("w":{"dtype":"U8","shape":[4],"data_offsets":[16,20]})"),
                  {"'w'", "outside the data section"});
  expect_rejected(tensor_file(R"("w":{"dtype":"U8","shape":[0],"data_offsets":[17,17]})"), {"'w'"});
  expect_rejected(tensor_file(R"("w":{"dtype":"U8","shape":[4],"data_offsets":[8,4]})"), {"'w'"});
  expect_rejected(tensor_file(R"("w":{"dtype":"U8","shape":[4],"data_offsets":[-4,0]})"), {"'w'"});
  expect_rejected(tensor_file(R"("w":{"dtype":"U8","shape":[4],"data_offsets":[0]})"), {"'w'", "data_offsets"});
  expect_rejected(tensor_file(R"("w":{"dtype":"U8","shape":[4],"data_offsets":[0,4,8]})"), {"'w'"});
  expect_rejected(tensor_file(R"("w":{"dtype":"U8","shape":[4],"data_offsets":[0.0,4.0]})"), {"'w'"});
  expect_rejected(tensor_file(R"("w":{"dtype":"U8","shape":[4],"data_offsets":"0-4"})"), {"'w'"});
  expect_rejected(tensor_file(R"("w":{"dtype":"U8","shape":[1],"data_offsets":[18446744073709551615,0]})"),
                  {"'w'"});
  // end = 2^64-1 with begin chosen so end - begin equals the byte size
  expect_rejected(tensor_file(R"("w":{"dtype":"U8","shape":[4],"data_offsets":[18446744073709551611,18446744073709551615]})"),
                  {"'w'", "outside"});
}

// Numbers outside the unsigned 64-bit range are parsed as floating point;
// the message says what is wrong with them instead of printing 1e+30 or
// 1.8446744073709552e+19 (which is not what the file holds).
TEST_F(Hostile, OffsetsOutsideU64AreNamedNotPrintedAsFloats) {
  for (const char* v : {"1e30", "18446744073709551616", "99999999999999999999", "2e19"}) {
    SCOPED_TRACE(v);
    const std::string w = R"("w":{"dtype":"U8",)";
    const std::string end = w + R"("shape":[4],"data_offsets":[0,)" + v + "]}";
    const std::string begin = w + R"("shape":[4],"data_offsets":[)" + v + ",4]}";
    const std::string shape = w + R"("shape":[)" + v + R"(],"data_offsets":[0,4]})";
    for (const std::string& entry : {end, begin, shape}) {
      const fs::path p = tmp.path / "big.safetensors";
      write_bytes(p, tensor_file(entry));
      const std::string msg = expect_throw_with<FormatError>(
          [&] { TensorStore::open_file(p); },
          {p.string(), "tensor 'w'", "not a valid unsigned 64-bit integer", "above 18446744073709551615"});
      EXPECT_EQ(msg.find("e+"), std::string::npos) << msg;
      EXPECT_EQ(msg.find("inf"), std::string::npos) << msg;
      EXPECT_EQ(msg.find("null"), std::string::npos) << msg;
    }
  }
  // Beyond double's range the JSON reader itself refuses the number, quoting it as written.
  expect_rejected(tensor_file(R"("w":{"dtype":"U8","shape":[4],"data_offsets":[0,1e400]})"),
                  {"invalid JSON", "'1e400'"});
  // Which offset, and what it is instead of an unsigned integer.
  expect_rejected(tensor_file(R"("w":{"dtype":"U8","shape":[4],"data_offsets":[0,1e30]})"),
                  {"end (the second)"});
  expect_rejected(tensor_file(R"("w":{"dtype":"U8","shape":[4],"data_offsets":[-4,0]})"),
                  {"begin (the first)", "negative (-4)"});
  expect_rejected(tensor_file(R"("w":{"dtype":"U8","shape":[4],"data_offsets":[0,4.5]})"),
                  {"not a whole number (4.5)"});
  expect_rejected(tensor_file(R"("w":{"dtype":"U8","shape":[4],"data_offsets":[0,4.0]})"),
                  {"written in floating-point form"});
  expect_rejected(tensor_file(R"("w":{"dtype":"U8","shape":[4],"data_offsets":["0",4]})"), {"a string"});
  expect_rejected(tensor_file(R"("w":{"dtype":"U8","shape":[4],"data_offsets":[8,4]})"),
                  {"data_offsets [8,4]", "begin is after end"});
}

TEST_F(Hostile, OverlappingTensors) {
  expect_rejected(tensor_file(R"("a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                              R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]})"),
                  {"overlap", "'a'", "'b'"});
  expect_rejected(tensor_file(R"("a":{"dtype":"U8","shape":[16],"data_offsets":[0,16]},)"
                              R"("b":{"dtype":"U8","shape":[4],"data_offsets":[8,12]})"),
                  {"overlap"});
  expect_rejected(tensor_file(R"("a":{"dtype":"U8","shape":[4],"data_offsets":[4,8]},)"
                              R"("b":{"dtype":"U8","shape":[4],"data_offsets":[4,8]})"),
                  {"overlap"});
  // Overlapping tensors that also leave no hole and no trailing byte.
  expect_rejected(tensor_file(R"("a":{"dtype":"U8","shape":[12],"data_offsets":[0,12]},)"
                              R"("b":{"dtype":"U8","shape":[8],"data_offsets":[8,16]})"),
                  {"overlap", "'a'", "'b'", "[0, 12]", "[8, 16]"});
  expect_rejected(tensor_file(R"("a":{"dtype":"U8","shape":[16],"data_offsets":[0,16]},)"
                              R"("b":{"dtype":"U8","shape":[16],"data_offsets":[0,16]})"),
                  {"overlap"});
}

// The format's specification: "the byte buffer needs to be entirely indexed,
// and cannot contain holes. This prevents the creation of polyglot files."
// The reference reader rejects gaps, bytes before the first tensor and bytes
// after the last; so do we, naming the byte range and the tensors around it.
TEST_F(Hostile, HoleBetweenTensors) {
  const std::string entries = R"("a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},)"
                              R"("b":{"dtype":"U8","shape":[4],"data_offsets":[8,12]})";
  const std::string bytes = tensor_file(entries, 12);
  const size_t data_start = bytes.size() - 12;
  expect_rejected(bytes, {"data bytes [4, 8)", "hole", "tensor 'a' [0, 4]", "tensor 'b' [8, 12]",
                          fmt::format("file offsets [{}, {})", data_start + 4, data_start + 8)});
  // The same hole with the entries listed in the other order, and a 1-byte hole.
  expect_rejected(tensor_file(R"("b":{"dtype":"U8","shape":[4],"data_offsets":[5,9]},)"
                              R"("a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]})", 9),
                  {"data bytes [4, 5)", "'a'", "'b'"});
}

TEST_F(Hostile, BytesBeforeTheFirstTensor) {
  expect_rejected(tensor_file(R"("a":{"dtype":"U8","shape":[4],"data_offsets":[4,8]})", 8),
                  {"data bytes [0, 4)", "start of the data section", "tensor 'a' [4, 8]"});
}

TEST_F(Hostile, TrailingBytesAfterTheLastTensor) {
  const std::string entries = R"("a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},)"
                              R"("b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]})";
  expect_rejected(tensor_file(entries, 9), {"data bytes [8, 9)", "1 trailing bytes", "tensor 'b' [4, 8]"});
  expect_rejected(raw_safetensors(valid_header(), valid_data() + "<html>polyglot</html>"),
                  {"data bytes [16, 37)", "trailing", "tensor 'b' [8, 16]"});
  // No tensors at all, yet data bytes.
  expect_rejected(raw_safetensors(R"({"__metadata__":{"format":"pt"}})", "xyz"),
                  {"data bytes [0, 3)", "lists no tensor"});
  expect_rejected(raw_safetensors("{}", "x"), {"data bytes [0, 1)"});
}

TEST_F(Hostile, EmptyTensorInsideAnotherTensor) {
  // As the reference reader: an empty tensor sits between tensors, not inside one.
  expect_rejected(tensor_file(R"("a":{"dtype":"U8","shape":[8],"data_offsets":[0,8]},)"
                              R"("z":{"dtype":"F32","shape":[0],"data_offsets":[4,4]})", 8),
                  {"tensor 'z'", "inside tensor 'a' [0, 8]"});
}

TEST_F(Hostile, FullyIndexedFilesWithEmptyTensorsLoad) {
  const std::vector<std::string> ok = {
      raw_safetensors(R"({"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},)"
                      R"("z":{"dtype":"F32","shape":[0],"data_offsets":[4,4]},)"
                      R"("y":{"dtype":"F32","shape":[2,0],"data_offsets":[0,0]},)"
                      R"("b":{"dtype":"U8","shape":[2],"data_offsets":[4,6]}})",
                      "abcdef"),
      raw_safetensors(R"({"e":{"dtype":"F32","shape":[0],"data_offsets":[0,0]}})"),
      raw_safetensors(R"({"__metadata__":{"format":"pt"}})"),
      raw_safetensors("{}"),
  };
  for (size_t i = 0; i < ok.size(); ++i) {
    SCOPED_TRACE(i);
    const fs::path p = tmp.path / fmt::format("ok{}.safetensors", i);
    write_bytes(p, ok[i]);
    EXPECT_NO_THROW(TensorStore::open_file(p));
  }
  const TensorStore st = TensorStore::open_file(tmp.path / "ok0.safetensors");
  EXPECT_EQ(st.names(), (std::vector<std::string>{"a", "b", "y", "z"}));
  EXPECT_EQ(std::string(static_cast<const char*>(st.get("b").raw()), 2), "ef");
}

TEST_F(Hostile, DuplicateNames) {
  expect_rejected(tensor_file(R"("a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},)"
                              R"("a":{"dtype":"U8","shape":[4],"data_offsets":[4,8]})"),
                  {"duplicate", "'a'"});
  expect_rejected(tensor_file(R"("a":{"dtype":"U8","dtype":"F32","shape":[4],"data_offsets":[0,4]})"),
                  {"duplicate", "'dtype'"});
}

TEST_F(Hostile, NotAFile) {
  const fs::path missing = tmp.path / "missing.safetensors";
  expect_throw_with<FormatError>([&] { TensorStore::open_file(missing); }, {missing.string()});
  expect_throw_with<FormatError>([&] { TensorStore::open_file(tmp.path); }, {tmp.path.string()});
}

// ---- model folders and sharded indexes -------------------------------------

class HostileDir : public Hostile {
 protected:
  fs::path index() const { return tmp.path / "model.safetensors.index.json"; }
  void shard(const std::string& name) { write_bytes(tmp.path / name, raw_safetensors(valid_header(), valid_data())); }
  void expect_dir_rejected(std::initializer_list<std::string> needles) {
    expect_throw_with<FormatError>([&] { TensorStore::open_dir(tmp.path); }, needles);
  }
};

TEST_F(HostileDir, ValidShardedLoads) {
  shard("s1.safetensors");
  write_bytes(index(), R"({"metadata":{"total_size":16},"weight_map":{"a":"s1.safetensors","b":"s1.safetensors"}})");
  const TensorStore st = TensorStore::open_dir(tmp.path);
  EXPECT_EQ(st.names().size(), 2u);
  EXPECT_EQ(st.file_of("b"), (tmp.path / "s1.safetensors").string());
}

TEST_F(HostileDir, NoModelFiles) {
  expect_dir_rejected({tmp.path.string(), "model.safetensors"});
  const fs::path nodir = tmp.path / "nope";
  expect_throw_with<FormatError>([&] { TensorStore::open_dir(nodir); }, {nodir.string()});
}

// Fresh-user finding: a model.safetensors (or index) that is a symbolic link
// loop, or a dangling link, was taken for an absent file: "no
// model.safetensors or model.safetensors.index.json in the folder".
TEST_F(HostileDir, WeightsFileThatIsABrokenLinkIsNamedNotMissing) {
  const fs::path single = tmp.path / "model.safetensors";
  fs::create_symlink("model.safetensors", single);
  expect_dir_rejected({single.string() + ": is a symbolic link loop (Too many levels of symbolic links)"});
  fs::remove(single);
  fs::create_symlink("gone.safetensors", single);
  expect_dir_rejected({single.string() + ": is a symbolic link to 'gone.safetensors', which does not exist"});
  fs::remove(single);
  fs::create_symlink("model.safetensors.index.json", index());
  expect_dir_rejected({index().string() + ": is a symbolic link loop"});
}

// A folder with only a PyTorch pickle checkpoint: the error says how to convert it.
TEST_F(HostileDir, PickleOnlyFolderSaysHowToConvert) {
  write_bytes(tmp.path / "pytorch_model.bin", "PK\x03\x04 not read");
  expect_dir_rejected({tmp.path.string(), "only pytorch_model.bin", "safe_serialization=True"});
}

// Shards without their index (a partial download: tester round 23) named the index alone, not the shards found.
TEST_F(HostileDir, ShardsWithoutTheirIndexAreNamed) {
  shard("model-00002-of-00003.safetensors");
  expect_dir_rejected({tmp.path.string() + ": found model-00002-of-00003.safetensors but no "
                       "model.safetensors.index.json", "incomplete download?"});
  shard("model-00001-of-00003.safetensors");
  expect_dir_rejected({": found model-00001-of-00003.safetensors and 1 other shard file but no "
                       "model.safetensors.index.json"});
  shard("model-00003-of-00003.safetensors");
  expect_dir_rejected({"model-00001-of-00003.safetensors and 2 other shard files but no"});
}

// Files that are not shards by name leave the plain message.
TEST_F(HostileDir, OtherSafetensorsFilesAreNotShards) {
  for (const char* name : {"adapter_model.safetensors", "model-1-of.safetensors", "-00001-of-00002.safetensors",
                           "model-00001-of-00002.safetensors.part", "model-a-of-2.safetensors"})
    write_bytes(tmp.path / name, "x");
  try {
    TensorStore::open_dir(tmp.path);
    ADD_FAILURE() << "no exception";
  } catch (const FormatError& e) {
    EXPECT_EQ(std::string(e.what()),
              tmp.path.string() + ": no model.safetensors or model.safetensors.index.json in the folder");
  }
}

TEST_F(HostileDir, MissingShard) {
  write_bytes(index(), R"({"weight_map":{"a":"model-00001-of-00002.safetensors"}})");
  expect_dir_rejected({index().string(), "model-00001-of-00002.safetensors", "'a'", "not found"});
}

TEST_F(HostileDir, TensorAbsentFromShard) {
  shard("s1.safetensors");
  write_bytes(index(), R"({"weight_map":{"a":"s1.safetensors","zzz":"s1.safetensors"}})");
  expect_dir_rejected({index().string(), "'zzz'", "s1.safetensors"});
}

TEST_F(HostileDir, UnlistedTensorInAShardIsLoaded) {
  shard("s1.safetensors");  // holds a and b
  write_bytes(index(), R"({"weight_map":{"a":"s1.safetensors"}})");
  const TensorStore st = TensorStore::open_dir(tmp.path);
  ASSERT_TRUE(st.contains("b"));
  EXPECT_EQ(st.file_of("b"), (tmp.path / "s1.safetensors").string());
  EXPECT_EQ(st.get("b").dtype(), DType::BF16);
  EXPECT_EQ(st.get("b").shape().size(), 2u);
}

TEST_F(HostileDir, ShardWithTrailingBytes) {
  write_bytes(tmp.path / "s1.safetensors", raw_safetensors(valid_header(), valid_data() + "junk"));
  write_bytes(index(), R"({"weight_map":{"a":"s1.safetensors","b":"s1.safetensors"}})");
  expect_dir_rejected({(tmp.path / "s1.safetensors").string(), "data bytes [16, 20)", "trailing"});
}

TEST_F(HostileDir, TensorHeldByTwoShards) {
  shard("s1.safetensors");
  shard("s2.safetensors");  // both hold a and b
  write_bytes(index(), R"({"weight_map":{"a":"s1.safetensors","b":"s2.safetensors"}})");
  expect_dir_rejected({index().string(), "two shards", "s1.safetensors", "s2.safetensors"});
}

TEST_F(HostileDir, SingleFileWinsOverAnIndex) {
  // As Hugging Face transformers: model.safetensors is read when both are there.
  write_bytes(tmp.path / "model.safetensors", raw_safetensors(valid_header(), valid_data()));
  write_bytes(index(), R"({"weight_map":{"zzz":"missing.safetensors"}})");
  const TensorStore st = TensorStore::open_dir(tmp.path);
  EXPECT_TRUE(st.contains("a"));
  EXPECT_EQ(st.file_of("a"), (tmp.path / "model.safetensors").string());
}

TEST_F(HostileDir, ShardThatIsAFolderIsNamedAsOne) {
  fs::create_directory(tmp.path / "s1.safetensors");
  write_bytes(index(), R"({"weight_map":{"a":"s1.safetensors"}})");
  expect_dir_rejected({index().string(), "s1.safetensors", "is a directory"});
}

TEST_F(HostileDir, BadIndexJson) {
  write_bytes(index(), R"({"weight_map":{"a":)");
  expect_dir_rejected({index().string(), "invalid JSON"});
  write_bytes(index(), R"({"weights":{}})");
  expect_dir_rejected({index().string(), "weight_map"});
  write_bytes(index(), R"({"weight_map":{}})");
  expect_dir_rejected({index().string(), "empty"});
  write_bytes(index(), R"({"weight_map":{"a":3}})");
  expect_dir_rejected({index().string(), "'a'"});
  write_bytes(index(), R"({"weight_map":{"a":"s.safetensors","a":"t.safetensors"}})");
  expect_dir_rejected({index().string(), "duplicate"});
  write_bytes(index(), R"([])");
  expect_dir_rejected({index().string()});
  write_bytes(index(), std::string(R"({"weight_map":{"a":"s1.safetensors"}})") + '\0' + R"({"junk": )");
  expect_dir_rejected({index().string(), "a NUL byte at offset 37"});
}

TEST_F(HostileDir, ShardPathEscapes) {
  write_bytes(index(), R"({"weight_map":{"a":"../outside.safetensors"}})");
  expect_dir_rejected({index().string(), "../outside.safetensors"});
  write_bytes(index(), R"({"weight_map":{"a":"/etc/passwd"}})");
  expect_dir_rejected({index().string(), "/etc/passwd"});
}

// Tester finding: a weight_map naming one shard as './s1.safetensors' and as 's1.safetensors' was "tensor 'b' is held
// by two shards" (the same file twice). Names are compared lexically normalized; '..' and absolute ones still refused.
TEST_F(HostileDir, OneShardSpelledTwoWaysIsOneShard) {
  shard("s1.safetensors");
  write_bytes(index(), R"({"weight_map":{"a":"./s1.safetensors","b":"s1.safetensors"}})");
  TensorStore st = TensorStore::open_dir(tmp.path);
  EXPECT_EQ(st.file_of("a"), (tmp.path / "s1.safetensors").string());
  EXPECT_EQ(st.file_of("b"), (tmp.path / "s1.safetensors").string());
  fs::create_directory(tmp.path / "sub");
  write_bytes(tmp.path / "sub/s2.safetensors", raw_safetensors(valid_header(), valid_data()));
  write_bytes(index(), R"({"weight_map":{"a":"sub//s2.safetensors","b":"./sub/./s2.safetensors"}})");
  st = TensorStore::open_dir(tmp.path);
  EXPECT_EQ(st.file_of("a"), (tmp.path / "sub/s2.safetensors").string());
  EXPECT_EQ(st.file_of("b"), (tmp.path / "sub/s2.safetensors").string());
  write_bytes(index(), R"({"weight_map":{"a":"./../s1.safetensors"}})");
  expect_dir_rejected({index().string(), "'./../s1.safetensors' is not a plain relative path"});
  write_bytes(index(), R"({"weight_map":{"a":"sub/../s1.safetensors"}})");
  expect_dir_rejected({index().string(), "'sub/../s1.safetensors' is not a plain relative path"});
}

// Tester finding: an index with a UTF-8 byte-order mark before its JSON was read (kq's parser skips it), while
// transformers' json.load refuses it; refused naming the file, as config.json is.
TEST_F(HostileDir, IndexWithAByteOrderMarkIsRefused) {
  shard("s1.safetensors");
  write_bytes(index(), "\xEF\xBB\xBF" R"({"weight_map":{"a":"s1.safetensors"}})");
  expect_dir_rejected({index().string() + ": starts with a UTF-8 byte-order mark (bytes EF BB BF)"});
}

TEST_F(HostileDir, CorruptShardNamesTheShard) {
  write_bytes(tmp.path / "s1.safetensors", raw_safetensors(valid_header(), "short"));
  write_bytes(index(), R"({"weight_map":{"a":"s1.safetensors"}})");
  expect_dir_rejected({(tmp.path / "s1.safetensors").string()});
}

TEST_F(HostileDir, CorruptSingleFileNamesTheFile) {
  write_bytes(tmp.path / "model.safetensors", raw_safetensors_n(1u << 20, valid_header(), valid_data()));
  expect_dir_rejected({(tmp.path / "model.safetensors").string()});
}

}  // namespace
}  // namespace kq
