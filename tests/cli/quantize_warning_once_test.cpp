// `kq quantize` with a relative --model prints each warning about the model's files once (README: each warning
// appears once per run). Its own early check of the tokenizer files and save_quantized_model's later one named
// the folder differently ("m/tokenizer_config.json" and "/abs/m/tokenizer_config.json"): two messages.
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>

#include "cli/cli_util.hpp"

namespace kq::testing {
namespace {

namespace fs = std::filesystem;

TEST(CliQuantizeWarnings, EachOnceWithARelativeModel) {
  TempDir tmp;
  fs::copy(demo_model(), tmp.path / "m", fs::copy_options::recursive);
  nlohmann::json tc = nlohmann::json::parse(read_all(tmp.path / "m" / "tokenizer_config.json"));
  tc["add_bos_token"] = true;  // warned: Hugging Face adds a BOS that kq's encode() does not
  write_text(tmp.path / "m" / "tokenizer_config.json", tc.dump(2));
  for (const std::string mode : {"int8", "awq"}) {
    SCOPED_TRACE(mode);
    const CliResult r =
        run_kq_in(tmp.path, {"quantize", "-m", "m", "--mode", mode, "-o", "q-" + mode, "--threads", "1"});
    ASSERT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(count(r.err, "\"add_bos_token\": true"), 1u) << r.err;
  }
}

}  // namespace
}  // namespace kq::testing
