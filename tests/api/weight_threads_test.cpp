// The CPU work quantize_model and plan_adaptive_precision do on a model's
// weights runs on the model's ExecContext threads (Model::context().threads),
// as its forward() does; it ran on OpenMP's default, which only the CLI's
// --threads (kq::set_default_threads) bounded: a library user could not ask for
// 2 threads of a 64-core machine per model. Round-to-nearest results do not
// depend on the count.
#include <gtest/gtest.h>
#include <omp.h>

#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "common/test_util.hpp"
#include "kq/adaptive.hpp"
#include "kq/linear.hpp"
#include "kq/model.hpp"
#include "kq/optimizer.hpp"

namespace kq {
namespace {

/// Sets OpenMP's default thread count of the calling thread to `n`, restored at scope exit.
class DefaultThreads {
 public:
  explicit DefaultThreads(int n) : saved_(omp_get_max_threads()) { omp_set_num_threads(n); }
  ~DefaultThreads() { omp_set_num_threads(saved_); }
  DefaultThreads(const DefaultThreads&) = delete;
  DefaultThreads& operator=(const DefaultThreads&) = delete;

 private:
  int saved_;
};

/// Forwards to `inner`; every dequantized_weight() call (quantize_model and plan_adaptive_precision read each
/// layer's weight through it, on the thread that quantizes) appends to `teams` the team of a parallel region
/// started there without a thread count, as the library's quantization regions are.
class TeamProbe : public Linear {
 public:
  TeamProbe(std::unique_ptr<Linear> inner, std::vector<int>& teams) : inner_(std::move(inner)), teams_(teams) {}
  int64_t in_features() const override { return inner_->in_features(); }
  int64_t out_features() const override { return inner_->out_features(); }
  void forward(const float* x, int64_t M, float* y, const ExecContext& ctx) const override {
    inner_->forward(x, M, y, ctx);
  }
  size_t weight_bytes() const override { return inner_->weight_bytes(); }
  std::string format() const override { return inner_->format(); }
  Tensor dequantized_weight() const override {
    int team = 0;
#pragma omp parallel
    {
#pragma omp single
      team = omp_get_num_threads();
    }
    teams_.push_back(team);
    return inner_->dequantized_weight();
  }
  Tensor bias() const override { return inner_->bias(); }

 private:
  std::unique_ptr<Linear> inner_;
  std::vector<int>& teams_;
};

/// A tiny random GPT-2 on `threads` CPU threads, every linear layer but the lm_head behind a TeamProbe.
std::unique_ptr<Model> probed_model(int threads, std::vector<int>& teams) {
  auto m = Model::random(kq::testing::tiny_gpt2_config(), 11, ExecContext{Device::CPU, threads});
  for (const LinearSlot& s : m->linear_layers())
    if (!s.is_lm_head) *s.op = std::make_unique<TeamProbe>(std::move(*s.op), teams);
  return m;
}

/// Every layer's dequantized weight, as bytes.
std::vector<std::string> weights_of(Model& m) {
  std::vector<std::string> out;
  for (const LinearSlot& s : m.linear_layers()) {
    const Tensor w = (*s.op)->dequantized_weight();
    out.emplace_back(static_cast<const char*>(w.raw()), w.nbytes());
  }
  return out;
}

TEST(WeightThreads, QuantizeAndPlanRunOnTheModelsThreads) {
  const DefaultThreads four(4);  // OpenMP's default: what the work took before
  std::vector<std::vector<std::string>> results;
  for (const int threads : {1, 3}) {
    for (const char* mode : {"int8", "nf4"}) {
      std::vector<int> teams;
      auto m = probed_model(threads, teams);
      AdaptiveOptions a;
      a.target_reduction = 0.5;
      (void)plan_adaptive_precision(*m, a);
      ASSERT_FALSE(teams.empty());
      for (const int t : teams) EXPECT_EQ(t, threads) << "plan_adaptive_precision, threads " << threads;
      teams.clear();
      QuantizeOptions q;
      q.spec = parse_quant_mode(mode);
      (void)quantize_model(*m, q);
      ASSERT_FALSE(teams.empty());
      for (const int t : teams) EXPECT_EQ(t, threads) << "quantize_model " << mode << ", threads " << threads;
      EXPECT_EQ(omp_get_max_threads(), 4);  // the caller's default is left as it was
      results.push_back(weights_of(*m));
    }
  }
  // Round-to-nearest codes and scales are the same, bit for bit, on 1 and 3 threads.
  EXPECT_EQ(results[0], results[2]);
  EXPECT_EQ(results[1], results[3]);
}

}  // namespace
}  // namespace kq
