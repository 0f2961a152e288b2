// The README's C++ example: load the shipped demo model with a quantization
// config (the specification's LLMOptimizer(config).load_model(path)), measure
// its perplexity against FP32, and round-trip a tensor through FP8.
//   ./build/examples/example_quickstart [MODEL_DIR]
#include <cstdio>
#include <string>

#include "kq/kq.hpp"

int main(int argc, char** argv) {
  const std::string dir = argc > 1 ? argv[1] : KQ_EXAMPLE_MODEL_DIR;
  try {
    // FP32 reference and an NF4 (block 64, double quantization) copy.
    auto fp32 = kq::Model::load(dir);
    kq::LLMOptimizer optimizer({.quantization = kq::QuantizeOptions{.spec = kq::parse_quant_mode("nf4")}});
    auto nf4 = optimizer.load_model(dir);

    const kq::Tokenizer tok = kq::Tokenizer::load(dir);
    const auto ids = tok.encode(
        "The package manager reads the description of each package, works out what it needs, and installs "
        "everything in the right order. When a new version appears, a single upgrade brings it up to date.");
    const kq::ComparisonResult c = kq::compare_models(*fp32, *nf4, ids);
    std::printf("perplexity fp32 %.3f -> nf4 %.3f, KL %.4f, top-1 agreement %.1f %%\n", c.ppl_ref, c.ppl_cand,
                c.mean_kl, 100 * c.top1_agreement);
    std::printf("weights %zu -> %zu bytes (%.2f bits/weight in the quantized layers)\n",
                fp32->weight_bytes(), nf4->weight_bytes(), optimizer.last_report().bits_per_weight());

    // Tensor-level FP8 (OCP E4M3, per-channel scales).
    kq::Tensor w = kq::Tensor::empty(kq::DType::F32, {2, 4});
    float* p = w.mutable_data<float>();
    for (int i = 0; i < 8; ++i) p[i] = 0.1f * float(i) - 0.3f;
    const kq::Fp8Tensor q = kq::quantize_to_fp8(w, {.format = kq::FP8Format::E4M3});
    const kq::Tensor back = kq::dequantize_from_fp8(q);
    std::printf("fp8 e4m3: %.4f -> %.4f\n", double(p[1]), double(back.data<float>()[1]));
    std::printf("fp8 tensor cores: %s\n", kq::is_fp8_available() ? "available" : kq::get_fp8_info().reason.c_str());
    return 0;
  } catch (const kq::Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
