// Whole-model check of the CPU kernel paths against the scalar reference path:
// the shipped gpt2-tiny quantized in every format family, logits on the first
// 64 tokens of its demo text and perplexity over a few windows must not change
// beyond rounding when the ISA changes. The ISA is chosen once per process
// (KQ_ISA), so ctest runs this test twice (tests/CMakeLists.txt):
//   KQ_ISA=ref  KQ_ISA_RECORD=FILE  -> writes the reference numbers,
//   (default ISA) KQ_ISA_COMPARE=FILE -> recomputes and compares.
// Without either variable (a plain run of test_api) it skips.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "common/test_util.hpp"
#include "kernels/cpu/dispatch.hpp"
#include "kq/eval.hpp"
#include "kq/model.hpp"
#include "kq/optimizer.hpp"
#include "kq/tokenizer.hpp"

using namespace kq;

namespace {

const std::vector<std::string> kModes = {"int8", "int8-wo", "fp8", "fp8-e5m2", "nf4", "fp4", "fp4-bnb",
                                         "int4-g128-asym"};

struct Numbers {
  double ppl = 0;
  std::vector<float> logits;  // [64, vocab] of the first 64 tokens
};

using kq::testing::read_all;

Numbers compute(const std::string& mode) {
  const std::filesystem::path dir = kq::testing::demo_model();  // KQ_SOURCE_DIR honoured (another machine)
  QuantizeOptions qo;
  qo.spec = parse_quant_mode(mode);
  qo.quantize_lm_head = true;
  auto model = load_quantized(dir, qo, ExecContext{Device::CPU, 2});
  const Tokenizer tok = Tokenizer::load(dir);
  const std::vector<int32_t> tokens = tok.encode(read_all(dir / "demo-eval.txt"));
  Numbers n;
  n.ppl = evaluate_perplexity(*model, tokens, /*ctx=*/128, /*max_windows=*/4).ppl;
  const int64_t t = 64, vocab = model->config().vocab_size;
  n.logits.resize(size_t(t * vocab));
  KVCache cache = model->make_cache(t);
  model->forward(std::span<const int32_t>(tokens.data(), size_t(t)), cache, n.logits.data());
  return n;
}

}  // namespace

TEST(IsaConsistency, QuantizedLogitsAndPerplexityMatchTheScalarPath) {
  const char* record = std::getenv("KQ_ISA_RECORD");
  const char* compare = std::getenv("KQ_ISA_COMPARE");
  if (!record && !compare)
    GTEST_SKIP() << "run by ctest as isa_reference_record / isa_reference_compare (KQ_ISA_RECORD / KQ_ISA_COMPARE)";
  if (record) {
    ASSERT_EQ(cpu::selected_isa(), cpu::Isa::Ref) << "record with KQ_ISA=ref";
    std::ofstream f(record, std::ios::binary | std::ios::trunc);
    ASSERT_TRUE(f) << "cannot write " << record;
    for (const std::string& m : kModes) {
      const Numbers n = compute(m);
      const uint64_t count = n.logits.size();
      f.write(reinterpret_cast<const char*>(&n.ppl), sizeof n.ppl);
      f.write(reinterpret_cast<const char*>(&count), sizeof count);
      f.write(reinterpret_cast<const char*>(n.logits.data()), std::streamsize(count * sizeof(float)));
    }
    ASSERT_TRUE(f.good());
    return;
  }
  std::ifstream f(compare, std::ios::binary);
  ASSERT_TRUE(f) << "cannot read " << compare << " (the KQ_ISA=ref run writes it)";
  std::cout << "comparing ISA '" << cpu::isa_name(cpu::selected_isa()) << "' against the scalar reference\n";
  for (const std::string& m : kModes) {
    SCOPED_TRACE("mode " + m);
    double ref_ppl = 0;
    uint64_t count = 0;
    f.read(reinterpret_cast<char*>(&ref_ppl), sizeof ref_ppl);
    f.read(reinterpret_cast<char*>(&count), sizeof count);
    ASSERT_TRUE(f.good() && count > 0 && count < (uint64_t(1) << 28)) << "truncated reference file";
    std::vector<float> ref(count);
    f.read(reinterpret_cast<char*>(ref.data()), std::streamsize(count * sizeof(float)));
    ASSERT_TRUE(f.good());
    const Numbers n = compute(m);
    ASSERT_EQ(n.logits.size(), ref.size());
    double err = 0, norm = 0;
    for (size_t i = 0; i < ref.size(); ++i) {
      err += (double(n.logits[i]) - ref[i]) * (double(n.logits[i]) - ref[i]);
      norm += double(ref[i]) * ref[i];
    }
    // Summation order differs between paths (F32 accumulation); INT8 W8A8
    // accumulates in INT32 and is exact. 1e-5 is far below any format's
    // quantization error (>= 1e-3 here) and far above F32 reordering.
    EXPECT_LT(std::sqrt(err / norm), 1e-5) << "logits relative L2 vs KQ_ISA=ref";
    EXPECT_NEAR(n.ppl, ref_ppl, 1e-5 * ref_ppl) << "perplexity vs KQ_ISA=ref";
  }
}
