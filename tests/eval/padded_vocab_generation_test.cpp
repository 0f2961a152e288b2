// Generation with a model whose vocabulary is padded beyond its tokenizer
// (config.json vocab_size 8256 = 8192 rounded up to a multiple of 64, wte rows
// added): when the sampler picks a padding id, its text is nothing and
// generation goes on (the id is fed back like any other). The loop is the one
// `kq generate` runs: prefill, Sampler, StreamDecoder, one forward per token.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "common/test_util.hpp"
#include "common/test_data.hpp"
#include "io/safetensors.hpp"
#include "kq/error.hpp"
#include "kq/eval.hpp"
#include "kq/model.hpp"
#include "kq/tokenizer.hpp"

using namespace kq;
namespace fs = std::filesystem;

namespace {

constexpr int64_t kTokVocab = 8192, kPadded = 8256, kPadId = 8200;

int32_t argmax(const std::vector<float>& v) {
  return int32_t(std::max_element(v.begin(), v.end()) - v.begin());
}

// Copies models/gpt2-tiny to `dst` with vocab_size kPadded: wte rows
// [8192, 8256) are zero except row kPadId = 3 × wte[favourite]. GPT-2 ties
// lm_head to wte and has no output bias, so the logit of kPadId is 3 × that of
// `favourite`, every other padding logit 0, and the real logits unchanged.
void write_padded_copy(const fs::path& src, const fs::path& dst, int32_t favourite) {
  for (const auto& e : fs::directory_iterator(src)) {
    const std::string name = e.path().filename().string();
    if (name != "config.json" && name != "model.safetensors") fs::copy_file(e.path(), dst / name);
  }
  nlohmann::json config = nlohmann::json::parse(std::ifstream(src / "config.json"));
  ASSERT_EQ(config["vocab_size"], kTokVocab);
  config["vocab_size"] = kPadded;
  std::ofstream(dst / "config.json") << config.dump(2);

  const TensorStore store = TensorStore::open_dir(src);
  std::map<std::string, Tensor> out;
  for (const std::string& name : store.names()) {
    const Tensor t = store.get(name);
    if (name != "transformer.wte.weight") {
      Tensor copy = Tensor::empty(t.dtype(), t.shape());
      std::memcpy(copy.raw_mut(), t.raw(), t.nbytes());
      out[name] = copy;
      continue;
    }
    ASSERT_EQ(t.dtype(), DType::F32);
    ASSERT_EQ(t.shape()[0], kTokVocab);
    const int64_t d = t.shape()[1];
    Tensor wte = Tensor::zeros(DType::F32, {kPadded, d});
    std::memcpy(wte.raw_mut(), t.raw(), t.nbytes());
    float* w = wte.mutable_data<float>();
    for (int64_t j = 0; j < d; ++j) w[kPadId * d + j] = 3.0f * w[int64_t(favourite) * d + j];
    out[name] = wte;
  }
  ASSERT_TRUE(out.count("transformer.wte.weight"));
  write_safetensors(dst / "model.safetensors", out, store.metadata());
}

TEST(PaddedVocabGeneration, PaddingIdIsSampledDecodedToNothingAndGenerationGoesOn) {
  const fs::path src = kq::testing::demo_model();
  const ExecContext cpu{Device::CPU, 2};
  const Tokenizer tok = Tokenizer::load(src);
  const std::vector<int32_t> prompt = tok.encode("The meaning of life is");

  // The original model's first greedy token and its logits (the reference).
  auto orig = Model::load(src, cpu);
  ASSERT_EQ(orig->config().vocab_size, kTokVocab);
  std::vector<float> ref(static_cast<size_t>(kTokVocab));
  {
    KVCache cache = orig->make_cache(int64_t(prompt.size()));
    orig->forward(prompt, cache, ref.data(), /*all_logits=*/false);
  }
  const int32_t favourite = argmax(ref);
  ASSERT_GT(ref[size_t(favourite)], 0.0f);  // so 3× it is the new maximum

  kq::testing::TempDir tmp;
  write_padded_copy(src, tmp.path, favourite);
  auto model = Model::load(tmp.path, cpu);
  ASSERT_EQ(model->config().vocab_size, kPadded);
  const Tokenizer bound = Tokenizer::load(tmp.path).for_model(model->config().vocab_size, tmp.path.string());

  constexpr int64_t n = 12;
  KVCache cache = model->make_cache(int64_t(prompt.size()) + n);
  std::vector<float> logits(static_cast<size_t>(kPadded));
  model->forward(prompt, cache, logits.data(), /*all_logits=*/false);
  // Padding changed no real logit; the padding logits are 3× the best and 0.
  for (int64_t v = 0; v < kTokVocab; ++v)
    ASSERT_NEAR(logits[size_t(v)], ref[size_t(v)], 1e-4f * (1.0f + std::abs(ref[size_t(v)]))) << "token " << v;
  EXPECT_NEAR(logits[size_t(kPadId)], 3.0f * ref[size_t(favourite)], 1e-3f * ref[size_t(favourite)]);
  EXPECT_EQ(logits[size_t(kTokVocab)], 0.0f);

  Sampler sampler(SamplingParams{});  // greedy
  StreamDecoder out(bound, StreamDecoder::InvalidBytes::Keep);
  std::vector<int32_t> generated;
  std::string text;
  for (int64_t i = 0; i < n; ++i) {
    const int32_t next = sampler.sample(logits);
    ASSERT_LT(next, kPadded);
    generated.push_back(next);
    const std::string piece = out.push(next);  // threw "token id 8200 is not in the vocabulary" before
    if (next >= kTokVocab) {
      EXPECT_EQ(piece, "");
    }
    text += piece;
    if (i + 1 < n) model->forward(std::span(&next, 1), cache, logits.data());
  }
  text += out.flush();
  EXPECT_EQ(generated.front(), kPadId);  // the sampler did pick the padding id
  EXPECT_EQ(text, bound.decode(generated));
  std::vector<int32_t> real;
  std::copy_if(generated.begin(), generated.end(), std::back_inserter(real),
               [](int32_t id) { return id < kTokVocab; });
  EXPECT_EQ(text, tok.decode(real));  // the padding ids contributed nothing
  // An id beyond the model's vocabulary is still an error.
  EXPECT_THROW((void)out.push(int32_t(kPadded)), InvalidArgument);
}

}  // namespace
