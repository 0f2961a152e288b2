// QuantSpec: CLI names, validation, thresholds, exact sizes.
#include <gtest/gtest.h>

#include <set>
#include <string>
#include <utility>
#include <vector>

#include "kq/error.hpp"
#include "kq/quantize.hpp"

namespace kq {
namespace {

TEST(QuantSpec, Presets) {
  QuantSpec s = parse_quant_mode("int8");
  EXPECT_EQ(s.format, PrecisionFormat::INT8);
  EXPECT_EQ(s.weight_scales, ScaleGranularity::PerChannel);
  EXPECT_TRUE(s.quantize_activations);

  s = parse_quant_mode("int8-wo");
  EXPECT_FALSE(s.quantize_activations);
  EXPECT_EQ(s.weight_scales, ScaleGranularity::PerChannel);

  s = parse_quant_mode("int8-pt");
  EXPECT_EQ(s.weight_scales, ScaleGranularity::PerTensor);
  EXPECT_TRUE(s.quantize_activations);

  const QuantSpec nf4 = parse_quant_mode("nf4");
  EXPECT_EQ(nf4.format, PrecisionFormat::NF4);
  EXPECT_EQ(nf4.block_size, 64);
  EXPECT_TRUE(nf4.double_quant);
  EXPECT_EQ(nf4.weight_scales, ScaleGranularity::PerGroup);
  EXPECT_EQ(nf4.compute_dtype, DType::F32);
  EXPECT_EQ(parse_quant_mode("int4"), nf4);
  EXPECT_EQ(parse_quant_mode("NF4"), nf4);

  for (int b : {32, 128, 256}) EXPECT_EQ(parse_quant_mode("nf4-b" + std::to_string(b)).block_size, b);
  EXPECT_FALSE(parse_quant_mode("nf4-nodq").double_quant);
  EXPECT_EQ(parse_quant_mode("nf4-bf16").compute_dtype, DType::BF16);

  s = parse_quant_mode("fp4");
  EXPECT_EQ(s.format, PrecisionFormat::FP4);
  EXPECT_EQ(s.block_size, 64);
  EXPECT_TRUE(s.double_quant);

  // bitsandbytes' FP4 codebook: fp4 with the modifier -bnb, in any order with the others.
  s = parse_quant_mode("fp4-bnb");
  EXPECT_EQ(s.format, PrecisionFormat::FP4_BNB);
  EXPECT_EQ(s.block_size, 64);
  EXPECT_TRUE(s.double_quant);
  EXPECT_EQ(s.weight_scales, ScaleGranularity::PerGroup);
  EXPECT_EQ(parse_quant_mode("FP4-BNB"), s);
  s = parse_quant_mode("fp4-nodq-b128-bnb-bf16");
  EXPECT_EQ(s.format, PrecisionFormat::FP4_BNB);
  EXPECT_EQ(s.block_size, 128);
  EXPECT_FALSE(s.double_quant);
  EXPECT_EQ(s.compute_dtype, DType::BF16);
  EXPECT_EQ(s.name(), "fp4-bnb-b128-nodq-bf16");

  s = parse_quant_mode("int4-g128");
  EXPECT_EQ(s.format, PrecisionFormat::INT4);
  EXPECT_EQ(s.block_size, 128);
  EXPECT_TRUE(s.symmetric);
  EXPECT_FALSE(s.double_quant);
  EXPECT_FALSE(parse_quant_mode("int4-g128-asym").symmetric);

  s = parse_quant_mode("fp8");
  EXPECT_EQ(s.format, PrecisionFormat::FP8_E4M3);
  EXPECT_EQ(s.weight_scales, ScaleGranularity::PerChannel);
  EXPECT_TRUE(s.quantize_activations);
  EXPECT_TRUE(s.fp8_saturate);
  EXPECT_EQ(parse_quant_mode("fp8-e5m2").format, PrecisionFormat::FP8_E5M2);
  EXPECT_FALSE(parse_quant_mode("fp8-wo").quantize_activations);
  EXPECT_EQ(parse_quant_mode("fp8-pt").weight_scales, ScaleGranularity::PerTensor);
  EXPECT_FALSE(parse_quant_mode("fp8-nosat").fp8_saturate);
}

TEST(QuantSpec, EveryValidNameRoundTrips) {
  const std::vector<std::string> names = valid_quant_mode_names();
  // INT8, FP8 E4M3/E5M2, NF4, FP4, FP4_BNB, INT4, AWQ
  EXPECT_EQ(names.size(), 4u + 16u + 16u + 16u + 16u + 16u + 16u);
  EXPECT_EQ(std::set<std::string>(names.begin(), names.end()).size(), names.size());
  for (const std::string& n : names) {
    const QuantSpec s = parse_quant_mode(n);
    EXPECT_EQ(s.name(), n);
    EXPECT_NO_THROW(validate_quant_spec(s));
  }
  for (const char* preset : {"int8", "int8-wo", "int8-pt", "nf4", "nf4-b32", "nf4-b128", "nf4-b256", "nf4-nodq",
                             "fp4", "fp4-bnb", "fp4-bnb-nodq", "fp4-bnb-b256", "int4-g128", "int4-g128-asym", "fp8",
                             "fp8-e5m2", "fp8-wo", "fp8-pt"})
    EXPECT_EQ(parse_quant_mode(preset).name(), preset);
  EXPECT_EQ(parse_quant_mode("int4").name(), "nf4");
  EXPECT_EQ(parse_quant_mode("fp8-e4m3").name(), "fp8");
  EXPECT_EQ(parse_quant_mode("nf4-bf16-b128").name(), "nf4-b128-bf16");
}

TEST(QuantSpec, UnknownNamesListEveryValidName) {
  for (const char* bad : {"", "int3", "int8-asym", "fp8-bf16", "int8-e5m2",
                          "nf4-nodq-nodq", "int4-g128-dq", "fp8-", "nf4-wo", "int8-nosat", "fp4-b64x", "nf4-bnb",
                          "fp4-bnb-bnb", "int4-bnb", "fp8-bnb", "bnb", "fp4-bnb-asym"}) {
    try {
      parse_quant_mode(bad);
      ADD_FAILURE() << "accepted '" << bad << "'";
    } catch (const InvalidArgument& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find(std::string("'") + bad + "'"), std::string::npos) << msg;
      for (const std::string& n : valid_quant_mode_names()) EXPECT_NE(msg.find(n), std::string::npos) << n;
    }
  }
}

// A 4-bit block / group size that is not a power of two in [32, 256] says so,
// as the mode names it ("group size" for int4 and AWQ, "block size" for the
// codebook formats), without C++ field names or the format behind the mode
// ("QuantSpec.block_size 7 for int4" for awq-g7).
TEST(QuantSpec, BadBlockSizeNamesTheModeAndTheSize) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"awq-g7", "group size 7"},     {"int4-g48", "group size 48"}, {"nf4-b48", "block size 48"},
      {"nf4-b512", "block size 512"}, {"fp4-b16", "block size 16"},  {"awq-b64", ""}};
  for (const auto& [name, what] : cases) {
    if (what.empty()) {  // a valid size: parsed
      EXPECT_NO_THROW((void)parse_quant_mode(name)) << name;
      continue;
    }
    try {
      (void)parse_quant_mode(name);
      ADD_FAILURE() << "accepted '" << name << "'";
    } catch (const InvalidArgument& e) {
      const std::string m = e.what();
      EXPECT_NE(m.find(what + " must be a power of two in [32, 256] (mode '" + name + "'"), std::string::npos) << m;
      EXPECT_EQ(m.find("QuantSpec"), std::string::npos) << m;
      EXPECT_EQ(m.find("for int4"), std::string::npos) << m;
    }
  }
}

