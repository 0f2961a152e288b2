#include "core/mapped_regions.hpp"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <memory>

namespace kq::core {
namespace {

/// The names of a mapping's regions, sorted by offset; immutable once published.
struct RegionNames {
  std::vector<NamedRange> ranges;
};

/// One mapping. `state`: 0 free, 1 being written (readers skip it), 2 in use.
struct Slot {
  std::atomic<int> state{0};
  std::atomic<uintptr_t> begin{0}, end{0};
  std::atomic<const char*> path{nullptr};
  std::atomic<const RegionNames*> names{nullptr};
};
static_assert(std::atomic<int>::is_always_lock_free && std::atomic<uintptr_t>::is_always_lock_free &&
              std::atomic<const char*>::is_always_lock_free);

constexpr size_t kSlots = 1024;  // mapped files at once (a model has one per shard)
Slot g_slots[kSlots];

Slot* find(const void* base) {
  for (Slot& s : g_slots)
    if (s.state.load() == 2 && s.begin.load() == reinterpret_cast<uintptr_t>(base)) return &s;
  return nullptr;
}

}  // namespace

void register_mapping(const void* base, size_t size, const std::string& path) {
  for (Slot& s : g_slots) {
    int expected = 0;
    if (!s.state.compare_exchange_strong(expected, 1)) continue;
    s.begin.store(reinterpret_cast<uintptr_t>(base));
    s.end.store(reinterpret_cast<uintptr_t>(base) + size);
    s.path.store(path.c_str());
    s.names.store(nullptr);
    s.state.store(2);
    return;
  }
}

void name_mapping_regions(const void* base, std::vector<NamedRange> ranges) {
  Slot* s = find(base);
  if (!s) return;
  auto names = std::make_unique<RegionNames>();
  names->ranges = std::move(ranges);
  std::sort(names->ranges.begin(), names->ranges.end(),
            [](const NamedRange& a, const NamedRange& b) { return a.begin < b.begin; });
  delete s->names.exchange(names.release());
}

void unregister_mapping(const void* base) {
  Slot* s = find(base);
  if (!s) return;
  int expected = 2;
  if (!s->state.compare_exchange_strong(expected, 1)) return;
  delete s->names.exchange(nullptr);
  s->begin.store(0);
  s->end.store(0);
  s->path.store(nullptr);
  s->state.store(0);
}

MappedPlace mapped_file_at(const void* addr) {
  const auto a = reinterpret_cast<uintptr_t>(addr);
  for (Slot& s : g_slots) {
    if (s.state.load() != 2) continue;
    const uintptr_t begin = s.begin.load(), end = s.end.load();
    if (a < begin || a >= end) continue;
    MappedPlace place{s.path.load(), nullptr};
    if (const RegionNames* n = s.names.load()) {
      const size_t off = a - begin;
      // The last region starting at or before `off` (binary search: no allocation).
      size_t lo = 0, hi = n->ranges.size();
      while (lo < hi) {
        const size_t mid = lo + (hi - lo) / 2;
        if (n->ranges[mid].begin <= off) lo = mid + 1;
        else hi = mid;
      }
      if (lo > 0 && off < n->ranges[lo - 1].end) place.region = n->ranges[lo - 1].name.c_str();
    }
    return place;
  }
  return {};
}

void release_mapped_pages(const void* p, size_t n) {
  if (n == 0) return;
  const uintptr_t page = uintptr_t(::sysconf(_SC_PAGESIZE));
  const uintptr_t begin = uintptr_t(p) / page * page;  // a mapping starts on a page and spans whole pages
  const uintptr_t end = (uintptr_t(p) + n + page - 1) / page * page;
  (void)::madvise(reinterpret_cast<void*>(begin), end - begin, MADV_DONTNEED);  // only a hint for the memory
}

}  // namespace kq::core
