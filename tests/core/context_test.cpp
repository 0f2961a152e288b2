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

// Tester finding (round 16): under OMP_DYNAMIC=true or OMP_THREAD_LIMIT below the
// count asked for, OpenMP gave parallel regions fewer threads than kq's kernels
// (and oneDNN) had split their work for, and perplexities came out wrong
// (38116 for 76.9). resolve_threads is the count a region really gets, and it
// turns dynamic adjustment off; inside a caller's parallel region that allows
// no nested one it is 1 (OMP_THREAD_LIMIT itself is read once at start-up: the
// CLI test CliThreads.FewerThreadsThanAskedGiveTheSamePerplexity covers it).
TEST(ResolveThreads, IsTheTeamOpenMpGives) {
  const bool dynamic = omp_get_dynamic();
  omp_set_dynamic(1);
  EXPECT_EQ(kq::resolve_threads(2), 2);
  EXPECT_FALSE(omp_get_dynamic());
  const int levels = omp_get_max_active_levels();
  omp_set_max_active_levels(1);
  int inside = 0;
#pragma omp parallel num_threads(2)
  {
#pragma omp single
    inside = kq::resolve_threads(2);
  }
  omp_set_max_active_levels(levels);
  omp_set_dynamic(dynamic);
  EXPECT_EQ(inside, 1);
}
