// End-to-end model speed on the GPU: prefill tokens/s of a long prompt, decode
// tokens/s at batch 1 and at batch B (KV cache, CUDA graphs), and GPU memory
// held, for a random-weight Llama-7B shape (or Llama-1B / Qwen3-8B / GPT-2 124M) in every
// mode, all models resident at once and measured interleaved run by run
// (A B C … A B C …), medians reported. Speed does not depend on weight values.
//
//   bench_gpu_model [--shape=llama-7b|llama-1b|qwen3-8b|gpt2-124m] [--modes=bf16,fp8,int8,nf4,int4-g128]
//                   [--batch=16] [--prompt=512] [--decode=64] [--runs=5]
//                   [--quantize-lm-head] [--no-graphs] [--json=FILE]
//
// With KQ_CUDA_STEP_TIMING=1 it also splits a batch-1 decode step into GPU time
// (CUDA events around each graph replay) and host time (the rest of the wall
// time: metadata upload, graph launch, logits copy, the argmax).
//
// Needs a CUDA build and a GPU (prints the reason and exits 2 otherwise).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <fmt/core.h>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "io/atomic_file.hpp"
#include "kernels/cpu/ops_softmax.hpp"
#include "kq/error.hpp"
#include "kq/fp8.hpp"
#include "kq/model.hpp"

#ifdef KQ_WITH_CUDA
#include <cuda_runtime_api.h>
#endif

namespace {

using Clock = std::chrono::steady_clock;

struct Options {
  std::string shape = "llama-7b";
  std::vector<std::string> modes{"bf16", "fp8", "int8", "nf4", "int4-g128"};
  int64_t batch = 16, prompt = 512, decode = 64;
  int runs = 5;
  bool lm_head = false, graphs = true;
  std::string json;
};

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  for (std::string x; std::getline(ss, x, ',');)
    if (!x.empty()) out.push_back(x);
  return out;
}

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto val = [&](const char* key) -> const char* {
      const std::string k = std::string(key) + "=";
      return a.rfind(k, 0) == 0 ? argv[i] + k.size() : nullptr;
    };
    auto num = [&](const char* v, const char* key) -> int64_t {
      char* end = nullptr;
      const long long n = std::strtoll(v, &end, 10);
      if (!*v || *end || n < 1) kq::raise<kq::InvalidArgument>("{}: expected a positive integer, got '{}'", key, v);
      return n;
    };
    if (const char* v = val("--shape")) o.shape = v;
    else if (const char* v2 = val("--modes")) o.modes = split(v2);
    else if (const char* v3 = val("--batch")) o.batch = num(v3, "--batch");
    else if (const char* v4 = val("--prompt")) o.prompt = num(v4, "--prompt");
    else if (const char* v5 = val("--decode")) o.decode = num(v5, "--decode");
    else if (const char* v6 = val("--runs")) o.runs = int(num(v6, "--runs"));
    else if (const char* v7 = val("--json")) o.json = v7;
    else if (a == "--quantize-lm-head") o.lm_head = true;
    else if (a == "--no-graphs") o.graphs = false;
    else if (a == "-h" || a == "--help") {
      std::puts("bench_gpu_model [--shape=llama-7b|llama-1b|qwen3-8b|gpt2-124m] [--modes=bf16,fp8,int8,nf4,int4-g128]\n"
                "                [--batch=16] [--prompt=512] [--decode=64] [--runs=5] [--quantize-lm-head]\n"
                "                [--no-graphs] [--json=FILE]");
      std::exit(0);
    } else {
      kq::raise<kq::InvalidArgument>("unknown option '{}' (see --help)", a);
    }
  }
  if (o.modes.empty()) kq::raise<kq::InvalidArgument>("--modes: give at least one mode");
  return o;
}

