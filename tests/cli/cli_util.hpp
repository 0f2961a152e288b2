#pragma once
// Runs the `kq` program (KQ_CLI_BINARY) and captures its exit status, stdout and stderr;
// poke_first_float edits a weight of a copied model in place.
// The helpers of common/test_util.hpp (has, write_text, read_all, demo_model) come with it.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdint>
#include <cstdlib>
#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>

#include "common/test_data.hpp"
#include "common/test_util.hpp"

namespace kq::testing {

struct CliResult {
  int status = -1;  ///< exit status (-1: killed by a signal)
  std::string out, err;
};

/// Single-quotes `s` for /bin/sh.
inline std::string sh_quote(const std::string& s) {
  std::string q(1, '\'');
  for (char c : s) {
    if (c == '\'')
      q.append("'\\''");
    else
      q.push_back(c);
  }
  q.push_back('\'');
  return q;
}

/// Runs `PREFIX kq ARGS <input` in a shell (PREFIX e.g. "cd DIR && " or "ulimit -v N && "), its stdout and stderr
/// captured through files.
inline CliResult run_kq_after(const std::string& prefix, const std::vector<std::string>& args,
                              const std::filesystem::path& input = "/dev/null") {
  TempDir tmp;
  std::string cmd = prefix;
  cmd.append(sh_quote(KQ_CLI_BINARY));
  for (const std::string& a : args) cmd.append(" ").append(sh_quote(a));
  cmd.append(" <").append(sh_quote(input.string())).append(" >").append(sh_quote((tmp.path / "out").string()));
  cmd.append(" 2>").append(sh_quote((tmp.path / "err").string()));
  const int rc = std::system(cmd.c_str());
  CliResult r;
  r.status = WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
  r.out = read_all(tmp.path / "out");
  r.err = read_all(tmp.path / "err");
  return r;
}

/// Runs `kq ARGS` (each argument quoted) in the folder `dir`, stdin from the file `input` (default /dev/null).
/// time_limit_s > 0: a kq that blocks is killed after that many seconds
/// (status 124, as timeout(1) reports it) instead of hanging the test.
inline CliResult run_kq_in(const std::filesystem::path& dir, const std::vector<std::string>& args,
                           int time_limit_s = 0, const std::filesystem::path& input = "/dev/null") {
  // (built with append: GCC 12 warns falsely on "literal" + std::string)
  std::string prefix("cd ");
  prefix.append(sh_quote(dir.string())).append(" && ");
  if (time_limit_s > 0) prefix.append("timeout -s KILL ").append(std::to_string(time_limit_s)).append(" ");
  return run_kq_after(prefix, args, input);
}

/// run_kq_in the source folder (where the tests' relative paths start).
inline CliResult run_kq(const std::vector<std::string>& args, int time_limit_s = 0) {
  return run_kq_in(kq::testing::source_dir(), args, time_limit_s);
}

/// Sets (or, with nullptr, unsets) one environment variable for the lifetime
/// of the object (run_kq's children inherit it), then restores it.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    if (value)
      ::setenv(name, value, 1);
    else
      ::unsetenv(name);
  }
  ~ScopedEnv() {
    if (old_)
      ::setenv(name_.c_str(), old_->c_str(), 1);
    else
      ::unsetenv(name_.c_str());
  }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  std::string name_;
  std::optional<std::string> old_;
};

/// Sets the first `count` elements (all when count < 0) of F32 tensor `name` in the safetensors file `file` to
/// `value`, in place.
inline void fill_floats(const std::filesystem::path& file, const std::string& name, float value,
                        int64_t count = -1) {
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
  const uint64_t begin = h[name]["data_offsets"][0].get<uint64_t>(), end = h[name]["data_offsets"][1].get<uint64_t>();
  const uint64_t elements = count < 0 ? (end - begin) / 4 : std::min<uint64_t>(uint64_t(count), (end - begin) / 4);
  std::string bytes(elements * 4, '\0');
  for (uint64_t i = 0; i < bytes.size(); i += 4) std::memcpy(bytes.data() + i, &value, 4);  // little-endian host
  f.seekp(std::streamoff(8 + n + begin));
  f.write(bytes.data(), std::streamsize(bytes.size()));
  ASSERT_TRUE(f) << file;
}

/// Sets the first element of F32 tensor `name` in the safetensors file `file` to `value`.
inline void poke_first_float(const std::filesystem::path& file, const std::string& name, float value) {
  fill_floats(file, name, value, 1);
}

/// A copy of the demo model in `dir` whose perplexity overflows to inf: token 0's
/// logit is 1e8 at every position (ln_f weight 0, bias 1e4; wte[0][0] 1e4), so the
/// mean NLL is far above 709.78 nats/token while every forward stays finite.
inline void copy_demo_model_with_overflowing_perplexity(const std::filesystem::path& dir) {
  std::filesystem::copy(demo_model(), dir, std::filesystem::copy_options::recursive);
  poke_first_float(dir / "model.safetensors", "transformer.ln_f.weight", 0.0f);
  poke_first_float(dir / "model.safetensors", "transformer.ln_f.bias", 1e4f);
  poke_first_float(dir / "model.safetensors", "transformer.wte.weight", 1e4f);
}

}  // namespace kq::testing
