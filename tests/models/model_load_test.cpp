// Loading: both GPT-2 tensor-name styles, error messages, linear slots,
// weight accounting, random-weight models and input validation.
#include <gtest/gtest.h>

#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "common/test_data.hpp"
#include "common/test_util.hpp"
#include "io/safetensors.hpp"
#include "kernels/linear.hpp"
#include "kernels/linear_f32.hpp"
#include "kq/error.hpp"
#include "kq/model.hpp"

using namespace kq;
using kq::testing::shared_dir;
using kq::testing::error_of;
using kq::testing::TempDir;
namespace fs = std::filesystem;

namespace {

const std::vector<int32_t> kIds = {2415, 501, 4827, 5378, 434, 600, 30, 501, 2876, 4827, 5378, 434};

std::vector<float> run(Model& m, const std::vector<int32_t>& ids) {
  std::vector<float> out(ids.size() * size_t(m.config().vocab_size));
  KVCache cache = m.make_cache(int64_t(ids.size()));
  m.forward(ids, cache, out.data());
  return out;
}

// gpt2-tiny's tensors, optionally edited, written as a new model folder.
fs::path write_variant(const TempDir& tmp, const std::string& name, std::map<std::string, Tensor> tensors) {
  const fs::path dir = tmp.path / name;
  fs::create_directories(dir);
  fs::copy_file(shared_dir() / "models/gpt2-tiny/config.json", dir / "config.json");
  write_safetensors(dir / "model.safetensors", tensors);
  return dir;
}

std::map<std::string, Tensor> gpt2_tiny_tensors() {
  const TensorStore store = TensorStore::open_dir(shared_dir() / "models/gpt2-tiny");
  std::map<std::string, Tensor> m;
  for (const auto& n : store.names()) m[n] = store.get(n);
  return m;
}


ModelConfig small_config(Arch arch) {
  ModelConfig c;
  c.arch = arch;
  c.vocab_size = 97;
  c.hidden_size = 64;
  c.intermediate_size = arch == Arch::GPT2 ? 256 : 172;
  c.num_layers = 2;
  c.num_heads = 4;
  c.num_kv_heads = arch == Arch::GPT2 ? 4 : 2;
  c.head_dim = 16;
  c.max_positions = 40;
  c.activation = arch == Arch::GPT2 ? "gelu_new" : "silu";
  c.tie_word_embeddings = arch == Arch::GPT2;
  return c;
}

}  // namespace

TEST(ModelLoad, HubStyleGpt2NamesGiveIdenticalLogits) {
  KQ_REQUIRE_SHARED("models/gpt2-tiny");
  TempDir tmp;
  std::map<std::string, Tensor> hub;
  for (auto& [name, t] : gpt2_tiny_tensors()) hub[name.substr(std::string("transformer.").size())] = t;
  ASSERT_TRUE(hub.count("wte.weight") && hub.count("h.0.attn.c_attn.weight"));
  // The causal-mask buffers of the original hub checkpoints, to be ignored.
  const int64_t P = 256;
  Tensor mask = Tensor::zeros(DType::F32, {1, 1, P, P});
  for (int64_t i = 0; i < P; ++i)
    for (int64_t j = 0; j <= i; ++j) mask.mutable_data<float>()[i * P + j] = 1.0f;
  Tensor masked_bias = Tensor::empty(DType::F32, {});
  masked_bias.mutable_data<float>()[0] = -1e4f;
  for (int l = 0; l < 2; ++l) {
    hub["h." + std::to_string(l) + ".attn.bias"] = mask;
    hub["h." + std::to_string(l) + ".attn.masked_bias"] = masked_bias;
  }
  const fs::path dir = write_variant(tmp, "gpt2-hub", hub);

  auto a = Model::load(shared_dir() / "models/gpt2-tiny", ExecContext{Device::CPU, 2});
  auto b = Model::load(dir, ExecContext{Device::CPU, 2});
  EXPECT_EQ(run(*a, kIds), run(*b, kIds));
  const auto sa = a->linear_layers(), sb = b->linear_layers();
  ASSERT_EQ(sa.size(), sb.size());
  for (size_t i = 0; i < sa.size(); ++i) EXPECT_EQ(sa[i].name, sb[i].name);
  EXPECT_EQ(a->weight_bytes(), b->weight_bytes());
  EXPECT_EQ(a->disk_weight_bytes(), b->disk_weight_bytes());  // the mask buffers are not weights
}

