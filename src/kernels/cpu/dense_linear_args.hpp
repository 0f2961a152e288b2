#pragma once
// The argument checks shared by the dense (unquantized) Linear factories,
// make_linear_f32 and make_linear_w16.
#include <initializer_list>

#include "kq/tensor.hpp"

namespace kq::cpu {

/// Throws InvalidArgument, each message starting with `factory` (e.g.
/// "make_linear_f32"), unless `weight` is a defined 2-D tensor [out >= 1,
/// in >= 1] of one of `dtypes` (named `dtypes_text`, e.g. "BF16 or F16") whose
/// data is aligned to its element size, and `bias` is undefined or F32 [out],
/// 4-byte aligned.
void check_dense_linear_args(const char* factory, const Tensor& weight, std::initializer_list<DType> dtypes,
                             const char* dtypes_text, const Tensor& bias);

}  // namespace kq::cpu
