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

using kq::testing::run_kq;
using kq::testing::TempDir;
namespace fs = std::filesystem;

namespace {

/// Sets the first element of F32 tensor `name` in the safetensors file `file` to `value`.
void poke_first_float(const fs::path& file, const std::string& name, float value) {
  std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
  ASSERT_TRUE(f) << file;
  unsigned char len8[8];
  f.read(reinterpret_cast<char*>(len8), 8);
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | len8[i];
  std::string header(n, '\0');
  f.read(header.data(), std::streamsize(n));
  const nlohmann::json h = nlohmann::json::parse(header);
  ASSERT_TRUE(h.contains(name)) << name;
  ASSERT_EQ(h[name]["dtype"], "F32");
  const uint64_t off = 8 + n + h[name]["data_offsets"][0].get<uint64_t>();
  char bytes[4];
  std::memcpy(bytes, &value, 4);  // little-endian host (x86-64), as the file
  f.seekp(std::streamoff(off));
  f.write(bytes, 4);
  ASSERT_TRUE(f) << file;
}

}  // namespace

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
