#pragma once
// W4A16 on the GPU: 4-bit weights (NF4, FP4 E2M1, bitsandbytes FP4, INT4
// groups) with BF16 activations and FP32 accumulation.
//  * decode (M <= 16 tokens): w4a16_gemv, our own kernels. M = 1 on large
//    weights: the streaming kernel (w4a16_gemv_stream.cu: one block per SM
//    owning N / SMs rows, x staged in shared memory, items of 8 rows x 256 k
//    streamed through a per-warp register ring). M = 2..16: the batch
//    kernel (w4a16_gemv_batch.cu: one block per SM owning N / SMs rows, its
//    warps split K, each x tile staged once and shared by up to three
//    16-row groups). Otherwise (M = 1 on small weights, or where the others'
//    shared memory does not fit) the split-K kernel (w4a16_kernels.cu): one
//    block per 16 weight rows, its warps split K. Every 4-bit code is read once with
//    16-byte loads, all of a warp's first loads issued up front, turned into
//    BF16 pairs (NF4/FP4/FP4Bnb: a byte -> BF16x2 lookup table in shared memory, one
//    copy per lane so no bank conflicts; INT4: arithmetic, from interleaved
//    nibbles) and fed unscaled to the tensor cores (mma.sync m16n8k16 BF16,
//    the tokens are the n = 8 side, two halves for M > 8); each block's scale
//    is applied to the FP32 partial sums.
//  * prefill (M > 16): w4a16_gemm, a fused GEMM that dequantizes 128 x 64
//    weight tiles to BF16 in shared memory and feeds mma.sync m16n8k16 BF16
//    tensor-core tiles (cp.async multi-stage pipeline); or w4_dequantize_bf16
//    into a scratch BF16 weight and the cuBLASLt BF16 GEMM (w4a16_linear's
//    default today: faster on the H200, see W4PrefillPath).
// Formats: NF4 from QLoRA (Dettmers et al. 2023, blockwise absmax), FP4 = E2M1
// elements (the OCP MX v1.0 element type) with an F32 absmax / 6 block scale
// (not MXFP4, whose blocks of 32 share a power-of-two E8M0 scale), FP4Bnb = bitsandbytes' FP4
// (blockwise absmax normalised to 12, see W4Format), INT4 round-to-nearest
// groups (symmetric, or asymmetric with a zero point per group).
//
// Device layout (W4Weight). This is the CUDA backend's own layout; the CPU
// formats (src/formats/) are converted at upload from unpacked codes:
//   codes   [N, K_pad/2] bytes, K_pad = round_up(K, max(128, block)); codes
//           beyond K are 0. Each row is a stream of 4-bit positions; element k
//           sits at position w4_code_position(k): within each 128-k tile,
//           k = 16s + 4t + i (s = 0..7, t = 0..3, i = 0..3) goes to position
//           32t + 4s + i, so GEMV lane t's 16-byte load holds, for mma step s,
//           four consecutive k of the 16 the step covers (a step never crosses
//           a block). Positions are packed into bytes as follows.
//           NF4/FP4/FP4Bnb ("plain"): byte j holds position 2j in its low nibble and
//           2j+1 in its high nibble. INT4/INT4Asym ("interleaved"): in each
//           little-endian 32-bit word of 8 positions, nibble j (bits 4j..4j+3)
//           holds position 2j and nibble j+4 position 2j+1, j = 0..3.
//   scales  BF16 [N, K_pad/block] (+1 spare element): the multiplier of each
//           block (NF4: absmax; FP4: absmax/6; FP4Bnb: absmax/12; INT4: scale); 0 for padding blocks.
//   zeros   BF16 [N, K_pad/block] (+1 spare, INT4Asym only): integer zero point in [0, 15].
// Weight value: w[n, k] = (codebook[q] − zero) · scale (zero = 0 except INT4Asym).
// Double-quantized absmax values (QLoRA) are expanded to BF16 scales at upload.
// Scales are held in BF16 (relative rounding <= 2^-9). The GEMV multiplies
// unscaled code values (NF4 values rounded to BF16; E2M1, FP4Bnb's and INT4
// values are exact) with FP32 accumulation and applies each block's scale and zero point
// to the FP32 partial sums; the prefill path rounds (value - zero) * scale to
// BF16 once per weight.
#include <array>
#include <cstdint>

