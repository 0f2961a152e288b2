// kq::cli::parse_integer_in, the reader behind every integer option of `kq`:
// decimal only, exact at the limits of int, int64 and uint64.
#include "../../tools/kq/int_option.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <string>

using kq::cli::parse_integer_in;

namespace {

template <typename T>
std::string error_of(const std::string& text, T lo, T hi) {
  T v{};
  return parse_integer_in<T>(text, lo, hi, v);
}

template <typename T>
T value_of(const std::string& text, T lo, T hi) {
  T v{};
  const std::string e = parse_integer_in<T>(text, lo, hi, v);
  EXPECT_EQ(e, "") << text;
  return v;
}

}  // namespace

TEST(IntOption, DecimalOnlyWithSign) {
  EXPECT_EQ(value_of<int>("42", 0, 100), 42);
  EXPECT_EQ(value_of<int>("+42", 0, 100), 42);
  EXPECT_EQ(value_of<int>("010", 0, 100), 10);  // not octal 8 (strtol base 0 would say 8)
  EXPECT_EQ(value_of<int>("-0", 0, 100), 0);
  EXPECT_EQ(value_of<int>("-7", -10, 10), -7);
  EXPECT_EQ(error_of<int>("0x10", 0, 100), "'0x10' is not a number (expected an integer in [0, 100])");
  EXPECT_EQ(error_of<int>(" 5", 0, 100), "' 5' is not a number (expected an integer in [0, 100])");
  EXPECT_EQ(error_of<int>("", 0, 100), "'' is not a number (expected an integer in [0, 100])");
  EXPECT_EQ(error_of<int>("-", 0, 100), "'-' is not a number (expected an integer in [0, 100])");
  EXPECT_EQ(error_of<int>("abc", 0, 100), "'abc' is not a number (expected an integer in [0, 100])");
  EXPECT_EQ(error_of<int>("1.5", 0, 100), "'1.5' is not an integer (expected an integer in [0, 100])");
  EXPECT_EQ(error_of<int>("1e3", 0, 10000), "'1e3' is not an integer (expected an integer in [0, 10000])");
  EXPECT_EQ(error_of<int>("101", 0, 100), "'101' is out of range (expected an integer in [0, 100])");
  EXPECT_EQ(error_of<int>("-1", 0, 100), "'-1' is out of range (expected an integer in [0, 100])");
}

TEST(IntOption, ExactAtTheLimitsOfTheType) {
  constexpr uint64_t u64max = std::numeric_limits<uint64_t>::max();
  EXPECT_EQ(value_of<uint64_t>("18446744073709551615", 0, u64max), u64max);
  EXPECT_EQ(error_of<uint64_t>("18446744073709551616", 0, u64max),
            "'18446744073709551616' is out of range (expected an integer in [0, 18446744073709551615])");
  EXPECT_EQ(error_of<uint64_t>("-1", 0, u64max),
            "'-1' is out of range (expected an integer in [0, 18446744073709551615])");
  EXPECT_EQ(value_of<uint64_t>("-0", 0, u64max), 0u);
  constexpr int64_t i64min = std::numeric_limits<int64_t>::min(),
                    i64max = std::numeric_limits<int64_t>::max();
  EXPECT_EQ(value_of<int64_t>("-9223372036854775808", i64min, i64max), i64min);
  EXPECT_EQ(value_of<int64_t>("9223372036854775807", i64min, i64max), i64max);
  EXPECT_NE(error_of<int64_t>("9223372036854775808", i64min, i64max), "");
  EXPECT_NE(error_of<int64_t>("-9223372036854775809", i64min, i64max), "");
  EXPECT_NE(error_of<int>("2147483648", std::numeric_limits<int>::min(), std::numeric_limits<int>::max()),
            "");
}

TEST(IntOption, ValidatorRewritesTheValueInDecimal) {
  CLI::App app;
  int n = 0;
  app.add_option("--n", n)->transform(kq::cli::integer_in(0, 100));
  app.parse(std::vector<std::string>{"010", "--n"});  // CLI11 takes the vector in reverse order
  EXPECT_EQ(n, 10);
  int m = 0;
  CLI::App app2;
  app2.add_option("--m", m)->transform(kq::cli::integer_in(0, 100));
  try {
    app2.parse(std::vector<std::string>{"abc", "--m"});
    ADD_FAILURE() << "abc was accepted";
  } catch (const CLI::ValidationError& e) {
    EXPECT_STREQ(e.what(), "--m: 'abc' is not a number (expected an integer in [0, 100])");
  }
}
