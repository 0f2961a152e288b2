#pragma once
// Where `kq` finds the shipped demo model and its texts.
#include <filesystem>
#include <system_error>

namespace kq::cli {

/// The shipped demo model: ./models/gpt2-tiny (a source checkout), else next
/// to an installed kq (PREFIX/share/kernelquant/models/gpt2-tiny, see
/// cmake/install.cmake), else the source tree kq was built from.
inline std::filesystem::path default_model_dir() {
  namespace fs = std::filesystem;
  std::error_code ec;  // (a symbolic link loop on the way: not there, not a throw)
  if (fs::exists(fs::path("models") / "gpt2-tiny" / "config.json", ec)) return fs::path("models") / "gpt2-tiny";
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    const fs::path installed = exe.parent_path().parent_path() / "share" / "kernelquant" / "models" / "gpt2-tiny";
    if (fs::exists(installed / "config.json", ec)) return installed;
  }
  return KQ_DEFAULT_MODEL_DIR;
}

/// AWQ's calibration text: `given` when not empty, else MODEL/demo-calibration.txt
/// when the model folder has one, else the shipped demo model's (plain English,
/// written for this project; not its evaluation text).
inline std::filesystem::path calibration_text(const std::filesystem::path& given,
                                              const std::filesystem::path& model_dir) {
  if (!given.empty()) return given;
  std::error_code ec;
  if (std::filesystem::exists(model_dir / "demo-calibration.txt", ec)) return model_dir / "demo-calibration.txt";
  return default_model_dir() / "demo-calibration.txt";
}

}  // namespace kq::cli
