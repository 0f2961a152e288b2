// End-to-end model speed on the CPU: prefill (a 128-token prompt) and decode
// (batch 1, KV cache) tokens/s, for the shared test models and for
// random-weight GPT-2 124M and Llama 1B (speed does not depend on weight values).
//
// Google Benchmark mode (FP32 models):
//   KQ_THREADS=2 bench_model --benchmark_repetitions=3
// Quantized-vs-FP32 table (one process, every variant interleaved run by run,
// medians; see quant_table() below):
//   KQ_THREADS=2 bench_model --quant_table=llama_1b [--runs=5] [--decode=16]
//                            [--modes=int8,nf4,int4-g128,fp8]
// Shared models are looked up in $KQ_SHARED_DIR (default ../shared, ../../shared).
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "kernels/cpu/dispatch.hpp"
#include "kernels/cpu/ops_softmax.hpp"
#include "kernels/quantized_linear.hpp"
#include "kq/model.hpp"
#include "kq/optimizer.hpp"

namespace {

constexpr int64_t kPrompt = 128;

int threads() {
  const char* t = std::getenv("KQ_THREADS");
  return t ? std::atoi(t) : 0;
}

std::filesystem::path shared_dir() {
  if (const char* e = std::getenv("KQ_SHARED_DIR")) return e;
  for (const char* c : {"../shared", "../../shared", "/work/shared"})
    if (std::filesystem::exists(std::filesystem::path(c) / "models")) return c;
  return "../shared";
}

kq::ModelConfig gpt2_124m() {
  kq::ModelConfig c;
  c.arch = kq::Arch::GPT2;
  c.vocab_size = 50257;
  c.hidden_size = 768;
  c.intermediate_size = 3072;
  c.num_layers = 12;
  c.num_heads = c.num_kv_heads = 12;
  c.head_dim = 64;
  c.max_positions = 1024;
  c.activation = "gelu_new";
  c.torch_dtype = "float32";
  return c;
}

kq::ModelConfig llama_1b() {  // TinyLlama-1.1B shapes
  kq::ModelConfig c;
  c.arch = kq::Arch::Llama;
  c.vocab_size = 32000;
  c.hidden_size = 2048;
  c.intermediate_size = 5632;
  c.num_layers = 22;
  c.num_heads = 32;
  c.num_kv_heads = 4;
  c.head_dim = 64;
  c.max_positions = 2048;
  c.norm_eps = 1e-5;
  c.activation = "silu";
  c.tie_word_embeddings = false;
  c.torch_dtype = "bfloat16";
  return c;
}

// Models are built once per process and shared by the prefill and decode benchmarks.
kq::Model* get_model(const std::string& name) {
  static std::map<std::string, std::unique_ptr<kq::Model>> cache;
  auto& m = cache[name];
  if (!m) {
    const kq::ExecContext ctx{kq::Device::CPU, threads()};
    if (name == "gpt2-124m-random")
      m = kq::Model::random(gpt2_124m(), 1, ctx);
    else if (name == "llama-1b-random")
      m = kq::Model::random(llama_1b(), 1, ctx);
    else if (std::filesystem::exists(shared_dir() / "models" / name))
      m = kq::Model::load(shared_dir() / "models" / name, ctx);
  }
  return m.get();
}

std::vector<int32_t> prompt_tokens(const kq::Model& m) {
  std::mt19937 rng(7);
  std::uniform_int_distribution<int32_t> u(0, int32_t(m.config().vocab_size - 1));
  std::vector<int32_t> t(static_cast<size_t>(kPrompt));
  for (auto& v : t) v = u(rng);
  return t;
}

void set_counters(benchmark::State& state, const kq::Model& m, double tokens_per_iter) {
  state.counters["tokens/s"] =
      benchmark::Counter(tokens_per_iter, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["threads"] = kq::resolve_threads(m.context().threads);
  state.counters["weight_MB"] = double(m.weight_bytes()) / 1e6;
}

// Prefill: the 128-token prompt from position 0, logits of the last token.
void BM_Prefill(benchmark::State& state, const std::string& name) {
  kq::Model* m = get_model(name);
  if (!m) {
    state.SkipWithError(("model not found: " + name).c_str());
    return;
  }
  const auto prompt = prompt_tokens(*m);
  kq::KVCache cache = m->make_cache(kPrompt);
  std::vector<float> logits(static_cast<size_t>(m->config().vocab_size));
  for (auto _ : state) {
    cache.reset();
    m->forward(prompt, cache, logits.data(), /*all_logits=*/false);
    benchmark::DoNotOptimize(logits.data());
  }
  set_counters(state, *m, double(kPrompt));
}

// Decode: after the 128-token prompt (not timed), `steps` tokens one at a time.
void BM_Decode(benchmark::State& state, const std::string& name) {
  kq::Model* m = get_model(name);
  if (!m) {
    state.SkipWithError(("model not found: " + name).c_str());
    return;
  }
  const int64_t steps = state.range(0);
  const auto prompt = prompt_tokens(*m);
  kq::KVCache cache = m->make_cache(kPrompt + steps);
  std::vector<float> logits(static_cast<size_t>(m->config().vocab_size));
  for (auto _ : state) {
    state.PauseTiming();
    cache.reset();
    m->forward(prompt, cache, logits.data(), /*all_logits=*/false);
    state.ResumeTiming();
    int32_t next = prompt.back();
    for (int64_t i = 0; i < steps; ++i) {
      m->forward(std::span(&next, 1), cache, logits.data());
      next = int32_t((next + 1) % m->config().vocab_size);  // any token: speed does not depend on it
    }
    benchmark::DoNotOptimize(logits.data());
  }
  set_counters(state, *m, double(steps));
}

BENCHMARK_CAPTURE(BM_Prefill, gpt2_small, std::string("gpt2-small"))
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK_CAPTURE(BM_Decode, gpt2_small, std::string("gpt2-small"))
    ->Arg(64)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK_CAPTURE(BM_Prefill, llama_small, std::string("llama-small"))
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK_CAPTURE(BM_Decode, llama_small, std::string("llama-small"))
    ->Arg(64)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK_CAPTURE(BM_Prefill, gpt2_124m_random, std::string("gpt2-124m-random"))
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK_CAPTURE(BM_Decode, gpt2_124m_random, std::string("gpt2-124m-random"))
    ->Arg(32)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK_CAPTURE(BM_Prefill, llama_1b_random, std::string("llama-1b-random"))
    ->Iterations(2)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK_CAPTURE(BM_Decode, llama_1b_random, std::string("llama-1b-random"))
    ->Arg(8)
    ->Iterations(2)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

// ---- quantized vs FP32, one interleaved run ------------------------------------

using Clock = std::chrono::steady_clock;

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n == 0 ? 0.0 : n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/// One row of the table: a model, optionally with `head` swapped into its
/// lm_head slot while it runs (the same quantized body with lm_head FP32 or
/// quantized, without holding the body twice).
struct Variant {
  std::string mode;      ///< "fp32" or a parse_quant_mode name
  bool head_quantized = false;
  kq::Model* model = nullptr;
  std::unique_ptr<kq::Linear> head;  ///< swapped in for the run, or null
  std::vector<double> prefill_ms, token_ms;
  double linear_bytes = 0;  ///< bytes of every Linear op (what a decode step streams), as run
};

std::unique_ptr<kq::Linear>* lm_head_slot(kq::Model& m) {
  for (const kq::LinearSlot& s : m.linear_layers())
    if (s.is_lm_head) return s.op;
  return nullptr;
}

double linear_bytes(kq::Model& m) {
  double b = 0;
  for (const kq::LinearSlot& s : m.linear_layers()) b += double((*s.op)->weight_bytes());
  return b;
}

/// A Linear that computes nothing (y = 0): a model made of these times
/// everything of a forward pass except the projections (embeddings, norms,
/// RoPE, attention over the KV cache, residual adds, their thread fork/joins).
class NoLinear final : public kq::Linear {
 public:
  NoLinear(int64_t n, int64_t k) : n_(n), k_(k) {}
  int64_t in_features() const override { return k_; }
  int64_t out_features() const override { return n_; }
  void forward(const float*, int64_t M, float* y, const kq::ExecContext&) const override {
    std::fill(y, y + M * n_, 0.0f);
  }
  size_t weight_bytes() const override { return 0; }
  std::string format() const override { return "none"; }
  kq::Tensor dequantized_weight() const override { return kq::Tensor::zeros(kq::DType::F32, {n_, k_}); }
  kq::Tensor bias() const override { return {}; }

 private:
  int64_t n_, k_;
};

/// Prefill of the prompt (from position 0), then `decode` tokens one at a time
/// (as kq::measure_latency: greedy continuation, each token timed).
void run_variant(Variant& v, kq::KVCache& cache, const std::vector<int32_t>& prompt, int64_t decode,
                 std::vector<float>& logits, bool record) {
  std::unique_ptr<kq::Linear>* slot = v.head ? lm_head_slot(*v.model) : nullptr;
  if (slot) std::swap(*slot, v.head);
  cache.reset();
  const auto t0 = Clock::now();
  v.model->forward(prompt, cache, logits.data(), /*all_logits=*/false);
  const double pre = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
  for (int64_t i = 0; i < decode; ++i) {
    const int32_t next = int32_t(kq::cpu::argmax(logits.data(), int64_t(logits.size())));
    const auto t = Clock::now();
    v.model->forward(std::span<const int32_t>(&next, 1), cache, logits.data());
    if (record) v.token_ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t).count());
  }
  if (record) v.prefill_ms.push_back(pre);
  if (record && v.linear_bytes == 0) v.linear_bytes = linear_bytes(*v.model);
  if (slot) std::swap(*slot, v.head);
}

