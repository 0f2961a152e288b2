// `kq quantize --mode awq` on a model with one weight near FLT_MAX (3e38), a
// fresh-user finding: in the first layers it crashed (exit 139, a segfault in
// the AWQ scale search), in h.1.mlp.c_proj it failed with "quantize_weight:
// weight has a non-finite value inf" although the file's weight is finite.
// The int8/nf4/fp8 modes handled it; AWQ now does too (tests/api/awq_overflow_test.cpp).
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "cli/cli_util.hpp"

using kq::testing::poke_first_float;
using kq::testing::run_kq;
using kq::testing::TempDir;
namespace fs = std::filesystem;

TEST(CliAwqOverflow, WeightNearFltMaxQuantizesWithoutCrashOrFalseInf) {
  for (const char* tensor : {"transformer.h.0.attn.c_attn.weight", "transformer.h.0.mlp.c_fc.weight",
                             "transformer.h.1.mlp.c_fc.weight", "transformer.h.1.mlp.c_proj.weight"}) {
    SCOPED_TRACE(tensor);
    TempDir tmp;
    const fs::path big = tmp.path / "big";
    fs::copy(kq::testing::demo_model(), big, fs::copy_options::recursive);
    poke_first_float(big / "model.safetensors", tensor, 3e38f);
    const fs::path out = tmp.path / "big-awq";
    const auto r = run_kq({"quantize", "-m", big.string(), "--mode", "awq", "-o", out.string(), "--threads", "1"});
    EXPECT_EQ(r.status, 0) << r.err;  // was 139 (SIGSEGV: run_kq reports -1) or 1
    EXPECT_EQ(r.err.find("non-finite value inf"), std::string::npos) << r.err;
    EXPECT_TRUE(fs::is_regular_file(out / "model.safetensors"));
  }
}