kq::ModelConfig shape_config(const std::string& s) {
  kq::ModelConfig c;
  c.arch = kq::Arch::Llama;
  c.activation = "silu";
  c.norm_eps = 1e-5;
  c.torch_dtype = "bfloat16";
  c.tie_word_embeddings = false;
  if (s == "llama-7b") {  // Llama-2-7B shapes
    c.vocab_size = 32000, c.hidden_size = 4096, c.intermediate_size = 11008, c.num_layers = 32;
    c.num_heads = c.num_kv_heads = 32, c.head_dim = 128, c.max_positions = 4096;
  } else if (s == "llama-1b") {  // TinyLlama-1.1B shapes
    c.vocab_size = 32000, c.hidden_size = 2048, c.intermediate_size = 5632, c.num_layers = 22;
    c.num_heads = 32, c.num_kv_heads = 4, c.head_dim = 64, c.max_positions = 2048;
  } else if (s == "qwen3-8b") {  // Qwen3-8B shapes: per-head q/k norm, GQA 32/8, vocab 151936, 36 layers
    c.arch = kq::Arch::Qwen3, c.qk_norm = true, c.norm_eps = 1e-6, c.rope_theta = 1e6;
    c.vocab_size = 151936, c.hidden_size = 4096, c.intermediate_size = 12288, c.num_layers = 36;
    c.num_heads = 32, c.num_kv_heads = 8, c.head_dim = 128, c.max_positions = 40960;
  } else if (s == "gpt2-124m") {
    c.arch = kq::Arch::GPT2, c.activation = "gelu_new", c.torch_dtype = "float32", c.tie_word_embeddings = true;
    c.vocab_size = 50257, c.hidden_size = 768, c.intermediate_size = 3072, c.num_layers = 12;
    c.num_heads = c.num_kv_heads = 12, c.head_dim = 64, c.max_positions = 1024;
  } else {
    kq::raise<kq::InvalidArgument>("--shape: unknown shape '{}' (llama-7b, llama-1b, qwen3-8b, gpt2-124m)", s);
  }
  return c;
}

/// Device memory in use now (bytes), from cudaMemGetInfo; 0 without CUDA.
size_t device_used_bytes() {
#ifdef KQ_WITH_CUDA
  size_t free_b = 0, total_b = 0;
  if (cudaMemGetInfo(&free_b, &total_b) != cudaSuccess) return 0;
  return total_b - free_b;
#else
  return 0;
#endif
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n == 0 ? 0 : (n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]));
}

double ms_since(Clock::time_point t) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t).count();
}

struct Variant {
  std::string mode;
  std::unique_ptr<kq::Model> model;
  size_t weight_bytes = 0;     // as the model reports (device bytes of every weight)
  size_t device_bytes = 0;     // cudaMemGetInfo growth while building it
  double build_s = 0;
  std::vector<double> prefill_ms, decode1_ms, decodeB_ms;  // per run
  std::vector<double> decode1_gpu_ms;  // per run: GPU ms of a replayed b=1 step (KQ_CUDA_STEP_TIMING=1; else empty)
  std::vector<double> decode1_argmax_ms;  // per run: host ms of the argmax over the logits, per step
  int64_t replays = 0;
  size_t kv_cache_bytes = 0;  // device bytes of one sequence's KV cache (prompt + decode positions)
};

