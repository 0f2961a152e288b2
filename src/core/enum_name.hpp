#pragma once
// The one rule of the *_name functions of public enums (dtype_name,
// device_name, precision_format_name, fp8_format_name, ...): a value outside
// the enum (a cast such as FP8Format(7)) is named "unknown(7)", never as a
// valid value, and naming never throws (the names go into error messages).
#include <cstdint>
#include <string_view>

namespace kq {

/// "unknown(<value>)", in storage that lives as long as the program (each
/// distinct value is formatted once; past 4096 of them plain "unknown").
std::string_view unknown_enum_name(int64_t value);

}  // namespace kq
