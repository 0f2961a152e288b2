// Model::load(dir, ctx, transform): every linear layer passes through the
// LinearTransform as it is read, in linear_layers() order, so a transform that
// quantizes leaves one layer's FP32 weights alive at a time (what
// load_quantized builds on; tests/api/streaming_quantize_test.cpp compares the
// result with load-then-quantize), and the file pages a BF16 weight was read
// from do not stay resident once it is converted.
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <omp.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "common/test_data.hpp"
#include "common/test_util.hpp"
#include "kernels/linear_f32.hpp"
#include "kernels/quantized_linear.hpp"
#include "kq/error.hpp"
#include "kq/model.hpp"
#include "kq/quantize.hpp"

using namespace kq;
using kq::testing::error_of;
using kq::testing::shared_dir;

namespace {

constexpr const char* kLlama = "models/llama-small";

std::vector<float> logits_of(Model& m) {
  const std::vector<int32_t> ids = {1, 50, 300, 7, 4000};
  std::vector<float> out(ids.size() * size_t(m.config().vocab_size));
  KVCache cache = m.make_cache(8);
  m.forward(ids, cache, out.data());
  return out;
}

std::unique_ptr<Linear> int8_of(const Linear& op) {
  return quantize_linear(op.dequantized_weight(), op.bias(), parse_quant_mode("int8"));
}

TEST(ModelLoadTransform, EachLayerPassesThroughAsItIsRead) {
  KQ_REQUIRE_SHARED(kLlama);
  const size_t live = linear_f32_live_bytes();
  std::vector<std::string> seen;
  auto m = Model::load(shared_dir() / kLlama, {}, [&](const std::string& name, std::unique_ptr<Linear> op) {
    seen.push_back(name);
    EXPECT_EQ(op->format(), "f32") << name;
    // The layers before were read and quantized: this one's FP32 weights are the only ones alive
    // (the tied lm_head: an FP32 op over the embedding table).
    EXPECT_EQ(linear_f32_live_bytes() - live, size_t(op->out_features() * op->in_features()) * 4) << name;
    return name == "lm_head" ? std::move(op) : int8_of(*op);
  });
  std::vector<std::string> slots;
  for (const LinearSlot& s : m->linear_layers()) {
    slots.push_back(s.name);
    EXPECT_EQ((*s.op)->format(), s.is_lm_head ? "f32" : "int8") << s.name;
  }
  EXPECT_EQ(seen, slots);
  ASSERT_FALSE(seen.empty());
  EXPECT_EQ(seen.back(), "lm_head");

  // The same model as the layers replaced after the load.
  auto ref = Model::load(shared_dir() / kLlama);
  for (const LinearSlot& s : ref->linear_layers())
    if (!s.is_lm_head) *s.op = int8_of(**s.op);
  const std::vector<float> a = logits_of(*m), b = logits_of(*ref);
  ASSERT_EQ(a.size(), b.size());
  EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)), 0);
}

TEST(ModelLoadTransform, NoOpReturnedIsAnError) {
  KQ_REQUIRE_SHARED(kLlama);
  const std::string e = error_of<InvalidArgument>([] {
    Model::load(shared_dir() / kLlama, {}, [](const std::string&, std::unique_ptr<Linear>) {
      return std::unique_ptr<Linear>();
    });
  });
  EXPECT_NE(e.find("the linear transform returned no op for 'model.layers.0.self_attn.q_proj'"), std::string::npos)
      << e;
}

// An op of another shape than the layer's would have the forward read or write past the model's buffers
// (a tied lm_head of 4x the vocabulary corrupted the heap): refused at load, naming the layer and both shapes.
TEST(ModelLoadTransform, OpOfAnotherShapeIsAnErrorNamingTheLayer) {
  KQ_REQUIRE_SHARED(kLlama);
  for (const std::string target : {"model.layers.0.self_attn.q_proj", "lm_head"}) {
    for (const bool wrong_in : {false, true}) {
      int64_t out = 0, in = 0;
      const std::string e = error_of<InvalidArgument>([&] {
        Model::load(shared_dir() / kLlama, {}, [&](const std::string& name, std::unique_ptr<Linear> op) {
          if (name != target) return op;
          out = op->out_features();
          in = op->in_features();
          return make_linear_f32(Tensor::zeros(DType::F32, wrong_in ? Shape{out, 2 * in} : Shape{4 * out, in}));
        });
      });
      const std::string want = fmt::format(
          "the linear transform returned an op of {} out x {} in features for '{}', which has {} x {}",
          wrong_in ? out : 4 * out, wrong_in ? 2 * in : in, target, out, in);
      EXPECT_NE(e.find(want), std::string::npos) << e;
    }
  }
}

