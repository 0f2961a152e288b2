#pragma once
// Thread-count plumbing between ExecContext and OpenMP-based libraries (oneDNN).
#include <omp.h>

namespace kq::cpu {

/// oneDNN (built on the OpenMP runtime) uses omp_get_max_threads() of the
/// calling thread. This sets that to `threads` (when > 0) for the scope's
/// lifetime and restores the previous value afterwards.
class OmpThreadsScope {
 public:
  explicit OmpThreadsScope(int threads) : saved_(omp_get_max_threads()) {
    if (threads > 0 && threads != saved_) omp_set_num_threads(threads);
  }
  ~OmpThreadsScope() {
    if (omp_get_max_threads() != saved_) omp_set_num_threads(saved_);
  }
  OmpThreadsScope(const OmpThreadsScope&) = delete;
  OmpThreadsScope& operator=(const OmpThreadsScope&) = delete;

 private:
  int saved_;
};

}  // namespace kq::cpu
