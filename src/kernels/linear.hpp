#pragma once
// The Linear op interface is public (a Model's LinearSlot::op, LinearTransform):
// include/kq/linear.hpp. This header stays the include of the library's own code.
#include "kq/linear.hpp"