// An lm_head of another shape put into its LinearSlot after the load (API-user round 14: forward wrote 4x the
// vocabulary's logits past the caller's buffer, "double free or corruption"): each step refuses it first.
TEST(ModelLoadTransform, LmHeadOfAnotherShapeInItsSlotIsRefusedByForward) {
  KQ_REQUIRE_SHARED(kLlama);
  auto m = Model::load(shared_dir() / kLlama);
  const int64_t vocab = m->config().vocab_size, d = m->config().hidden_size;
  for (const Shape& wrong : {Shape{4 * vocab, d}, Shape{vocab, 2 * d}}) {
    for (const LinearSlot& s : m->linear_layers())
      if (s.is_lm_head) *s.op = make_linear_f32(Tensor::zeros(DType::F32, wrong));
    const std::string e = error_of<InvalidArgument>([&] { logits_of(*m); });
    EXPECT_NE(e.find(fmt::format("layer 'lm_head' holds an op of {} out x {} in features, but the model maps {} "
                                 "hidden features to {} logits",
                                 wrong[0], wrong[1], d, vocab)),
              std::string::npos)
        << e;
  }
}

/// Puts ops of another shape (4x the out features, then 2x the in features) into `layer`'s LinearSlot of `m`
/// and checks that prefill, decode (after a prefill with the layer's own op) and decode_batch each refuse them
/// before anything is computed (the caches keep their size), naming the layer and both shapes; with the layer's
/// own op back, forward runs again.
void expect_other_shape_refused_by_every_forward(Model& m, const std::string& layer) {
  std::unique_ptr<Linear>* slot = nullptr;
  for (const LinearSlot& s : m.linear_layers())
    if (s.name == layer) slot = s.op;
  ASSERT_NE(slot, nullptr) << layer;
  const std::vector<int32_t> prompt = {1, 50, 7}, next = {300};
  std::vector<float> logits(prompt.size() * size_t(m.config().vocab_size));
  KVCache decoding = m.make_cache(8);
  m.forward(prompt, decoding, logits.data());
  std::unique_ptr<Linear> own = std::move(*slot);
  const int64_t out = own->out_features(), in = own->in_features();
  for (const Shape& wrong : {Shape{4 * out, in}, Shape{out, 2 * in}}) {
    *slot = make_linear_f32(Tensor::zeros(DType::F32, wrong));
    const std::string want = fmt::format(
        "layer '{}' holds an op of {} out x {} in features, but the model maps {} input features to {} output "
        "features; a replacement put into a LinearSlot must keep the layer's shape",
        layer, wrong[0], wrong[1], in, out);
    KVCache fresh = m.make_cache(8);
    const std::string prefill = error_of<InvalidArgument>([&] { m.forward(prompt, fresh, logits.data()); });
    EXPECT_NE(prefill.find("forward: " + want), std::string::npos) << prefill;
    const std::string decode = error_of<InvalidArgument>([&] { m.forward(next, decoding, logits.data()); });
    EXPECT_NE(decode.find("forward: " + want), std::string::npos) << decode;
    KVCache* caches[] = {&decoding};
    const std::string batch = error_of<InvalidArgument>([&] { m.decode_batch(next, caches, logits.data()); });
    EXPECT_NE(batch.find("decode_batch: " + want), std::string::npos) << batch;
    EXPECT_EQ(fresh.size(), 0);
    EXPECT_EQ(decoding.size(), int64_t(prompt.size()));
  }
  *slot = std::move(own);
  m.forward(next, decoding, logits.data());
  EXPECT_EQ(decoding.size(), int64_t(prompt.size() + 1));
}

// A layer other than the lm_head of another shape put into its LinearSlot after the load (API-user round 14: the
// CPU backend's "linear output has row stride N, expected M", naming no layer): every forward refuses it first.
TEST(ModelLoadTransform, MiddleLayerOfAnotherShapeInItsSlotIsRefusedByEveryForwardLlama) {
  KQ_REQUIRE_SHARED(kLlama);
  auto m = Model::load(shared_dir() / kLlama);
  expect_other_shape_refused_by_every_forward(*m, "model.layers.1.mlp.down_proj");
}

TEST(ModelLoadTransform, MiddleLayerOfAnotherShapeInItsSlotIsRefusedByEveryForwardGpt2) {
  auto m = Model::load(kq::testing::demo_model());  // gpt2-tiny, shipped with the sources
  expect_other_shape_refused_by_every_forward(*m, "transformer.h.1.mlp.c_fc");
}

