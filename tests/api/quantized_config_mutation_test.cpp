// A KernelQuant folder's config.json "quantization_config" is user-editable
// text: every one-place mutation of it (each value replaced by every JSON
// type and out-of-range numbers, each member or element removed;
// tests/common/json_mutations.hpp) either loads a model whose logits are
// bit-identical to the folder's as written (the tensors decide what a layer
// is; a mutation that changes a layer must be refused, not run), or is
// refused with kq::Error, never another exception.
#include <gtest/gtest.h>

#include <cstdio>
#include <exception>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/json_mutations.hpp"
#include "common/test_data.hpp"
#include "common/test_util.hpp"
#include "kq/error.hpp"
#include "kq/model.hpp"
#include "kq/optimizer.hpp"
#include "kq/warning.hpp"

namespace kq {
namespace {
using nlohmann::json;
namespace fs = std::filesystem;

const std::vector<int32_t> kTokens = {11, 400, 7, 2047, 93, 5, 8000, 31};

std::vector<float> logits_of(Model& m) {
  KVCache cache = m.make_cache();
  std::vector<float> out(kTokens.size() * size_t(m.config().vocab_size));
  m.forward(kTokens, cache, out.data());
  return out;
}

void check_mutations(const std::string& mode, const QuantizeOptions& options) {
  SCOPED_TRACE(mode);
  testing::TempDir tmp;
  const fs::path dir = tmp.path / "q";
  {
    auto model = load_quantized(testing::demo_model(), options, ExecContext{Device::CPU, 1});
    save_quantized_model(*model, options, dir);
  }
  const std::vector<float> want = logits_of(*Model::load(dir, ExecContext{Device::CPU, 1}));
  json base;
  {
    std::ifstream in(dir / "config.json");
    base = json::parse(in);
  }
  ASSERT_TRUE(base.contains("quantization_config"));
  // Only quantization_config, and two of its modules (the same code reads each).
  const auto skip = [](const json::json_pointer& p) {
    const std::string s = p.to_string();
    if (!s.empty() && s.rfind("/quantization_config", 0) != 0) return true;
    return p.parent_pointer().to_string() == "/quantization_config/modules" &&
           p.back() != "transformer.h.0.attn.c_attn" && p.back() != "transformer.h.1.mlp.c_proj";
  };
  const auto previous = set_warning_handler([](const std::string&) {});
  struct Restore {
    WarningHandler h;
    ~Restore() { set_warning_handler(std::move(h)); }
  } restore{previous};
  size_t loaded = 0, refused = 0;
  for (const testing::JsonMutation& m : testing::json_mutations(base, 4, 3, skip)) {
    std::ofstream(dir / "config.json", std::ios::trunc) << m.doc.dump(2);
    try {
      auto model = Model::load(dir, ExecContext{Device::CPU, 1});
      EXPECT_TRUE(logits_of(*model) == want) << m.what << ": loaded, but the logits differ from the folder's";
      ++loaded;
    } catch (const Error&) {
      ++refused;
    } catch (const std::exception& e) {
      ADD_FAILURE() << m.what << ": not a kq::Error: " << e.what();
    }
  }
  EXPECT_GT(loaded + refused, 150u);
  EXPECT_GT(loaded, 0u);  // the strict reader refuses nearly every change (a few values equal to the written ones)
  EXPECT_GT(refused, 100u);
  std::printf("%s: %zu mutations loaded the same model, %zu refused\n", mode.c_str(), loaded, refused);
}

TEST(QuantizedConfigMutation, Nf4FolderLoadsTheSameModelOrIsRefused) {
  QuantizeOptions o;
  o.spec = parse_quant_mode("nf4");
  check_mutations("nf4", o);
}

TEST(QuantizedConfigMutation, MixedFolderLoadsTheSameModelOrIsRefused) {
  QuantizeOptions o;
  o.spec = parse_quant_mode("int8");
  o.layer_specs["transformer.h.1.mlp.c_proj"] = parse_quant_mode("fp8");
  o.layer_specs["transformer.h.0.attn.c_attn"] = std::nullopt;  // kept in high precision
  check_mutations("mixed", o);
}

}  // namespace
}  // namespace kq
