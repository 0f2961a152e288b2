#include "kq/context.hpp"

#include <omp.h>
#include <sched.h>

#include <thread>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cstdlib>

#include <fmt/format.h>

#include "core/enum_name.hpp"
#include "kq/error.hpp"

namespace kq {

std::string device_name(Device d) {
  switch (d) {
    case Device::CPU: return "cpu";
    case Device::CUDA: return "cuda";
  }
  return std::string(unknown_enum_name(int64_t(d)));
}

Device parse_device(const std::string& s) {
  std::string l = s;
  std::transform(l.begin(), l.end(), l.begin(), [](unsigned char c) { return char(std::tolower(c)); });
  if (l == "cpu") return Device::CPU;
  if (l == "cuda" || l == "gpu") return Device::CUDA;
  raise<InvalidArgument>("parse_device: unknown device '{}' (expected cpu, cuda or gpu = cuda)", s);
}

namespace {

/// The threads OpenMP gives a parallel region started here when asked for n:
/// kq's kernels and oneDNN split their work by the count they ask for, so
/// OpenMP's dynamic adjustment (OMP_DYNAMIC=true: fewer threads on a loaded
/// machine) is turned off for the calling thread, the count is bounded by
/// OMP_THREAD_LIMIT, and it is 1 inside a caller's parallel region that allows
/// no nested one (max-active-levels reached).
int team_size(int n) {
  omp_set_dynamic(0);
  if (omp_get_active_level() >= omp_get_max_active_levels()) return 1;
  return std::max(1, std::min(n, omp_get_thread_limit()));
}

/// OMP_NUM_THREADS's first count when it is a decimal number libgomp takes (leading blanks, digits, then the
/// end, a blank or a ','), saturated at ULLONG_MAX; 0 when unset or not such a number. libgomp keeps it as an
/// unsigned long, and omp_get_max_threads() returns it cut to an int: 4294967297 reads as 1 thread.
unsigned long long omp_num_threads_asked() {
  const char* e = std::getenv("OMP_NUM_THREADS");
  if (!e) return 0;
  while (*e == ' ' || *e == '\t') ++e;
  unsigned long long v = 0;
  const char* d = e;
  for (; *d >= '0' && *d <= '9'; ++d) v = v > (~0ULL - 9) / 10 ? ~0ULL : v * 10 + unsigned(*d - '0');
  const bool ends = *d == '\0' || *d == ',' || *d == ' ' || *d == '\t';
  return d != e && ends ? v : 0;
}

/// Whether set_default_threads() replaced OpenMP's default (OMP_NUM_THREADS then no longer decides it).
std::atomic<bool> g_default_set{false};

}  // namespace

int resolve_threads(int threads) {
  if (threads > 0) return team_size(threads);
  const int n = omp_get_max_threads();
  // Above kMaxThreads a parallel region crashes libgomp (SIGSEGV, or "Thread creation failed"); a count that
  // did not fit an int wraps (OMP_NUM_THREADS=4294967296 gives 0, 4294967297 gives 1): the variable decides.
  const bool env_wrapped = !g_default_set && omp_num_threads_asked() > static_cast<unsigned long long>(kMaxThreads);
  if (n > kMaxThreads || n < 1 || env_wrapped) {
    const char* env = std::getenv("OMP_NUM_THREADS");
    raise<InvalidArgument>(
        "{}: OpenMP's default of {} threads, which ExecContext::threads = 0 takes, is more than {}, the most "
        "ExecContext::threads accepts; set OMP_NUM_THREADS to at most {} (or unset it: one thread per core) or "
        "ExecContext::threads to a count",
        env ? fmt::format("OMP_NUM_THREADS={}", env) : std::string("omp_get_max_threads()"),
        env && (n < 1 || n <= kMaxThreads) ? std::string(env) : std::to_string(n), kMaxThreads, kMaxThreads);
  }
  return team_size(n);
}

void set_default_threads(int threads) {
  if (threads < 1 || threads > kMaxThreads)
    raise<InvalidArgument>("set_default_threads: threads must be in [1, {}], got {}", kMaxThreads, threads);
  omp_set_num_threads(team_size(threads));
  g_default_set = true;
}

unsigned usable_cpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    const int n = CPU_COUNT(&set);
    if (n > 0) return unsigned(n);
  }
  return std::thread::hardware_concurrency();
}

}  // namespace kq
