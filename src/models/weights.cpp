#include "models/weights.hpp"

#include <algorithm>
#include <atomic>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <nlohmann/json.hpp>
#include <optional>
#include <string_view>
#include <tuple>

#include "core/mapped_regions.hpp"
#include "core/out_of_memory.hpp"
#include "io/json_strict.hpp"
#include "io/utf8_text.hpp"
#include "kernels/linear_f32.hpp"
#include "kernels/linear_w16.hpp"
#include "kernels/quantized_linear.hpp"
#include "kq/error.hpp"
#include "kq/quantize.hpp"
#include "kq/warning.hpp"
#include "models/backend.hpp"
#include "models/hub_checkpoint.hpp"
#include "quant/keep_pattern.hpp"

namespace kq::models {

namespace {

/// The prefix of GPT-2 tensor names saved by transformers ("transformer.wte.weight"),
/// absent in hub checkpoints ("wte.weight").
constexpr std::string_view kGpt2Prefix = "transformer.";

/// A folder written by kq quantize whose config.json lost its
/// quantization_config (copied over from the original model, edited by hand)
/// failed at its first quantized layer as "missing tensor '...weight'". The
/// weights say what they are: the 'kq_quantization' safetensors metadata
/// save_quantized_model writes, or the ".qweight" codes tensors of
/// export_packed (src/quant/packed_io.cpp). Throws FormatError naming the
/// config.json when either is there, or a ".qzeros" tensor of an AutoAWQ /
/// AutoGPTQ checkpoint (named as one).
void reject_quantized_weights_without_config(const TensorStore& store, const std::filesystem::path& dir,
                                             const std::filesystem::path& cfg) {
  // An AutoAWQ / AutoGPTQ checkpoint (packed zero points, which kq folders never have) is named as one.
  for (const std::string& name : store.names())
    if (name.ends_with(".qzeros"))
      raise<FormatError>("{}: the folder looks like an AutoAWQ / AutoGPTQ checkpoint (tensor '{}' in {} holds packed "
                         "zero points), but {} has no quantization_config; put back the checkpoint's config.json "
                         "(quant_method \"awq\" or \"gptq\")",
                         dir.string(), io::name_excerpt(name), store.file_of(name), cfg.string());
  std::string evidence;
  if (store.metadata().count("kq_quantization")) {
    evidence = "its safetensors metadata has the 'kq_quantization' record kq quantize writes";
  } else {
    for (const std::string& name : store.names())
      if (name.ends_with(".qweight")) {
        evidence = fmt::format("tensor '{}' in {} holds quantized codes as kq quantize writes them", name,
                               store.file_of(name));
        break;
      }
  }
  if (evidence.empty()) return;
  raise<FormatError>(
      "{}: the folder looks like a kq-quantized model ({}), but {} has no quantization_config; put back the "
      "config.json that kq quantize wrote (or load the original model folder)",
      dir.string(), evidence, cfg.string());
}

/// Checks the fields of a kq quantization record (config.json
/// quantization_config or the 'kq_quantization' safetensors metadata) that
/// the loader does not read but that describe the folder: "mode" (required:
/// "mixed" for a per-layer (adaptive) plan, else a parse_quant_mode name that
/// every module's mode matches), "quantize_lm_head" (a boolean: false while
/// lm_head is quantized, or true while lm_head is not quantized and no keep
/// pattern covers it, is refused for a single-mode record) and
/// "keep_patterns" (an array of valid PCRE2 regular expressions (KeepPattern) that
/// match no quantized module of a single-mode record); the last two may be
/// absent (older folders). `where` names the record ("<file>: quantization_config").
/// Throws FormatError naming the record and the field.
void check_quantization_record(const nlohmann::json& q, const std::string& where) {
  if (!q.contains("mode"))
    raise<FormatError>("{}.mode is missing (kq quantize writes the mode name, or \"mixed\" for an adaptive plan)",
                       where);
  if (!q["mode"].is_string())
    raise<FormatError>("{}.mode must be a string, not {}", where, io::json_excerpt(q["mode"]));
  const std::string mode = q["mode"].get<std::string>();
  const nlohmann::json& modules = q["modules"];
  const bool mixed = mode == "mixed";
  std::string canonical;
  if (!mixed) {
    try {
      canonical = parse_quant_mode(mode).name();
    } catch (const InvalidArgument& e) {
      raise<FormatError>("{}.mode: {} (or \"mixed\" for an adaptive plan)", where, e.what());
    }
    for (const auto& [module, m] : modules.items()) {
      std::string module_mode;
      try {
        module_mode = parse_quant_mode(m.get<std::string>()).name();
      } catch (const InvalidArgument& e) {
        raise<FormatError>("{}.modules['{}']: {}", where, module, e.what());
      }
      if (module_mode != canonical)
        raise<FormatError>("{}.mode is '{}' but module '{}' is {}: a folder of one mode has every module in it "
                           "(\"mixed\" is written for an adaptive plan)",
                           where, mode, module, io::json_excerpt(m));
    }
  }
  std::vector<KeepPattern> keep;
  if (q.contains("keep_patterns")) {
    const nlohmann::json& k = q["keep_patterns"];
    if (!k.is_array())
      raise<FormatError>("{}.keep_patterns must be an array of regular expression strings, not {}", where,
                         io::json_excerpt(k));
    for (size_t i = 0; i < k.size(); ++i) {
      if (!k[i].is_string())
        raise<FormatError>("{}.keep_patterns[{}] must be a string, not {}", where, i, io::json_excerpt(k[i]));
      try {  // the bounds `kq quantize --keep` applies (a hand-edited pattern cannot crash or hang the load)
        keep.emplace_back(k[i].get<std::string>());
      } catch (const InvalidArgument& e) {
        raise<FormatError>("{}.keep_patterns[{}] {}", where, i, e.what());
      }
    }
    if (!mixed)
      for (const auto& [module, m] : modules.items())
        for (size_t i = 0; i < keep.size(); ++i)
          if (keep[i].search(module))
            raise<FormatError>("{}.keep_patterns[{}] '{}' matches module '{}', which is quantized ({})", where, i,
                               k[i].get<std::string>(), module, io::json_excerpt(m));
  }
  if (q.contains("quantize_lm_head")) {
    const nlohmann::json& l = q["quantize_lm_head"];
    if (!l.is_boolean())
      raise<FormatError>("{}.quantize_lm_head must be true or false, not {}", where, io::json_excerpt(l));
    const bool head_quantized = modules.contains("lm_head");
    if (head_quantized && !l.get<bool>())
      raise<FormatError>("{}.quantize_lm_head is false but module 'lm_head' is quantized ({})", where,
                         io::json_excerpt(modules["lm_head"]));
    const bool head_kept = std::any_of(keep.begin(), keep.end(),
                                       [](const KeepPattern& r) { return r.search("lm_head"); });
    if (!mixed && !head_quantized && l.get<bool>() && !head_kept)
      raise<FormatError>("{}.quantize_lm_head is true but module 'lm_head' is not quantized (not in modules, "
                         "and no keep pattern matches it)",
                         where);
  }
}

/// Whether `names` (the store's tensor names, sorted) hold a tensor of linear
/// layer `module` (canonical slot name): `<module>.*`, or for GPT-2's
/// "transformer.h.N..." slots the hub-style `h.N...*` names.
bool has_module_tensors(const std::vector<std::string>& names, const std::string& module) {
  const auto has_prefix = [&](const std::string& prefix) {
    const auto it = std::lower_bound(names.begin(), names.end(), prefix);
    return it != names.end() && it->starts_with(prefix);
  };
  return has_prefix(module + ".") ||
         (module.starts_with(kGpt2Prefix) && has_prefix(module.substr(kGpt2Prefix.size()) + "."));
}

/// A layer of a pre-quantized checkpoint (AutoAWQ / AutoGPTQ `hub`, bitsandbytes `bnb`) is recognized by one
/// tensor: "<prefix>.qweight", "<prefix>.SCB" or "<prefix>.weight.quant_state.bitsandbytes__nf4" (__fp4). One lost (a
/// partial download, a hand edit) left the layer read as an unquantized one, whose ".weight" was blamed for its
/// dtype or shape, or as missing (tester 22). Throws FormatError naming the folder, the layer `prefix`, the missing
/// tensor, the method (config.json quant_method) and the quantized-layer tensor that is there, when the layer has
/// such a tensor ("<prefix>.scales" / ".qzeros" / ".g_idx"; ".weight_format" or an I8 ".weight"; ".weight.absmax",
/// ".weight.quant_map", ".weight.nested_absmax" or a U8 ".weight") but not its marker.
void reject_partial_prequantized_layer(const TensorStore& store, const std::filesystem::path& dir,
                                       const std::string& prefix, const std::optional<HubInt4Config>& hub,
                                       const std::optional<BnbConfig>& bnb) {
  std::string marker, method, what, found, found_name;  // found: found_name as the message names it
  const auto find = [&](std::initializer_list<const char*> suffixes) {
    for (const char* sfx : suffixes)
      if (store.contains(prefix + sfx)) {
        found_name = prefix + sfx;
        found = fmt::format("'{}'", found_name);
        return;
      }
  };
  // `dtype` in place of the codes: a plain weight never has it.
  const auto weight_of_dtype = [&](DType dtype) {
    if (found.empty() && store.contains(prefix + ".weight") && store.get(prefix + ".weight").dtype() == dtype) {
      found_name = prefix + ".weight";
      found = fmt::format("'{}' of dtype {}", found_name, dtype_name(dtype));
    }
  };
  if (hub) {
    marker = ".qweight";
    method = hub->layout == HubInt4Layout::AwqGemm ? "awq" : "gptq";
    what = "its packed 4-bit codes";
    find({".scales", ".qzeros", ".g_idx"});
  } else if (bnb && bnb->int8) {
    marker = ".SCB";
    method = "bitsandbytes, load_in_8bit";
    what = "the row absmax of its int8 codes";
    find({".weight_format"});
    weight_of_dtype(DType::I8);
  } else if (bnb) {
    marker = std::string(".weight.quant_state.bitsandbytes__") + bnb4_type_name(bnb->fp4);
    method = fmt::format("bitsandbytes, load_in_4bit, bnb_4bit_quant_type {}", bnb4_type_name(bnb->fp4));
    what = fmt::format("its {} quant state", bnb->fp4 ? "FP4" : "NF4");
    find({".weight.absmax", ".weight.quant_map", ".weight.nested_absmax", ".weight.nested_quant_map"});
    weight_of_dtype(DType::U8);
  }
  if (found.empty() || store.contains(prefix + marker)) return;
  raise<FormatError>("{}: layer '{}' is quantized ({} in {}; config.json quant_method {}) but has no '{}{}' ({}): "
                     "the checkpoint is incomplete",
                     dir.string(), prefix, found, store.file_of(found_name), method, prefix, marker, what);
}

}  // namespace

FileWeights::FileWeights(const std::filesystem::path& dir) : dir_(dir), store_(TensorStore::open_dir(dir)) {
  const std::filesystem::path cfg = dir / "config.json";
  const nlohmann::json j = io::load_hf_json_file(cfg);  // as load_model_config reads it
  if (!j.contains("quantization_config") || j["quantization_config"].is_null()) {
    reject_quantized_weights_without_config(store_, dir, cfg);
    return;
  }
  const nlohmann::json& q = j["quantization_config"];
  if (!q.is_object())
    raise<FormatError>(
        "{}: quantization_config is not an object (it is {}); a kq folder's is an object with "
        "\"quant_method\": \"kq\"",
        cfg.string(), io::json_excerpt(q));
  // Missing, or not a string: said so ("quant_method '?' is not supported" read as a method named '?').
  if (!q.contains("quant_method") || q["quant_method"].is_null())
    raise<FormatError>(
        "{}: quantization_config has no \"quant_method\" (a kq folder's is \"kq\"; load the original unquantized "
        "model if this is another tool's quantization)",
        cfg.string());
  if (!q["quant_method"].is_string())
    raise<FormatError>("{}: quantization_config.quant_method is not a string (it is {}); a kq folder's is \"kq\"",
                       cfg.string(), io::json_excerpt(q["quant_method"]));
  const std::string method = q["quant_method"].get<std::string>();
  if (is_hub_quant_method(method)) {  // an AutoAWQ / AutoGPTQ checkpoint: its 4-bit layers converted as read
    hub_ = parse_hub_quant_config(q, cfg.string());
    // A config that says so over weights without one quantized layer (a copied config.json) is not loaded as
    // an unquantized model.
    const std::vector<std::string> names = store_.names();
    if (std::none_of(names.begin(), names.end(), [](const std::string& n) { return n.ends_with(".qweight"); }))
      raise<FormatError>("{}: quantization_config.quant_method is '{}' but no tensor of the safetensors files of {} "
                         "is a quantized layer's (no '<layer>.qweight'): the config.json does not belong to these "
                         "weights",
                         cfg.string(), method, dir.string());
    return;
  }
  if (method == "bitsandbytes") {  // a bitsandbytes 8-bit or 4-bit (NF4, FP4) checkpoint: its layers converted as read
    const BnbConfig bnb = parse_bnb_quant_config(q, cfg.string());
    const std::vector<std::string> names = store_.names();
    const std::string marker =
        bnb.int8 ? std::string(".SCB") : std::string(".quant_state.bitsandbytes__") + bnb4_type_name(bnb.fp4);
    if (std::none_of(names.begin(), names.end(), [&](const std::string& n) { return n.ends_with(marker); }))
      raise<FormatError>("{}: quantization_config.quant_method is 'bitsandbytes' ({}) but no tensor of the "
                         "safetensors files of {} is {} ('<layer>{}'): the config.json does not belong to these "
                         "weights",
                         cfg.string(),
                         bnb.int8 ? "load_in_8bit"
                                  : fmt::format("load_in_4bit, bnb_4bit_quant_type {}", bnb4_type_name(bnb.fp4)),
                         dir.string(),
                         bnb.int8 ? "an 8-bit layer's row absmax"
                                  : fmt::format("a 4-bit {} layer's quant state", bnb.fp4 ? "FP4" : "NF4"),
                         bnb.int8 ? marker : ".weight" + marker);
    bnb_ = bnb;
    return;
  }
  if (method != "kq")
    raise<FormatError>(
        "{}: quantization_config.quant_method '{}' is not supported (KernelQuant reads its own "
        "\"kq\" folders, AutoAWQ (\"awq\") and AutoGPTQ (\"gptq\") 4-bit checkpoints and bitsandbytes 8-bit and "
        "4-bit (NF4, FP4) ones; load the original "
        "unquantized model instead)",
        cfg.string(), method);
  if (!q.contains("format_version") || q["format_version"] != 1)
    raise<FormatError>("{}: quantization_config.format_version must be 1 (this KernelQuant reads version 1)",
                       cfg.string());
  if (!q.contains("modules") || !q["modules"].is_object())
    raise<FormatError>("{}: quantization_config.modules must be an object {{module: mode}}", cfg.string());
  const std::vector<std::string> tensor_names = store_.names();  // sorted
  for (const auto& [module, mode] : q["modules"].items()) {
    if (!mode.is_string())
      raise<FormatError>("{}: quantization_config.modules['{}'] must be a mode name string", cfg.string(),
                         module);
    // Every mode is checked here, before the comparison with the weights'
    // own record below, which would call an unknown mode "two quantizations".
    try {
      parse_quant_mode(mode.get_ref<const std::string&>());
    } catch (const InvalidArgument& e) {  // "unknown quantization mode 'x'...; valid modes: ..."
      raise<FormatError>("{}: quantization_config.modules['{}']: {}", cfg.string(), module, e.what());
    }
    // A module no tensor belongs to (a layer the model does not have) was
    // reported as "not quantized in model.safetensors ... mixes two quantizations".
    if (!has_module_tensors(tensor_names, module))
      raise<FormatError>("{}: quantization_config.modules['{}']: the model has no such layer (no tensor '{}.*' in "
                         "the safetensors files of {})",
                         cfg.string(), module, module, dir.string());
    quantized_modules_[module] = mode.get<std::string>();
  }
  // The weights file records the modes it was written with: a file from another
  // quantization copied into this folder must not be read with this config.
  const auto& meta = store_.metadata();
  if (const auto it = meta.find("kq_quantization"); it != meta.end()) {
    nlohmann::json fq;
    try {
      fq = io::parse_json_strict(it->second, "kq_quantization");  // strict: a NUL byte would end nlohmann's parse
    } catch (const FormatError&) {
      raise<FormatError>("{}: safetensors metadata 'kq_quantization' is not valid JSON", dir.string());
    }
    if (!fq.is_object() || !fq.contains("modules") || !fq["modules"].is_object())
      raise<FormatError>("{}: safetensors metadata 'kq_quantization' has no \"modules\" object",
                         dir.string());
    if (fq["modules"] != q["modules"]) {
      // Name the first module (by name) whose mode differs, else the first one only the file has.
      const nlohmann::json& fm = fq["modules"];
      auto mode_of = [](const nlohmann::json& m, const std::string& k) {
        return m.contains(k) ? io::json_excerpt(m[k]) : std::string("not quantized");
      };
      std::string module;
      for (const auto& [k, v] : q["modules"].items())
        if (!fm.contains(k) || fm[k] != v) {
          module = k;
          break;
        }
      if (module.empty())
        for (const auto& [k, v] : fm.items())
          if (!q["modules"].contains(k)) {
            module = k;
            break;
          }
      const std::string file_mode = fq.contains("mode") ? io::json_excerpt(fq["mode"]) : "?";
      const std::string config_mode = q.contains("mode") ? io::json_excerpt(q["mode"]) : "?";
      raise<FormatError>(
          "{}: module '{}' is {} in model.safetensors but {} in config.json quantization_config.modules: "
          "the folder mixes two quantizations{}",
          dir.string(), module, mode_of(fm, module), mode_of(q["modules"], module),
          file_mode == config_mode ? std::string()
                                   : fmt::format(" (model.safetensors written as {}, config.json says {})",
                                                 file_mode, config_mode));
    }
    // The descriptive fields: each record must be sound and the two must agree.
    check_quantization_record(q, cfg.string() + ": quantization_config");
    check_quantization_record(fq, dir.string() + ": model.safetensors metadata 'kq_quantization'");
    for (const char* field : {"mode", "quantize_lm_head", "keep_patterns"})
      if (fq.contains(field) != q.contains(field) || (q.contains(field) && fq[field] != q[field]))
        raise<FormatError>("{}: {} is {} in model.safetensors ('kq_quantization' metadata) but {} in config.json "
                           "quantization_config: the folder mixes two quantizations",
                           dir.string(), field, fq.contains(field) ? io::json_excerpt(fq[field]) : "absent",
                           q.contains(field) ? io::json_excerpt(q[field]) : "absent");
  } else {
    raise<FormatError>(
        "{}: config.json has a kq quantization_config but model.safetensors has no "
        "'kq_quantization' metadata; the folder mixes files",
        dir.string());
  }
  // Absent in folders of an older kq: those load unchecked.
  if (const auto it = q.find("checksums"); it != q.end())
    checksums_ = io::TensorChecksums(*it, cfg.string() + ": quantization_config.checksums", store_, dir);
}

namespace {
/// `copy`, a heap copy of the file's tensor `source` (converted, transposed or
/// aligned): the pages of `source` that the copy read are dropped from the
/// resident memory when it is a view of the mapping (core::release_mapped_pages),
/// so that a load holds each weight once, not also the file's pages it was read from.
Tensor release_source(const Tensor& source, Tensor copy) {
  if (source.is_mapped()) core::release_mapped_pages(source.raw(), source.nbytes());
  return copy;
}

/// Rejects NaN/Inf parameters (a corrupt file), naming the tensor.
Tensor require_finite(Tensor t, const std::string& name, const std::filesystem::path& dir) {
  const float* p = t.data<float>();
  const int64_t n = t.numel();
  bool ok = true;
#pragma omp parallel for reduction(&& : ok) schedule(static) if (n > (1 << 20))
  for (int64_t i = 0; i < n; ++i) ok = ok && std::isfinite(p[i]);
  if (!ok)
    raise<FormatError>("{}: tensor '{}' holds NaN or Inf values (corrupt weights?)", dir.string(), name);
  return t;
}

/// Returns make(), the F32 heap copy of the file's tensor `t` (`name`, in `file` of the folder `dir`): converted
/// from BF16 / F16, an unaligned F32 one copied, `transposed` for a GPT-2 Conv1D weight. An allocation that fails
/// is an OutOfMemory naming the tensor, its shape and dtype, and the F32 bytes asked (a checkpoint too large for
/// the machine's memory read "out of memory" with nothing else: tester round 23).
std::atomic<size_t> f32_copy_bytes{0};  // file_weights_f32_copy_bytes()

template <class Make>
Tensor f32_copy(const Tensor& t, const std::string& name, const std::string& file, const std::filesystem::path& dir,
                bool transposed, Make&& make) {
  const auto what = [&] {
    const std::filesystem::path relative = std::filesystem::path(file).lexically_relative(dir);
    const std::string in_file = relative.empty() || *relative.begin() == ".." ? file : relative.string();
    const std::string tensor =
        fmt::format("tensor '{}' {} of {}", io::name_excerpt(name), shape_str(t.shape()), in_file);
    const std::string action = t.dtype() != DType::F32
                                   ? fmt::format("converting {} from {} to F32", tensor, dtype_name(t.dtype()))
                                   : fmt::format("copying {} (F32, unaligned in the file)", tensor);
    return fmt::format("{}: {}{}", dir.string(), action, transposed ? ", transposed" : "");
  };
  Tensor copy = naming_allocation(size_t(t.numel()) * sizeof(float), what, std::forward<Make>(make));
  f32_copy_bytes.fetch_add(copy.nbytes(), std::memory_order_relaxed);
  return copy;
}

/// Rejects NaN/Inf values of a BF16 or F16 tensor (an exponent of all ones), naming it, as require_finite.
Tensor require_finite_16bit(Tensor t, const std::string& name, const std::filesystem::path& dir) {
  const uint16_t mask = t.dtype() == DType::BF16 ? 0x7F80 : 0x7C00;
  const uint16_t* p = static_cast<const uint16_t*>(t.raw());
  const int64_t n = t.numel();
  bool ok = true;
#pragma omp parallel for reduction(&& : ok) schedule(static) if (n > (1 << 20))
  for (int64_t i = 0; i < n; ++i) ok = ok && (p[i] & mask) != mask;
  if (!ok)
    raise<FormatError>("{}: tensor '{}' holds NaN or Inf values (corrupt weights?)", dir.string(), name);
  return t;
}
}  // namespace

size_t file_weights_f32_copy_bytes() { return f32_copy_bytes.load(std::memory_order_relaxed); }

std::unique_ptr<Linear> WeightSource::dense_linear(const std::string& weight, const Shape& shape, bool transposed,
                                                   const std::string& bias) {
  const DType disk = disk_dtype(weight);
  if (hold_linears_in_disk_dtype_ && disk != DType::F32) {
    Tensor w = transposed ? get_transposed_in_disk_dtype(weight, shape, Init::Weight)
                          : get_in_disk_dtype(weight, shape, Init::Weight);
    return make_linear_w16(std::move(w), bias.empty() ? Tensor() : get(bias, {shape[0]}, Init::Zeros));
  }
  Tensor w = transposed ? get_transposed(weight, shape, Init::Weight) : get(weight, shape, Init::Weight);
  return make_linear_f32(std::move(w), bias.empty() ? Tensor() : get(bias, {shape[0]}, Init::Zeros), disk);
}

std::unique_ptr<Linear> FileWeights::quantized_linear(const std::string& module,
                                                      const std::string& file_prefix, int64_t out,
                                                      int64_t in, bool bias) {
  const auto it = quantized_modules_.find(module);
  // An AWQ / GPTQ checkpoint's quantized layers are those with codes; others
  // (modules_to_not_convert, lm_head) have a plain weight.
  const bool hub = hub_ && store_.contains(file_prefix + ".qweight");
  const std::string bnb4_state = ".weight.quant_state.bitsandbytes__";
  const bool bnb = bnb_ && (bnb_->int8 ? store_.contains(file_prefix + ".SCB")
                                       : store_.contains(file_prefix + bnb4_state + bnb4_type_name(bnb_->fp4)));
  // A layer of the other 4-bit type: transformers would read it by its own state's type; kq keeps to the
  // config's, so a folder that mixes them (never written by transformers: one BitsAndBytesConfig) is refused.
  if (bnb_ && !bnb_->int8 && store_.contains(file_prefix + bnb4_state + bnb4_type_name(!bnb_->fp4))) {
    const std::string other = file_prefix + bnb4_state + bnb4_type_name(!bnb_->fp4);
    raise<FormatError>("{}: layer '{}' is bitsandbytes {} ('{}' in {}) but config.json's "
                       "quantization_config.bnb_4bit_quant_type is '{}'{}: a checkpoint is of one 4-bit type",
                       dir_.string(), module, bnb_->fp4 ? "NF4" : "FP4", other, store_.file_of(other),
                       bnb4_type_name(bnb_->fp4),
                       bnb_->fp4 ? " (as when the key is absent: transformers' default)" : "");
  }
  if (it != quantized_modules_.end()) modules_read_.insert(module);
  if (it == quantized_modules_.end() && !hub && !bnb) {
    reject_partial_prequantized_layer(store_, dir_, file_prefix, hub_, bnb_);
    return nullptr;
  }
  // load_quantized_linear takes a bias when there is one; a layer that has a
  // bias by the architecture but lost it would run with none (wrong output).
  if (bias && !store_.contains(file_prefix + ".bias")) raise_missing(file_prefix + ".bias", Shape{out});
  QuantSpec spec;
  if (!hub && !bnb) {
    try {
      spec = parse_quant_mode(it->second);
    } catch (const InvalidArgument& e) {
      raise<FormatError>("{}: config.json quantization_config.modules['{}']: {}", dir_.string(), module,
                         e.what());
    }
  }
  std::vector<std::string> read;  // tensors handed out, to name the file an error is about
  // A bias the architecture does not have is not read (and is warned as unused), as for an unquantized layer.
  const TensorGetter get = layer_getter(read, bias ? std::string() : file_prefix + ".bias");
  try {
    if (hub) return load_hub_int4_linear(get, file_prefix, *hub_, out, in);
    if (bnb) return bnb_->int8 ? load_bnb_int8_linear(get, file_prefix, *bnb_, out, in)
                               : load_bnb_4bit_linear(get, file_prefix, bnb_->fp4, out, in);
    return load_quantized_linear(get, file_prefix, spec, out, in);
  } catch (const FormatError& e) {
    if (checksums_.mismatched()) throw;  // names the folder, file and tensor already
    raise_in_layer(module, read, e);
  }
}

std::vector<std::unique_ptr<Linear>> FileWeights::quantized_fused_linears(const std::string& fused_prefix,
                                                                          const std::vector<FusedPart>& parts,
                                                                          int64_t in) {
  if (bnb_)
    for (const char* suffix :
         {".SCB", ".weight.quant_state.bitsandbytes__nf4", ".weight.quant_state.bitsandbytes__fp4"})
      if (store_.contains(fused_prefix + suffix))
        raise<FormatError>("{}: layer '{}' is a bitsandbytes layer quantized fused ('{}{}' in {}): kq splits the "
                           "fused layers of AutoAWQ / AutoGPTQ checkpoints and unquantized ones into their parts, "
                           "not bitsandbytes ones",
                           dir_.string(), fused_prefix, fused_prefix, suffix, store_.file_of(fused_prefix + suffix));
  if (!hub_ || !store_.contains(fused_prefix + ".qweight")) {
    reject_partial_prequantized_layer(store_, dir_, fused_prefix, hub_, std::nullopt);
    return {};
  }
  std::vector<int64_t> rows;
  for (const FusedPart& part : parts) rows.push_back(part.rows);
  std::vector<std::string> read;
  const TensorGetter get = layer_getter(read, fused_prefix + ".bias");  // Phi-3's fused layers have no bias
  try {
    return load_hub_int4_fused_linears(get, fused_prefix, *hub_, rows, in);
  } catch (const FormatError& e) {
    raise_in_layer(fused_prefix, read, e);
  }
}

TensorGetter FileWeights::layer_getter(std::vector<std::string>& read, const std::string& hidden) {
  return [this, &read, hidden](const std::string& n) {
    if (!store_.contains(n) || n == hidden) return Tensor();
    Tensor t = store_.get(n);
    checksums_.verify(n, t);
    disk_bytes_ += t.nbytes();
    used_.insert(n);
    read.push_back(n);
    return t;
  };
}

void FileWeights::raise_in_layer(const std::string& module, const std::vector<std::string>& read,
                                 const FormatError& e) const {
  // A bad value (scale, code, zero point) is reported with its tensor name;
  // add the safetensors file holding it (shards may split a layer's tensors).
  // A missing tensor is in no file: name the file of the layer's other
  // tensors, where it was looked for.
  const std::string what = e.what();
  std::string file;
  for (const std::string& n : read)
    if (what.find("'" + n + "'") != std::string::npos) file = fmt::format(" (in {})", store_.file_of(n));
  if (file.empty() && !read.empty()) file = fmt::format(" (in {})", store_.file_of(read.front()));
  raise<FormatError>("{}: quantized layer '{}'{}: {}", dir_.string(), module, file, what);
}

void FileWeights::raise_missing(const std::string& name, const Shape& shape) const {
  // GPT-2 names are all "transformer.<name>" or all bare: a file with both
  // forms was reported as missing the one it has under the other form.
  const std::string other = name.starts_with(kGpt2Prefix) ? name.substr(kGpt2Prefix.size())
                                                          : std::string(kGpt2Prefix) + name;
  if (store_.contains(other))
    raise<FormatError>("{}: missing tensor '{}' (expected shape {}), but '{}' is in {}: the file mixes GPT-2 "
                       "tensor names with and without the 'transformer.' prefix; give every tensor the same form",
                       dir_.string(), name, shape_str(shape), other, store_.file_of(other));
  raise<FormatError>("{}: missing tensor '{}' (expected shape {})", dir_.string(), name, shape_str(shape));
}

Tensor FileWeights::fetch(const std::string& name, const Shape& disk_shape) {
  if (!store_.contains(name)) raise_missing(name, disk_shape);
  Tensor t = store_.get(name);
  checksums_.verify(name, t);  // before the shape and dtype are judged: a relabelled tensor is named as one
  if (t.shape() != disk_shape)
    raise<FormatError>("{}: tensor '{}' in {} has shape {}, expected {}", dir_.string(), name,
                       store_.file_of(name), shape_str(t.shape()), shape_str(disk_shape));
  if (t.dtype() != DType::F32 && t.dtype() != DType::BF16 && t.dtype() != DType::F16)
    raise<FormatError>("{}: tensor '{}' in {} has dtype {}; expected F32, BF16 or F16", dir_.string(), name,
                       store_.file_of(name), dtype_name(t.dtype()));
  disk_bytes_ += t.nbytes();
  used_.insert(name);
  return t;
}

namespace {
/// The layer index N of a tensor named `<prefix>N.<rest>`, if `name` is one.
std::optional<int64_t> layer_index(const std::string& name, std::string_view prefix) {
  if (!name.starts_with(prefix)) return std::nullopt;
  const char* first = name.data() + prefix.size();
  const char* last = name.data() + name.size();
  int64_t n = -1;
  const auto [end, ec] = std::from_chars(first, last, n);
  if (ec != std::errc() || end == first || end == last || *end != '.' || n < 0) return std::nullopt;
  return n;
}
}  // namespace

std::vector<FusedPart> fused_parts(const ModelConfig& c, const std::string& name) {
  if (c.arch != Arch::Phi3) return {};
  const std::optional<int64_t> l = layer_index(name, "model.layers.");
  if (!l) return {};
  const std::string p = fmt::format("model.layers.{}.", *l);
  if (name == p + "self_attn.qkv_proj.weight") {
    const int64_t q = c.num_heads * c.head_dim, kv = c.num_kv_heads * c.head_dim;
    return {{p + "self_attn.q_proj.weight", 0, q},
            {p + "self_attn.k_proj.weight", q, kv},
            {p + "self_attn.v_proj.weight", q + kv, kv}};
  }
  if (name == p + "mlp.gate_up_proj.weight")
    return {{p + "mlp.gate_proj.weight", 0, c.intermediate_size},
            {p + "mlp.up_proj.weight", c.intermediate_size, c.intermediate_size}};
  return {};
}

void FileWeights::check_config_sizes(const ModelConfig& c) const {
  const std::string cfg = (dir_ / "config.json").string();
  const bool gpt2 = c.arch == Arch::GPT2;
  // The files named in messages: the one holding the tensors, or the folder's shards.
  const auto files = [&](const std::vector<std::string>& names) {
    std::set<std::string> f;
    for (const std::string& n : names) f.insert(store_.file_of(n));
    if (f.size() == 1) return *f.begin();
    return fmt::format("the {} safetensors files of {}", f.size(), dir_.string());
  };
  std::vector<std::string> layer_tensors;
  int64_t layers = 0;  // highest layer index + 1
  for (const std::string& n : store_.names()) {
    std::optional<int64_t> l;
    for (const std::string_view prefix : gpt2 ? std::vector<std::string_view>{"transformer.h.", "h."}
                                              : std::vector<std::string_view>{"model.layers."})
      if (!l) l = layer_index(n, prefix);
    if (!l) continue;
    layers = std::max(layers, *l + 1);
    layer_tensors.push_back(n);
  }
  const std::string& layer_key = c.size_keys.num_layers;  // as config.json writes it (an alias, maybe)
  if (c.num_layers > layers) {
    const std::string holder = layer_tensors.empty() ? dir_.string() : files(layer_tensors);
    const std::string held = layers == 0
                                 ? fmt::format("no layer tensors ('{}0.*')", gpt2 ? "transformer.h." : "model.layers.")
                                 : fmt::format("tensors for {} layer{}", layers, layers == 1 ? "" : "s");
    // A config of one architecture over the other's checkpoint (a GPT-2 config may use the Llama key names,
    // transformers' aliases, so it parses): name the other architecture's layers when the files hold them.
    std::string other;
    if (layers == 0)
      for (const std::string& n : store_.names())
        if (gpt2 ? layer_index(n, "model.layers.").has_value()
                 : (layer_index(n, "transformer.h.") || layer_index(n, "h."))) {
          other = fmt::format("; it has '{}' of a {} checkpoint: is \"model_type\" meant to be \"{}\"?", n,
                              gpt2 ? "Llama" : "GPT-2", gpt2 ? "llama" : "gpt2");
          break;
        }
    raise<FormatError>("{}: {} = {} but {} has {}{}", cfg, layer_key, c.num_layers, holder, held, other);
  }
  const std::string& hidden_key = c.size_keys.hidden_size;
  const std::string embed = gpt2 ? (store_.contains("transformer.wte.weight") ? "transformer.wte.weight" : "wte.weight")
                                 : "model.embed_tokens.weight";
  if (store_.contains(embed)) {
    checksums_.verify(embed, store_.get(embed));  // the shapes below are judged only once their record holds
    const Shape s = store_.get(embed).shape();
    if (s != Shape{c.vocab_size, c.hidden_size})
      raise<FormatError>("{}: vocab_size = {} and {} = {} but tensor '{}' in {} has shape {}, expected [vocab_size, "
                         "{}]",
                         cfg, c.vocab_size, hidden_key, c.hidden_size, embed, store_.file_of(embed), shape_str(s),
                         hidden_key);
  }
  if (gpt2) return;
  // Llama's RoPE tables are sized by head_dim before any layer is read.
  for (const auto& [proj, heads, heads_name] : {std::tuple{"q_proj", c.num_heads, "num_attention_heads"},
                                                std::tuple{"k_proj", c.num_kv_heads, "num_key_value_heads"}}) {
    const std::string name = fmt::format("model.layers.0.self_attn.{}.weight", proj);
    if (!store_.contains(name)) continue;
    const Tensor t = store_.get(name);
    checksums_.verify(name, t);
    if (t.dtype() != DType::F32 && t.dtype() != DType::BF16 && t.dtype() != DType::F16) continue;  // quantized
    if (t.shape() == Shape{heads * c.head_dim, c.hidden_size}) continue;
    // A key config.json gives (not null) is named as it is (ModelConfig::size_keys); an absent one with the
    // default it stood for.
    const std::string head_dim_key =
        !c.size_keys.head_dim.empty() ? "head_dim"
        : c.arch == Arch::Qwen3 ? "head_dim (128 when absent: Qwen3Config's default)"
        : c.arch == Arch::Gemma3 ? "head_dim (256 when absent: Gemma3TextConfig's default)"
        : c.arch == Arch::Gemma  ? "head_dim (256 when absent: GemmaConfig's default)"
        : c.arch == Arch::Gemma2 ? "head_dim (256 when absent: Gemma2Config's default)"
                                : "head_dim (hidden_size / num_attention_heads when absent)";
    // The key-value heads when the key is absent: LlamaConfig's the query heads, MistralConfig's 8, Qwen2Config's
    // and Qwen3Config's 32, Gemma3TextConfig's 4, GemmaConfig's 16, Gemma2Config's 4.
    const std::string heads_key =
        heads_name == std::string_view("num_attention_heads") || !c.size_keys.num_kv_heads.empty() ? heads_name
        : c.arch == Arch::Mistral ? "num_key_value_heads (8 when absent: MistralConfig's default)"
        : c.arch == Arch::Qwen2   ? "num_key_value_heads (32 when absent: Qwen2Config's default)"
        : c.arch == Arch::Qwen3   ? "num_key_value_heads (32 when absent: Qwen3Config's default)"
        : c.arch == Arch::Gemma3  ? "num_key_value_heads (4 when absent: Gemma3TextConfig's default)"
        : c.arch == Arch::Gemma   ? "num_key_value_heads (16 when absent: GemmaConfig's default)"
        : c.arch == Arch::Gemma2  ? "num_key_value_heads (4 when absent: Gemma2Config's default)"
                                  : "num_key_value_heads (num_attention_heads when absent)";
    raise<FormatError>("{}: {} = {}, {} = {} and hidden_size = {} but tensor '{}' in {} has shape {}, expected "
                       "[{} × head_dim, hidden_size]",
                       cfg, heads_key, heads, head_dim_key, c.head_dim, c.hidden_size, name, store_.file_of(name),
                       shape_str(t.shape()), heads_name);
  }
  // Phi3's fused projections, split by rows at load (fused_parts): a wrong shape would split at the wrong rows.
  for (const auto& [name, rows_of] :
       {std::pair{std::string("self_attn.qkv_proj.weight"),
                  "(num_attention_heads + 2 × num_key_value_heads) × head_dim = q, k and v rows"},
        std::pair{std::string("mlp.gate_up_proj.weight"), "2 × intermediate_size = gate and up rows"}}) {
    const std::string full = "model.layers.0." + name;
    const std::vector<FusedPart> parts = fused_parts(c, full);
    if (parts.empty() || !store_.contains(full)) continue;
    const Tensor t = store_.get(full);
    checksums_.verify(full, t);
    const Shape want{parts.back().row0 + parts.back().rows, c.hidden_size};
    if (t.shape() != want)
      raise<FormatError>("{}: num_attention_heads = {}, num_key_value_heads = {}, head_dim = {}, intermediate_size = "
                         "{} and hidden_size = {} but tensor '{}' in {} has shape {}, expected {}: [{}, hidden_size]",
                         cfg, c.num_heads, c.num_kv_heads, c.head_dim, c.intermediate_size, c.hidden_size, full,
                         store_.file_of(full), shape_str(t.shape()), shape_str(want), rows_of);
  }
}

namespace {
/// Buffers Hugging Face checkpoints carry that no inference code reads:
/// RoPE inverse frequencies (recomputed from rope_theta) and GPT-2's causal
/// mask buffers.
bool is_known_unused_buffer(const std::string& name) {
  for (const std::string_view suffix : {".rotary_emb.inv_freq", ".attn.bias", ".attn.masked_bias"})
    if (name.ends_with(suffix) && name.size() > suffix.size()) return true;
  return false;
}
}  // namespace

std::vector<std::string> FileWeights::unused_tensors() const {
  std::vector<std::string> out;
  for (const std::string& n : store_.names())
    if (!used_.count(n) && !is_known_unused_buffer(n)) out.push_back(n);
  return out;
}

void FileWeights::warn_unused_tensors(const ModelConfig& c) const {
  const std::vector<std::string> unused = unused_tensors();
  if (unused.empty()) return;
  constexpr size_t kShown = 5;
  std::string names;
  for (size_t i = 0; i < unused.size() && i < kShown; ++i)
    names += fmt::format("{}'{}'", i ? ", " : "", io::name_excerpt(unused[i]));  // a name may be 100 MB long
  if (unused.size() > kShown) names += ", ...";
  warn(fmt::format(
      "{}: {} tensor{} in the weights {} not used by the {} architecture with {} layer{} and {} ignored (a quantized "
      "folder saved from this model leaves {} out): {}",
      dir_.string(), unused.size(), unused.size() == 1 ? "" : "s", unused.size() == 1 ? "is" : "are",
      arch_name(c.arch), c.num_layers, c.num_layers == 1 ? "" : "s", unused.size() == 1 ? "was" : "were",
      unused.size() == 1 ? "it" : "them",
      names));
}

void FileWeights::check_quantized_modules_read(const ModelConfig& c) const {
  const std::string cfg = (dir_ / "config.json").string();
  std::vector<std::string> beyond;  // modules of layers the config does not have
  int64_t highest = -1;
  for (const auto& [module, mode] : quantized_modules_) {
    if (modules_read_.count(module)) continue;
    std::optional<int64_t> l;
    for (const std::string_view prefix : c.arch == Arch::GPT2 ? std::vector<std::string_view>{"transformer.h.", "h."}
                                                              : std::vector<std::string_view>{"model.layers."})
      if (!l) l = layer_index(module, prefix);
    if (l && *l >= c.num_layers) {
      beyond.push_back(module);
      highest = std::max(highest, *l);
      continue;
    }
    raise<FormatError>("{}: quantization_config.modules['{}'] ('{}'): not a linear layer of the {} architecture "
                       "(kq quantize lists linear layers only; the model reads this module unquantized): an edited "
                       "quantization record",
                       cfg, module, mode, arch_name(c.arch));
  }
  if (!beyond.empty())
    raise<FormatError>("{}: {} = {} but quantization_config.modules lists {} module{} of layers {} to {} (e.g. '{}'): "
                       "kq quantize wrote this folder for a model with at least {} layers; put back the {} it wrote",
                       cfg, c.size_keys.num_layers, c.num_layers, beyond.size(), beyond.size() == 1 ? "" : "s",
                       c.num_layers, highest, beyond.front(), highest + 1, c.size_keys.num_layers);
}

Tensor FileWeights::get(const std::string& name, const Shape& shape, Init) {
  Tensor t = fetch(name, shape);
  const bool aligned = reinterpret_cast<uintptr_t>(t.raw()) % alignof(float) == 0;
  if (t.dtype() == DType::F32 && aligned) return require_finite(t, name, dir_);  // a view of the mapping
  Tensor copy = f32_copy(t, name, store_.file_of(name), dir_, /*transposed=*/false,
                         [&] { return t.dtype() == DType::F32 ? t.clone() : t.to_f32(); });
  return release_source(t, require_finite(std::move(copy), name, dir_));
}

Tensor FileWeights::get_in_disk_dtype(const std::string& name, const Shape& shape, Init init) {
  if (disk_dtype(name) == DType::F32) return get(name, shape, init);  // F32 (or missing: get() names it)
  return copy_16bit(name, shape, /*transposed=*/false);
}

Tensor FileWeights::get_transposed_in_disk_dtype(const std::string& name, const Shape& shape, Init init) {
  if (disk_dtype(name) == DType::F32) return get_transposed(name, shape, init);
  if (shape.size() != 2) raise<InvalidArgument>("get_transposed_in_disk_dtype: '{}' needs a 2-D shape", name);
  return copy_16bit(name, {shape[1], shape[0]}, /*transposed=*/true);
}

Tensor FileWeights::copy_16bit(const std::string& name, const Shape& disk_shape, bool transposed) {
  const Tensor t = fetch(name, disk_shape);
  const std::string file = store_.file_of(name);
  Tensor copy = naming_allocation(
      t.nbytes(),
      [&] {
        const std::filesystem::path relative = std::filesystem::path(file).lexically_relative(dir_);
        const std::string in_file = relative.empty() || *relative.begin() == ".." ? file : relative.string();
        return fmt::format("{}: copying tensor '{}' {} of {} ({}){}", dir_.string(), io::name_excerpt(name),
                           shape_str(t.shape()), in_file, dtype_name(t.dtype()), transposed ? ", transposed" : "");
      },
      [&] { return transposed ? t.transposed() : t.clone(); });
  return release_source(t, require_finite_16bit(std::move(copy), name, dir_));
}

DType FileWeights::disk_dtype(const std::string& name) const {
  if (!store_.contains(name)) return DType::F32;
  const DType t = store_.get(name).dtype();
  return t == DType::BF16 || t == DType::F16 ? t : DType::F32;
}

Tensor FileWeights::get_transposed(const std::string& name, const Shape& shape, Init) {
  if (shape.size() != 2) raise<InvalidArgument>("get_transposed: '{}' needs a 2-D shape", name);
  const Tensor t = fetch(name, {shape[1], shape[0]});
  Tensor copy = f32_copy(t, name, store_.file_of(name), dir_, /*transposed=*/true,
                         [&] { return (t.dtype() != DType::F32 ? t.to_f32() : t).transposed(); });
  return release_source(t, require_finite(std::move(copy), name, dir_));
}

namespace {

uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

uint64_t fnv1a(const std::string& s) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : s) h = (h ^ c) * 0x100000001b3ull;
  return h;
}

}  // namespace

