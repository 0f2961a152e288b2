#pragma once
// What the two writers of Hugging Face Hub quantized checkpoints share
// (gptq_export.cpp: AutoGPTQ v1; awq_export.cpp: AutoAWQ GEMM): the checks
// before any work, the FP16 conversion of the tensors left unquantized, and
// the atomic folder (model.safetensors, config.json, side files).
#include <filesystem>
#include <functional>
#include <map>
#include <set>
#include <string>

#include <nlohmann/json.hpp>

#include "kq/config.hpp"
#include "kq/model.hpp"
#include "kq/optimizer.hpp"
#include "kq/tensor.hpp"
#include "models/weights.hpp"

namespace kq::detail {

/// `t` as FP16: F16 as it is; F32 / BF16 rounded to nearest even (the values a float16 model holds); other
/// dtypes (integer buffers) unchanged. Throws InvalidArgument naming `who`, the tensor `name` and `format`
/// ("GPTQ", "AutoAWQ") when a finite value overflows FP16 (above 65504 after rounding).
Tensor hub_f16(const Tensor& t, const std::string& name, const char* who, const char* format);

/// The checks of a hub export before anything is read, in this order: the model's linear layers
/// (Model::check_linear_layers), a source folder (random weights cannot be saved), `check_config` on the model's
/// config and source folder, the source folder still there, `out` (check_quantized_output), the side files
/// (check_quantized_side_files) and `options` describing the model (as save_quantized_model). Returns the source
/// folder. `who` starts the messages ("save_awq_model").
std::filesystem::path check_hub_export(Model& model, const QuantizeOptions& options, const std::filesystem::path& out,
                                       bool overwrite, const char* who,
                                       const std::function<void(const ModelConfig&, const std::filesystem::path&)>&
                                           check_config);

/// Adds to `tensors` every tensor of `store` (the source folder `src`) the model uses that `tensors` does not
/// hold yet and whose name starts with none of `replaced` (the "<prefix>." of the quantized layers), as FP16
/// (hub_f16). Throws InvalidArgument naming the tensor for a fused layer (models::fused_parts: Phi-3's), which
/// the exporters do not write, and as hub_f16.
void add_source_tensors(Model& model, const TensorStore& store, const std::filesystem::path& src,
                        const std::set<std::string>& replaced, std::map<std::string, Tensor>& tensors, const char* who,
                        const char* format);

/// kq::warn about `flushed` nonzero scales that FP16 flushed to 0 (the first in layer `first`), when any.
void warn_flushed_scales(const char* format, int64_t flushed, const std::string& first);

/// Writes the folder `out` atomically (io::AtomicDir, replacing it when `overwrite`): model.safetensors
/// (`tensors`, metadata format "pt"), config.json (`config`), `qc_file` holding `qc` when `qc_file` is not
/// null, and the side files of `src` (copy_side_files). Throws Error on I/O failure, naming `out`.
void write_hub_folder(const std::filesystem::path& out, bool overwrite, const std::map<std::string, Tensor>& tensors,
                      const nlohmann::json& config, const char* qc_file, const nlohmann::json& qc,
                      const std::filesystem::path& src);

/// The tag the hub exports put first in quantization_config.meta.quantizer: "kq:<version>".
std::string hub_quantizer_tag();

/// Whether `q` is the quantization_config of a folder a kq hub export wrote (save_gptq_model,
/// save_awq_model): quant_method "gptq" or "awq" and a meta.quantizer list whose first entry starts with "kq:"
/// (the folders check_quantized_output lets overwrite = true replace, beside kq's own).
bool is_kq_hub_quantization_config(const nlohmann::json& q);

}  // namespace kq::detail
