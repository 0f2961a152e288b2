// What the GPTQ and AutoAWQ exporters share (see hub_export.hpp).
#include "api/hub_export.hpp"

#include <algorithm>
#include <cmath>

#include "api/save_common.hpp"
#include "io/atomic_dir.hpp"
#include "io/atomic_file.hpp"
#include "io/json_strict.hpp"
#include "io/safetensors.hpp"
#include "kq/dtype.hpp"
#include "kq/error.hpp"
#include "kq/info.hpp"
#include "kq/warning.hpp"

namespace kq::detail {

namespace fs = std::filesystem;

Tensor hub_f16(const Tensor& t, const std::string& name, const char* who, const char* format) {
  if (t.dtype() == DType::F16 || (t.dtype() != DType::F32 && t.dtype() != DType::BF16)) return t;
  const Tensor f = t.dtype() == DType::F32 ? t : t.to_f32();
  Tensor h = Tensor::empty(DType::F16, t.shape());
  const float* src = f.data<float>();
  uint16_t* dst = h.mutable_data<uint16_t>();
  const int64_t n = t.numel();
  for (int64_t i = 0; i < n; ++i) {
    dst[i] = f32_to_f16(src[i]);
    if (std::isfinite(src[i]) && !std::isfinite(f16_to_f32(dst[i])))
      raise<InvalidArgument>("{}: tensor '{}' holds {} at index {}, beyond FP16's range (largest 65504): a {} "
                             "checkpoint is FP16, so this model cannot be written as one",
                             who, name, src[i], i, format);
  }
  return h;
}

fs::path check_hub_export(Model& model, const QuantizeOptions& options, const fs::path& out, bool overwrite,
                          const char* who, const std::function<void(const ModelConfig&, const fs::path&)>& check_config) {
  model.check_linear_layers(who);
  const fs::path src = model.source_dir();
  if (src.empty()) raise<InvalidArgument>("{}: the model has no source folder (random weights cannot be saved)", who);
  check_config(model.config(), src);
  check_source_folder_still_there(src, who);
  check_quantized_output(out, src, overwrite);
  check_quantized_side_files(src, model.config().vocab_size);
  check_options_describe_model(model, options, who);
  return src;
}

void add_source_tensors(Model& model, const TensorStore& store, const fs::path& src,
                        const std::set<std::string>& replaced, std::map<std::string, Tensor>& tensors, const char* who,
                        const char* format) {
  // Unused source tensors are left out, as save_quantized_model does.
  const std::set<std::string> unused(model.unused_source_tensors().begin(), model.unused_source_tensors().end());
  for (const std::string& name : store.names()) {
    if (unused.count(name) || tensors.count(name)) continue;
    if (!models::fused_parts(model.config(), name).empty())
      raise<InvalidArgument>("{}: tensor '{}' of '{}' is a fused layer, which kq does not write as {}; use the kq "
                             "format",
                             who, name, src.string(), format);
    const bool superseded = std::any_of(replaced.begin(), replaced.end(),
                                        [&](const std::string& p) { return name.starts_with(p); });
    if (!superseded) tensors.emplace(name, hub_f16(store.get(name), name, who, format));
  }
}

void warn_flushed_scales(const char* format, int64_t flushed, const std::string& first) {
  if (flushed <= 0) return;
  warn(fmt::format("{} format: {} nonzero scale{} below FP16's smallest subnormal (2^-24) became 0 (first in "
                   "layer '{}'): {} group{} decode{} to zeros",
                   format, flushed, flushed == 1 ? "" : "s", first, flushed == 1 ? "its" : "their",
                   flushed == 1 ? "" : "s", flushed == 1 ? "s" : ""));
}

void write_hub_folder(const fs::path& out, bool overwrite, const std::map<std::string, Tensor>& tensors,
                      const nlohmann::json& config, const char* qc_file, const nlohmann::json& qc, const fs::path& src) {
  io::AtomicDir dir(out, overwrite);
  dir.write([&] {  // errors (e.g. a full disk) name `out`, not the staging folder
    write_safetensors(dir.file("model.safetensors"), tensors, {{"format", "pt"}});
    io::write_file_atomic(dir.file("config.json"), io::json_text(config, 2) + "\n");
    if (qc_file) io::write_file_atomic(dir.file(qc_file), io::json_text(qc, 2) + "\n");
    copy_side_files(dir, src);
  });
  dir.commit();
}

std::string hub_quantizer_tag() { return "kq:" + version(); }

bool is_kq_hub_quantization_config(const nlohmann::json& q) {
  if (!q.is_object() || !q.contains("quant_method") || (q["quant_method"] != "gptq" && q["quant_method"] != "awq"))
    return false;
  if (!q.contains("meta") || !q["meta"].is_object() || !q["meta"].contains("quantizer")) return false;
  const nlohmann::json& who = q["meta"]["quantizer"];
  return who.is_array() && !who.empty() && who[0].is_string() && who[0].get<std::string>().starts_with("kq:");
}

}  // namespace kq::detail
