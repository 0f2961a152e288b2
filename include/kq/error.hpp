#pragma once
// Errors thrown at KernelQuant's I/O, API and CLI boundaries. Kernels never throw.
#include <stdexcept>
#include <string>

#include <fmt/format.h>

namespace kq {

/// Base class of every exception KernelQuant throws. The message names the
/// file, tensor or option at fault, e.g. "model.safetensors: tensor 'wte.weight': ...".
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// A file is missing, unreadable, truncated or malformed.
class FormatError : public Error {
 public:
  using Error::Error;
};

/// A caller passed an invalid argument or option (bad shape, unknown mode, ...).
class InvalidArgument : public Error {
 public:
  using Error::Error;
};

/// The request is valid but this build or machine cannot run it (e.g. CUDA in a CPU-only build).
class Unsupported : public Error {
 public:
  using Error::Error;
};

/// Throws E with a {fmt}-formatted message.
template <class E = Error, class... Args>
[[noreturn]] void raise(fmt::format_string<Args...> f, Args&&... args) {
  throw E(fmt::format(f, std::forward<Args>(args)...));
}

}  // namespace kq
