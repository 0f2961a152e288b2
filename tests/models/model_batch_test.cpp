// Batched decode (Model::decode_batch) against separate single-sequence
// forwards on the CPU, its input validation, and random models built through
// a LinearTransform (one layer at a time).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <vector>

#include "common/test_util.hpp"
#include "common/test_data.hpp"
#include "kernels/linear.hpp"
#include "kernels/quantized_linear.hpp"
#include "kq/error.hpp"
#include "kq/model.hpp"
#include "kq/quantize.hpp"

using namespace kq;

namespace {

double rel_l2(const float* a, const float* b, size_t n) {
  double num = 0, den = 0;
  for (size_t i = 0; i < n; ++i) {
    num += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
    den += double(b[i]) * b[i];
  }
  return std::sqrt(num / den);
}

/// A small Llama with grouped-query attention (4 query heads, 2 KV heads).
ModelConfig tiny_llama() {
  ModelConfig c;
  c.arch = Arch::Llama;
  c.vocab_size = 300;
  c.hidden_size = 64;
  c.intermediate_size = 160;
  c.num_layers = 2;
  c.num_heads = 4;
  c.num_kv_heads = 2;
  c.head_dim = 16;
  c.max_positions = 96;
  c.norm_eps = 1e-6;
  c.tie_word_embeddings = false;
  c.activation = "silu";
  return c;
}

std::vector<int32_t> tokens_for(int64_t seq, int64_t n, int64_t vocab) {
  std::vector<int32_t> t(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) t[size_t(i)] = int32_t((seq * 131 + i * 37 + 7) % vocab);
  return t;
}

/// Prompts of different lengths, then `steps` decode steps: batched vs one
/// sequence at a time, logits row by row.
void expect_batch_matches_separate(Model& m, int64_t steps, double tol) {
  const int64_t V = m.config().vocab_size;
  const std::vector<int64_t> prompt_len = {5, 1, 12, 8};
  const size_t B = prompt_len.size();
  std::vector<KVCache> batched, single;
  for (size_t s = 0; s < B; ++s) {
    batched.push_back(m.make_cache(40));
    single.push_back(m.make_cache(40));
    const auto p = tokens_for(int64_t(s), prompt_len[s], V);
    m.forward(p, batched[s], nullptr);
    m.forward(p, single[s], nullptr);
  }
  std::vector<KVCache*> ptrs;
  for (KVCache& c : batched) ptrs.push_back(&c);
  std::vector<float> got(B * size_t(V)), want(static_cast<size_t>(V));
  for (int64_t step = 0; step < steps; ++step) {
    std::vector<int32_t> next(B);
    for (size_t s = 0; s < B; ++s) next[s] = int32_t((step * 53 + int64_t(s) * 11 + 3) % V);
    m.decode_batch(next, ptrs, got.data());
    for (size_t s = 0; s < B; ++s) {
      m.forward(std::span(&next[s], 1), single[s], want.data());
      EXPECT_EQ(batched[s].size(), single[s].size());
      EXPECT_LE(rel_l2(got.data() + s * size_t(V), want.data(), size_t(V)), tol)
          << "step " << step << " sequence " << s;
    }
  }
}

}  // namespace

TEST(ModelBatch, DecodeBatchMatchesSeparateForwardsGpt2) {
  auto m = Model::load(kq::testing::demo_model(), ExecContext{Device::CPU, 2});
  expect_batch_matches_separate(*m, 6, 1e-5);
}

TEST(ModelBatch, DecodeBatchMatchesSeparateForwardsLlamaGqa) {
  auto m = Model::random(tiny_llama(), 5, ExecContext{Device::CPU, 2});
  expect_batch_matches_separate(*m, 6, 1e-5);
}

TEST(ModelBatch, DecodeBatchMatchesSeparateForwardsSharedLlama) {
  KQ_REQUIRE_SHARED("models/llama-small");
  auto m = Model::load(kq::testing::shared_dir() / "models/llama-small", ExecContext{Device::CPU, 2});
  expect_batch_matches_separate(*m, 3, 1e-5);
}

TEST(ModelBatch, DecodeBatchValidatesInputs) {
  auto m = Model::random(tiny_llama(), 5, ExecContext{Device::CPU, 1});
  KVCache a = m->make_cache(4), b = m->make_cache(4);
  KVCache* two[] = {&a, &b};
  KVCache* same[] = {&a, &a};
  KVCache* with_null[] = {&a, nullptr};
  const int32_t toks[] = {1, 2};
  const int32_t bad[] = {1, 300};
  std::vector<float> logits(2 * 300);
  EXPECT_THROW(m->decode_batch({}, {}, logits.data()), InvalidArgument);
  EXPECT_THROW(m->decode_batch(std::span(toks, 1), two, logits.data()), InvalidArgument);
  EXPECT_THROW(m->decode_batch(toks, same, logits.data()), InvalidArgument);
  EXPECT_THROW(m->decode_batch(toks, with_null, logits.data()), InvalidArgument);
  EXPECT_THROW(m->decode_batch(bad, two, logits.data()), InvalidArgument);
  KVCache other(3, 2, 16, 4);  // another model's shape
  KVCache* mixed[] = {&a, &other};
  EXPECT_THROW(m->decode_batch(toks, mixed, logits.data()), InvalidArgument);
  // Nothing was computed or advanced by the failed calls.
  EXPECT_EQ(a.size(), 0);
  EXPECT_EQ(b.size(), 0);
  const std::vector<int32_t> fill = {1, 2, 3, 4};
  m->forward(fill, a, nullptr);
  EXPECT_THROW(m->decode_batch(toks, two, logits.data()), InvalidArgument);  // a is full
  EXPECT_EQ(b.size(), 0);
  m->decode_batch(std::span(toks, 1), std::span(two).subspan(1), nullptr);  // logits may be skipped
  EXPECT_EQ(b.size(), 1);
}