// Sizes that overflow an int are out of range, not read as 0 (which would
// report "block_size 0"), and a hostile name is shown cut with its length.
// API-user finding: contradictory modifiers were accepted, the last one winning
// ("int4-g128-asym-sym" was int4-g128, "fp8-e5m2-e4m3" fp8).
TEST(QuantSpec, ContradictoryModifiersAreRefused) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"int4-g128-asym-sym", "'asym' and 'sym' both set the zero points"},
      {"fp8-e5m2-e4m3", "'e5m2' and 'e4m3' both set the FP8 format"},
      {"nf4-b32-b64", "'b32' and 'b64' both set the block / group size"},
      {"nf4-nodq-dq", "'nodq' and 'dq' both set the double quantization"},
      {"int8-pt-pc", "'pt' and 'pc' both set the scale granularity"},
      {"fp8-wo-w8a8", "'wo' and 'w8a8' both set the activation quantization"},
      {"nf4-bf16-f32", "'bf16' and 'f32' both set the compute dtype"},
      {"fp8-nosat-sat", "'nosat' and 'sat' both set the saturation"}};
  for (const auto& [name, why] : cases) {
    try {
      (void)parse_quant_mode(name);
      ADD_FAILURE() << "accepted '" << name << "'";
    } catch (const InvalidArgument& e) {
      EXPECT_NE(std::string(e.what()).find(why), std::string::npos) << e.what();
    }
  }
  // One modifier per setting stays valid, in any order.
  EXPECT_EQ(parse_quant_mode("int4-asym-g64").name(), "int4-g64-asym");
  EXPECT_EQ(parse_quant_mode("fp8-wo-e5m2-pt").name(), parse_quant_mode("fp8-e5m2-pt-wo").name());
}

