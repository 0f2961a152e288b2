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

// set_default_threads is OpenMP's default from then on (what --threads N sets for
// the whole run); a count outside [1, kMaxThreads] is refused, naming the range.
TEST(SetDefaultThreads, SetsOpenMpsDefaultAndRefusesOutOfRange) {
  const int saved = omp_get_max_threads();
  kq::set_default_threads(3);
  EXPECT_EQ(omp_get_max_threads(), 3);
  EXPECT_EQ(kq::resolve_threads(0), 3);
  for (int bad : {0, -1, kq::kMaxThreads + 1}) {
    try {
      kq::set_default_threads(bad);
      ADD_FAILURE() << "set_default_threads accepted " << bad;
    } catch (const kq::InvalidArgument& e) {
      EXPECT_NE(std::string(e.what()).find("must be in [1, 1024]"), std::string::npos) << e.what();
    }
  }
  EXPECT_EQ(omp_get_max_threads(), 3);  // a refused count changes nothing
  omp_set_num_threads(saved);
  EXPECT_GE(kq::usable_cpus(), 1u);
}
