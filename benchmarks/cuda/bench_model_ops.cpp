// bench_model_ops: GPU timings of the transformer model ops (model_ops.hpp)
// for the Llama-7B shape (d 4096, 32 query heads of 128, kv heads 32 or 8,
// FFN 11008): attention decode at batch 1 / 16 and prefill chunks of 256
// rows, norms, SwiGLU, RoPE.
//
//   bench_model_ops [--quick] [--launch-floor] [--stream-floor]
//
// Method: each op is captured `launches` times into one CUDA graph and the
// graph replayed; median over repetitions of the time per launch (launch gaps
// excluded). Attention rotates over enough per-layer KV caches to exceed the
// L2 several times, as in a real forward pass, and reports the K/V bytes it
// must read once (GB/s) against that.
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "kernels/cuda/cuda_check.hpp"
#include "kernels/cuda/device_buffer.hpp"
#include "kernels/cuda/launch_probe.hpp"
#include "kernels/cuda/model_ops.hpp"
#include "kernels/cuda/pdl.hpp"
#include "kernels/cuda/random_fill.hpp"
#include "kernels/cuda/stream_probe.hpp"

namespace {

using namespace kq::cuda;

/// Median microseconds per launch of f(i), i = 0..launches-1, captured in a graph.
double graph_us(const std::function<void(int)>& f, cudaStream_t s, int launches, int reps) {
  f(0);
  KQ_CUDA_CHECK(cudaStreamSynchronize(s));
  cudaGraph_t g = nullptr;
  cudaGraphExec_t ge = nullptr;
  KQ_CUDA_CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
  for (int i = 0; i < launches; ++i) f(i);
  KQ_CUDA_CHECK(cudaStreamEndCapture(s, &g));
  KQ_CUDA_CHECK(cudaGraphInstantiate(&ge, g, 0));
  cudaEvent_t a, b;
  KQ_CUDA_CHECK(cudaEventCreate(&a));
  KQ_CUDA_CHECK(cudaEventCreate(&b));
  KQ_CUDA_CHECK(cudaGraphLaunch(ge, s));
  std::vector<float> t(static_cast<size_t>(reps));
  for (auto& v : t) {
    KQ_CUDA_CHECK(cudaEventRecord(a, s));
    KQ_CUDA_CHECK(cudaGraphLaunch(ge, s));
    KQ_CUDA_CHECK(cudaEventRecord(b, s));
    KQ_CUDA_CHECK(cudaEventSynchronize(b));
    KQ_CUDA_CHECK(cudaEventElapsedTime(&v, a, b));
  }
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  cudaGraphExecDestroy(ge);
  cudaGraphDestroy(g);
  std::nth_element(t.begin(), t.begin() + reps / 2, t.end());
  return double(t[size_t(reps / 2)]) * 1e3 / launches;
}

void row(const std::string& name, const std::string& shape, double us, double gbs) {
  std::printf("%-40s %-34s %9.2f us %8.1f GB/s\n", name.c_str(), shape.c_str(), us, gbs);
  std::fflush(stdout);
}

/// Attention over `copies` per-layer caches of `seqs` sequences.
/// The cache holds `capacity` positions (0: exactly pos0 + rows_per_seq) and
/// max_len is the capacity, as in a decode step's CUDA graph.
void bench_attention(cudaStream_t s, int seqs, int kv_heads, int64_t rows_per_seq, int64_t pos0, AttentionPath path,
                     int reps, int64_t capacity = 0, int qh = 32, int hd = 128) {
  const int64_t cap = std::max(capacity, pos0 + rows_per_seq), n = seqs * rows_per_seq;
  const size_t cache_elems = size_t(kv_heads) * size_t(cap) * hd;
  const size_t layer_bytes = size_t(seqs) * cache_elems * 2 * 2;
  const int copies = int(std::clamp<size_t>((size_t(256) << 20) / layer_bytes + 1, 1, 32));
  DeviceBuffer<uint16_t> kvmem(size_t(copies) * seqs * cache_elems * 2);
  fill_random_bf16(kvmem.data(), kvmem.size(), 7, 1.0f, s);
  std::vector<DeviceBuffer<uint16_t*>> ptrs;
  std::vector<KVLayerView> views;
  for (int c = 0; c < copies; ++c) {
    std::vector<uint16_t*> kp, vp;
    for (int q = 0; q < seqs; ++q) {
      uint16_t* base = kvmem.data() + (size_t(c) * seqs + q) * cache_elems * 2;
      kp.push_back(base);
      vp.push_back(base + cache_elems);
    }
    ptrs.emplace_back();
    ptrs.back().upload(kp);
    ptrs.emplace_back();
    ptrs.back().upload(vp);
    views.push_back(KVLayerView{ptrs[ptrs.size() - 2].data(), ptrs.back().data(), cap, kv_heads, hd});
  }
  std::vector<int32_t> seq(static_cast<size_t>(n)), pos(static_cast<size_t>(n));
  for (int64_t r = 0; r < n; ++r) seq[size_t(r)] = int32_t(r / rows_per_seq), pos[size_t(r)] = int32_t(pos0 + r % rows_per_seq);
  DeviceBuffer<int32_t> dseq, dpos;
  dseq.upload(seq);
  dpos.upload(pos);
  DeviceBuffer<uint16_t> q(size_t(n) * qh * hd), out(size_t(n) * qh * hd);
  fill_random_bf16(q.data(), q.size(), 3, 1.0f, s);
  DeviceBuffer<uint8_t> ws(std::max<size_t>(1, attention_workspace_bytes(n, qh, hd, cap)));
  const double us = graph_us(
      [&](int i) {
        causal_attention(q.data(), qh * hd, qh, views[size_t(i % copies)], dseq.data(), dpos.data(), n, cap,
                         1.0f / std::sqrt(float(hd)), out.data(), qh * hd, ws.data(), s, path);
      },
      s, 4 * copies, reps);
  // K/V bytes each sequence must read once (its longest row's keys).
  const double bytes = double(seqs) * kv_heads * double(pos0 + rows_per_seq) * hd * 2 * 2;
  const char* pn = path == AttentionPath::Decode ? "decode" : (path == AttentionPath::Prefill ? "prefill" : "auto");
  row(std::string("attention ") + pn + " b" + std::to_string(seqs) + (kv_heads == qh ? " MHA" : " GQA") +
          (hd != 128 ? " hd" + std::to_string(hd) : ""),
      "rows " + std::to_string(n) + " ctx " + std::to_string(pos0 + rows_per_seq) +
          (cap > pos0 + rows_per_seq ? " of " + std::to_string(cap) : "") + " kv_heads " + std::to_string(kv_heads),
      us,
      bytes / (us * 1e-6) / 1e9);
}

void bench_norm(cudaStream_t s, int64_t n, int reps) {
  const int64_t d = 4096;
  DeviceBuffer<float> x(size_t(n * d)), w(static_cast<size_t>(d));
  DeviceBuffer<uint16_t> add(size_t(n * d)), out(size_t(n * d));
  fill_uniform_f32(x.data(), x.size(), 1, -1, 1, s);
  fill_uniform_f32(w.data(), w.size(), 2, 0.5f, 1.5f, s);
  fill_random_bf16(add.data(), add.size(), 3, 0.01f, s);
  const double us = graph_us(
      [&](int) { rms_norm(x.data(), add.data(), d, w.data(), 1e-6f, out.data(), d, n, d, s); }, s, 50, reps);
  row("rms_norm + residual add", "n " + std::to_string(n) + " d 4096", us, double(n * d) * (4 + 4 + 2 + 2) / (us * 1e-6) / 1e9);
}

void bench_mlp_rope(cudaStream_t s, int64_t n, int reps) {
  const int64_t f = 11008;
  DeviceBuffer<uint16_t> g(size_t(n * f)), u(size_t(n * f)), o(size_t(n * f));
  fill_random_bf16(g.data(), g.size(), 4, 1.0f, s);
  fill_random_bf16(u.data(), u.size(), 5, 1.0f, s);
  double us = graph_us([&](int) { swiglu(g.data(), f, u.data(), f, o.data(), f, n, f, s); }, s, 50, reps);
  row("swiglu", "n " + std::to_string(n) + " f 11008", us, double(n * f) * 6 / (us * 1e-6) / 1e9);
  DeviceBuffer<uint16_t> qk(size_t(n) * 8192);
  DeviceBuffer<float> cs(size_t(4096) * 64), sn(size_t(4096) * 64);
  fill_uniform_f32(cs.data(), cs.size(), 6, -1, 1, s);
  fill_uniform_f32(sn.data(), sn.size(), 7, -1, 1, s);
  std::vector<int32_t> pos(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) pos[size_t(i)] = int32_t(100 + i);
  DeviceBuffer<int32_t> dpos;
  dpos.upload(pos);
  fill_random_bf16(qk.data(), qk.size(), 8, 1.0f, s);
  us = graph_us([&](int) { rope(qk.data(), 8192, 32, qk.data() + 4096, 8192, 32, 128, cs.data(), sn.data(), dpos.data(), n, s); },
                s, 50, reps);
  row("rope q+k", "n " + std::to_string(n) + " 32+32 heads of 128", us, double(n) * 8192 * 4 / (us * 1e-6) / 1e9);
}

/// --launch-floor: microseconds per launch of a chain of probe kernels
/// (pdl_wait, one atomic per block) in one graph: the floor each of a decode
/// step's ~260 dependent launches pays however little it computes.
void bench_launch_floor(cudaStream_t s, int reps) {
  DeviceBuffer<uint32_t> counter(64);
  counter.fill_bytes(0, s);
  for (int threads : {32, 256, 1024})
    for (int blocks : {1, 132, 264, 688}) {
      const double us = graph_us([&](int) { launch_probe(blocks, threads, counter.data(), s); }, s, 256, reps);
      std::printf("%-40s %-34s %9.2f us\n", "launch floor (probe chain, PDL if on)",
                  (std::to_string(blocks) + " blocks x " + std::to_string(threads) + " threads").c_str(), us);
    }
}

/// --stream-floor: a Llama-7B decode step's reads (b = 1, 512 positions of
/// context) without its arithmetic, per layer as the 4-bit step runs it: norm,
/// q/k/v weights, RoPE, the layer's K/V rows, o weights, norm, gate/up
/// weights, down weights (one-row kernels read 32 KB in one block); then the
/// final norm and the BF16 lm_head. Timed as (a) one kernel reading all the
/// bytes, (b) one kernel per phase chained with PDL, (c) one persistent kernel
/// with a grid barrier per phase. For weights of 4.125 (INT4-g128), 8.0625
/// (FP8 with per-row scales) and 16 bits per weight.
void bench_stream_floor(cudaStream_t s, int reps) {
  int dev = 0, sms = 0;
  KQ_CUDA_CHECK(cudaGetDevice(&dev));
  KQ_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
  const uint64_t d = 4096, ffn = 11008, layers = 32, vocab = 32000, ctx = 512;
  auto round16 = [](double b) { return (uint64_t(b) + 15) / 16 * 16; };
  struct Mode {
    const char* name;
    double bits;
  };
  std::vector<std::vector<StreamPhase>> plans;
  uint64_t max_bytes = 0;
  const Mode modes[] = {{"INT4-g128", 4.125}, {"FP8", 8.0625}, {"BF16", 16}};
  for (const Mode& m : modes) {
    std::vector<StreamPhase> ph;
    uint64_t off = 0;
    auto add = [&](uint64_t bytes, bool one) {
      ph.push_back({off, bytes, one});
      off += bytes;
    };
    auto w = [&](uint64_t n, uint64_t k) { return round16(double(n * k) * m.bits / 8); };
    for (uint64_t l = 0; l < layers; ++l) {
      add(32768, true), add(w(3 * d, d), false), add(32768, true), add(ctx * d * 2 * 2, false);
      add(w(d, d), false), add(32768, true), add(w(2 * ffn, d), false), add(w(d, ffn), false);
    }
    add(32768, true), add(vocab * d * 2, false);
    max_bytes = std::max(max_bytes, off);
    plans.push_back(std::move(ph));
  }
  DeviceBuffer<uint8_t> buf(max_bytes);
  buf.fill_bytes(0x5a, s);
  DeviceBuffer<uint32_t> sink(static_cast<size_t>(sms)), counter(1);
  sink.fill_bytes(0, s);
  std::printf("stream floor: a Llama-7B b=1 decode step's reads (512 positions), %d blocks x 768 threads\n", sms);
  for (size_t i = 0; i < plans.size(); ++i) {
    for (bool fold : {false, true}) {
      // fold: the one-block phases left out (done redundantly by every block of the next phase in a fused design)
      std::vector<StreamPhase> ph;
      for (const StreamPhase& p : plans[i])
        if (!(fold && p.one_block)) ph.push_back(p);
      const uint64_t total = plans[i].back().offset + plans[i].back().bytes;
      const StreamPhase all{0, total, false};
      DeviceBuffer<StreamPhase> dph(ph.size());
      KQ_CUDA_CHECK(
          cudaMemcpyAsync(dph.data(), ph.data(), ph.size() * sizeof(StreamPhase), cudaMemcpyHostToDevice, s));
      for (int depth : {4, 12}) {
        const double one = graph_us(
            [&](int) { stream_probe_launched(buf.data(), &all, 1, sms, depth, sink.data(), s); }, s, 2, reps);
        const double chain = graph_us(
            [&](int) { stream_probe_launched(buf.data(), ph.data(), ph.size(), sms, depth, sink.data(), s); }, s, 2,
            reps);
        const double pers = graph_us(
            [&](int) {
              stream_probe_persistent(buf.data(), dph.data(), int(ph.size()), sms, depth, counter.data(), sink.data(),
                                      s);
            },
            s, 2, reps);
        uint32_t s0 = 0;
        KQ_CUDA_CHECK(cudaMemcpy(&s0, sink.data(), sizeof(s0), cudaMemcpyDeviceToHost));
        std::printf("%-10s %6.3f GB, %3zu phases, depth %2d: one kernel %7.1f us (%5.0f GB/s) | a kernel per phase "
                    "%7.1f us | persistent %7.1f us%s\n",
                    modes[i].name, double(total) / 1e9, ph.size(), depth, one, double(total) / (one * 1e3), chain,
                    pers, s0 == 0xdeadbeefu ? " (BARRIER TIMED OUT: not all blocks resident)" : "");
        std::fflush(stdout);
      }
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  bool quick = false, launch_floor = false, stream_floor = false;
  for (int i = 1; i < argc; ++i) {
    quick |= std::strcmp(argv[i], "--quick") == 0;
    launch_floor |= std::strcmp(argv[i], "--launch-floor") == 0;
    stream_floor |= std::strcmp(argv[i], "--stream-floor") == 0;
  }
  const int reps = quick ? 5 : 20;
  try {
    cudaStream_t s;
    KQ_CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    if (stream_floor) {
      std::printf("PDL %s (KQ_CUDA_PDL=0 turns it off)\n", pdl_enabled() ? "on" : "off");
      bench_stream_floor(s, reps);
      KQ_CUDA_CHECK(cudaStreamDestroy(s));
      return 0;
    }
    if (launch_floor) {
      std::printf("PDL %s (KQ_CUDA_PDL=0 turns it off)\n", pdl_enabled() ? "on" : "off");
      bench_launch_floor(s, reps);
      KQ_CUDA_CHECK(cudaStreamDestroy(s));
      return 0;
    }
    for (int kvh : {32, 8}) {
      bench_attention(s, 1, kvh, 1, 511, AttentionPath::Decode, reps);
      bench_attention(s, 16, kvh, 1, 511, AttentionPath::Decode, reps);
      bench_attention(s, 1, kvh, 1, 2047, AttentionPath::Decode, reps);
      bench_attention(s, 1, kvh, 1, 511, AttentionPath::Decode, reps, 4096);  // a cache sized for the whole context
      bench_attention(s, 1, kvh, 256, 256, AttentionPath::Prefill, reps);
      bench_attention(s, 1, kvh, 256, 0, AttentionPath::Prefill, reps);
    }
    bench_attention(s, 1, 32, 256, 256, AttentionPath::Decode, reps);
    // Gemma 3 1B's attention (4 query heads of 256 over 1 kv head): a 512-token prefill chunk, both paths.
    for (AttentionPath p : {AttentionPath::Prefill, AttentionPath::Decode})
      bench_attention(s, 1, 1, 512, 0, p, reps, 0, 4, 256);
    for (int64_t n : {1, 16, 256}) bench_norm(s, n, reps);
    for (int64_t n : {1, 16}) bench_mlp_rope(s, n, reps);
    KQ_CUDA_CHECK(cudaStreamDestroy(s));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_model_ops: %s\n", e.what());
    return 1;
  }
  return 0;
}
