// The per-tensor checksums of a kq folder (config.json quantization_config.checksums,
// io/tensor_checksums.hpp): save_quantized_model records one for every tensor of
// model.safetensors, and Model::load verifies them: a byte flipped in a tensor, two
// same-shaped tensors swapped in the header, a tensor relabelled with another dtype
// or shape of the same size are refused naming the folder, file and tensor (the
// swap and the dtype relabel load silently without the record, shown here too); a
// folder without the record (an older kq's) loads as before; a malformed record is
// a FormatError naming its key.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/model_logits.hpp"
#include "common/safetensors_edit.hpp"
#include "common/test_data.hpp"
#include "common/test_util.hpp"
#include "common/tiny_folder.hpp"
#include "io/tensor_checksums.hpp"
#include "kq/error.hpp"
#include "kq/model.hpp"
#include "kq/optimizer.hpp"

namespace kq {
namespace {
namespace fs = std::filesystem;
using nlohmann::json;
using testing::EditableSafetensors;
using testing::error_of;
using testing::has;

const std::vector<int32_t> kTokens = {1, 17, 5, 60, 33, 2};

constexpr const char* kKProj = "model.layers.0.self_attn.k_proj.qweight";  // I8 [32, 64], quantized
constexpr const char* kVProj = "model.layers.0.self_attn.v_proj.qweight";  // I8 [32, 64], quantized
constexpr const char* kNorm1 = "model.layers.0.input_layernorm.weight";  // BF16 [64]
constexpr const char* kNorm2 = "model.layers.0.post_attention_layernorm.weight";  // BF16 [64]
constexpr const char* kKept = "model.layers.1.mlp.up_proj.weight";  // BF16 [128, 64], kept by a keep pattern

/// A tiny BF16 Llama quantized to int8 (layer 1's MLP kept in BF16) and saved at tmp/q.
struct SavedFolder {
  testing::TempDir tmp;
  fs::path dir = tmp.path / "q";
  fs::path weights = dir / "model.safetensors";
  std::vector<float> logits;  // of the folder as saved

