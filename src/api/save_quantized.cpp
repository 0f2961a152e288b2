// `kq quantize`: writing a KernelQuant quantized model folder (layout in include/kq/optimizer.hpp).
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <map>
#include <set>

#include <nlohmann/json.hpp>

#include "io/atomic_dir.hpp"
#include "io/atomic_file.hpp"
#include "io/file_kind.hpp"
#include "io/json_strict.hpp"
#include "io/safetensors.hpp"
#include "kernels/linear.hpp"
#include "kernels/quantized_linear.hpp"
#include "kq/error.hpp"
#include "kq/optimizer.hpp"

namespace kq {
namespace {

namespace fs = std::filesystem;

/// Files of a Hugging Face folder that travel unchanged with the weights.
constexpr const char* kSideFiles[] = {"vocab.json", "merges.txt", "tokenizer.json", "tokenizer_config.json",
                                      "special_tokens_map.json", "generation_config.json"};

/// The tensor-name prefix of a module in the source files: GPT-2 slot names
/// always carry "transformer." but hub checkpoints store bare names.
std::string file_prefix(const std::string& module, bool bare_gpt2) {
  constexpr std::string_view kT = "transformer.";
  if (bare_gpt2 && module.starts_with(kT)) return module.substr(kT.size());
  return module;
}

}  // namespace

void check_quantized_output(const fs::path& out, const fs::path& src, bool overwrite) {
  std::error_code ec;
  if (out.empty()) raise<InvalidArgument>("--out is empty: give the folder to write");
  fs::path full = fs::absolute(out, ec).lexically_normal();
  if (full.filename().empty()) full = full.parent_path();  // "q/" names the folder q, as in AtomicDir
  const fs::path parent = full.parent_path();
  // Missing, or a file on the way ("'notes.txt' is not a directory").
  if (const auto why = io::why_not_folder(parent))
    raise<InvalidArgument>("--out '{}': cannot create it: {}", out.string(), *why);
  if (::access(parent.c_str(), W_OK | X_OK) != 0)
    raise<InvalidArgument>("--out '{}': cannot create it in '{}' ({})", out.string(), parent.string(),
                           std::strerror(errno));
  if (fs::exists(fs::symlink_status(out, ec)) && !fs::is_directory(out, ec))
    raise<InvalidArgument>("--out '{}' exists and is not a folder", out.string());
  if (!overwrite && fs::is_directory(out, ec) && !fs::is_empty(out, ec))
    raise<InvalidArgument>("--out '{}': folder exists and is not empty (use --overwrite to replace it)",
                           out.string());
  if (src.empty()) return;
  if (fs::exists(out, ec) && fs::exists(src, ec) && fs::equivalent(out, src))
    raise<InvalidArgument>("--out '{}' is the source model folder; choose another folder", out.string());
  // Never replace a folder that holds the source, nor one that is not a model folder.
  const fs::path out_abs = fs::weakly_canonical(out), src_abs = fs::weakly_canonical(src);
  const auto [mismatch, unused] = std::mismatch(out_abs.begin(), out_abs.end(), src_abs.begin(), src_abs.end());
  (void)unused;
  if (mismatch == out_abs.end())
    raise<InvalidArgument>("--out '{}' contains the source model folder '{}'; choose another folder", out.string(),
                           src.string());
  if (overwrite && fs::is_directory(out) && !fs::is_empty(out)) {
    // Only a folder this function wrote may be replaced: config.json with a kq
    // quantization_config, and no file it would not write (so an original model
    // folder, or one holding other work, is never deleted).
    if (!fs::exists(out / "config.json"))
      raise<InvalidArgument>("--out '{}' exists and is not a model folder (no config.json); refusing to replace it",
                             out.string());
    bool kq_folder = false;
    try {
      const nlohmann::json cfg = io::load_json_file(out / "config.json");
      kq_folder = cfg.is_object() && cfg.contains("quantization_config") && cfg["quantization_config"].is_object() &&
                  cfg["quantization_config"].value("quant_method", "") == "kq";
    } catch (const Error&) {
      kq_folder = false;
    }
    if (!kq_folder)
      raise<InvalidArgument>(
          "--out '{}' is not a folder written by kq quantize (its config.json has no kq quantization_config); "
          "refusing to replace it with --overwrite",
          out.string());
    for (const auto& e : fs::directory_iterator(out)) {
      const std::string name = e.path().filename().string();
      const bool ours = name == "config.json" || name == "model.safetensors" ||
                        std::find(std::begin(kSideFiles), std::end(kSideFiles), name) != std::end(kSideFiles);
      if (!ours || !e.is_regular_file())
        raise<InvalidArgument>(
            "--out '{}' holds '{}', which kq quantize does not write; refusing to replace the folder with "
            "--overwrite (move it away first)",
            out.string(), name);
    }
  }
}

void save_quantized_model(Model& model, const QuantizeOptions& options, const fs::path& out, bool overwrite) {
  const fs::path src = model.source_dir();
  if (src.empty())
    raise<InvalidArgument>("save_quantized_model: the model has no source folder (random weights cannot be saved)");
  check_quantized_output(out, src, overwrite);

  const TensorStore store = TensorStore::open_dir(src);
  nlohmann::json config = io::load_json_file(src / "config.json");
  const bool bare_gpt2 = model.config().arch == Arch::GPT2 && !store.contains("transformer.wte.weight");

  std::map<std::string, Tensor> tensors;
  nlohmann::json modules = nlohmann::json::object();
  std::set<std::string> replaced;  // file prefixes whose source tensors are superseded
  for (const LinearSlot& slot : model.linear_layers()) {
    const Linear& op = **slot.op;
    const QuantSpec* spec = quantized_linear_spec(op);
    if (!spec) continue;  // kept in high precision: its source tensors are copied below
    const std::string prefix = file_prefix(slot.name, bare_gpt2);
    op.export_tensors(prefix, tensors);
    modules[slot.name] = spec->name();
    replaced.insert(prefix + ".");
  }
  if (modules.empty())
    raise<InvalidArgument>("no layer of the model is quantized (every layer matched --keep?); nothing to save");

  for (const std::string& name : store.names()) {
    bool superseded = false;
    for (const std::string& p : replaced) superseded = superseded || name.starts_with(p);
    if (!superseded && !tensors.count(name)) tensors.emplace(name, store.get(name));
  }

  nlohmann::json qc;
  qc["quant_method"] = "kq";
  qc["format_version"] = 1;
  // Per-layer overrides (adaptive precision) mix formats: the modules map says which.
  qc["mode"] = options.layer_specs.empty() ? options.spec.name() : std::string("mixed");
  qc["quantize_lm_head"] = options.quantize_lm_head;
  qc["keep_patterns"] = options.keep_patterns;
  qc["modules"] = modules;
  config["quantization_config"] = qc;

  io::AtomicDir dir(out, overwrite);
  dir.write([&] {  // errors (e.g. a full disk) name `out`, not the staging folder
    write_safetensors(dir.file("model.safetensors"), tensors,
                      {{"format", "pt"}, {"kq_quantization", qc.dump()}});
    io::write_file_atomic(dir.file("config.json"), config.dump(2) + "\n");
    for (const char* f : kSideFiles) {
      const fs::path p = src / f;
      if (!fs::exists(p)) continue;
      io::write_file_atomic(dir.file(f), io::read_text_file(p, uint64_t(1) << 30));
    }
  });
  dir.commit();
}

}  // namespace kq