TEST(ModelLoad, ErrorsNameTheTensorAndFolder) {
  KQ_REQUIRE_SHARED("models/gpt2-tiny");
  TempDir tmp;
  auto missing = gpt2_tiny_tensors();
  missing.erase("transformer.h.1.mlp.c_fc.bias");
  const fs::path d1 = write_variant(tmp, "missing", missing);
  std::string msg = error_of<FormatError>([&] { Model::load(d1); });
  EXPECT_NE(msg.find("transformer.h.1.mlp.c_fc.bias"), std::string::npos) << msg;
  EXPECT_NE(msg.find(d1.string()), std::string::npos) << msg;

  auto reshaped = gpt2_tiny_tensors();
  reshaped["transformer.ln_f.weight"] = Tensor::zeros(DType::F32, {127});
  const fs::path d2 = write_variant(tmp, "shape", reshaped);
  msg = error_of<FormatError>([&] { Model::load(d2); });
  EXPECT_NE(msg.find("transformer.ln_f.weight"), std::string::npos) << msg;
  EXPECT_NE(msg.find("[127]"), std::string::npos) << msg;

  auto ints = gpt2_tiny_tensors();
  ints["transformer.ln_f.bias"] = Tensor::zeros(DType::I32, {128});
  const fs::path d3 = write_variant(tmp, "dtype", ints);
  msg = error_of<FormatError>([&] { Model::load(d3); });
  EXPECT_NE(msg.find("transformer.ln_f.bias"), std::string::npos) << msg;
  EXPECT_NE(msg.find("I32"), std::string::npos) << msg;

  auto none = gpt2_tiny_tensors();
  none.erase("transformer.wte.weight");
  const fs::path d4 = write_variant(tmp, "nowte", none);
  msg = error_of<FormatError>([&] { Model::load(d4); });
  EXPECT_NE(msg.find("wte.weight"), std::string::npos) << msg;

  msg = error_of<FormatError>([&] { Model::load(tmp.path / "does-not-exist"); });
  EXPECT_NE(msg.find("does-not-exist"), std::string::npos) << msg;
  fs::create_directories(tmp.path / "empty");
  EXPECT_THROW(Model::load(tmp.path / "empty"), FormatError);
  EXPECT_THROW(Model::load(d1, ExecContext{Device::CUDA, 0}), Unsupported);
}

TEST(ModelLoad, LinearSlotsAndWeightBytes) {
  KQ_REQUIRE_SHARED("models/llama-small");
  for (const char* name : {"gpt2-tiny", "llama-small"}) {
    auto m = Model::load(shared_dir() / "models" / name);
    const ModelConfig& c = m->config();
    const int64_t d = c.hidden_size, ffn = c.intermediate_size, V = c.vocab_size, L = c.num_layers;
    const auto slots = m->linear_layers();
    int64_t linear_params = 0;
    for (const auto& s : slots) {
      linear_params += (*s.op)->in_features() * (*s.op)->out_features() +
                       ((*s.op)->bias().defined() ? (*s.op)->bias().numel() : 0);
      EXPECT_EQ(s.is_lm_head, s.name == "lm_head") << s.name;
    }
    int64_t other_params;
    if (c.arch == Arch::GPT2) {
      ASSERT_EQ(slots.size(), size_t(4 * L + 1));
      EXPECT_EQ(slots[0].name, "transformer.h.0.attn.c_attn");
      EXPECT_EQ((*slots[2].op)->out_features(), ffn);          // mlp.c_fc
      other_params = c.max_positions * d + L * 4 * d + 2 * d;  // wpe, ln_1/ln_2 w+b, ln_f w+b
    } else {
      ASSERT_EQ(slots.size(), size_t(7 * L + 1));
      EXPECT_EQ(slots[1].name, "model.layers.0.self_attn.k_proj");
      EXPECT_EQ((*slots[1].op)->out_features(), c.num_kv_heads * c.head_dim);
      other_params = L * 2 * d + d;  // input/post-attention norms, final norm
    }
    EXPECT_EQ(slots.back().name, "lm_head");
    // Tied lm_head: the embedding is counted once, inside the lm_head Linear.
    const WeightBytes wb = m->weight_breakdown();
    EXPECT_EQ(wb.linear, size_t(linear_params) * 4) << name;
    EXPECT_EQ(wb.other, size_t(other_params) * 4) << name;
    const size_t disk_elem = c.arch == Arch::GPT2 ? 4 : 2;  // llama-small is BF16 on disk
    EXPECT_EQ(m->disk_weight_bytes(), size_t(linear_params + other_params) * disk_elem) << name;

    // Untie: a separate copy of the lm_head weight makes the embedding count on its own.
    const auto before = run(*m, kIds);
    LinearSlot head = slots.back();
    *head.op = make_linear_f32((*head.op)->dequantized_weight().clone());
    EXPECT_EQ(m->weight_breakdown().other, wb.other + size_t(V * d) * 4) << name;
    EXPECT_EQ(run(*m, kIds), before) << name;
  }
}

