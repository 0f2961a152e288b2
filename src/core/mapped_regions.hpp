#pragma once
// The files mapped by MappedFile, for the SIGBUS handler that reports a file
// truncated while it is read (io::exit_on_mapped_file_fault): it is given the
// faulting address and must name the file (and tensor) without allocating or
// locking, so the table is a fixed array of lock-free slots.
#include <cstddef>
#include <string>
#include <vector>

namespace kq::core {

/// What mapped_file_at() found: the file's path and the name of the region
/// (tensor) holding the address; either may be nullptr when unknown.
struct MappedPlace {
  const char* file = nullptr;
  const char* region = nullptr;
};

/// Records that [base, base + size) maps `path` (kept by reference: it must
/// outlive the unregister_mapping() call). A full table records nothing (the
/// message then names no file). Never throws.
void register_mapping(const void* base, size_t size, const std::string& path);

/// Bytes [begin, end) from the start of a mapping, holding `name` (a tensor).
struct NamedRange {
  size_t begin = 0, end = 0;
  std::string name;
};

/// Names the byte ranges of the mapping at `base`. Replaces an earlier
/// naming; ignored when `base` is not registered. Throws std::bad_alloc only.
void name_mapping_regions(const void* base, std::vector<NamedRange> ranges);

/// Forgets the mapping at `base` (before it is unmapped). Never throws.
void unregister_mapping(const void* base);

/// Drops this process's resident pages of the mapped bytes [p, p + n) (a
/// MappedFile's read-only mapping; the pages at either end are dropped whole):
/// for bytes read once and copied, e.g. a BF16 weight converted to F32, which
/// would otherwise count in the resident memory until the file is unmapped.
/// Touched again, they are read again from the file (madvise MADV_DONTNEED on a
/// read-only private mapping). Never throws; does nothing for n == 0.
void release_mapped_pages(const void* p, size_t n);

/// The mapping holding `addr`, if any. Async-signal-safe: lock-free atomic
/// reads only, so a SIGBUS handler may call it.
MappedPlace mapped_file_at(const void* addr);

}  // namespace kq::core
