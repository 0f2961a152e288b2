// Model folders a fresh user got wrong (fresh-user findings): a kq-quantized
// folder whose config.json lost its quantization_config, and a sharded index
// whose weight_map points a tensor at a shard that does not hold it.
#include <gtest/gtest.h>

#include <filesystem>
#include <cstring>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <string>

#include "common/test_data.hpp"
#include "common/test_util.hpp"
#include "io/safetensors.hpp"
#include "kq/error.hpp"
#include "kq/model.hpp"
#include "kq/quantize.hpp"
#include "quant/packed_weight.hpp"

using namespace kq;
using kq::testing::TempDir;
namespace fs = std::filesystem;

namespace {

fs::path demo_dir() { return kq::testing::demo_model(); }

std::map<std::string, Tensor> demo_tensors() {
  const TensorStore store = TensorStore::open_dir(demo_dir());
  std::map<std::string, Tensor> m;
  for (const auto& n : store.names()) m[n] = store.get(n);
  return m;
}


bool has(const std::string& s, const std::string& needle) { return s.find(needle) != std::string::npos; }

/// A folder with the demo config.json (no quantization_config) and `tensors`.
fs::path folder(const TempDir& tmp, const std::string& name, const std::map<std::string, Tensor>& tensors,
                const std::map<std::string, std::string>& metadata = {}) {
  const fs::path dir = tmp.path / name;
  fs::create_directories(dir);
  fs::copy_file(demo_dir() / "config.json", dir / "config.json");
  write_safetensors(dir / "model.safetensors", tensors, metadata);
  return dir;
}

}  // namespace

// It said "missing tensor 'transformer.h.0.attn.c_attn.weight'".
TEST(FolderFindings, KqQuantizedTensorsWithoutQuantizationConfigSaySo) {
  TempDir tmp;
  // The tensors kq quantize writes for an int8 layer: .qweight codes and .scales.
  auto t = demo_tensors();
  const Tensor w = t.at("transformer.h.0.attn.c_attn.weight");  // Conv1D [in 128, out 384]
  t.erase("transformer.h.0.attn.c_attn.weight");
  t["transformer.h.0.attn.c_attn.qweight"] = Tensor::zeros(DType::I8, {w.dim(1), w.dim(0)});
  t["transformer.h.0.attn.c_attn.scales"] = Tensor::zeros(DType::F32, {w.dim(1)});
  const fs::path by_name = folder(tmp, "names", t);
  std::string msg = kq::testing::error_of<FormatError>([&] { Model::load(by_name); });
  EXPECT_TRUE(has(msg, (by_name / "config.json").string() + " has no quantization_config")) << msg;
  EXPECT_TRUE(has(msg, "kq-quantized")) << msg;
  EXPECT_TRUE(has(msg, "transformer.h.0.attn.c_attn.qweight")) << msg;
  EXPECT_FALSE(has(msg, "missing tensor")) << msg;

  // The weights file's own record (kq_quantization metadata) is enough.
  const fs::path by_meta = folder(tmp, "meta", t, {{"kq_quantization", R"({"mode":"int8"})"}});
  msg = kq::testing::error_of<FormatError>([&] { Model::load(by_meta); });
  EXPECT_TRUE(has(msg, (by_meta / "config.json").string() + " has no quantization_config")) << msg;
  EXPECT_TRUE(has(msg, "kq_quantization")) << msg;

  // The unquantized tensors alone still load.
  EXPECT_NO_THROW(Model::load(folder(tmp, "plain", demo_tensors())));
}

