#pragma once
// KernelQuant public API, everything in one include.
#include "kq/adaptive.hpp"   // adaptive (mixed) precision per layer: plan_adaptive_precision
#include "kq/awq_export.hpp"  // save_awq_model: AutoAWQ (GEMM) checkpoints
#include "kq/bench.hpp"      // kq bench: quality / memory / latency per mode
#include "kq/config.hpp"     // ModelConfig from config.json
#include "kq/context.hpp"    // ExecContext, Device
#include "kq/dtype.hpp"      // DType, F16/BF16 conversions
#include "kq/error.hpp"      // Error, FormatError, InvalidArgument, Unsupported
#include "kq/eval.hpp"       // perplexity, model comparison, sampling
#include "kq/fp8.hpp"        // is_fp8_available(), get_fp8_info()
#include "kq/gptq_export.hpp"  // save_gptq_model: AutoGPTQ (GPTQ v1) checkpoints
#include "kq/info.hpp"       // version, CPU features
#include "kq/linear.hpp"     // Linear: the op of a model's linear layer (LinearSlot, LinearTransform)
#include "kq/model.hpp"      // Model, KVCache
#include "kq/optimizer.hpp"  // quantize_model, save_quantized_model, LLMOptimizer
#include "kq/out_of_memory.hpp"  // OutOfMemory: a failed allocation that names what it was for
#include "kq/quantize.hpp"   // QuantSpec / QuantizationMode, FP8Config, quantize_to_fp8
#include "kq/tensor.hpp"     // Tensor
#include "kq/tokenizer.hpp"  // Tokenizer
#include "kq/warning.hpp"    // set_warning_handler, warn