// Fresh-user finding: "int4-b64" was NF4 (nf4) and "int4-g64" integer INT4
// (int4-g64), "int4-bf16" NF4 and "int4-asym" integer INT4, though the help
// said a 4-bit size may be written -bN or -gN. "int4" alone stays nf4 and
// int4 with -gN / -sym / -asym integer INT4; any other int4 name is refused,
// naming the two unambiguous spellings.
TEST(QuantSpec, AmbiguousInt4NamesAreRefusedNamingBothSpellings) {
  const std::vector<std::pair<std::string, std::vector<std::string>>> cases = {
      {"int4-b64", {"nf4-b64 (NF4, blocks of 64, the specification's INT4)", "int4-g64 (integer INT4, groups of 64)"}},
      {"int4-b128", {"nf4-b128 (NF4, blocks of 128", "int4-g128 (integer INT4, groups of 128)"}},
      {"int4-bf16", {"nf4-bf16 (NF4, blocks of 64", "int4-g128-bf16 (integer INT4, groups of 128)"}},
      {"INT4-b32-bf16", {"nf4-b32-bf16 (NF4, blocks of 32", "int4-g32-bf16 (integer INT4, groups of 32)"}},
      {"int4-nodq", {"write nf4-nodq (NF4, blocks of 64"}}};
  for (const auto& [name, want] : cases) {
    try {
      (void)parse_quant_mode(name);
      ADD_FAILURE() << "accepted '" << name << "'";
    } catch (const InvalidArgument& e) {
      const std::string m = e.what();
      EXPECT_NE(m.find("quantization mode '" + name + "' is ambiguous"), std::string::npos) << m;
      for (const std::string& w : want) EXPECT_NE(m.find(w), std::string::npos) << w << " in: " << m;
    }
  }
  // Neither spelling valid: the error says why, as the nf4 name's does (tester finding: a bare "unknown
  // quantization mode" with the list, while nf4-b48 said the block size must be a power of two).
  const std::vector<std::pair<std::string, std::string>> invalid = {
      {"int4-b48", "block size 48 must be a power of two in [32, 256] (mode 'int4-b48'"},
      {"int4-b512", "block size 512 must be a power of two in [32, 256] (mode 'int4-b512'"},
      {"int4-e4m3", "unknown quantization mode 'int4-e4m3' ('e4m3' is not a modifier of int4)"},
      {"int4-bogus", "unknown quantization mode 'int4-bogus' ('bogus' is not a modifier of int4)"},
      {"int4-bf16-bf16", "unknown quantization mode 'int4-bf16-bf16' (repeated 'bf16')"}};
  for (const auto& [name, want] : invalid) {
    try {
      (void)parse_quant_mode(name);
      ADD_FAILURE() << "accepted '" << name << "'";
    } catch (const InvalidArgument& e) {
      EXPECT_NE(std::string(e.what()).find(want), std::string::npos) << want << " in: " << e.what();
    }
  }
  // The unambiguous names are unchanged.
  EXPECT_EQ(parse_quant_mode("int4").name(), "nf4");
  EXPECT_EQ(parse_quant_mode("int4-g64").name(), "int4-g64");
  EXPECT_EQ(parse_quant_mode("int4-sym").name(), "int4-g128");
  EXPECT_EQ(parse_quant_mode("int4-asym").name(), "int4-g128-asym");
  EXPECT_EQ(parse_quant_mode("int4-g64-bf16").name(), "int4-g64-bf16");
  EXPECT_EQ(parse_quant_mode("nf4-g64").name(), parse_quant_mode("nf4-b64").name());
  EXPECT_EQ(parse_quant_mode("awq-b64").name(), "awq-g64");
}

