#pragma once
// What the writers of quantized folders share (save_quantized.cpp: kq's own
// folders; hub_export.cpp: AutoGPTQ v1 and AutoAWQ folders): the source checks, the
// record of the options, the tensor-name prefix and the side files.
#include <filesystem>
#include <string>

#include <nlohmann/json.hpp>

#include "io/atomic_dir.hpp"
#include "kq/model.hpp"
#include "kq/optimizer.hpp"

namespace kq::detail {

/// The tensor-name prefix of `module` (a LinearSlot name) in the source files: GPT-2 slot names always carry
/// "transformer." but hub checkpoints store bare names (`bare_gpt2`).
std::string source_file_prefix(const std::string& module, bool bare_gpt2);

/// Throws InvalidArgument naming the first layer of `model` that is not held as quantize_model(model, options)
/// leaves it (see save_quantized_model); `who` starts the message ("save_quantized_model").
void check_options_describe_model(Model& model, const QuantizeOptions& options, const char* who);

/// Throws FormatError when the folder the model was loaded from, `src`, is gone or holds no config.json.
void check_source_folder_still_there(const std::filesystem::path& src, const char* who);

/// Copies the side files of `src` (tokenizer, generation config, chat templates: the list in
/// save_quantized.cpp) that are there, byte for byte, into `dir`; inside AtomicDir::write.
void copy_side_files(const io::AtomicDir& dir, const std::filesystem::path& src);

/// The file AutoGPTQ writes beside config.json holding the quantization config (save_gptq_model writes it too).
inline constexpr const char* kGptqConfigFile = "quantize_config.json";

}  // namespace kq::detail
