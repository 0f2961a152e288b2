// A quantized model holds what it leaves unquantized in its on-disk 16-bit
// dtype (Model::hold_unquantized_in_disk_dtype), on the shared llama-small
// (BF16 on disk, tied embeddings): logits and perplexity as with F32-held
// parts, whole-model memory below the on-disk size (computed from the tensor
// shapes), the tied lm_head sharing the one BF16 table, and a saved quantized
// folder that keeps the BF16 tensors and reloads to the same logits.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <string>
#include <vector>

#include "common/test_data.hpp"
#include "io/safetensors.hpp"
#include "kernels/linear.hpp"
#include "kernels/linear_w16.hpp"
#include "kernels/quantized_linear.hpp"
#include "kq/eval.hpp"
#include "kq/model.hpp"
#include "kq/optimizer.hpp"
#include "kq/tokenizer.hpp"

using namespace kq;

namespace {

constexpr const char* kLlama = "models/llama-small";
constexpr const char* kText = "data/text/wikitext-2-test.txt";

std::filesystem::path llama_small() { return kq::testing::shared_dir() / kLlama; }

std::vector<int32_t> text_tokens(size_t max_tokens) {
  std::ifstream f(kq::testing::shared_dir() / kText);
  std::string text((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  text.resize(std::min(text.size(), size_t(40000)));
  auto ids = Tokenizer::load(llama_small()).encode(text);
  if (ids.size() > max_tokens) ids.resize(max_tokens);
  return ids;
}

/// Logits of every token of `ids` run as one prefill, then of 4 more tokens
/// decoded one at a time (the GEMV paths), concatenated.
std::vector<float> logits_of(Model& m, const std::vector<int32_t>& ids) {
  const int64_t V = m.config().vocab_size;
  KVCache cache = m.make_cache(int64_t(ids.size()) + 4);
  std::vector<float> out(ids.size() * size_t(V));
  m.forward(ids, cache, out.data());
  for (int32_t t : {11, 205, 3000, 7}) {
    std::vector<float> row(static_cast<size_t>(V));
    m.forward(std::vector<int32_t>{t}, cache, row.data());
    out.insert(out.end(), row.begin(), row.end());
  }
  return out;
}

/// The quantization as quantize_model built it before 16-bit holding: every
/// layer but the lm_head replaced by quantize_linear of its FP32 weight,
/// the embedding table and the (tied) lm_head left F32.
std::unique_ptr<Model> quantized_with_f32_parts(const std::string& mode) {
  auto m = Model::load(llama_small());
  for (const LinearSlot& s : m->linear_layers())
    if (!s.is_lm_head) *s.op = quantize_linear((*s.op)->dequantized_weight(), (*s.op)->bias(), parse_quant_mode(mode));
  return m;
}

std::unique_ptr<Model> quantized(const std::string& mode, QuantizeReport* report = nullptr) {
  auto m = Model::load(llama_small());
  QuantizeOptions o;
  o.spec = parse_quant_mode(mode);
  const QuantizeReport r = quantize_model(*m, o);
  if (report) *report = r;
  return m;
}

const Linear& lm_head(Model& m) {
  for (const LinearSlot& s : m.linear_layers())
    if (s.is_lm_head) return **s.op;
  throw std::logic_error("no lm_head");
}

/// Each row of `got` within 1e-5 of the row's largest |logit| of `want`
/// (the two differ only in the summation order of the lm_head).
void expect_rows_close(const std::vector<float>& got, const std::vector<float>& want, int64_t V,
                       const std::string& what) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t r = 0; r < want.size() / size_t(V); ++r) {
    const float* g = got.data() + r * size_t(V);
    const float* w = want.data() + r * size_t(V);
    double scale = 0;
    for (int64_t v = 0; v < V; ++v) scale = std::max(scale, std::fabs(double(w[v])));
    for (int64_t v = 0; v < V; ++v)
      ASSERT_NEAR(g[v], w[v], 1e-5 * scale) << what << " row " << r << " token " << v;
  }
}

class HeldInDiskDtype : public ::testing::TestWithParam<const char*> {};

TEST_P(HeldInDiskDtype, LogitsAndPerplexityAsWithF32Parts) {
  KQ_REQUIRE_SHARED(kLlama);
  KQ_REQUIRE_SHARED(kText);
  const std::string mode = GetParam();
  auto held = quantized(mode);
  auto f32 = quantized_with_f32_parts(mode);
  const Linear& head = lm_head(*held);
  EXPECT_EQ(head.format(), "bf16");
  ASSERT_NE(linear_w16_weight(head), nullptr);
  EXPECT_EQ(linear_w16_weight(head)->dtype(), DType::BF16);
  EXPECT_EQ(lm_head(*f32).format(), "f32");

  const std::vector<int32_t> ids = text_tokens(300);
  ASSERT_GE(ids.size(), size_t(300));
  expect_rows_close(logits_of(*held, ids), logits_of(*f32, ids), held->config().vocab_size, mode);

  const PerplexityResult a = evaluate_perplexity(*held, ids, 128);
  const PerplexityResult b = evaluate_perplexity(*f32, ids, 128);
  EXPECT_NEAR(a.ppl, b.ppl, 1e-5 * b.ppl) << mode;
}

// Whole-model bytes from the shapes: the quantized linears, the lm_head
// sharing the BF16 embedding table (counted once, 2 bytes per weight), the
// F32 norms (2 per layer and the final one); below the on-disk bytes.
TEST_P(HeldInDiskDtype, WholeModelMemoryBelowItsOnDiskSize) {
  KQ_REQUIRE_SHARED(kLlama);
  const std::string mode = GetParam();
  QuantizeReport report;
  auto m = quantized(mode, &report);
  const ModelConfig& c = m->config();
  ASSERT_TRUE(c.tie_word_embeddings);
  const size_t table = size_t(c.vocab_size * c.hidden_size) * 2;
  const size_t norms = size_t((2 * c.num_layers + 1) * c.hidden_size) * 4;
  size_t quantized_bytes = 0;
  for (const LinearSlot& s : m->linear_layers()) {
    if (s.is_lm_head) continue;
    const int64_t N = (*s.op)->out_features(), K = (*s.op)->in_features();
    if (mode == "int8") {
      EXPECT_EQ((*s.op)->weight_bytes(), size_t(N * K + 4 * N)) << s.name;  // codes + F32 scales
    }
    quantized_bytes += (*s.op)->weight_bytes();
  }
  EXPECT_EQ(quantized_bytes, report.quantized_bytes_after);
  const WeightBytes b = m->weight_breakdown();
  EXPECT_EQ(b.linear, quantized_bytes + table);
  EXPECT_EQ(b.other, norms);
  EXPECT_EQ(m->weight_bytes(), quantized_bytes + table + norms);
  if (mode == "int8") {
    EXPECT_EQ(m->weight_bytes(), size_t(7141888));  // 6.81 MiB (F32-held parts: 10.81 MiB)
  }
  EXPECT_LT(m->weight_bytes(), m->disk_weight_bytes());
  // The kept lm_head's report entry says how it is held.
  const LayerQuantization& head = report.layers.back();
  EXPECT_EQ(head.name, "lm_head");
  EXPECT_FALSE(head.quantized);
  EXPECT_EQ(head.format, "bf16");
  EXPECT_EQ(head.bytes_after, table);
  EXPECT_EQ(head.bytes_before, 2 * table);
}

// save → load keeps the BF16 tensors on disk and the same model in memory.
TEST_P(HeldInDiskDtype, SavedFolderReloadsToTheSameLogitsAndDtype) {
  KQ_REQUIRE_SHARED(kLlama);
  const std::string mode = GetParam();
  kq::testing::TempDir tmp;
  const std::filesystem::path out = tmp.path / "q";
  QuantizeOptions o;
  o.spec = parse_quant_mode(mode);
  auto m = Model::load(llama_small());
  (void)quantize_model(*m, o);
  save_quantized_model(*m, o, out);
  const TensorStore store = TensorStore::open_dir(out);
  EXPECT_EQ(store.get("model.embed_tokens.weight").dtype(), DType::BF16);
  EXPECT_EQ(store.get("model.norm.weight").dtype(), DType::BF16);
  EXPECT_FALSE(store.contains("lm_head.weight"));  // tied

  auto loaded = Model::load(out);
  EXPECT_EQ(lm_head(*loaded).format(), "bf16");
  EXPECT_EQ(loaded->weight_bytes(), m->weight_bytes());
  const std::vector<int32_t> ids = {0, 17, 400, 8191, 5, 1024, 77, 3};
  const std::vector<float> a = logits_of(*m, ids), b = logits_of(*loaded, ids);
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) ASSERT_EQ(a[i], b[i]) << mode << " logit " << i;
}

INSTANTIATE_TEST_SUITE_P(LlamaSmall, HeldInDiskDtype, ::testing::Values("int8", "nf4"));

// The FP32 reference model (unquantized) stays F32: nothing to hold.
TEST(HeldInDiskDtypeReference, UnquantizedModelStaysF32) {
  KQ_REQUIRE_SHARED(kLlama);
  auto m = Model::load(llama_small());
  EXPECT_EQ(lm_head(*m).format(), "f32");
  const ModelConfig& c = m->config();
  EXPECT_EQ(m->weight_breakdown().other, size_t((2 * c.num_layers + 1) * c.hidden_size) * 4);
  EXPECT_GT(m->weight_bytes(), m->disk_weight_bytes());
}

}  // namespace
