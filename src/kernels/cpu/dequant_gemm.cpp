#include "kernels/cpu/dequant_gemm.hpp"

#include "kernels/cpu/linear_f32_kernels.hpp"
#include "kernels/cpu/scratch.hpp"

namespace kq::cpu {
namespace {

/// F32 elements of one dequantized weight panel (16 MiB): big enough that
/// sgemm runs on wide panels, small enough to stay in the outer caches.
constexpr int64_t kPanelElems = int64_t(1) << 22;

/// Rows each thread of the dequantization loop takes at a time.
constexpr int64_t kRowsPerTask = 16;

}  // namespace

void gemm_f32_dequant_panels(const float* x, int64_t M, int64_t N, int64_t K, DequantRowsFn dequant,
                             const void* ctx, const float* bias, float* y, int threads) {
  int64_t rows = kPanelElems / K / kRowsPerTask * kRowsPerTask;
  if (rows < kRowsPerTask) rows = kRowsPerTask;
  if (rows > N) rows = N;
  float* panel = thread_scratch_as<float>(kScratchCall0, size_t(rows * K));
  for (int64_t n0 = 0; n0 < N; n0 += rows) {
    const int64_t nb = N - n0 < rows ? N - n0 : rows;
    const int64_t tasks = (nb + kRowsPerTask - 1) / kRowsPerTask;
#pragma omp parallel for num_threads(threads) schedule(static) if (threads > 1 && nb * K >= (int64_t(1) << 16))
    for (int64_t t = 0; t < tasks; ++t) {
      const int64_t r0 = t * kRowsPerTask, r1 = r0 + kRowsPerTask < nb ? r0 + kRowsPerTask : nb;
      dequant(ctx, n0 + r0, n0 + r1, panel + r0 * K);
    }
    gemm_f32_dnnl_ldy(x, M, panel, nb, K, y + n0, N, threads);
  }
  if (bias)
    for (int64_t m = 0; m < M; ++m)
      for (int64_t n = 0; n < N; ++n) y[m * N + n] += bias[n];
}

}  // namespace kq::cpu
