#include "kernels/cuda/gemm_lt.hpp"

#include "kq/error.hpp"

namespace kq::cuda {
namespace {

void check_dims(const char* op, int64_t ldx, int64_t ldw, int64_t ldy, int64_t M, int64_t N, int64_t K) {
  if (M <= 0 || N <= 0 || K <= 0)
    raise<InvalidArgument>("{}: empty GEMM (M={}, N={}, K={})", op, M, N, K);
  if (ldx < K || ldw < K || ldy < N)
    raise<InvalidArgument>("{}: row strides ldx={}, ldw={}, ldy={} smaller than K={} / N={}", op, ldx, ldw,
                           ldy, K, N);
}

LtGemmKey make_key(LtGemmKind kind, const void* x, int64_t ldx, const void* w, int64_t ldw, const void* y,
                   int64_t ldy, int64_t M, int64_t N, int64_t K) {
  LtGemmKey k;
  k.kind = kind;
  k.m = N;
  k.n = M;
  k.k = K;
  k.lda = ldw;
  k.ldb = ldx;
  k.ldd = ldy;
  k.align_a = pointer_alignment(w);
  k.align_b = pointer_alignment(x);
  k.align_d = pointer_alignment(y);
  return k;
}

LtPlan& need_plan(GpuContext& ctx, const LtGemmKey& key, const char* op, const void* sa = nullptr,
                  const void* sb = nullptr) {
  LtPlan* p = ctx.plan(key, sa, sb);
  if (!p)
    raise<Unsupported>(
        "{}: cuBLASLt has no algorithm on {} (cc {}.{}) for M={}, N={}, K={}, ld(x, W, y)=({}, {}, {}), "
        "alignment(x, W, y)=({}, {}, {}) bytes",
        op, ctx.device().name, ctx.device().cc_major,
        ctx.device().cc_minor, key.n, key.m, key.k, key.ldb, key.lda, key.ldd, key.align_b, key.align_a,
        key.align_d);
  return *p;
}

}  // namespace

void gemm_bf16(GpuContext& ctx, const uint16_t* x, int64_t ldx, const uint16_t* w, int64_t ldw, uint16_t* y,
               int64_t ldy, int64_t M, int64_t N, int64_t K) {
  check_dims("gemm_bf16", ldx, ldw, ldy, M, N, K);
  const LtGemmKey key = make_key(LtGemmKind::BF16, x, ldx, w, ldw, y, ldy, M, N, K);
  need_plan(ctx, key, "gemm_bf16").run(ctx.lt(), w, x, y, nullptr, nullptr, ctx.workspace(),
                                       ctx.workspace_bytes(), ctx.stream());
}

void gemm_fp8(GpuContext& ctx, const uint8_t* x8, int64_t ldx, const uint8_t* w8, int64_t ldw, uint16_t* y,
              int64_t ldy, int64_t M, int64_t N, int64_t K, Fp8Scaling scaling, const float* scale_w,
              const float* scale_x) {
  check_dims("gemm_fp8", ldx, ldw, ldy, M, N, K);
  if (!scale_w || !scale_x) raise<InvalidArgument>("gemm_fp8: scale pointers must not be null");
  const LtGemmKind kind = scaling == Fp8Scaling::Rowwise ? LtGemmKind::FP8Rowwise : LtGemmKind::FP8Tensor;
  const LtGemmKey key = make_key(kind, x8, ldx, w8, ldw, y, ldy, M, N, K);
  // cuBLASLt's A is W (scale_w), its B is x (scale_x).
  need_plan(ctx, key, "gemm_fp8", scale_w, scale_x)
      .run(ctx.lt(), w8, x8, y, scale_w, scale_x, ctx.workspace(), ctx.workspace_bytes(), ctx.stream());
}

bool gemm_fp8_rowwise_supported(GpuContext& ctx, const uint8_t* x8, int64_t ldx, const uint8_t* w8,
                                int64_t ldw, uint16_t* y, int64_t ldy, int64_t M, int64_t N, int64_t K,
                                const float* scale_w, const float* scale_x) {
  check_dims("gemm_fp8", ldx, ldw, ldy, M, N, K);
  const LtGemmKey key = make_key(LtGemmKind::FP8Rowwise, x8, ldx, w8, ldw, y, ldy, M, N, K);
  return ctx.plan(key, scale_w, scale_x) != nullptr;
}

void gemm_fp8_f32(GpuContext& ctx, const uint8_t* x8, int64_t ldx, const uint8_t* w8, int64_t ldw, float* d,
                  int64_t ldd, int64_t M, int64_t N, int64_t K) {
  check_dims("gemm_fp8_f32", ldx, ldw, ldd, M, N, K);
  const LtGemmKey key = make_key(LtGemmKind::FP8F32, x8, ldx, w8, ldw, d, ldd, M, N, K);
  need_plan(ctx, key, "gemm_fp8_f32")
      .run(ctx.lt(), w8, x8, d, nullptr, nullptr, ctx.workspace(), ctx.workspace_bytes(), ctx.stream());
}

void gemm_int8(GpuContext& ctx, const int8_t* x8, int64_t ldx, const int8_t* w8, int64_t ldw, int32_t* d,
               int64_t ldd, int64_t M, int64_t N, int64_t K) {
  check_dims("gemm_int8", ldx, ldw, ldd, M, N, K);
  const LtGemmKey key = make_key(LtGemmKind::INT8, x8, ldx, w8, ldw, d, ldd, M, N, K);
  need_plan(ctx, key, "gemm_int8")
      .run(ctx.lt(), w8, x8, d, nullptr, nullptr, ctx.workspace(), ctx.workspace_bytes(), ctx.stream());
}

}  // namespace kq::cuda
