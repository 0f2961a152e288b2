// End-to-end FP32 model speed on the CPU: prefill (a 128-token prompt) and
// decode (batch 1, KV cache) tokens/s, for the shared test models and for
// random-weight GPT-2 124M and Llama 1B (speed does not depend on weight values).
//   KQ_THREADS=2 bench_model --benchmark_repetitions=3
// Shared models are looked up in $KQ_SHARED_DIR (default ../shared, ../../shared).
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <filesystem>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "kq/model.hpp"

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

}  // namespace

BENCHMARK_MAIN();