  SavedFolder() {
    const fs::path src = testing::write_folder(tmp.path / "m", {false, DType::BF16, false});
    QuantizeOptions o;
    o.spec = parse_quant_mode("int8");
    o.keep_patterns = {"model\\.layers\\.1\\.mlp\\."};
    testing::CapturedWarnings quiet;  // no tokenizer in the tiny folder
    auto m = load_quantized(src, o, ExecContext{Device::CPU, 1});
    save_quantized_model(*m, o, dir);
    logits = testing::prefill_logits(*Model::load(dir, ExecContext{Device::CPU, 1}), kTokens);
  }
  json config() const { return json::parse(std::ifstream(dir / "config.json")); }
  void write_config(const json& c) const { testing::write_text(dir / "config.json", c.dump(2)); }
  /// Removes quantization_config.checksums, as a folder of an older kq has none.
  void drop_record() const {
    json c = config();
    c["quantization_config"].erase("checksums");
    write_config(c);
  }
  std::string load_error() const {
    return error_of<FormatError>([&] { Model::load(dir, ExecContext{Device::CPU, 1}); });
  }
  std::vector<float> load_logits() const {
    return testing::prefill_logits(*Model::load(dir, ExecContext{Device::CPU, 1}), kTokens);
  }
};

/// Whether `msg` is the mismatch error naming the folder, its file and tensor `name`.
void expect_mismatch(const std::string& msg, const SavedFolder& f, const std::string& name) {
  EXPECT_TRUE(has(msg, "checksum mismatch: the file was changed after kq wrote it")) << msg;
  EXPECT_TRUE(has(msg, f.dir.string() + ": model.safetensors: tensor '" + name + "'")) << msg;
}

TEST(Checksums, SavedFolderRecordsEveryTensorAndLoads) {
  const SavedFolder f;
  const json q = f.config()["quantization_config"];
  ASSERT_TRUE(q.contains("checksums")) << q.dump();
  EXPECT_EQ(q["format_version"], 1);  // older kq reads the folder (it ignores the record)
  EXPECT_EQ(q["checksums"]["algorithm"], "xxh3-64");
  const json& sums = q["checksums"]["files"]["model.safetensors"];
  const EditableSafetensors st(f.weights);
  size_t tensors = 0;
  for (const auto& [name, entry] : st.header.items()) {
    if (name == "__metadata__") continue;
    ++tensors;
    ASSERT_TRUE(sums.contains(name)) << name;
    EXPECT_EQ(sums[name].get<std::string>().size(), 16u) << name;
  }
  EXPECT_EQ(sums.size(), tensors);
  EXPECT_TRUE(sums.contains(kKProj) && sums.contains(kKept));
  // The safetensors metadata keeps the record without the checksums (they are config.json's).
  EXPECT_FALSE(has(st.header["__metadata__"]["kq_quantization"].get<std::string>(), "checksums"));
  EXPECT_NO_THROW(f.load_logits());
}

TEST(Checksums, ByteFlippedInsideATensorIsNamed) {
  for (const char* name : {kKProj, kNorm1, kKept}) {
    SCOPED_TRACE(name);
    const SavedFolder f;
    EditableSafetensors st(f.weights);
    st.data[st.begin(name) + st.size(name) / 2] ^= 0x10;
    st.write(f.weights);
    expect_mismatch(f.load_error(), f, name);
  }
}

TEST(Checksums, ByteFlippedInTheLastTensorByteIsNamed) {  // a truncated file padded back to its size
  const SavedFolder f;
  EditableSafetensors st(f.weights);
  std::string last;
  size_t end = 0;
  for (const auto& [name, entry] : st.header.items())
    if (name != "__metadata__" && entry["data_offsets"][1].get<size_t>() > end) {
      end = entry["data_offsets"][1].get<size_t>();
      last = name;
    }
  ASSERT_EQ(end, st.data.size());
  st.data.back() = char(st.data.back() ^ 0xFF);
  st.write(f.weights);
  expect_mismatch(f.load_error(), f, last);
}

TEST(Checksums, SwappedSameShapedTensorsAreRefused) {
  for (const auto& [a, b] : {std::pair{kKProj, kVProj}, std::pair{kNorm1, kNorm2}}) {
    SCOPED_TRACE(a);
    const SavedFolder f;
    EditableSafetensors st(f.weights);
    std::swap(st.header[a]["data_offsets"], st.header[b]["data_offsets"]);
    st.write(f.weights);
    const std::string msg = f.load_error();
    EXPECT_TRUE(has(msg, "checksum mismatch")) << msg;
    EXPECT_TRUE(has(msg, std::string("'") + a + "'") || has(msg, std::string("'") + b + "'")) << msg;
    // What the record catches: without it the swapped folder loads, and computes something else.
    f.drop_record();
    std::vector<float> swapped;
    ASSERT_NO_THROW(swapped = f.load_logits());
    EXPECT_NE(swapped, f.logits);
  }
}

TEST(Checksums, RelabelledDtypeOrShapeOfTheSameSizeIsRefused) {
  {
    SCOPED_TRACE("dtype BF16 -> F16");
    const SavedFolder f;
    EditableSafetensors st(f.weights);
    ASSERT_EQ(st.header[kNorm1]["dtype"], "BF16");
    st.header[kNorm1]["dtype"] = "F16";
    st.write(f.weights);
    const std::string msg = f.load_error();
    expect_mismatch(msg, f, kNorm1);
    EXPECT_TRUE(has(msg, "as F16 [64]")) << msg;
    f.drop_record();  // loads silently without the record
    std::vector<float> relabelled;
    ASSERT_NO_THROW(relabelled = f.load_logits());
    EXPECT_NE(relabelled, f.logits);
  }
  {
    SCOPED_TRACE("shape [128, 64] -> [64, 128]");
    const SavedFolder f;
    EditableSafetensors st(f.weights);
    ASSERT_EQ(st.header[kKept]["shape"], json({128, 64}));
    st.header[kKept]["shape"] = {64, 128};
    st.write(f.weights);
    expect_mismatch(f.load_error(), f, kKept);  // the checksum first, not "has shape [64, 128], expected ..."
  }
}

TEST(Checksums, FolderWithoutTheRecordLoadsAsBefore) {
  const SavedFolder f;
  f.drop_record();
  EXPECT_EQ(f.load_logits(), f.logits);
}

TEST(Checksums, AlteredRecordValueIsAMismatch) {
  const SavedFolder f;
  json c = f.config();
  std::string& v = c["quantization_config"]["checksums"]["files"]["model.safetensors"][kNorm2].get_ref<std::string&>();
  v[15] = v[15] == '0' ? '1' : '0';
  f.write_config(c);
  expect_mismatch(f.load_error(), f, kNorm2);
}

TEST(Checksums, MalformedRecordIsAFormatErrorNamingTheKey) {
  const std::string rec = "quantization_config.checksums";
  const std::string file = rec + ".files['model.safetensors']";
  struct Case {
    std::string what;
    std::function<void(json&)> edit;  // on quantization_config.checksums
    std::vector<std::string> says;
  };
  const std::vector<Case> cases{
      {"not an object", [](json& r) { r = 5; }, {rec + " must be an object", "not 5"}},
      {"null", [](json& r) { r = nullptr; }, {rec + " must be an object"}},
      {"unknown key", [](json& r) { r["extra"] = 1; }, {rec + ": unknown key 'extra'"}},
      {"no algorithm", [](json& r) { r.erase("algorithm"); }, {rec + ".algorithm is missing"}},
      {"other algorithm", [](json& r) { r["algorithm"] = "md5"; }, {rec + ".algorithm is \"md5\"", "xxh3-64"}},
      {"no files", [](json& r) { r.erase("files"); }, {rec + ".files is missing"}},
      {"files not an object", [](json& r) { r["files"] = json::array(); }, {rec + ".files must be an object"}},
      {"file entry not an object", [](json& r) { r["files"]["model.safetensors"] = "x"; },
       {file + " must be an object"}},
      {"no entry for the file", [](json& r) { r["files"].erase("model.safetensors"); },
       {rec + ".files has no entry for model.safetensors"}},
      {"extra file", [](json& r) { r["files"]["other.safetensors"] = json::object(); },
       {rec + ".files['other.safetensors']: the folder has no such safetensors file"}},
      {"missing tensor", [](json& r) { r["files"]["model.safetensors"].erase(kKProj); },
       {file + ": tensor '" + kKProj + "' of model.safetensors has no checksum"}},
      {"extra tensor name", [](json& r) { r["files"]["model.safetensors"]["model.layers.9.x"] = "0123456789abcdef"; },
       {file + "['model.layers.9.x']: model.safetensors holds no tensor of that name"}},
      {"non-hex", [](json& r) { r["files"]["model.safetensors"][kKProj] = "0123456789abcdeg"; },
       {file + "['" + kKProj + "'] must be a string of 16 hexadecimal digits", "\"0123456789abcdeg\""}},
      {"too short", [](json& r) { r["files"]["model.safetensors"][kKProj] = "0123"; },
       {file + "['" + kKProj + "'] must be a string of 16 hexadecimal digits"}},
      {"wrong type", [](json& r) { r["files"]["model.safetensors"][kKProj] = 12345; },
       {file + "['" + kKProj + "'] must be a string of 16 hexadecimal digits", "not 12345"}},
  };
  const SavedFolder f;
  const json good = f.config();
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    json cfg = good;
    c.edit(cfg["quantization_config"]["checksums"]);
    f.write_config(cfg);
    const std::string msg = f.load_error();
    EXPECT_TRUE(has(msg, (f.dir / "config.json").string())) << msg;
    for (const std::string& s : c.says) EXPECT_TRUE(has(msg, s)) << msg << "\n  expected: " << s;
  }
  f.write_config(good);
  EXPECT_EQ(f.load_logits(), f.logits);
}

TEST(Checksums, UppercaseHexDigitsAreAccepted) {
  const SavedFolder f;
  json c = f.config();
  for (auto& [name, v] : c["quantization_config"]["checksums"]["files"]["model.safetensors"].items()) {
    std::string s = v.get<std::string>();
    for (char& ch : s) ch = char(std::toupper(static_cast<unsigned char>(ch)));
    v = s;
  }
  f.write_config(c);
  EXPECT_EQ(f.load_logits(), f.logits);
}

}  // namespace
}  // namespace kq