// One run of every measurement for one model. Logits go to the host every
// step (as a sampler needs them).
void run_once(Variant& v, const Options& o, const std::vector<int32_t>& prompt, std::mt19937& rng) {
  kq::Model& m = *v.model;
  const int64_t vocab = m.config().vocab_size;
  std::uniform_int_distribution<int32_t> tok(0, int32_t(vocab - 1));
  std::vector<float> logits(size_t(vocab * o.batch));

  // Prefill + batch-1 decode on one cache.
  kq::KVCache cache = m.make_cache(o.prompt + o.decode);
  v.kv_cache_bytes = cache.bytes();
  auto t = Clock::now();
  m.forward(prompt, cache, logits.data(), /*all_logits=*/false);
  v.prefill_ms.push_back(ms_since(t));
  int32_t next = tok(rng);
  const int64_t replays0 = m.cuda_graph_replays();
  const double gpu0 = m.cuda_graph_gpu_ms();
  double argmax_ms = 0;
  t = Clock::now();
  for (int64_t i = 0; i < o.decode; ++i) {
    m.forward(std::span<const int32_t>(&next, 1), cache, logits.data(), false);
    const auto a = Clock::now();
    next = int32_t(kq::cpu::argmax(logits.data(), vocab));
    argmax_ms += ms_since(a);
  }
  v.decode1_ms.push_back(ms_since(t) / double(o.decode));
  v.decode1_argmax_ms.push_back(argmax_ms / double(o.decode));
  if (const int64_t r = m.cuda_graph_replays() - replays0; r > 0 && m.cuda_graph_gpu_ms() > gpu0)
    v.decode1_gpu_ms.push_back((m.cuda_graph_gpu_ms() - gpu0) / double(r));

  // Batch-B decode: B sequences prefilled with the same prompt, then decode_batch steps.
  if (o.batch > 1) {
    std::vector<kq::KVCache> caches;
    std::vector<kq::KVCache*> ptrs;
    caches.reserve(size_t(o.batch));
    for (int64_t b = 0; b < o.batch; ++b) {
      caches.push_back(m.make_cache(o.prompt + o.decode));
      m.forward(prompt, caches.back(), nullptr, false);
    }
    for (auto& c : caches) ptrs.push_back(&c);
    std::vector<int32_t> toks(size_t(o.batch));
    for (auto& x : toks) x = tok(rng);
    t = Clock::now();
    for (int64_t i = 0; i < o.decode; ++i) {
      m.decode_batch(toks, ptrs, logits.data());
      for (int64_t b = 0; b < o.batch; ++b) {
        const float* row = logits.data() + b * vocab;
        toks[size_t(b)] = int32_t(kq::cpu::argmax(row, vocab));
      }
    }
    v.decodeB_ms.push_back(ms_since(t) / double(o.decode));
  }
  v.replays = m.cuda_graph_replays();
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const Options o = parse(argc, argv);
    const kq::FP8Info info = kq::get_fp8_info();
    if (!info.cuda_built || !info.device_found) {
      fmt::print(stderr, "bench_gpu_model: no usable GPU: {}\n", info.reason);
      return 2;
    }
    const kq::ModelConfig cfg = shape_config(o.shape);
    if (o.prompt + o.decode > cfg.max_positions)
      kq::raise<kq::InvalidArgument>("--prompt + --decode = {} exceeds the shape's {} positions", o.prompt + o.decode,
                                     cfg.max_positions);
    const kq::ExecContext ctx{kq::Device::CUDA, 0};

    std::vector<Variant> vars;
    for (const std::string& mode : o.modes) {
      Variant v;
      v.mode = mode;
      const size_t before = device_used_bytes();
      const auto t = Clock::now();
      v.model = kq::Model::random_quantized(cfg, 1, ctx, mode, o.lm_head);
      v.model->set_cuda_graphs(o.graphs);
      v.build_s = ms_since(t) / 1000;
      v.device_bytes = device_used_bytes() - before;
      v.weight_bytes = v.model->weight_bytes();
      fmt::print(stderr, "built {} {} in {:.1f} s: {:.2f} GB of weights\n", o.shape, mode, v.build_s,
                 double(v.weight_bytes) / 1e9);
      vars.push_back(std::move(v));
    }

    std::mt19937 rng(7);
    std::uniform_int_distribution<int32_t> tok(0, int32_t(cfg.vocab_size - 1));
    std::vector<int32_t> prompt(size_t(o.prompt));
    for (auto& x : prompt) x = tok(rng);

    // One warm-up run each (captures the graphs, fills cuBLASLt plan caches), then interleaved timed runs.
    for (auto& v : vars) {
      run_once(v, o, prompt, rng);
      v.prefill_ms.clear(), v.decode1_ms.clear(), v.decodeB_ms.clear(), v.decode1_gpu_ms.clear();
      v.decode1_argmax_ms.clear();
    }
    for (int r = 0; r < o.runs; ++r)
      for (auto& v : vars) run_once(v, o, prompt, rng);

    fmt::print("bench_gpu_model: {} (hidden {}, ffn {}, {} layers, {} heads / {} kv heads, vocab {}) on {}\n",
               o.shape, cfg.hidden_size, cfg.intermediate_size, cfg.num_layers, cfg.num_heads, cfg.num_kv_heads,
               cfg.vocab_size, info.device_name);
    fmt::print("prompt {} tokens, decode {} tokens per run, batch {}, {} runs (median), lm_head {}, CUDA graphs {}\n\n",
               o.prompt, o.decode, o.batch, o.runs, o.lm_head ? "quantized" : "BF16", o.graphs ? "on" : "off");
    const size_t kv = vars.front().kv_cache_bytes;
    fmt::print("KV cache (BF16, {} positions): {:.3f} GB per sequence, {:.2f} GB at batch {} (not in GPU mem)\n\n",
               o.prompt + o.decode, double(kv) / 1e9, double(kv) * double(o.batch) / 1e9, o.batch);
    const Variant& base = vars.front();
    const double base_d1 = median(base.decode1_ms);
    // At --batch=1 there is no batch run: its two columns are left out.
    const bool batch_run = o.batch > 1;
    fmt::print("| mode | weights GB | GPU mem GB | prefill tok/s | decode b=1 tok/s | vs {} |{}\n", base.mode,
               batch_run ? fmt::format(" decode b={} tok/s | vs {} |", o.batch, base.mode) : "");
    fmt::print("| --- | ---: | ---: | ---: | ---: | ---: |{}\n", batch_run ? " ---: | ---: |" : "");
    nlohmann::json j;
    j["shape"] = o.shape;
    j["device"] = info.device_name;
    j["prompt"] = o.prompt, j["decode"] = o.decode, j["batch"] = o.batch, j["runs"] = o.runs;
    j["graphs"] = o.graphs, j["quantize_lm_head"] = o.lm_head;
    for (const Variant& v : vars) {
      const double pf = double(o.prompt) / (median(v.prefill_ms) / 1000);
      const double d1 = 1000 / median(v.decode1_ms);
      const double dB = v.decodeB_ms.empty() ? 0 : double(o.batch) * 1000 / median(v.decodeB_ms);
      const double base_dB = base.decodeB_ms.empty() ? 0 : double(o.batch) * 1000 / median(base.decodeB_ms);
      const std::string batch_cols =
          !batch_run ? std::string()
          : dB > 0   ? fmt::format(" {:.0f} | {:.2f}x |", dB, base_dB > 0 ? dB / base_dB : 0.0)
                     : std::string(" - | - |");
      fmt::print("| {} | {:.2f} | {:.2f} | {:.0f} | {:.1f} | {:.2f}x |{}\n", v.mode, double(v.weight_bytes) / 1e9,
                 double(v.device_bytes) / 1e9, pf, d1, base_d1 / median(v.decode1_ms), batch_cols);
      j["results"].push_back({{"mode", v.mode},
                              {"weight_bytes", v.weight_bytes},
                              {"device_bytes", v.device_bytes},
                              {"kv_cache_bytes_per_sequence", v.kv_cache_bytes},
                              {"build_seconds", v.build_s},
                              {"prefill_tokens_per_s", pf},
                              {"decode_b1_tokens_per_s", d1},
                              {"decode_batch_tokens_per_s", dB},
                              {"decode_b1_ms", v.decode1_ms},
                              {"decode_b1_gpu_ms", v.decode1_gpu_ms},
                              {"prefill_ms", v.prefill_ms},
                              {"decode_batch_ms", v.decodeB_ms},
                              {"graph_replays", v.replays}});
    }
    if (!vars.front().decode1_gpu_ms.empty()) {
      fmt::print("\nDecode b=1, one step (KQ_CUDA_STEP_TIMING=1: CUDA events around each graph replay):\n\n");
      fmt::print("| mode | wall ms | GPU ms | host ms (wall - GPU) | of which the caller's argmax |\n");
      fmt::print("| --- | ---: | ---: | ---: | ---: |\n");
      for (const Variant& v : vars) {
        const double wall = median(v.decode1_ms), gpu = median(v.decode1_gpu_ms);
        fmt::print("| {} | {:.3f} | {:.3f} | {:.3f} | {:.3f} |\n", v.mode, wall, gpu, wall - gpu,
                   median(v.decode1_argmax_ms));
      }
    }
    if (!o.json.empty()) kq::io::write_file_atomic(o.json, j.dump(2) + "\n");
    return 0;
  } catch (const std::exception& e) {
    fmt::print(stderr, "bench_gpu_model: {}\n", e.what());
    return 1;
  }
}