Tensor RandomWeights::get(const std::string& name, const Shape& shape, Init init) {
  Tensor t = Tensor::empty(DType::F32, shape);
  float* p = t.mutable_data<float>();
  const int64_t n = t.numel();
  disk_bytes_ += size_t(n) * disk_elem_;
  if (init != Init::Weight) {
    const float v = init == Init::Ones ? 1.0f : 0.0f;
    for (int64_t i = 0; i < n; ++i) p[i] = v;
    return t;
  }
  // Uniform on [-a, a] has standard deviation a/sqrt(3): a = 0.02·sqrt(3).
  constexpr float kA = 0.034641016f;
  const uint64_t key = splitmix64(seed_ ^ fnv1a(name));
#pragma omp parallel for schedule(static) if (n > (1 << 20))
  for (int64_t i = 0; i < n; ++i) {
    const uint64_t r = splitmix64(key + uint64_t(i));
    const float u = float(r >> 40) * (1.0f / 16777216.0f);  // [0, 1), 24 bits
    p[i] = (2.0f * u - 1.0f) * kA;
  }
  return t;
}

void RandomWeights::set_linear_mode(const std::string& mode, bool lm_head) {
  if (!mode.empty() && mode != "bf16" && mode != "f32" && mode != "fp32") (void)parse_quant_mode(mode);
  linear_mode_ = mode;
  lm_head_mode_ = lm_head;
}

std::unique_ptr<Linear> RandomWeights::generated_linear(const std::string& module, int64_t out, int64_t in,
                                                        Backend& be) {
  if (linear_mode_.empty() || (module == "lm_head" && !lm_head_mode_)) return nullptr;
  const bool plain = linear_mode_ == "bf16" || linear_mode_ == "f32" || linear_mode_ == "fp32";
  if (auto op = be.random_linear(linear_mode_, out, in, splitmix64(seed_ ^ fnv1a(module)))) {
    disk_bytes_ += size_t(out * in) * disk_elem_;
    return op;
  }
  if (plain) return nullptr;
  return quantize_linear(get(module + ".weight", {out, in}, Init::Weight), Tensor(), parse_quant_mode(linear_mode_));
}

}  // namespace kq::models