// Already a FormatError when found (TensorStore::open_dir checks every
// weight_map entry against its shard's header); kept as a whole-model test
// with the tensor present in the other shard, the case a user hits when
// hand-editing an index.
TEST(FolderFindings, IndexPointingATensorAtTheWrongShardNamesIndexTensorAndShard) {
  TempDir tmp;
  const fs::path dir = tmp.path / "sharded";
  fs::create_directories(dir);
  fs::copy_file(demo_dir() / "config.json", dir / "config.json");
  std::map<std::string, Tensor> s1, s2;
  nlohmann::json wm = nlohmann::json::object();
  bool first = true;
  for (const auto& [name, tensor] : demo_tensors()) {
    (first ? s1 : s2)[name] = tensor;
    wm[name] = first ? "model-00001-of-00002.safetensors" : "model-00002-of-00002.safetensors";
    first = !first;
  }
  write_safetensors(dir / "model-00001-of-00002.safetensors", s1);
  write_safetensors(dir / "model-00002-of-00002.safetensors", s2);
  const std::string moved = s2.begin()->first;  // in shard 2, mapped to shard 1
  wm[moved] = "model-00001-of-00002.safetensors";
  const fs::path index = dir / "model.safetensors.index.json";
  { std::ofstream(index) << nlohmann::json{{"weight_map", wm}}.dump(); }
  const std::string msg = kq::testing::error_of<FormatError>([&] { Model::load(dir); });
  EXPECT_TRUE(has(msg, index.string())) << msg;
  EXPECT_TRUE(has(msg, "'" + moved + "'")) << msg;
  EXPECT_TRUE(has(msg, "model-00001-of-00002.safetensors")) << msg;
  EXPECT_TRUE(has(msg, "has no such tensor")) << msg;
}

namespace {

/// A kq-quantized folder (config.json quantization_config + 'kq_quantization'
/// metadata, as kq quantize writes them) with the one module
/// transformer.h.0.mlp.c_fc in `mode`; `corrupt` edits its tensors first.
template <class F>
fs::path quantized_folder(const TempDir& tmp, const std::string& name, const std::string& mode, F&& corrupt) {
  const std::string module = "transformer.h.0.mlp.c_fc";
  auto t = demo_tensors();
  const Tensor w = t.at(module + ".weight").to_f32().transposed().clone();  // Conv1D [in, out] -> [N=out, K=in]
  t.erase(module + ".weight");
  std::map<std::string, Tensor> q;
  export_packed(quantize_weight(w, parse_quant_mode(mode)), module, q);
  for (auto& [n, v] : q) t[n] = v.clone();
  corrupt(t);
  const nlohmann::json modules = {{module, mode}};
  const fs::path dir = tmp.path / name;
  fs::create_directories(dir);
  nlohmann::json cfg = nlohmann::json::parse(std::ifstream(demo_dir() / "config.json"));
  cfg["quantization_config"] = {{"quant_method", "kq"}, {"format_version", 1}, {"mode", mode}, {"modules", modules}};
  { std::ofstream(dir / "config.json") << cfg.dump(); }
  write_safetensors(dir / "model.safetensors", t,
                    {{"kq_quantization", nlohmann::json{{"mode", mode}, {"modules", modules}}.dump()}});
  return dir;
}

template <class T>
void set_element(std::map<std::string, Tensor>& t, const std::string& name, int64_t i, T v) {
  std::memcpy(static_cast<T*>(t.at(name).raw_mut()) + i, &v, sizeof(T));
}

}  // namespace

// Fresh-user finding: FP8 E4M3 NaN codes loaded silently; eval then failed with
// "non-finite logits in window 0", naming neither file nor tensor.
TEST(FolderFindings, Fp8NanCodesAreRejectedAtLoadNamingFileTensorAndIndex) {
  TempDir tmp;
  EXPECT_NO_THROW(Model::load(quantized_folder(tmp, "ok", "fp8", [](auto&) {})));
  for (const uint8_t code : {uint8_t(0x7F), uint8_t(0xFF)}) {
    const fs::path dir = quantized_folder(tmp, fmt::format("nan{:02x}", code), "fp8", [&](auto& t) {
      set_element<uint8_t>(t, "transformer.h.0.mlp.c_fc.qweight", 300, code);  // row 2, column 44 of [512, 128]
    });
    const std::string msg = kq::testing::error_of<FormatError>([&] { Model::load(dir); });
    EXPECT_TRUE(has(msg, "quantized layer 'transformer.h.0.mlp.c_fc'")) << msg;
    EXPECT_TRUE(has(msg, (dir / "model.safetensors").string())) << msg;
    EXPECT_TRUE(has(msg, fmt::format("tensor 'transformer.h.0.mlp.c_fc.qweight': FP8 E4M3 code 0x{:02X} (NaN) at "
                                     "index 300 (row 2, column 44)",
                                     code)))
        << msg;
  }
}

