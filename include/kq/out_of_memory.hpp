#pragma once
// Memory allocations that fail where the library knows what they were for.
#include <memory>
#include <new>
#include <string>

namespace kq {

/// A failed allocation (std::bad_alloc) that says what was being allocated and how many bytes were asked, e.g.
/// "models/x: converting tensor 'model.embed_tokens.weight' [4194304, 256] of model.safetensors from BF16 to F32
/// needs 4.00 GiB: out of memory". Thrown at the few places where one large allocation is made for a named thing
/// (a weight converted at load, the logits buffer of an evaluation); any other allocation that fails stays a plain
/// std::bad_alloc. It is a std::bad_alloc, so code that catches that still catches it; not a kq::Error (the
/// input is not at fault, the machine's memory is).
class OutOfMemory : public std::bad_alloc {
 public:
  explicit OutOfMemory(std::string message) : message_(std::make_shared<const std::string>(std::move(message))) {}
  const char* what() const noexcept override { return message_->c_str(); }

 private:
  std::shared_ptr<const std::string> message_;  // shared: copying the exception never allocates
};

}  // namespace kq