#include "kernels/cuda/device_buffer.hpp"
#include "kernels/cuda/gpu_context.hpp"

namespace kq::cuda {

/// The 4-bit codebooks.
enum class W4Format : uint8_t {
  NF4,       ///< QLoRA NormalFloat4, codes 0..15 in ascending value order, w = NF4[q] · absmax
  FP4,       ///< OCP E2M1: bit 3 sign, bits 2..1 exponent (bias 1), bit 0 mantissa;
             ///< magnitudes {0, .5, 1, 1.5, 2, 3, 4, 6}; w = E2M1[q] · scale
  INT4,      ///< symmetric: code c in [0, 15] (offset binary, as src/formats/int4.hpp), w = (c − 8) · scale
  INT4Asym,  ///< asymmetric: q in [0, 15], w = (q − zero) · scale
  /// bitsandbytes' FP4 (src/formats/fp4_bnb.hpp) with its values times 12, so
  /// they are exact in BF16: codes 0..7 {0, 0.0625, 8, 12, 4, 6, 2, 3}, codes
  /// 8..15 their negatives; w = value · scale with scale = absmax / 12 (the CPU
  /// format's kFP4Bnb[q] · absmax; to_cuda divides the CPU scales by 12).
  FP4Bnb,
};

/// Name for messages: "nf4", "fp4", "int4", "int4-asym", "fp4-bnb".
const char* w4_format_name(W4Format f);

/// Value of each 4-bit code before scaling (NF4 constants from the QLoRA paper;
/// FP4Bnb: bitsandbytes' FP4 values times 12, as above).
std::array<float, 16> w4_codebook(W4Format f);

/// A 4-bit weight W [N, K] on the device, in the layout described above.
struct W4Weight {
  W4Format format = W4Format::NF4;
  int64_t N = 0, K = 0;
  int block = 64;                  ///< elements per block / group along K (power of two, 32..256)
  int64_t K_pad = 0;               ///< round_up(K, max(128, block))
  int64_t blocks_pad = 0;          ///< K_pad / block
  DeviceBuffer<uint8_t> codes;     ///< [N, K_pad / 2]
  DeviceBuffer<uint16_t> scales;   ///< BF16 [N, blocks_pad]
  DeviceBuffer<uint16_t> zeros;    ///< BF16 [N, blocks_pad], INT4Asym only (else empty)
  /// FP32 [K] per-input-channel multipliers of x, or empty for none: the op is
  /// then y = W · (x ⊙ x_scale). AWQ (Lin et al., MLSys 2024) stores its
  /// quantized W · diag(s) with x_scale = 1 / s (set_w4_input_scale).
  DeviceBuffer<float> x_scale;
  /// Bytes held on the device, padding included.
  size_t bytes() const { return codes.bytes() + scales.bytes() + zeros.bytes() + x_scale.bytes(); }
};

/// Uploads a 4-bit weight from unpacked host data:
///   codes  [N, K] one code per byte, values 0..15 (host);
///   scales [N, ceil(K / block)] FP32 multipliers (host);
///   zeros  [N, ceil(K / block)] FP32 zero points (integers in [0, 15]), INT4Asym only (else nullptr).
/// Throws InvalidArgument for empty shapes, a block size that is not a power
/// of two in [32, 256], a code > 15, a non-finite scale, a zero point that is
/// not an integer in [0, 15], or zeros given/missing for the wrong format.
W4Weight upload_w4_weight(W4Format format, int64_t N, int64_t K, int block, const uint8_t* codes,
                          const float* scales, const float* zeros = nullptr);

/// Gives `w` per-input-channel multipliers (W4Weight::x_scale): scale FP32
/// [K] on the host, each finite and > 0 (AWQ: 1 / s). Every entry point below
/// then computes W · (x ⊙ scale): the streaming GEMV, the SwiGLU GEMV and
/// w4_dequantize_bf16 apply it inside the kernel (x rounded to BF16 after the
/// multiply, as the activations are; the dequantized weights rounded once),
/// w4a16_linear on every path (a scaled copy of x in scratch where the kernel
/// cannot apply it). Throws InvalidArgument naming the first bad index.
void set_w4_input_scale(W4Weight& w, const float* scale);

/// Launch knobs of the decode GEMV (0 = automatic), for benchmarks and tuning.
struct W4GemvTuning {
  int warps = 0;   ///< split-K kernel: warps per block, 4 (8 tiles per chunk), 8 or 16 (4 tiles, or 2);
                   ///< streaming kernel: warps per block, 16 (ring depth 4), 20 (3), 24 (2 or 3) or 32 (2)
  int tiles = 0;   ///< split-K kernel, warps = 8 or 16: 128-k tiles per warp chunk, 2 or 4 (0 = 4);
                   ///< streaming kernel, 24 warps: ring depth, 2 or 3 (0 = 2)
  int kernel = 0;  ///< 0 = automatic (M = 1: streaming for N * K_pad >= 2^25, else split-K; M >= 2: batch),
                   ///< 1 = split-K, 2 = streaming (M = 1 only; split-K otherwise or where its shared memory
                   ///< would not hold x), 3 = batch (any M; warps 16, 12 or 8; split-K where it does not fit)
};

/// Position of element k in a row's code stream (device layout above):
/// tile base + 32 * ((k % 128 / 4) % 4) + 4 * (k % 128 / 16) + k % 4.
int64_t w4_code_position(int64_t k);

/// Same from the CPU formats' code plane (src/formats/packed4.hpp): packed
/// [N, ceil(K/2)] bytes, element k in byte k/2, low nibble for even k; scales
/// FP32 [N, ceil(K/block)] (double-quantized scales expanded by the caller);
/// zeros U8 [N, ceil(K/block)] for INT4Asym (else nullptr). Throws as upload_w4_weight.
W4Weight upload_w4_weight_packed(W4Format format, int64_t N, int64_t K, int block, const uint8_t* packed,
                                 const float* scales, const uint8_t* zeros = nullptr);

/// Decode GEMV: y[m, n] = BF16(Σ_k x[m, k] · w[n, k]) for 1 <= M <= 16.
/// x: BF16 [M, ldx] (any ldx >= K; 8-byte-aligned rows with ldx % 4 == 0 take
/// the vector path); y: BF16 [M, ldy]. Throws InvalidArgument for bad M/ld,
/// and for a weight with input scales (x_scale) unless M = 1 and the
/// streaming kernel takes it (w4a16_linear handles every case).
void w4a16_gemv(const W4Weight& w, const uint16_t* x, int64_t ldx, int64_t M, uint16_t* y, int64_t ldy,
                cudaStream_t stream, W4GemvTuning tuning = {});

/// Decode GEMV of an MLP's down projection with the SwiGLU folded in, for
/// one token: y[n] = BF16(Σ_k h[k] · w[n, k]) with h[k] = BF16(silu(gate[k]) ·
/// up[k]) computed while the streaming kernel stages its input (the values
/// model_ops' swiglu would store), so no separate SwiGLU kernel runs and
/// gate is left as it is; input scales (x_scale) multiply h. gate, up: BF16 [K]; y: BF16 [N]. Returns false with
/// nothing launched where the streaming kernel cannot take w (its shared
/// memory or 32-bit index limits); then run swiglu and w4a16_gemv.
bool w4a16_gemv_swiglu(const W4Weight& w, const uint16_t* gate, const uint16_t* up, uint16_t* y,
                       cudaStream_t stream);

/// One token's RMSNorm with its residual add (models::Backend::rms_norm; model_ops'
/// rms_norm) as the input of a decode GEMV (w4a16_gemv_rms_norm).
struct W4RmsNormInput {
  float* residual = nullptr;      ///< F32 [K], 16-byte aligned: the residual stream x (x += add is written back)
  const uint16_t* add = nullptr;  ///< BF16 [K], 8-byte aligned, or null: no residual add
  const float* weight = nullptr;  ///< F32 [K], 16-byte aligned: the norm's weight (gain)
  float eps = 0.0f;               ///< added to the mean square
  /// Device word that is 0 between launches (GpuContext::grid_counter()); needed with add: the
  /// blocks count themselves done reading x on it, and the last one writes x += add.
  unsigned* counter = nullptr;
};

/// Decode GEMV of a linear whose input is an RMSNorm, for one token:
/// y[n] = BF16(Σ_k h[k] · w[n, k]) with h = BF16(RMSNorm(x + add) · weight)
/// computed while the streaming kernel stages its input (the same bits as
/// model_ops' rms_norm stores), and x += add written back as rms_norm does;
/// so no separate norm kernel runs, and h is not stored anywhere. Input
/// scales (x_scale) multiply h. y: BF16 [N]. Returns false with nothing
/// launched where the streaming kernel or the norm's vector path cannot take
/// it (K % 4 != 0, K > 16384, misaligned pointers, shared memory or 32-bit
/// index limits); then run rms_norm and w4a16_gemv. Throws InvalidArgument
/// for a null residual, weight or y, or an add without a counter.
bool w4a16_gemv_rms_norm(const W4Weight& w, const W4RmsNormInput& in, uint16_t* y, cudaStream_t stream);

/// Fused prefill GEMM: y[m, n] = BF16(Σ_k x[m, k] · BF16(w[n, k])) for any
/// M >= 1, each weight dequantized to BF16 once per tile in shared memory
/// (the value w4_dequantize_bf16 gives), FP32 accumulation on the tensor cores.
/// x: BF16 [M, ldx], 16-byte-aligned rows (x 16-byte aligned, ldx % 8 == 0,
/// ldx >= K); y: BF16 [M, ldy], ldy >= N. Throws InvalidArgument otherwise
/// (w4a16_linear copies unaligned activations first) and for a weight with
/// input scales (x_scale: w4a16_linear scales x first).
void w4a16_gemm(const W4Weight& w, const uint16_t* x, int64_t ldx, int64_t M, uint16_t* y, int64_t ldy,
                cudaStream_t stream);

/// Dequantizes to BF16: out[n, k] = BF16((codebook[q] − zero) · scale ·
/// x_scale[k]) computed in FP32 (x_scale[k] = 1 when the weight has none), for
/// k < K; out: [N, ldo] with ldo >= K.
void w4_dequantize_bf16(const W4Weight& w, uint16_t* out, int64_t ldo, cudaStream_t stream);

/// How w4a16_linear computes M > kW4GemvMaxM tokens.
enum class W4PrefillPath : uint8_t {
  Auto,         ///< Fused for M <= kW4FusedMaxM, else DequantGemm (the faster on the H200 today)
  Fused,        ///< w4a16_gemm
  DequantGemm,  ///< w4_dequantize_bf16 into ctx's scratch + cuBLASLt BF16 GEMM
};

/// Largest M that w4a16_linear sends to the decode GEMV.
inline constexpr int64_t kW4GemvMaxM = 16;
/// W4PrefillPath::Auto uses the fused GEMM for M <= kW4FusedMaxM: 0 for now,
/// since dequantize + cuBLASLt measured faster at every M from 32 to 2048 on
/// the H200 (docs/GPU.md, "W4A16 prefill").
inline constexpr int64_t kW4FusedMaxM = 0;

/// W4A16 linear: the GEMV for M <= kW4GemvMaxM, else the prefill path chosen
/// by `path`; input scales (x_scale) applied on every path. x: BF16 [M, ldx];
/// y: BF16 [M, ldy]. Throws InvalidArgument for M < 1 or strides smaller than K / N.
void w4a16_linear(GpuContext& ctx, const W4Weight& w, const uint16_t* x, int64_t ldx, int64_t M, uint16_t* y,
                  int64_t ldy, W4PrefillPath path = W4PrefillPath::Auto);

}  // namespace kq::cuda
