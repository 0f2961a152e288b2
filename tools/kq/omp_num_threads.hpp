#pragma once
// OMP_NUM_THREADS as libgomp reads it (env.c, parse_unsigned_long_list): a
// comma-separated list of positive decimal integers (one per nesting level),
// white space around the numbers allowed. A value it does not take ("abc",
// "0", "-1", "4abc", "", a number past unsigned long) makes libgomp print
// "libgomp: Invalid value for environment variable OMP_NUM_THREADS" when it is
// loaded, and keep its default: one thread per CPU the process may run on.
#include <cctype>
#include <cerrno>
#include <cstdlib>

namespace kq::cli {

/// Whether libgomp takes `env`, a set OMP_NUM_THREADS (not null), as its thread
/// counts; false for a value it reports as invalid and ignores.
inline bool omp_num_threads_valid(const char* env) {
  const char* p = env;
  while (std::isspace(static_cast<unsigned char>(*p))) ++p;
  if (*p == '\0') return false;
  for (;;) {
    char* end = nullptr;
    errno = 0;
    const unsigned long value = std::strtoul(p, &end, 10);  // (skips white space, takes a sign, as libgomp's)
    if (errno != 0 || end == p || static_cast<long>(value) <= 0) return false;
    while (std::isspace(static_cast<unsigned char>(*end))) ++end;
    if (*end == '\0') return true;
    if (*end != ',') return false;
    p = end + 1;
  }
}

}  // namespace kq::cli