// A null op put into a LinearSlot (API-user round 16: forward refused it, weight_bytes crashed with SIGSEGV):
// forward and weight_breakdown refuse it through one check, Model::check_linear_layers, naming the layer.
TEST(ModelLoadTransform, NullOpInItsSlotIsRefusedByForwardAndWeightBytes) {
  auto m = Model::load(kq::testing::demo_model());
  const LinearSlot slot = m->linear_layers()[2];
  slot.op->reset();
  const std::string want =
      fmt::format("layer '{}' holds no op (a null Linear was put into its LinearSlot)", slot.name);
  const std::string bytes = error_of<InvalidArgument>([&] { (void)m->weight_bytes(); });
  EXPECT_NE(bytes.find("weight_breakdown: " + want), std::string::npos) << bytes;
  const std::string fwd = error_of<InvalidArgument>([&] { logits_of(*m); });
  EXPECT_NE(fwd.find("forward: " + want), std::string::npos) << fwd;
  EXPECT_NE(error_of<InvalidArgument>([&] { m->check_linear_layers("here"); }).find("here: " + want),
            std::string::npos);
}

// to_device (same device: converts the layers swapped in since) and hold_unquantized_in_disk_dtype read every
// slot too, and crashed on a null one: they refuse it through the same check, before anything changes.
TEST(ModelLoadTransform, NullOpInItsSlotIsRefusedByToDeviceAndHoldUnquantized) {
  auto m = Model::load(kq::testing::demo_model());
  const LinearSlot slot = m->linear_layers()[2];
  slot.op->reset();
  const std::string want =
      fmt::format("layer '{}' holds no op (a null Linear was put into its LinearSlot)", slot.name);
  const std::string dev = error_of<InvalidArgument>([&] { m->to_device({}); });
  EXPECT_NE(dev.find("to_device: " + want), std::string::npos) << dev;
  const std::string hold = error_of<InvalidArgument>([&] { m->hold_unquantized_in_disk_dtype(); });
  EXPECT_NE(hold.find("hold_unquantized_in_disk_dtype: " + want), std::string::npos) << hold;
}

/// Resident kB of this process's mappings of `file` (/proc/self/smaps), or -1 without /proc.
long resident_kb_of_mapping(const std::filesystem::path& file) {
  std::ifstream smaps("/proc/self/smaps");
  if (!smaps) return -1;
  const std::string path = std::filesystem::canonical(file).string();
  long kb = 0;
  bool in_file = false;
  for (std::string line; std::getline(smaps, line);) {
    if (line.size() > path.size() && line.ends_with(" " + path)) {
      in_file = true;
    } else if (line.starts_with("Rss:")) {
      if (in_file) kb += std::stol(line.substr(4));
      in_file = false;
    }
  }
  return kb;
}

TEST(ModelLoadTransform, Bf16PagesReadAreNotKeptResident) {
  KQ_REQUIRE_SHARED(kLlama);
  const std::filesystem::path file = shared_dir() / kLlama / "model.safetensors";  // every tensor BF16
  if (resident_kb_of_mapping(file) < 0) GTEST_SKIP() << "no /proc/self/smaps";
  long at_lm_head = -1;  // when the last layer is read, every tensor has been converted to F32
  Model::load(shared_dir() / kLlama, {}, [&](const std::string& name, std::unique_ptr<Linear> op) {
    if (name == "lm_head") at_lm_head = resident_kb_of_mapping(file);
    return op;
  });
  const long file_kb = long(std::filesystem::file_size(file) / 1024);
  EXPECT_GE(at_lm_head, 0);
  // Kept resident, every page read would be: the whole file. Released, what remains is what faults map back
  // around the tensors being read (fault-around maps cached neighbours, whole large folios on recent kernels):
  // 2,464 of 9,768 kB on this repo's Linux 6.18 machines (just over a quarter), less on older kernels.
  EXPECT_LT(at_lm_head, file_kb / 2) << "of " << file_kb << " kB mapped";
}

// A LinearTransform (load_quantized quantizes each layer in one) and the load's
// own weight conversions run on ctx.threads, not on OpenMP's default: the team
// of a parallel region the transform starts without a thread count is
// ctx.threads (it was the default, 4 here).
TEST(ModelLoadTransform, TransformRunsOnTheContextsThreads) {
  const int saved = omp_get_max_threads();
  omp_set_num_threads(4);
  std::vector<int> teams;
  const LinearTransform probe = [&](const std::string&, std::unique_ptr<Linear> op) {
    int team = 0;
#pragma omp parallel
    {
#pragma omp single
      team = omp_get_num_threads();
    }
    teams.push_back(team);
    return op;
  };
  (void)Model::random(kq::testing::tiny_gpt2_config(), 1, ExecContext{Device::CPU, 1}, probe);
  const size_t random_layers = teams.size();
  (void)Model::load(kq::testing::demo_model(), ExecContext{Device::CPU, 2}, probe);
  const int after = omp_get_max_threads();
  omp_set_num_threads(saved);
  ASSERT_GT(random_layers, 0u);
  ASSERT_GT(teams.size(), random_layers);
  for (size_t i = 0; i < teams.size(); ++i) EXPECT_EQ(teams[i], i < random_layers ? 1 : 2) << "layer call " << i;
  EXPECT_EQ(after, 4);  // the caller's default is left as it was
}

}  // namespace
