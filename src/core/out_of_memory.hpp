#pragma once
// Naming the allocation that ran out of memory (kq::OutOfMemory): the message and the places that rethrow.
#include <cstddef>
#include <new>
#include <string>
#include <utility>

#include "kq/out_of_memory.hpp"

namespace kq {

/// `bytes` in binary units as people read them: "512 B", "1.5 KiB", "3.00 MiB", "4.00 GiB", "1.25 TiB".
/// Never throws (except std::bad_alloc).
std::string byte_size_text(size_t bytes);

/// "<what> needs <byte_size_text(bytes)>: out of memory", the message of an OutOfMemory.
std::string out_of_memory_message(const std::string& what, size_t bytes);

/// The message of a failed allocation `e` with `note` after it: an OutOfMemory's own message (it names its
/// allocation), else "out of memory"; `note` (e.g. " (kq eval holds ...)") is appended as given.
std::string out_of_memory_text(const std::bad_alloc& e, const std::string& note = {});

/// Returns fn(). A std::bad_alloc it throws becomes OutOfMemory(out_of_memory_message(what(), bytes)) (`what` is
/// called only then); an OutOfMemory passes unchanged (it already names a more precise allocation).
template <class Fn, class What>
decltype(auto) naming_allocation(size_t bytes, What&& what, Fn&& fn) {
  try {
    return std::forward<Fn>(fn)();
  } catch (const OutOfMemory&) {
    throw;
  } catch (const std::bad_alloc&) {
    throw OutOfMemory(out_of_memory_message(what(), bytes));
  }
}

}  // namespace kq