TEST(ModelLoad, ForwardValidatesInputs) {
  auto m = Model::random(small_config(Arch::GPT2), 1);
  std::vector<float> logits(size_t(m->config().vocab_size) * 4);
  KVCache cache = m->make_cache(3);
  const std::vector<int32_t> bad = {1, 97};
  EXPECT_THROW(m->forward(bad, cache, logits.data()), InvalidArgument);
  const std::vector<int32_t> neg = {-1};
  EXPECT_THROW(m->forward(neg, cache, logits.data()), InvalidArgument);
  EXPECT_THROW(m->forward(std::span<const int32_t>(), cache, logits.data()), InvalidArgument);
  const std::vector<int32_t> four = {1, 2, 3, 4};
  EXPECT_THROW(m->forward(four, cache, logits.data()), InvalidArgument);
  EXPECT_EQ(cache.size(), 0);  // nothing happened
  EXPECT_THROW(m->make_cache(41), InvalidArgument);
  EXPECT_THROW(m->make_cache(-1), InvalidArgument);
  EXPECT_EQ(m->make_cache().capacity(), 40);
  auto other = Model::random(small_config(Arch::Llama), 1);
  KVCache wrong = other->make_cache(4);
  EXPECT_THROW(m->forward(four, wrong, logits.data()), InvalidArgument);
  m->forward(std::span(four).first(3), cache, nullptr);  // no logits wanted
  EXPECT_EQ(cache.size(), 3);
}

TEST(ModelRandom, DeterministicAndDecodeConsistent) {
  for (Arch arch : {Arch::GPT2, Arch::Llama}) {
    ModelConfig c = small_config(arch);
    c.torch_dtype = "bfloat16";
    auto a = Model::random(c, 42), b = Model::random(c, 42), other = Model::random(c, 43);
    const std::vector<int32_t> ids = {5, 17, 96, 0, 33, 33, 2, 71};
    const auto la = run(*a, ids);
    EXPECT_EQ(la, run(*b, ids));
    EXPECT_NE(la, run(*other, ids));
    for (float v : la) ASSERT_TRUE(std::isfinite(v));
    // token-by-token decode vs the full pass
    const int64_t V = c.vocab_size;
    KVCache cache = a->make_cache();
    std::vector<float> step(static_cast<size_t>(V));
    for (size_t i = 0; i < ids.size(); ++i) {
      a->forward(std::span(ids).subspan(i, 1), cache, step.data());
      for (int64_t j = 0; j < V; ++j) ASSERT_NEAR(step[size_t(j)], la[i * size_t(V) + size_t(j)], 1e-5);
    }
    EXPECT_EQ(a->disk_weight_bytes() * 2, a->weight_bytes());  // BF16 "on disk", F32 in memory
    EXPECT_TRUE(a->source_dir().empty());
  }
  ModelConfig bad = small_config(Arch::Llama);
  bad.num_kv_heads = 3;
  EXPECT_THROW(Model::random(bad, 1), InvalidArgument);
  bad = small_config(Arch::GPT2);
  bad.head_dim = 8;
  EXPECT_THROW(Model::random(bad, 1), InvalidArgument);
  bad = small_config(Arch::Llama);
  bad.activation = "relu";
  EXPECT_THROW(Model::random(bad, 1), Unsupported);
  // A huge max_position_embeddings (found by a tester: 100M positions took
  // 12+ GB for the RoPE tables) no longer allocates tables for every
  // position: they cover one prefill chunk until a longer KV cache is run
  // (rope_positions_test.cpp).
  ModelConfig huge = small_config(Arch::Llama);
  huge.max_positions = int64_t(100) << 20;
  EXPECT_EQ(Model::random(huge, 1)->buffer_bytes(), size_t(2 * 256 * (huge.head_dim / 2)) * 4);
}
