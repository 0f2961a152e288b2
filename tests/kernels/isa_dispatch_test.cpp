// ISA dispatch of the quantized kernels: names, the KQ_ISA override and its
// errors, and that the active ISA is one this CPU can run.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "kernels/cpu/dispatch.hpp"
#include "kq/error.hpp"
#include "kq/info.hpp"

namespace kq::cpu {
namespace {

TEST(IsaDispatch, NamesRoundTrip) {
  for (Isa i : {Isa::Ref, Isa::Avx2, Isa::Avx512Vnni}) EXPECT_EQ(parse_isa(isa_name(i)), i);
  EXPECT_EQ(parse_isa("generic"), Isa::Ref);  // the ops_vec spelling of the baseline
  EXPECT_EQ(isa_name(Isa::Avx512Vnni), "avx512vnni");
}

TEST(IsaDispatch, EveryListedValueParsesAndNothingElse) {
  // The list printed by errors and `kq info` is the list the parser accepts.
  for (const IsaEnvValue& v : isa_env_values()) EXPECT_EQ(parse_isa(v.name), v.isa) << v.name;
  EXPECT_EQ(isa_env_value_names("|"), "ref|avx2|avx512vnni|generic");
  for (Isa i : {Isa::Ref, Isa::Avx2, Isa::Avx512Vnni})
    EXPECT_NE(isa_env_value_names("|").find(isa_name(i)), std::string::npos) << isa_name(i);
  // "avx512" has no kernel table: rejected, and not listed as valid.
  try {
    (void)parse_isa("avx512");
    ADD_FAILURE() << "accepted avx512";
  } catch (const InvalidArgument& e) {
    const std::string msg = e.what();
    const auto list = msg.find("valid values: ");
    ASSERT_NE(list, std::string::npos) << msg;
    EXPECT_EQ(msg.substr(list + 14), isa_env_value_names(", ")) << msg;
  }
}

TEST(IsaDispatch, UnknownNameIsAClearError) {
  for (const char* bad : {"sse9", "AVX2", "avx-2", " avx2", "avx2 ", "avx512"}) {
    try {
      (void)parse_isa(bad);
      ADD_FAILURE() << "accepted " << bad;
    } catch (const InvalidArgument& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find("KQ_ISA"), std::string::npos) << msg;
      EXPECT_NE(msg.find("avx512vnni"), std::string::npos) << msg;  // lists the valid values
    }
  }
  EXPECT_THROW((void)isa_for_env_value("neon"), InvalidArgument);
}

TEST(IsaDispatch, AvailabilityFollowsCpuFeatures) {
  const std::vector<Isa> av = available_isas();
  ASSERT_FALSE(av.empty());
  EXPECT_EQ(av.front(), Isa::Ref);
  EXPECT_TRUE(isa_available(Isa::Ref));
  const CpuFeatures& f = cpu_features();
  EXPECT_EQ(isa_available(Isa::Avx2), f.avx2 && f.fma && f.f16c);
  EXPECT_EQ(best_isa(), av.back());
  EXPECT_EQ(isa_for_env_value(nullptr), best_isa());
  EXPECT_EQ(isa_for_env_value(""), best_isa());
  EXPECT_EQ(isa_for_env_value("ref"), Isa::Ref);
  for (Isa i : av) EXPECT_EQ(quant_kernels(i).isa, i);
}

TEST(IsaDispatch, UnavailableIsaIsAClearErrorNotACrash) {
  for (Isa i : {Isa::Avx2, Isa::Avx512Vnni}) {
    if (isa_available(i)) continue;
    const std::string name(isa_name(i));
    try {
      (void)isa_for_env_value(name.c_str());
      ADD_FAILURE() << "KQ_ISA=" << name << " accepted on a machine without it";
    } catch (const InvalidArgument& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find("KQ_ISA=" + name), std::string::npos) << msg;
      EXPECT_NE(msg.find("available: ref"), std::string::npos) << msg;
    }
    EXPECT_THROW((void)quant_kernels(i), InvalidArgument);
  }
}

TEST(IsaDispatch, StreamReadProbeSumsEveryWord) {
  for (int64_t n : {0, 1, 7, 8, 9, 1000, 4099}) {
    std::vector<uint64_t> v(static_cast<size_t>(n));
    uint64_t want = 0;
    for (int64_t i = 0; i < n; ++i) want += (v[size_t(i)] = uint64_t(i) * 0x9E3779B97F4A7C15ull);  // wraps
    for (Isa i : available_isas()) EXPECT_EQ(quant_kernels(i).stream_read(v.data(), v.size()), want) << isa_name(i) << " n=" << n;
  }
}

TEST(IsaDispatch, ActiveIsaIsAvailable) {
  // Whatever KQ_ISA the test runs under (unset in CI), the choice is valid or a clear error.
  try {
    const std::string a = active_isa();
    EXPECT_TRUE(isa_available(parse_isa(a))) << a;
    EXPECT_EQ(quant_kernels().isa, parse_isa(a));
  } catch (const InvalidArgument& e) {
    EXPECT_NE(std::string(e.what()).find("KQ_ISA"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace kq::cpu
