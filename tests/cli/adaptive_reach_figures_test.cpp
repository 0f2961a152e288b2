// The reachable reduction of the adaptive modes is given with the same figures everywhere: `kq bench --help`
// and the usage error of a target no model reaches both print adaptive_reduction_limit floored to 2 decimals
// (87.10 % of an F32 checkpoint, 74.20 % of a BF16 / F16 one); --help said "87.1 %" and "74.2 %".
#include <gtest/gtest.h>

#include <string>

#include "cli/cli_util.hpp"

namespace kq::testing {
namespace {

TEST(CliAdaptiveReach, HelpAndErrorGiveTheSameFigures) {
  const CliResult help = run_kq({"bench", "--help"});
  ASSERT_EQ(help.status, 0) << help.err;
  const CliResult err = run_kq({"bench", "--modes", "adaptive-r90"});
  ASSERT_EQ(err.status, 2) << err.err;
  for (const char* figure : {"87.10 %", "74.20 %"}) {
    EXPECT_TRUE(has(help.out, figure)) << figure << "\n" << help.out;
    EXPECT_TRUE(has(err.err, figure)) << figure << "\n" << err.err;
  }
  EXPECT_FALSE(has(help.out, "74.2 %")) << help.out;
  EXPECT_FALSE(has(help.out, "87.1 %")) << help.out;
}

}  // namespace
}  // namespace kq::testing
