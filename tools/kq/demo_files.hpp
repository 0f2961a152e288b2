#pragma once
// Where `kq` finds the shipped demo model and its texts.
#include <filesystem>
#include <string>
#include <system_error>

namespace kq::cli {

/// The shipped demo model, found from where kq is, whatever the current
/// folder (a ./models/gpt2-tiny there is not it): next to an installed kq
/// (PREFIX/share/kernelquant/models/gpt2-tiny, see cmake/install.cmake), else
/// the source tree kq was built from (an absolute path).
inline std::filesystem::path default_model_dir() {
  namespace fs = std::filesystem;
  std::error_code ec;  // (a symbolic link loop on the way: not there, not a throw)
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

/// How messages name an input file: `option` (e.g. "--calibration") when the
/// user gave it, else "the default WHAT (no OPTION given)", so that an error
/// about a default file does not blame an option the user never gave.
inline std::string input_name(const std::string& option, bool given, const std::string& what) {
  return given ? option : "the default " + what + " (no " + option + " given)";
}

}  // namespace kq::cli
