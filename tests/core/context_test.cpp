// resolve_threads (include/kq/context.hpp): OpenMP's default thread count
// above kMaxThreads is refused, not handed to a parallel region.
#include "kq/context.hpp"

#include <gtest/gtest.h>
#include <omp.h>

#include <string>

#include "kq/error.hpp"

// Fresh-user finding: OMP_NUM_THREADS=100000 made the first CPU op crash in
// libgomp (SIGSEGV in GOMP_parallel); ExecContext::threads above kMaxThreads
// was refused, OpenMP's default (what threads = 0 takes) was not.
TEST(ResolveThreads, OpenMpDefaultAboveTheLimitIsRefused) {
  const int saved = omp_get_max_threads();
  omp_set_num_threads(kq::kMaxThreads + 1);  // as OMP_NUM_THREADS=1025 would set it
  try {
    (void)kq::resolve_threads(0);
    ADD_FAILURE() << "resolve_threads(0) accepted " << kq::kMaxThreads + 1;
  } catch (const kq::InvalidArgument& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("OpenMP's default of 1025 threads"), std::string::npos) << m;
    EXPECT_NE(m.find("set OMP_NUM_THREADS to at most 1024"), std::string::npos) << m;
  }
  EXPECT_EQ(kq::resolve_threads(3), 3);  // an explicit count does not take the default
  omp_set_num_threads(kq::kMaxThreads);
  EXPECT_EQ(kq::resolve_threads(0), kq::kMaxThreads);
  omp_set_num_threads(saved);
}
