#pragma once
// Numerically stable softmax and log-sum-exp over F32 rows.
#include <cstdint>

namespace kq::cpu {

/// x ← softmax(x) over n floats, max-subtracted (stable for any finite input).
/// Uses exp_f32 (relative error < 2e-7). n >= 1. Never throws.
void softmax_inplace(float* x, int64_t n);

/// log Σ_i e^{x_i} over n floats: max-subtracted, exponentials in F32
/// (exp_f32), sum and log in double. The basis of log-softmax:
/// log p_i = x_i − log_sum_exp(x). n >= 1. Never throws.
double log_sum_exp(const float* x, int64_t n);

/// Index of the largest element (the first one on ties; NaNs are skipped, 0
/// when every value is NaN). n >= 1.
int64_t argmax(const float* x, int64_t n);

}  // namespace kq::cpu
