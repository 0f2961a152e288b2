// Wording of kq info and kq generate: counts take the singular for 1
// ("generated 1 token"), KQ_ISA=generic is shown as what it is (portable C++
// kernels), and a KQ_ISA holding a newline or control characters is printed
// escaped, never raw.
#include <gtest/gtest.h>

#include <string>

#include "cli/cli_util.hpp"

using kq::testing::run_kq;
using kq::testing::ScopedEnv;
using kq::testing::has;

TEST(CliWording, GenerateCountsOneTokenInTheSingular) {
  const auto r = run_kq({"generate", "-m", kq::testing::demo_model().string(), "--prompt", "Hello", "-n", "1",
                         "--ignore-eos"});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(has(r.err, "generated 1 token, ")) << r.err;
  EXPECT_FALSE(has(r.err, " 1 tokens")) << r.err;
  const auto two = run_kq({"generate", "-m", kq::testing::demo_model().string(), "--prompt", "Hello", "-n", "2",
                           "--ignore-eos"});
  ASSERT_EQ(two.status, 0) << two.err;
  EXPECT_TRUE(has(two.err, "generated 2 tokens, ")) << two.err;
}

TEST(CliWording, InfoShowsWhatKqIsaGenericRuns) {
  ScopedEnv env("KQ_ISA", "generic");
  const auto r = run_kq({"info"});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(has(r.out, "kernels:  generic (portable C++ kernels")) << r.out;
  EXPECT_TRUE(has(r.out, "forced with KQ_ISA=generic")) << r.out;
  EXPECT_FALSE(has(r.out, "kernels:  ref")) << r.out;
}

TEST(CliWording, InfoEscapesControlCharactersOfKqIsa) {
  ScopedEnv env("KQ_ISA", "av\nx2\x1b[31m");
  const auto r = run_kq({"info"});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_FALSE(has(r.out, "\x1b")) << r.out;
  EXPECT_FALSE(has(r.err, "\x1b")) << r.err;
  EXPECT_FALSE(has(r.out, "av\nx2")) << r.out;
  EXPECT_TRUE(has(r.out, "KQ_ISA=av\\x0Ax2\\x1B[31m IS NOT USABLE HERE")) << r.out;
}