// Fresh-user finding: negative and zero INT8 scales loaded silently (perplexity drifted).
TEST(FolderFindings, NegativeOrZeroInt8ScalesAreRejectedAtLoadNamingFileTensorAndIndex) {
  TempDir tmp;
  EXPECT_NO_THROW(Model::load(quantized_folder(tmp, "ok", "int8", [](auto&) {})));
  const fs::path neg = quantized_folder(
      tmp, "neg", "int8", [](auto& t) { set_element(t, "transformer.h.0.mlp.c_fc.scales", 3, -0.01f); });
  std::string msg = kq::testing::error_of<FormatError>([&] { Model::load(neg); });
  EXPECT_TRUE(has(msg, (neg / "model.safetensors").string())) << msg;
  EXPECT_TRUE(has(msg, "tensor 'transformer.h.0.mlp.c_fc.scales': negative scale -0.01 at index 3")) << msg;
  const fs::path zero = quantized_folder(
      tmp, "zero", "int8", [](auto& t) { set_element(t, "transformer.h.0.mlp.c_fc.scales", 3, 0.0f); });
  msg = kq::testing::error_of<FormatError>([&] { Model::load(zero); });
  EXPECT_TRUE(has(msg, (zero / "model.safetensors").string())) << msg;
  EXPECT_TRUE(has(msg, "tensor 'transformer.h.0.mlp.c_fc.scales': zero scale at index 3")) << msg;
}

// Fresh-user finding: an unknown mode in config.json quantization_config.modules
// was reported as "the folder mixes two quantizations" (the weights' own record
// disagreed). It is a FormatError naming config.json, the module and the mode,
// listing the valid modes, whether or not the weights' record agrees.
TEST(FolderFindings, UnknownModuleModeIsNamedWithTheValidModes) {
  TempDir tmp;
  const std::string module = "transformer.h.0.mlp.c_fc";
  for (const bool also_in_weights : {false, true}) {
    const fs::path dir =
        quantized_folder(tmp, also_in_weights ? "both" : "config", "int8", [](auto&) {});
    nlohmann::json cfg = nlohmann::json::parse(std::ifstream(dir / "config.json"));
    cfg["quantization_config"]["modules"][module] = "int9";
    { std::ofstream(dir / "config.json") << cfg.dump(); }
    if (also_in_weights) {
      const TensorStore store = TensorStore::open_dir(dir);
      std::map<std::string, Tensor> t;
      for (const auto& n : store.names()) t[n] = store.get(n).clone();
      write_safetensors(dir / "model.safetensors", t,
                        {{"kq_quantization",
                          nlohmann::json{{"mode", "int8"}, {"modules", {{module, "int9"}}}}.dump()}});
    }
    const std::string msg = kq::testing::error_of<FormatError>([&] { Model::load(dir); });
    EXPECT_TRUE(has(msg, (dir / "config.json").string())) << msg;
    EXPECT_TRUE(has(msg, "quantization_config.modules['" + module + "']")) << msg;
    EXPECT_TRUE(has(msg, "unknown quantization mode 'int9'")) << msg;
    EXPECT_TRUE(has(msg, "valid modes")) << msg;
    for (const std::string& m : valid_quant_mode_names()) EXPECT_TRUE(has(msg, m)) << m << ": " << msg;
    EXPECT_FALSE(has(msg, "mixes")) << msg;
  }
}