TEST(ModelBatch, CudaInCpuOnlyBuildOrWithoutDeviceIsAClearError) {
  // Whatever this build is, the CPU model refuses a CUDA KV cache mix-up and
  // set_context never moves the device.
  auto m = Model::random(tiny_llama(), 5, ExecContext{Device::CPU, 1});
  EXPECT_THROW(m->set_context(ExecContext{Device::CUDA, 1}), Unsupported);
  try {
    auto g = Model::random(tiny_llama(), 5, ExecContext{Device::CUDA, 1});
    SUCCEED() << "a CUDA device is usable here";
  } catch (const Unsupported& e) {
    const std::string msg = e.what();
    EXPECT_TRUE(msg.find("CPU-only") != std::string::npos || msg.find("no usable CUDA device") != std::string::npos)
        << msg;
  }
}

TEST(ModelRandom, LinearTransformSeesEveryLayerOnce) {
  const ModelConfig c = tiny_llama();
  std::vector<std::string> seen;
  auto identity = [&](const std::string& name, std::unique_ptr<Linear> op) {
    seen.push_back(name);
    return op;
  };
  auto a = Model::random(c, 9, ExecContext{Device::CPU, 1}, identity);
  auto b = Model::random(c, 9, ExecContext{Device::CPU, 1});
  const auto slots = a->linear_layers();
  ASSERT_EQ(seen.size(), slots.size());
  for (size_t i = 0; i < seen.size(); ++i) EXPECT_EQ(seen[i], slots[i].name);
  const std::vector<int32_t> t = tokens_for(0, 10, c.vocab_size);
  std::vector<float> la(size_t(10 * c.vocab_size)), lb(la.size());
  KVCache ca = a->make_cache(), cb = b->make_cache();
  a->forward(t, ca, la.data());
  b->forward(t, cb, lb.data());
  EXPECT_EQ(la, lb);

  // Quantizing in the transform gives the same model as quantizing afterwards.
  const QuantSpec spec = parse_quant_mode("int8");
  auto quantize = [&](const std::string&, std::unique_ptr<Linear> op) {
    return quantize_linear(op->dequantized_weight(), op->bias(), spec);
  };
  auto q = Model::random(c, 9, ExecContext{Device::CPU, 1}, quantize);
  for (const LinearSlot& s : b->linear_layers()) *s.op = quantize(s.name, std::move(*s.op));
  ca.reset();
  cb.reset();
  q->forward(t, ca, la.data());
  b->forward(t, cb, lb.data());
  EXPECT_EQ(la, lb);
  EXPECT_LT(q->weight_breakdown().linear, a->weight_breakdown().linear / 3);

  auto none = [](const std::string&, std::unique_ptr<Linear>) { return std::unique_ptr<Linear>(); };
  EXPECT_THROW(Model::random(c, 9, ExecContext{Device::CPU, 1}, none), InvalidArgument);
}

TEST(ModelRandom, RandomQuantizedOnCpuQuantizesEachLayer) {
  const ModelConfig c = tiny_llama();
  const QuantSpec spec = parse_quant_mode("nf4");
  auto q = Model::random_quantized(c, 9, ExecContext{Device::CPU, 1}, "nf4");
  auto ref = Model::random(c, 9, ExecContext{Device::CPU, 1}, [&](const std::string& name, std::unique_ptr<Linear> op) {
    if (name == "lm_head") return op;  // unquantized unless asked
    return quantize_linear(op->dequantized_weight(), Tensor(), spec);
  });
  const std::vector<int32_t> t = tokens_for(1, 12, c.vocab_size);
  std::vector<float> lq(size_t(12 * c.vocab_size)), lr(lq.size());
  KVCache cq = q->make_cache(), cr = ref->make_cache();
  q->forward(t, cq, lq.data());
  ref->forward(t, cr, lr.data());
  EXPECT_EQ(lq, lr);
  EXPECT_EQ(q->weight_breakdown().linear, ref->weight_breakdown().linear);
  auto plain = Model::random_quantized(c, 9, ExecContext{Device::CPU, 1}, "bf16");  // FP32 on the CPU
  auto f32 = Model::random(c, 9, ExecContext{Device::CPU, 1});
  EXPECT_EQ(plain->weight_breakdown().linear, f32->weight_breakdown().linear);
  EXPECT_THROW(Model::random_quantized(c, 9, ExecContext{Device::CPU, 1}, "int3"), InvalidArgument);
}
