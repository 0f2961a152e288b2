// Fresh-user findings in the library: warnings instead of silence (unused
// tensors, --keep patterns that match nothing, latency defaults reduced to fit
// the context), errors that name what is wrong (mixed quantized folders,
// latency options that do not fit, text that is not UTF-8).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/test_data.hpp"
#include "common/test_util.hpp"
#include "io/safetensors.hpp"
#include "kq/bench.hpp"
#include "kq/error.hpp"
#include "kq/model.hpp"
#include "kq/optimizer.hpp"
#include "kq/warning.hpp"

namespace fs = std::filesystem;
using namespace kq;

namespace {

using kq::testing::demo_model;

fs::path copy_demo(const fs::path& to) {
  fs::create_directories(to);
  for (const char* f : {"config.json", "model.safetensors", "vocab.json", "merges.txt", "tokenizer.json"})
    fs::copy_file(demo_model() / f, to / f);
  return to;
}

/// Collects kq::warn() messages while alive.
struct WarningCapture {
  std::vector<std::string> messages;
  WarningHandler previous;
  WarningCapture() {
    previous = set_warning_handler([this](const std::string& m) { messages.push_back(m); });
  }
  ~WarningCapture() { set_warning_handler(previous); }
  std::string all() const {
    std::string s;
    for (const auto& m : messages) s += m + "\n";
    return s;
  }
};

using kq::testing::error_of;
using kq::testing::has;

}  // namespace

TEST(FreshUser, ExtraTensorsAreWarnedOnceWithCountAndNamesButKnownBuffersAreNot) {
  kq::testing::TempDir tmp;
  const fs::path dir = copy_demo(tmp.path / "m");
  {
    WarningCapture w;
    Model::load(dir);
    EXPECT_TRUE(w.messages.empty()) << w.all();  // the shipped model uses every tensor
  }
  auto store = TensorStore::open_dir(dir);
  std::map<std::string, Tensor> t;
  for (const auto& n : store.names()) t[n] = store.get(n).clone();
  // A third block the config (n_layer 2) does not have, and HF buffers that are harmless.
  for (const auto& n : store.names())
    if (n.starts_with("transformer.h.1.") && !n.ends_with(".attn.bias"))
      t["transformer.h.2." + n.substr(std::string("transformer.h.1.").size())] = t[n];
  t["transformer.h.0.attn.bias"] = Tensor::zeros(DType::F32, {1, 1, 4, 4});
  t["transformer.h.0.attn.masked_bias"] = Tensor::zeros(DType::F32, {1});
  t["transformer.h.0.attn.rotary_emb.inv_freq"] = Tensor::zeros(DType::F32, {4});
  size_t extra = 0;
  for (const auto& [n, v] : t) extra += n.starts_with("transformer.h.2.");
  ASSERT_GT(extra, 5u);
  store = TensorStore();
  write_safetensors(dir / "model.safetensors", t);

  WarningCapture w;
  auto m = Model::load(dir);
  ASSERT_EQ(w.messages.size(), 1u) << w.all();
  const std::string& msg = w.messages[0];
  EXPECT_TRUE(has(msg, std::to_string(extra) + " tensors")) << msg;
  EXPECT_TRUE(has(msg, "'transformer.h.2.")) << msg;
  EXPECT_TRUE(has(msg, "2 layers")) << msg;
  EXPECT_TRUE(has(msg, dir.string())) << msg;
  EXPECT_FALSE(has(msg, "inv_freq")) << msg;
  EXPECT_FALSE(has(msg, "masked_bias")) << msg;
  EXPECT_FALSE(has(msg, "h.0.attn.bias")) << msg;
  // Only the first few names are listed.
  EXPECT_TRUE(has(msg, ", ...")) << msg;
  // The extra layer changes nothing: same logits as the shipped model.
  auto ref = Model::load(demo_model());
  const std::vector<int32_t> ids{1, 2, 3, 4};
  std::vector<float> a(size_t(4 * m->config().vocab_size)), b(a.size());
  auto ca = m->make_cache(), cb = ref->make_cache();
  m->forward(ids, ca, a.data());
  ref->forward(ids, cb, b.data());
  EXPECT_EQ(a, b);
}

TEST(FreshUser, QuantizingATiedLmHeadIsWarnedAsASecondCopy) {
  const fs::path dir = demo_model();
  auto m = Model::load(dir);
  ASSERT_TRUE(m->config().tie_word_embeddings);  // GPT-2 ties lm_head to wte
  QuantizeOptions o;
  o.spec = parse_quant_mode("nf4");
  {
    WarningCapture w;
    quantize_model(*m, o);
    EXPECT_TRUE(w.messages.empty());  // lm_head kept: nothing to say
  }
  auto m2 = Model::load(dir);
  o.quantize_lm_head = true;
  WarningCapture w;
  quantize_model(*m2, o);
  ASSERT_EQ(w.messages.size(), 1u);
  EXPECT_NE(w.messages[0].find("QuantizeOptions::quantize_lm_head"), std::string::npos) << w.messages[0];
  EXPECT_NE(w.messages[0].find("second copy"), std::string::npos) << w.messages[0];
}