// The 'kq_quantization' metadata of a quantized folder is JSON read with the
// strict parser: a NUL byte (\u0000 in the header's JSON string) followed by
// anything used to end nlohmann's parse, so a record naming other modules
// after the NUL was accepted as the one before it.
TEST(FolderFindings, KqQuantizationMetadataWithANulByteIsRefused) {
  TempDir tmp;
  const std::string module = "transformer.h.0.mlp.c_fc";
  const fs::path dir = quantized_folder(tmp, "nul", "int8", [](auto&) {});
  EXPECT_NO_THROW(Model::load(dir));
  const TensorStore store = TensorStore::open_dir(dir);
  std::map<std::string, Tensor> t;
  for (const auto& n : store.names()) t[n] = store.get(n).clone();
  const std::string record = nlohmann::json{{"mode", "int8"}, {"modules", {{module, "int8"}}}}.dump();
  write_safetensors(dir / "model.safetensors", t, {{"kq_quantization", record + std::string(1, '\0') + "{junk"}});
  const std::string msg = kq::testing::error_of<FormatError>([&] { Model::load(dir); });
  EXPECT_TRUE(has(msg, "safetensors metadata 'kq_quantization' is not valid JSON")) << msg;
}

// New-user finding: a quantization_config.modules entry for a layer the model
// does not have (transformer.h.9 of a 2-layer model) was reported as "not
// quantized in model.safetensors ... the folder mixes two quantizations".
TEST(FolderFindings, ModuleOfALayerTheModelLacksIsNamed) {
  TempDir tmp;
  const std::string module = "transformer.h.9.mlp.c_fc";
  const fs::path dir = quantized_folder(tmp, "extra", "int8", [](auto&) {});
  nlohmann::json cfg = nlohmann::json::parse(std::ifstream(dir / "config.json"));
  cfg["quantization_config"]["modules"][module] = "int8";
  { std::ofstream(dir / "config.json") << cfg.dump(); }
  const std::string msg = kq::testing::error_of<FormatError>([&] { Model::load(dir); });
  EXPECT_TRUE(has(msg, (dir / "config.json").string() + ": quantization_config.modules['" + module +
                           "']: the model has no such layer (no tensor '" + module + ".*'"))
      << msg;
  EXPECT_FALSE(has(msg, "mixes")) << msg;
}

// New-user finding: a GPT-2 file with 'transformer.wte.weight' beside a bare
// 'wpe.weight' said only "missing tensor 'transformer.wpe.weight'".
TEST(FolderFindings, MixedGpt2NamePrefixesAreSaid) {
  TempDir tmp;
  for (const bool bare_first : {false, true}) {
    auto t = demo_tensors();
    std::map<std::string, Tensor> mixed;
    for (auto& [n, v] : t) {  // all bare (hub style) or all prefixed, but wpe in the other form
      const std::string bare = n.starts_with("transformer.") ? n.substr(std::strlen("transformer.")) : n;
      const bool prefixed = (bare == "wpe.weight") == bare_first;
      mixed[prefixed ? "transformer." + bare : bare] = v;
    }
    const fs::path dir = folder(tmp, bare_first ? "bare" : "prefixed", mixed);
    const std::string msg = kq::testing::error_of<FormatError>([&] { Model::load(dir); });
    EXPECT_TRUE(has(msg, bare_first ? "missing tensor 'wpe.weight'" : "missing tensor 'transformer.wpe.weight'"))
        << msg;
    EXPECT_TRUE(has(msg, bare_first ? "but 'transformer.wpe.weight' is in " : "but 'wpe.weight' is in ")) << msg;
    EXPECT_TRUE(has(msg, "mixes GPT-2 tensor names with and without the 'transformer.' prefix")) << msg;
  }
}
