#pragma once
// The check, before a command reports its results, that no model file it
// mapped changed during the run. A truncated file raises SIGBUS when its
// pages are read (main.cpp: exit_on_mapped_file_fault); one rewritten in
// place with ordinary numbers raises nothing, and the mapped pages show the
// new bytes: `kq eval` printed a wrong perplexity and exited 0.
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

}  // namespace kq::cli