TEST(FreshUser, KeepPatternMatchingNoLayerIsWarnedAndReported) {
  auto m = Model::load(demo_model());
  QuantizeOptions o;
  o.keep_patterns = {"mlp\\.down_proj", "c_fc"};  // a Llama name on a GPT-2 model, and a GPT-2 name
  WarningCapture w;
  const QuantizeReport r = quantize_model(*m, o);
  EXPECT_EQ(r.unmatched_keep_patterns, std::vector<std::string>{"mlp\\.down_proj"});
  ASSERT_EQ(w.messages.size(), 1u) << w.all();
  EXPECT_TRUE(has(w.messages[0], "QuantizeOptions::keep_patterns 'mlp\\.down_proj' matches no linear layer")) << w.messages[0];
  int kept = 0;
  for (const auto& l : r.layers) kept += !l.quantized && !has(l.name, "lm_head");
  EXPECT_EQ(kept, 2);  // c_fc of both blocks
}

TEST(FreshUser, MixedQuantizedFolderNamesTheModule) {
  kq::testing::TempDir tmp;
  for (const char* mode : {"nf4", "int8"}) {
    auto m = Model::load(demo_model());
    QuantizeOptions o;
    o.spec = parse_quant_mode(mode);
    if (std::string(mode) == "int8") o.keep_patterns = {"h\\.0\\.attn\\.c_attn"};
    quantize_model(*m, o);
    save_quantized_model(*m, o, tmp.path / mode);
  }
  fs::copy_file(tmp.path / "int8" / "model.safetensors", tmp.path / "nf4" / "model.safetensors",
                fs::copy_options::overwrite_existing);
  const std::string e = error_of<FormatError>([&] { Model::load(tmp.path / "nf4"); });
  // The first module by name is h.0's c_attn: nf4 in config, kept (not quantized) in the file.
  EXPECT_TRUE(has(e, "module 'transformer.h.0.attn.c_attn'")) << e;
  EXPECT_TRUE(has(e, "not quantized in model.safetensors")) << e;
  EXPECT_TRUE(has(e, "\"nf4\" in config.json")) << e;
  EXPECT_TRUE(has(e, "mixes two quantizations")) << e;
}

TEST(FreshUser, LatencyOptionsThatDoNotFitAreErrorsUnlessDefaults) {
  LatencyOptions o;  // 128 + 32, both given explicitly (fit_* false)
  EXPECT_EQ(fit_latency_options(o, 160).prompt_tokens, 128);
  EXPECT_EQ(fit_latency_options(o, 160).decode_tokens, 32);
  std::string e = error_of<InvalidArgument>([&] { fit_latency_options(o, 100); });
  EXPECT_TRUE(has(e, "LatencyOptions::prompt_tokens 128 + LatencyOptions::decode_tokens 32 = 160")) << e;
  EXPECT_TRUE(has(e, "100 positions")) << e;

  {  // only the default prompt may shrink: prompt = 100 - 32, one warning naming it
    WarningCapture w;
    LatencyOptions d = o;
    d.fit_prompt_tokens = true;
    const LatencyOptions r = fit_latency_options(d, 100);
    EXPECT_EQ(r.prompt_tokens, 68);
    EXPECT_EQ(r.decode_tokens, 32);
    ASSERT_EQ(w.messages.size(), 1u) << w.all();
    EXPECT_TRUE(has(w.messages[0], "LatencyOptions::prompt_tokens: using 68 instead of the default 128")) << w.messages[0];
  }
  {  // explicit decode that alone fills the context
    LatencyOptions d = o;
    d.fit_prompt_tokens = true;
    d.decode_tokens = 100;
    e = error_of<InvalidArgument>([&] { fit_latency_options(d, 100); });
    EXPECT_TRUE(has(e, "LatencyOptions::decode_tokens 100")) << e;
    EXPECT_TRUE(has(e, "at most 99")) << e;
  }
  {  // both defaults: both may shrink, and together they fit exactly
    WarningCapture w;
    LatencyOptions d = o;
    d.fit_prompt_tokens = d.fit_decode_tokens = true;
    for (int64_t ctx : {2, 3, 40, 100, 159}) {
      const LatencyOptions r = fit_latency_options(d, ctx);
      EXPECT_GE(r.prompt_tokens, 1);
      EXPECT_GE(r.decode_tokens, 1);
      EXPECT_LE(r.prompt_tokens + r.decode_tokens, ctx);
      EXPECT_LE(r.prompt_tokens, 128);
      EXPECT_LE(r.decode_tokens, 32);
    }
    EXPECT_FALSE(w.messages.empty());
  }
  {  // a context that fits produces no warning
    WarningCapture w;
    LatencyOptions d = o;
    d.fit_prompt_tokens = d.fit_decode_tokens = true;
    fit_latency_options(d, 1024);
    EXPECT_TRUE(w.messages.empty()) << w.all();
  }
}

TEST(FreshUser, BenchRejectsLatencyOptionsBeforeAnyWorkAndTextThatIsNotUtf8) {
  kq::testing::TempDir tmp;
  BenchOptions o;
  o.model_dir = demo_model();
  o.text = demo_model() / "demo-eval.txt";
  o.modes = {"int8"};
  o.samples = 1;
  o.latency.prompt_tokens = 300;  // the demo model has 256 positions
  std::string e = error_of<InvalidArgument>([&] { run_bench(o); });
  EXPECT_TRUE(has(e, "LatencyOptions::prompt_tokens 300")) << e;

  o.latency = LatencyOptions{};
  o.measure_latency = false;
  const fs::path bad = tmp.path / "latin1.txt";
  std::ofstream(bad, std::ios::binary) << "The caf\xE9 is open.\n";
  o.text = bad;
  e = error_of<FormatError>([&] { run_bench(o); });
  EXPECT_TRUE(has(e, bad.string())) << e;
  EXPECT_TRUE(has(e, "invalid UTF-8 at byte offset 7")) << e;
}
