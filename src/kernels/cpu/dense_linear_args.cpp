#include "kernels/cpu/dense_linear_args.hpp"

#include <algorithm>
#include <cstdint>

#include "kq/error.hpp"

namespace kq::cpu {

void check_dense_linear_args(const char* factory, const Tensor& weight, std::initializer_list<DType> dtypes,
                             const char* dtypes_text, const Tensor& bias) {
  if (!weight.defined() || std::find(dtypes.begin(), dtypes.end(), weight.dtype()) == dtypes.end() ||
      weight.ndim() != 2)
    raise<InvalidArgument>("{}: weight must be a 2-D {} tensor [out, in], got {} {}", factory, dtypes_text,
                           weight.defined() ? dtype_name(weight.dtype()) : "undefined",
                           weight.defined() ? shape_str(weight.shape()) : "");
  if (weight.dim(0) < 1 || weight.dim(1) < 1)
    raise<InvalidArgument>("{}: empty weight {}", factory, shape_str(weight.shape()));
  const size_t align = dtype_size(weight.dtype());
  if (reinterpret_cast<uintptr_t>(weight.raw()) % align != 0)
    raise<InvalidArgument>("{}: weight data is not {}-byte aligned", factory, align);
  if (bias.defined()) {
    if (bias.dtype() != DType::F32 || bias.ndim() != 1 || bias.dim(0) != weight.dim(0))
      raise<InvalidArgument>("{}: bias must be F32 [{}], got {} {}", factory, weight.dim(0), dtype_name(bias.dtype()),
                             shape_str(bias.shape()));
    if (reinterpret_cast<uintptr_t>(bias.raw()) % alignof(float) != 0)
      raise<InvalidArgument>("{}: bias data is not 4-byte aligned", factory);
  }
}

}  // namespace kq::cpu
