#pragma once
// The check, before a command reports its results, that no model file it
// mapped changed during the run. A truncated file raises SIGBUS when its
// pages are read (main.cpp: exit_on_mapped_file_fault); one rewritten in
// place with ordinary numbers raises nothing, and the mapped pages show the
// new bytes: `kq eval` printed a wrong perplexity and exited 0.
#include <exception>
#include <string>
#include <vector>

#include "core/mapped_file_identity.hpp"
#include "kq/error.hpp"

namespace kq::cli {

/// Throws FormatError "a model file changed or was truncated while it was
/// being read: <file> (<what changed>); ..." (main: "kq: error: ...", exit
/// status 1, as for a truncation) when a file mapped during the run is not,
/// by device, inode, size and modification time, what it was when it was
/// first mapped (core::changed_mapped_files). `consequence` says what
/// became of the results (default: they are not reported).
inline void check_model_files_unchanged(const std::string& consequence = "the results are not reported") {
  const std::vector<core::ChangedFile> changed = core::changed_mapped_files();
  if (changed.empty()) return;
  raise<FormatError>("a model file changed or was truncated while it was being read: {} ({}); {}",
                     changed.front().path, changed.front().what, consequence);
}

/// Runs `write` (kq quantize's save, which writes tensors straight from the
/// mapped model files). When it throws and a mapped file changed meanwhile,
/// the error is check_model_files_unchanged's with `consequence`, not the
/// write's: write(2) from the pages of a file truncated under it fails with
/// EFAULT instead of raising SIGBUS, and "OUT/model.safetensors: write
/// failed: Bad address" blamed the output. Otherwise rethrows.
template <class Write>
void write_from_model_files(Write&& write, const std::string& consequence) {
  try {
    write();
  } catch (const std::exception&) {
    check_model_files_unchanged(consequence);
    throw;
  }
}

}  // namespace kq::cli
