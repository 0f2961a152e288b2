#pragma once
// NF4, 4-bit NormalFloat (Dettmers et al., "QLoRA: Efficient Finetuning of
// Quantized LLMs", 2023, §3 and Appendix E; the values of bitsandbytes'
// create_normal_map(0.9677083)): 16 quantiles of N(0, 1) normalised to
// [−1, 1], with an exact 0 and asymmetric halves (8 positive, 7 negative).
//
// Block layout: packed4.hpp planes with per-block scale = absmax of the block
// (optionally double-quantized, double_quant.hpp). w ≈ kNF4[code] · absmax.
// Codes are chosen against the scale actually stored (after double
// quantization), so each element decodes to the codebook entry nearest to
// w / ŝ. Code 7 is 0; an all-zero block stores absmax 0 and codes 7.
// Bits per weight at block B: 4 + 32/B, or 4 + 8/B + 32/(256·B) with double quantization.
#include <array>
#include <cstdint>

namespace kq::formats {

/// The NF4 codebook, ascending; index = 4-bit code.
inline constexpr std::array<float, 16> kNF4 = {
    -1.0f,
    -0.6961928009986877f,
    -0.5250730514526367f,
    -0.39491748809814453f,
    -0.28444138169288635f,
    -0.18477343022823334f,
    -0.09105003625154495f,
    0.0f,
    0.07958029955625534f,
    0.16093020141124725f,
    0.24611230194568634f,
    0.33791524171829224f,
    0.44070982933044434f,
    0.5626170039176941f,
    0.7229568362236023f,
    1.0f,
};

/// Code of the NF4 entry nearest to x (x normalised by the block absmax; values
/// beyond ±1 clamp), decided exactly (nearest_index16: midpoints in double).
/// An exact tie goes to the lower code, as bitsandbytes' dQuantizeNF4 does
/// (strict '>' against the midpoints), so kq's codes equal bnb's wherever bnb's
/// thresholds are exact; they differ only for x within half an F32 ulp of the 9
/// midpoints that F32 cannot hold, where bnb compares with the midpoint rounded
/// to F32 and kq keeps the truly nearest entry. NaN gives code 7 (zero).
uint8_t nf4_encode(float x);

}  // namespace kq::formats