TEST(QuantSpec, HugeSizesAndNamesAreClearErrors) {
  const std::vector<std::string> names = {"int4-g99999999999", "nf4-b4294967296", "awq-g" + std::string(400, '9')};
  for (const std::string& name : names) {
    try {
      (void)parse_quant_mode(name);
      FAIL() << name << " parsed";
    } catch (const InvalidArgument& e) {
      const std::string m = e.what();
      EXPECT_NE(m.find("out of range"), std::string::npos) << m;
      EXPECT_EQ(m.find("block_size 0"), std::string::npos) << m;
      EXPECT_EQ(m.find(std::string(100, '9')), std::string::npos) << "the 400 digits are echoed in full";
    }
  }
  try {
    (void)parse_quant_mode(std::string(5000, 'x'));
    FAIL();
  } catch (const InvalidArgument& e) {
    EXPECT_NE(std::string(e.what()).find("(5000 characters)"), std::string::npos) << e.what();
  }
}

TEST(QuantSpec, ValidationNamesTheField) {
  QuantSpec s = parse_quant_mode("nf4");
  s.block_size = 48;
  EXPECT_THROW(validate_quant_spec(s), InvalidArgument);
  s = parse_quant_mode("int8");
  s.double_quant = true;
  EXPECT_THROW(validate_quant_spec(s), InvalidArgument);
  s = parse_quant_mode("int8");
  s.compute_dtype = DType::BF16;
  EXPECT_THROW(validate_quant_spec(s), InvalidArgument);
  s = parse_quant_mode("nf4");
  s.quantize_activations = true;
  EXPECT_THROW(validate_quant_spec(s), InvalidArgument);
  s.format = PrecisionFormat::FP32;
  try {
    validate_quant_spec(s);
    ADD_FAILURE();
  } catch (const InvalidArgument& e) {
    EXPECT_NE(std::string(e.what()).find("format"), std::string::npos);
  }
  EXPECT_NO_THROW(validate_quant_spec(QuantSpec{}));  // default: INT8 weight-only per-channel
}

// An invalid spec had a valid-looking name: FP32 with NF4's fields was "fp4",
// FP16 with INT8's was "fp4-b0-nodq". name() refuses it, naming the field.
TEST(QuantSpec, NameOfAnInvalidSpecIsRefused) {
  QuantSpec s = parse_quant_mode("nf4");
  s.format = PrecisionFormat::FP32;
  try {
    (void)s.name();
    ADD_FAILURE() << "name() of an FP32 spec did not throw";
  } catch (const InvalidArgument& e) {
    EXPECT_NE(std::string(e.what()).find("QuantSpec.format fp32 is not a quantized weight format"), std::string::npos)
        << e.what();
  }
  s = QuantSpec{};
  s.format = PrecisionFormat::FP16;
  EXPECT_THROW((void)s.name(), InvalidArgument);
  s = parse_quant_mode("nf4");
  s.block_size = 48;  // no nf4-b48 mode
  EXPECT_THROW((void)s.name(), InvalidArgument);
  s = parse_quant_mode("int8");
  s.double_quant = true;  // "int8" would name a spec without it
  EXPECT_THROW((void)s.name(), InvalidArgument);
  EXPECT_EQ(QuantSpec{}.name(), "int8-wo");  // the default spec is valid and named
}

TEST(QuantSpec, FamiliesAndThresholds) {
  EXPECT_EQ(parse_quant_mode("int8").family(), QuantFamily::INT8);
  EXPECT_EQ(parse_quant_mode("int8-wo").family(), QuantFamily::INT8);
  EXPECT_EQ(parse_quant_mode("nf4").family(), QuantFamily::INT4);
  EXPECT_EQ(parse_quant_mode("fp4").family(), QuantFamily::INT4);
  EXPECT_EQ(parse_quant_mode("fp4-bnb").family(), QuantFamily::INT4);
  EXPECT_EQ(parse_quant_mode("int4-g128").family(), QuantFamily::INT4);
  EXPECT_EQ(parse_quant_mode("fp8-e5m2").family(), QuantFamily::FP8);
  EXPECT_EQ(max_ppl_increase_pct(parse_quant_mode("int8")), 2.0);
  EXPECT_EQ(max_ppl_increase_pct(parse_quant_mode("nf4")), 5.0);
  EXPECT_EQ(max_ppl_increase_pct(parse_quant_mode("fp4")), 5.0);
  EXPECT_EQ(max_ppl_increase_pct(parse_quant_mode("fp4-bnb")), 5.0);
  EXPECT_EQ(max_ppl_increase_pct(parse_quant_mode("int4-g128-asym")), 5.0);
  EXPECT_EQ(max_ppl_increase_pct(parse_quant_mode("fp8")), 1.0);
  EXPECT_EQ(quant_family_name(QuantFamily::FP8), "fp8");
}

