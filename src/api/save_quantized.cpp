// `kq quantize`: writing a KernelQuant quantized model folder (layout in include/kq/optimizer.hpp).
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "api/generation_config.hpp"
#include "api/hub_export.hpp"
#include "api/save_common.hpp"
#include "io/atomic_dir.hpp"
#include "io/atomic_file.hpp"
#include "io/file_kind.hpp"
#include "io/json_strict.hpp"
#include "io/safetensors.hpp"
#include "io/tensor_checksums.hpp"
#include "kernels/linear.hpp"
#include "kernels/linear_f32.hpp"
#include "kernels/linear_w16.hpp"
#include "kernels/quantized_linear.hpp"
#include "kq/error.hpp"
#include "kq/optimizer.hpp"
#include "kq/tokenizer.hpp"
#include "kq/warning.hpp"
#include "models/weights.hpp"
#include "quant/keep_pattern.hpp"

namespace kq {
namespace {

namespace fs = std::filesystem;

/// Files of a Hugging Face folder that travel unchanged (byte for byte) with
/// the weights. The loaders read vocab.json, merges.txt, tokenizer.json and
/// tokenizer_config.json (Tokenizer::load) and generation_config.json
/// (load_eos_token_ids): check_quantized_side_files runs them on the source
/// before anything is written. No loader of ours reads special_tokens_map.json,
/// added_tokens.json (transformers' slow tokenizers; tokenizer.json and
/// tokenizer_config.json carry the same tokens), chat_template.json or
/// chat_template.jinja (transformers' chat templates): they are copied for
/// other tools without being parsed, so no JSON check of ours applies to them.
constexpr const char* kSideFiles[] = {"vocab.json",        "merges.txt",         "tokenizer.json",
                                      "tokenizer_config.json", "special_tokens_map.json", "generation_config.json",
                                      "added_tokens.json", "chat_template.json", "chat_template.jinja"};

/// Largest side file copied (io::read_text_file's limit in the copy).
constexpr uint64_t kMaxSideFileBytes = uint64_t(1) << 30;

/// A kq folder's quantization_config: quant_method "kq".
bool is_kq_quantization_config(const nlohmann::json& q) {
  return q.is_object() && q.contains("quant_method") && q["quant_method"] == "kq";
}

/// Why check_quantized_output(out, src, true) refuses to replace the existing, non-empty folder `out`.
struct ReplaceRefusal {
  std::string reason;   ///< e.g. "is not a model folder (no config.json)", after "it"
  std::string message;  ///< the whole error of overwrite = true, naming `out`
};

/// Whether `out` (an existing, non-empty folder) is one overwrite = true may
/// replace: only a folder check_quantized_output's caller wrote (config.json
/// with a kq quantization_config, and no file it would not write), so an
/// original model folder, or one holding other work, is never deleted.
/// std::nullopt when it is; else why not.
std::optional<ReplaceRefusal> why_not_replaceable(const fs::path& out) {
  std::error_code ec;
  if (!fs::exists(out / "config.json", ec))
    return ReplaceRefusal{"is not a model folder (no config.json)",
                          fmt::format("output folder '{}' exists and is not a model folder (no config.json); refusing "
                                      "to replace it",
                                      out.string())};
  bool kq_folder = false;
  std::string why = "its config.json has no kq quantization_config";
  try {
    const nlohmann::json cfg = io::load_hf_json_file(out / "config.json");  // as Model::load reads it
    kq_folder = cfg.is_object() && cfg.contains("quantization_config") &&
                (is_kq_quantization_config(cfg["quantization_config"]) ||
                 detail::is_kq_hub_quantization_config(cfg["quantization_config"]));
  } catch (const Error& e) {
    why = fmt::format("its config.json cannot be read: {}", e.what());
  }
  if (!kq_folder)
    return ReplaceRefusal{fmt::format("is not a folder written by kq quantize ({})", why),
                          fmt::format("output folder '{}' is not a folder written by kq quantize ({}); refusing to "
                                      "replace it with overwrite = true",
                                      out.string(), why)};
  for (const auto& e : fs::directory_iterator(out)) {
    const std::string name = e.path().filename().string();
    const bool ours = name == "config.json" || name == "model.safetensors" || name == detail::kGptqConfigFile ||
                      std::find(std::begin(kSideFiles), std::end(kSideFiles), name) != std::end(kSideFiles);
    if (!ours || !e.is_regular_file())
      return ReplaceRefusal{fmt::format("holds '{}', which kq quantize does not write", name),
                            fmt::format("output folder '{}' holds '{}', which kq quantize does not write; refusing to "
                                        "replace the folder with overwrite = true (move it away first)",
                                        out.string(), name)};
  }
  return std::nullopt;
}

}  // namespace

namespace detail {

std::string source_file_prefix(const std::string& module, bool bare_gpt2) {
  constexpr std::string_view kT = "transformer.";
  if (bare_gpt2 && module.starts_with(kT)) return module.substr(kT.size());
  return module;
}

/// `options` describe how `model`'s layers are held, layer by layer as
/// quantize_model(model, options) decides: a layer_specs entry, else kept
/// (the lm_head without quantize_lm_head, or a keep pattern matching), else
/// options.spec. config.json records the options (its mode, quantize_lm_head
/// and keep_patterns), and the loader holds the folder to them: options that
/// do not describe the model would write a record that is false, or a folder
/// that does not load. Throws InvalidArgument naming the first layer that differs.
void check_options_describe_model(Model& model, const QuantizeOptions& options, const char* who) {
  std::vector<KeepPattern> keep;
  try {
    keep = compile_keep_patterns(options.keep_patterns);
  } catch (const InvalidArgument& e) {
    raise<InvalidArgument>("{}: QuantizeOptions::keep_patterns: keep pattern {}", who, e.what());
  }
  for (const LinearSlot& slot : model.linear_layers()) {
    const Linear& op = **slot.op;
    const QuantSpec* held = quantized_linear_spec(op);
    // kq's dense ops are saved as the source's tensors; any other op that is not kq's quantized op is the
    // caller's own (a wrapper, say), whose weights kq cannot write: the advice is then to put kq's op back.
    const bool users_op = !held && !linear_f32_weight_data(op) && !linear_w16_weight(op);
    const std::string held_name =
        held       ? held->name()
        : users_op ? fmt::format("a user-defined Linear (format '{}'), whose format kq cannot save,", op.format())
                   : fmt::format("not quantized ({})", op.format());
    const std::string_view advice = users_op ? "put kq's own op back into its LinearSlot before saving"
                                             : "pass the QuantizeOptions the model was quantized with";
    if (const auto it = options.layer_specs.find(slot.name); it != options.layer_specs.end()) {
      if (held ? !it->second || it->second->name() != held->name() : it->second.has_value())
        raise<InvalidArgument>("{}: layer '{}' is {} but QuantizeOptions::layer_specs says {}; {}", who,
                               slot.name, held_name, it->second ? it->second->name() : "keep it", advice);
      continue;
    }
    const bool lm_head_kept = slot.is_lm_head && !options.quantize_lm_head;
    const auto match =
        std::find_if(keep.begin(), keep.end(), [&](const KeepPattern& k) { return k.search(slot.name); });
    if (held && lm_head_kept)
      raise<InvalidArgument>(
          "{}: the lm_head '{}' is {} but QuantizeOptions::quantize_lm_head is false; {}", who, slot.name,
          held_name, advice);
    if (held && match != keep.end())
      raise<InvalidArgument>(
          "{}: layer '{}' is {} but QuantizeOptions::keep_patterns '{}' matches it, which says it "
          "stays in high precision; {}", who,
          slot.name, held_name, match->pattern(), advice);
    if (!held && !lm_head_kept && match == keep.end())
      raise<InvalidArgument>(
          "{}: layer '{}' is {} but the options say {}: no QuantizeOptions::keep_patterns entry "
          "matches it{}; {}", who,
          slot.name, held_name, options.spec.name(),
          slot.is_lm_head ? " and QuantizeOptions::quantize_lm_head is true" : "", advice);
    if (held && held->name() != options.spec.name())
      raise<InvalidArgument>("{}: layer '{}' is {} but the options say {}; {}", who, slot.name,
                             held_name, options.spec.name(), advice);
  }
}

/// The folder `model` was loaded from, read again by save_quantized_model (config.json, side files, the
/// tensors kept unquantized): it may have been removed or emptied since the load. Throws FormatError saying so.
void check_source_folder_still_there(const fs::path& src, const char* who) {
  std::error_code ec;
  const char* why = nullptr;
  if (!fs::exists(src, ec))
    why = "is gone (not found)";
  else if (!fs::is_directory(src, ec))
    why = "is no longer a folder";
  else if (!fs::exists(src / "config.json", ec))
    why = "is no longer a model folder (no config.json)";
  if (why)
    raise<FormatError>(
        "{}: the folder the model was loaded from, '{}', {}; saving reads its config.json, side "
        "files and unquantized tensors again, so it must stay in place until the model is saved", who,
        src.string(), why);
}

void copy_side_files(const io::AtomicDir& dir, const fs::path& src) {
  for (const char* f : kSideFiles) {
    const fs::path p = src / f;
    if (!fs::exists(p)) continue;
    io::write_file_atomic(dir.file(f), io::read_text_file(p, kMaxSideFileBytes));
  }
}

}  // namespace detail

void check_quantized_output(const fs::path& out, const fs::path& src, bool overwrite) {
  std::error_code ec;
  if (out.empty()) raise<InvalidArgument>("the output folder path is empty: give the folder to write");
  fs::path full = fs::absolute(out, ec).lexically_normal();
  if (full.filename().empty()) full = full.parent_path();  // "q/" names the folder q, as in AtomicDir
  const fs::path parent = full.parent_path();
  // Missing, or a file on the way ("'notes.txt' is not a directory").
  if (const auto why = io::why_not_folder(parent))
    raise<InvalidArgument>("output folder '{}': cannot create it: {}", out.string(), *why);
  if (::access(parent.c_str(), W_OK | X_OK) != 0) {
    const int err = errno;
    // An existing (empty, or replaced) `out` is not written in place either: the new folder is made beside it.
    if (fs::is_directory(out, ec))
      raise<InvalidArgument>("output folder '{}': cannot write it: kq writes the new folder as a sibling in '{}' and "
                             "then renames it over '{}' (so that it is never half-written), so '{}' must be "
                             "writable, not only '{}' ({})",
                             out.string(), parent.string(), out.string(), parent.string(), out.string(),
                             std::strerror(err));
    raise<InvalidArgument>("output folder '{}': cannot create it in '{}' ({})", out.string(), parent.string(),
                           std::strerror(err));
  }
  // `out` itself: a stat error other than "not there" (ENAMETOOLONG for a name
  // longer than the file system allows, EACCES) is named here; the throwing
  // std::filesystem calls below would end in "internal error: filesystem error".
  const fs::file_status out_link = fs::symlink_status(out, ec);
  if (ec && out_link.type() != fs::file_type::not_found)
    raise<InvalidArgument>("output folder '{}': cannot be accessed ({})", out.string(), ec.message());
  if (fs::exists(out_link) && !fs::is_directory(out, ec))
    raise<InvalidArgument>("output folder '{}' exists and is not a folder", out.string());
  // The current directory: `out` renamed over it (or over a folder above it) would leave this process and the
  // shell that started it in the old, deleted folder, where the written files are not seen (tester25 F7: '-o .').
  if (fs::is_directory(out, ec)) {
    const fs::path cwd = fs::current_path(ec);
    std::error_code out_ec;
    const fs::path out_abs = fs::canonical(out, out_ec);
    if (!ec && !out_ec && std::mismatch(out_abs.begin(), out_abs.end(), cwd.begin(), cwd.end()).first == out_abs.end())
      raise<InvalidArgument>(
          "output folder '{}' {} the current directory{}: the new folder is written beside it and renamed over it, "
          "which would leave the current directory (the shell's too) a deleted folder in which the files are not "
          "seen; choose another output folder, or run from a folder outside it",
          out.string(), out_abs == cwd ? "is" : "contains",
          out_abs == cwd ? std::string() : fmt::format(" '{}'", cwd.string()));
  }
  if (!overwrite && fs::is_directory(out, ec) && !fs::is_empty(out, ec)) {
    // overwrite = true is the way out only for a folder it would replace.
    if (const auto refusal = why_not_replaceable(out))
      raise<InvalidArgument>(
          "output folder '{}': folder exists and is not empty, and overwrite = true would not replace it: it {}; "
          "choose another output folder",
          out.string(), refusal->reason);
    raise<InvalidArgument>("output folder '{}': folder exists and is not empty (overwrite = true replaces it)",
                           out.string());
  }
  // The source: skipped when `src` is empty; the replaceable-folder rule below is not (tester 24: with an empty
  // `src`, overwrite = true accepted any non-empty folder, '/' included).
  if (!src.empty()) {
    if (fs::exists(out, ec) && fs::exists(src, ec) && fs::equivalent(out, src, ec))
      raise<InvalidArgument>("output folder '{}' is the source model folder; choose another folder", out.string());
    // Never replace a folder that holds the source, nor one that is not a model folder.
    const fs::path out_abs = fs::weakly_canonical(out, ec);
    if (ec) raise<InvalidArgument>("output folder '{}': cannot be resolved ({})", out.string(), ec.message());
    std::error_code src_ec;  // a source that cannot be resolved is named by the model load
    const fs::path src_abs = fs::weakly_canonical(src, src_ec);
    const auto [mismatch, unused] = std::mismatch(out_abs.begin(), out_abs.end(), src_abs.begin(), src_abs.end());
    (void)unused;
    if (!src_ec && mismatch == out_abs.end())
      raise<InvalidArgument>("output folder '{}' contains the source model folder '{}'; choose another folder",
                             out.string(), src.string());
  }
  if (overwrite && fs::is_directory(out, ec) && !fs::is_empty(out, ec))
    if (const auto refusal = why_not_replaceable(out)) raise<InvalidArgument>("{}", refusal->message);
}

void check_quantized_side_files(const fs::path& src, int64_t vocab_size) {
  std::error_code ec;
  if (!fs::is_directory(src, ec))  // else every file would be "absent": only the no-tokenizer warning
    raise<FormatError>("check_quantized_side_files: {}: not a model folder ({})", src.string(),
                       fs::exists(src, ec) ? "not a folder" : "not found");
  io::check_not_staging_folder(src);  // its side files may be missing: not to be copied as the model's
  // Every side file that is there must be one the copy can read.
  for (const char* f : kSideFiles) {
    const fs::path p = src / f;
    if (!fs::exists(p, ec)) continue;  // as in the copy: absent, not copied
    if (const auto why = io::why_not_regular_file(p))
      raise<FormatError>("{}: {}; it cannot be copied into the quantized folder", p.string(), *why);
    if (const uint64_t size = fs::file_size(p, ec); !ec && size > kMaxSideFileBytes)
      raise<FormatError>("{}: file is {} bytes, more than the {} bytes allowed", p.string(), size, kMaxSideFileBytes);
  }
  // The loaders that will read the copies, run on the originals (the copies
  // are the same bytes): what they refuse there they refuse here.
  const auto refused = [](const Error& e) {
    raise<FormatError>("{} (the file would be copied into the quantized folder, which would then not load; fix or "
                       "remove it; nothing was written)",
                       e.what());
  };
  bool tokenizer = false;
  for (const char* f : {"tokenizer.json", "vocab.json", "merges.txt"}) tokenizer = tokenizer || fs::exists(src / f, ec);
  if (tokenizer) {  // a folder without tokenizer files stays quantizable (weights only)
    try {
      const Tokenizer tok = Tokenizer::load(src);
      if (vocab_size > 0) tok.check_fits(vocab_size, src.string());
    } catch (const Unsupported& e) {
      // Well formed, but not a tokenizer kq runs: the folder still serves
      // other tools and the API; kq eval / generate refuse it as they refuse this one.
      warn(fmt::format("{}; it is copied into the quantized folder, whose tokenizer kq eval, kq generate and kq "
                       "bench will refuse as well",
                       e.what()));
    } catch (const Error& e) {
      refused(e);
    }
  } else {
    warn(fmt::format("{}: no tokenizer files (tokenizer.json, or vocab.json + merges.txt); the quantized folder will "
                     "have none either, and kq eval, kq generate and kq bench need them: add them to it",
                     src.string()));
  }
  try {
    (void)load_eos_token_ids(src, vocab_size);  // generation_config.json (else config.json), as kq generate reads it
  } catch (const Error& e) {
    refused(e);
  }
}

void save_quantized_model(Model& model, const QuantizeOptions& options, const fs::path& out, bool overwrite) {
  model.check_linear_layers("save_quantized_model");
  const fs::path src = model.source_dir();
  if (src.empty())
    raise<InvalidArgument>("save_quantized_model: the model has no source folder (random weights cannot be saved)");
  detail::check_source_folder_still_there(src, "save_quantized_model");
  check_quantized_output(out, src, overwrite);
  check_quantized_side_files(src, model.config().vocab_size);

  const TensorStore store = TensorStore::open_dir(src);
  nlohmann::json config = io::load_hf_json_file(src / "config.json");
  const bool bare_gpt2 = model.config().arch == Arch::GPT2 && !store.contains("transformer.wte.weight");

  std::map<std::string, Tensor> tensors;
  nlohmann::json modules = nlohmann::json::object();
  std::set<std::string> replaced;  // file prefixes whose source tensors are superseded
  bool lm_head_quantized = false;
  for (const LinearSlot& slot : model.linear_layers()) {
    const Linear& op = **slot.op;
    const QuantSpec* spec = quantized_linear_spec(op);
    if (!spec) continue;  // kept in high precision: its source tensors are copied below
    const std::string prefix = detail::source_file_prefix(slot.name, bare_gpt2);
    op.export_tensors(prefix, tensors);
    modules[slot.name] = spec->name();
    replaced.insert(prefix + ".");
    lm_head_quantized = lm_head_quantized || slot.is_lm_head;
  }
  if (modules.empty())
    raise<InvalidArgument>(
        "no layer of the model is quantized (every layer matched QuantizeOptions::keep_patterns?); nothing to save");
  detail::check_options_describe_model(model, options, "save_quantized_model");

  // The source's other tensors, as they are on disk; those the model does not use (layers beyond
  // num_hidden_layers, ...: load() warned about them) are left out, so the folder holds what the model reads.
  const std::set<std::string> unused(model.unused_source_tensors().begin(), model.unused_source_tensors().end());
  // A weight the source stores fused (Phi3's qkv_proj, gate_up_proj) is saved as the split parts the model reads
  // (rows of it, as they are on disk) for the layers kept in high precision: the folder has the model's layer names.
  const auto superseded = [&](const std::string& name) {
    for (const std::string& p : replaced)
      if (name.starts_with(p)) return true;
    return false;
  };
  for (const std::string& name : store.names()) {
    if (unused.count(name)) continue;
    if (const std::vector<models::FusedPart> parts = models::fused_parts(model.config(), name); !parts.empty()) {
      for (const models::FusedPart& part : parts)
        if (!superseded(part.name) && !tensors.count(part.name))
          tensors.emplace(part.name, store.get(name).slice_rows(part.row0, part.row0 + part.rows));
      continue;
    }
    if (!superseded(name) && !tensors.count(name)) tensors.emplace(name, store.get(name));
  }

  nlohmann::json qc;
  qc["quant_method"] = "kq";
  qc["format_version"] = 1;
  // Per-layer overrides (adaptive precision) mix formats: the modules map says which.
  qc["mode"] = options.layer_specs.empty() ? options.spec.name() : std::string("mixed");
  // Whether the folder holds a quantized lm_head: a layer_specs entry quantizes it whatever
  // options.quantize_lm_head says, and the loader refuses a record of false beside a quantized 'lm_head'.
  qc["quantize_lm_head"] = options.quantize_lm_head || lm_head_quantized;
  qc["keep_patterns"] = options.keep_patterns;
  qc["modules"] = modules;
  // The safetensors metadata repeats the record above (the loader compares the two); the checksums of the tensors
  // (io/tensor_checksums.hpp: XXH3-64 of each tensor's name, dtype, shape and bytes) are in config.json only.
  const std::string file_record = io::json_text(qc);
  qc["checksums"] = io::make_checksum_record({{"model.safetensors", &tensors}});
  config["quantization_config"] = qc;

  io::AtomicDir dir(out, overwrite);
  dir.write([&] {  // errors (e.g. a full disk) name `out`, not the staging folder
    write_safetensors(dir.file("model.safetensors"), tensors, {{"format", "pt"}, {"kq_quantization", file_record}});
    io::write_file_atomic(dir.file("config.json"), io::json_text(config, 2) + "\n");
    detail::copy_side_files(dir, src);
  });
  dir.commit();
}

}  // namespace kq
