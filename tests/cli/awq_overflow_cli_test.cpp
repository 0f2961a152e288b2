// `kq quantize --mode awq` on a model with one weight near FLT_MAX (3e38), a
// fresh-user finding: in the first layers it crashed (exit 139, a segfault in
// the AWQ scale search), in h.1.mlp.c_proj it failed with "quantize_weight:
// weight has a non-finite value inf" although the file's weight is finite.
// The int8/nf4/fp8 modes handled it; AWQ now does too (tests/api/awq_overflow_test.cpp).
// Where the weight makes the calibration forward's activations non-finite
// (tester round 18, finding 4: AWQ then printed "RTN error nan / AWQ error
// nan" per layer and wrote a folder quantized from NaN statistics, exit 0),
// AWQ refuses, naming the first layer whose inputs were not finite, and
// writes nothing.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>

#include "cli/cli_util.hpp"

using kq::testing::poke_first_float;
using kq::testing::run_kq;
using kq::testing::TempDir;
namespace fs = std::filesystem;

TEST(CliAwqOverflow, WeightNearFltMaxQuantizesOrRefusesNonFiniteCalibrationInputs) {
  // The poked tensor and the layer whose calibration inputs it makes non-finite ("" = none: lm_head is not AWQ's).
  for (const auto& [tensor, layer] :
       {std::pair{"transformer.h.0.attn.c_attn.weight", "transformer.h.0.attn.c_proj"},
        std::pair{"transformer.h.0.mlp.c_fc.weight", "transformer.h.0.mlp.c_proj"},
        std::pair{"transformer.h.1.mlp.c_fc.weight", "transformer.h.1.mlp.c_proj"},
        std::pair{"transformer.h.1.mlp.c_proj.weight", ""}}) {
    SCOPED_TRACE(tensor);
    TempDir tmp;
    const fs::path big = tmp.path / "big";
    fs::copy(kq::testing::demo_model(), big, fs::copy_options::recursive);
    poke_first_float(big / "model.safetensors", tensor, 3e38f);
    const fs::path out = tmp.path / "big-awq";
    const auto r = run_kq({"quantize", "-m", big.string(), "--mode", "awq", "-o", out.string(), "--threads", "1"});
    EXPECT_EQ(r.err.find("non-finite value inf"), std::string::npos) << r.err;
    if (std::string(layer).empty()) {
      EXPECT_EQ(r.status, 0) << r.err;  // was 139 (SIGSEGV: run_kq reports -1) or 1
      EXPECT_TRUE(fs::is_regular_file(out / "model.safetensors"));
      continue;
    }
    EXPECT_EQ(r.status, 1) << r.err;  // was 0, with "RTN error nan / AWQ error nan" lines
    EXPECT_NE(r.err.find("kq: error: AWQ calibration: the model's forward pass over the calibration text produced "
                         "non-finite values (inf or NaN) in the inputs of layer '" +
                         std::string(layer) + "'"),
              std::string::npos)
        << r.err;
    EXPECT_EQ(r.out.find("error nan"), std::string::npos) << r.out;
    EXPECT_FALSE(fs::exists(out));
    EXPECT_EQ(std::distance(fs::directory_iterator(tmp.path), fs::directory_iterator()), 1);  // no staging folder
  }
}