std::string load_average() {
  std::ifstream f("/proc/loadavg");
  std::string a, b, c;
  f >> a >> b >> c;
  return a + " " + b + " " + c;
}

/// Builds FP32 and, per mode, one quantized model (lm_head FP32, the default)
/// plus a quantized lm_head swapped in for the "lm_head quantized" row; runs
/// warm-up once each, then `runs` rounds of all variants in turn (A B C ... A B C),
/// and prints a Markdown table of medians and ratios vs FP32.
int quant_table(const std::string& shape, int runs, int64_t decode, const std::vector<std::string>& modes) {
  kq::ModelConfig cfg;
  if (shape == "llama_1b")
    cfg = llama_1b();
  else if (shape == "gpt2_124m")
    cfg = gpt2_124m();
  else {
    std::fprintf(stderr, "--quant_table: unknown shape '%s' (llama_1b, gpt2_124m)\n", shape.c_str());
    return 2;
  }
  const kq::ExecContext ctx{kq::Device::CPU, threads()};
  std::vector<std::unique_ptr<kq::Model>> models;
  std::vector<Variant> vars;
  const auto tb = Clock::now();
  models.push_back(kq::Model::random(cfg, 1, ctx));
  auto add = [&](const std::string& mode, bool hq, std::unique_ptr<kq::Linear> head) {
    Variant& v = vars.emplace_back();
    v.mode = mode;
    v.head_quantized = hq;
    v.model = models.back().get();
    v.head = std::move(head);
  };
  add("fp32", false, nullptr);
  for (const std::string& mode : modes) {
    const kq::QuantSpec spec = kq::parse_quant_mode(mode);
    models.push_back(kq::Model::random(cfg, 1, ctx));
    kq::quantize_model(*models.back(), kq::QuantizeOptions{spec, false, {}});
    const kq::Linear& head = **lm_head_slot(*models.back());
    add(mode, false, nullptr);
    add(mode, true, kq::quantize_linear(head.dequantized_weight(), head.bias(), spec));
  }
  // Everything but the projections, for the decode overhead outside the GEMVs.
  models.push_back(kq::Model::random(cfg, 1, ctx));
  for (const kq::LinearSlot& s : models.back()->linear_layers())
    *s.op = std::make_unique<NoLinear>((*s.op)->out_features(), (*s.op)->in_features());
  add("no Linear (overhead)", false, nullptr);
  const double build_s = std::chrono::duration<double>(Clock::now() - tb).count();
  const std::vector<int32_t> prompt = prompt_tokens(*models[0]);
  kq::KVCache cache = models[0]->make_cache(kPrompt + decode);
  std::vector<float> logits(static_cast<size_t>(cfg.vocab_size));
  const std::string load_before = load_average();
  for (Variant& v : vars) run_variant(v, cache, prompt, decode, logits, false);  // warm-up
  for (int r = 0; r < runs; ++r)
    for (Variant& v : vars) run_variant(v, cache, prompt, decode, logits, true);

  std::printf("\n%s (random weights), ISA %s, %d threads, %d interleaved runs, prompt %lld tokens, %lld decoded "
              "tokens per run (medians over all of them), models built and quantized in %.0f s, load average %s "
              "before / %s after\n\n",
              shape.c_str(), kq::active_isa().c_str(), kq::resolve_threads(ctx.threads), runs,
              static_cast<long long>(kPrompt), static_cast<long long>(decode), build_s, load_before.c_str(),
              load_average().c_str());
  std::printf("| mode | lm_head | Linear weights MB | prefill tok/s | × FP32 | decode tok/s | × FP32 | decode "
              "weight GB/s |\n|---|---|---|---|---|---|---|---|\n");
  const double pre0 = median(vars[0].prefill_ms), tok0 = median(vars[0].token_ms);
  for (const Variant& v : vars) {
    const double pre = median(v.prefill_ms), tok = median(v.token_ms);
    std::printf("| %s | %s | %.1f | %.1f | %.2f | %.2f | %.2f | %.1f |\n", v.mode.c_str(),
                v.mode == "fp32" ? "FP32" : v.mode.starts_with("no ") ? "none" : v.head_quantized ? "quantized" : "FP32", v.linear_bytes / 1e6,
                double(kPrompt) * 1000.0 / pre, pre0 / pre, 1000.0 / tok, tok0 / tok, v.linear_bytes / 1e6 / tok);
  }
  std::fflush(stdout);
  return 0;
}

/// The value of `--name=value` in argv (removed from it), or "".
std::string take_flag(int& argc, char** argv, const std::string& name) {
  const std::string key = "--" + name + "=";
  for (int i = 1; i < argc; ++i)
    if (std::string(argv[i]).starts_with(key)) {
      std::string v = std::string(argv[i]).substr(key.size());
      for (int j = i; j + 1 < argc; ++j) argv[j] = argv[j + 1];
      --argc;
      return v;
    }
  return {};
}

}  // namespace

int main(int argc, char** argv) {
  const std::string table = take_flag(argc, argv, "quant_table");
  if (!table.empty()) {
    const std::string runs = take_flag(argc, argv, "runs"), decode = take_flag(argc, argv, "decode");
    std::string modes_s = take_flag(argc, argv, "modes");
    if (modes_s.empty()) modes_s = "int8,nf4,int4-g128,fp8";
    std::vector<std::string> modes;
    std::stringstream ss(modes_s);
    for (std::string m; std::getline(ss, m, ',');)
      if (!m.empty()) modes.push_back(m);
    return quant_table(table, runs.empty() ? 5 : std::atoi(runs.c_str()),
                       decode.empty() ? 16 : std::atoll(decode.c_str()), modes);
  }
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