TEST(QuantSpec, BitsPerWeightExact) {
  // NF4 block 64 with double quantization on 4096 x 4096 (QLoRA's 4.127 bits):
  // codes 4 bits, one 8-bit absmax code per 64, one F32 per 256 blocks, one F32 mean.
  const int64_t n = 4096, k = 4096;
  const size_t blocks = size_t(n * k / 64);
  const size_t want = size_t(n * k / 2) + blocks + 4 * (blocks / 256) + 4;
  EXPECT_EQ(quantized_weight_bytes(parse_quant_mode("nf4"), n, k), want);
  const double bpw = bits_per_weight(parse_quant_mode("nf4"), n, k);
  EXPECT_DOUBLE_EQ(bpw, 4.0 + 8.0 / 64 + 32.0 / (64 * 256) + 32.0 / double(n * k));
  EXPECT_NEAR(bpw, 4.127, 0.0005);
  EXPECT_DOUBLE_EQ(bits_per_weight(parse_quant_mode("fp4"), n, k), bpw);
  EXPECT_DOUBLE_EQ(bits_per_weight(parse_quant_mode("fp4-bnb"), n, k), bpw);
  EXPECT_DOUBLE_EQ(bits_per_weight(parse_quant_mode("nf4-nodq"), n, k), 4.5);
  EXPECT_DOUBLE_EQ(bits_per_weight(parse_quant_mode("int4-g128"), n, k), 4.25);
  EXPECT_DOUBLE_EQ(bits_per_weight(parse_quant_mode("int4-g128-asym"), n, k), 4.3125);
  EXPECT_DOUBLE_EQ(bits_per_weight(parse_quant_mode("int8"), n, k), 8.0 + 32.0 / k);
  EXPECT_DOUBLE_EQ(bits_per_weight(parse_quant_mode("fp8-pt"), n, k), 8.0 + 32.0 / double(n * k));
  // llama-small FFN: K = 688 is 10 full blocks of 64 plus a 48-element tail; only real elements count.
  const int64_t N = 256, K = 688;
  EXPECT_EQ(quantized_weight_bytes(parse_quant_mode("nf4-nodq"), N, K), size_t(N * 344 + N * 11 * 4));
  EXPECT_EQ(quantized_weight_bytes(parse_quant_mode("nf4"), N, K), size_t(N * 344 + N * 11 + 4 * 11 + 4));
  EXPECT_EQ(quantized_weight_bytes(parse_quant_mode("int4-g128-asym"), 3, 33), size_t(3 * 17 + 3 * 4 + 3));
  EXPECT_THROW(quantized_weight_bytes(parse_quant_mode("nf4"), 0, 4), InvalidArgument);
}

TEST(PrecisionFormat, NamesRoundTrip) {
  for (PrecisionFormat f : {PrecisionFormat::FP32, PrecisionFormat::BF16, PrecisionFormat::FP16,
                            PrecisionFormat::INT8, PrecisionFormat::INT4, PrecisionFormat::NF4, PrecisionFormat::FP4,
                            PrecisionFormat::FP8_E4M3, PrecisionFormat::FP8_E5M2, PrecisionFormat::FP4_BNB})
    EXPECT_EQ(parse_precision_format(precision_format_name(f)), f);
  EXPECT_EQ(precision_format_name(PrecisionFormat::FP4_BNB), "fp4_bnb");
  EXPECT_EQ(parse_precision_format("fp4-bnb"), PrecisionFormat::FP4_BNB);
  EXPECT_EQ(parse_precision_format("FP8-E5M2"), PrecisionFormat::FP8_E5M2);
  EXPECT_EQ(parse_precision_format("float32"), PrecisionFormat::FP32);
  EXPECT_THROW(parse_precision_format("int2"), InvalidArgument);
  EXPECT_EQ(scale_granularity_name(ScaleGranularity::PerBlock), "per-group");
}

TEST(FP8Config, ToSpec) {
  FP8Config c;
  c.format = FP8Format::E5M2;
  c.saturate = false;
  c.weight_scales = ScaleGranularity::PerTensor;
  c.quantize_activations = false;
  EXPECT_EQ(fp8_quant_spec(c).name(), "fp8-e5m2-pt-wo-nosat");
  c.weight_scales = ScaleGranularity::PerGroup;
  EXPECT_THROW(fp8_quant_spec(c), InvalidArgument);
}

}  // namespace
}  // namespace kq
