// `kq quantize` records a checksum per tensor in the folder's config.json, and
// `kq eval` on that folder after one byte of a tensor changed fails (exit 1)
// naming the folder, the file and the tensor; with the record removed (a folder
// of an older kq) the same folder is evaluated as before.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>

#include <nlohmann/json.hpp>

#include "cli/cli_util.hpp"
#include "common/safetensors_edit.hpp"

using kq::testing::demo_model;
using kq::testing::has;
using kq::testing::run_kq;
using kq::testing::TempDir;
namespace fs = std::filesystem;

TEST(CliChecksums, EvalOfAChangedTensorFailsNamingItAndAFolderWithoutTheRecordRuns) {
  TempDir tmp;
  const fs::path out = tmp.path / "q";
  const auto q = run_kq({"quantize", "-m", demo_model().string(), "--mode", "int8", "-o", out.string(), "--threads",
                         "1"});
  ASSERT_EQ(q.status, 0) << q.err;
  const std::vector<std::string> eval{"eval",      "-m", out.string(), "-t", (demo_model() / "demo-eval.txt").string(),
                                      "--threads", "1",  "--quiet"};
  const auto good = run_kq(eval);
  ASSERT_EQ(good.status, 0) << good.err;

  const std::string tensor = "transformer.h.1.mlp.c_fc.qweight";
  kq::testing::EditableSafetensors st(out / "model.safetensors");
  ASSERT_TRUE(st.header.contains(tensor));
  st.data[st.begin(tensor) + 7] ^= 0x01;
  st.write(out / "model.safetensors");
  const auto bad = run_kq(eval);
  EXPECT_EQ(bad.status, 1) << bad.err;
  EXPECT_TRUE(has(bad.err, "checksum mismatch: the file was changed after kq wrote it")) << bad.err;
  EXPECT_TRUE(has(bad.err, out.string() + ": model.safetensors: tensor '" + tensor + "'")) << bad.err;

  nlohmann::json cfg = nlohmann::json::parse(std::ifstream(out / "config.json"));
  ASSERT_EQ(cfg["quantization_config"].erase("checksums"), 1u);
  kq::testing::write_text(out / "config.json", cfg.dump(2));
  const auto unchecked = run_kq(eval);
  EXPECT_EQ(unchecked.status, 0) << unchecked.err;  // one code off by one: runs, as an older kq's folder did
}
