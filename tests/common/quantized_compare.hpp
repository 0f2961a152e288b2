#pragma once
// One comparison of two quantized models that must be the same (a load path under test against its reference:
// Model::load + quantize_model), for the tests of what a load reads and holds in which dtype.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <vector>

#include "kq/model.hpp"
#include "kq/optimizer.hpp"

namespace kq::testing {

/// The logits of a short prefill (4 tokens, every row) then two decode steps with the KV cache, concatenated:
/// [6, vocab_size] F32. The ids (1, 50, 30, 7, 11, 95) fit the tiny folders' vocabulary of 96.
inline std::vector<float> prefill_decode_logits(Model& m) {
  const size_t V = size_t(m.config().vocab_size);
  KVCache cache = m.make_cache(16);
  std::vector<float> out(4 * V);
  m.forward(std::vector<int32_t>{1, 50, 30, 7}, cache, out.data());
  for (int32_t t : {11, 95}) {
    std::vector<float> row(V);
    m.forward(std::vector<int32_t>{t}, cache, row.data());
    out.insert(out.end(), row.begin(), row.end());
  }
  return out;
}

/// `a` with its report `ra` is `b` with `rb`: every layer's report (name, format, bytes, quantized, AWQ's α /
/// duo / errors / group), the totals and unmatched --keep patterns, each linear op's format, bytes and disk
/// dtype, the weight breakdown, and prefill_decode_logits bit for bit.
inline void expect_same_quantized_models(Model& a, const QuantizeReport& ra, Model& b, const QuantizeReport& rb) {
  ASSERT_EQ(ra.layers.size(), rb.layers.size());
  for (size_t i = 0; i < ra.layers.size(); ++i) {
    const LayerQuantization &x = ra.layers[i], &y = rb.layers[i];
    SCOPED_TRACE(y.name);
    EXPECT_EQ(x.name, y.name);
    EXPECT_EQ(x.format, y.format);
    EXPECT_EQ(x.bytes_before, y.bytes_before);
    EXPECT_EQ(x.bytes_after, y.bytes_after);
    EXPECT_EQ(x.quantized, y.quantized);
    EXPECT_EQ(x.awq_alpha, y.awq_alpha);
    EXPECT_EQ(x.awq_duo, y.awq_duo);
    EXPECT_EQ(x.awq_rtn_error, y.awq_rtn_error);
    EXPECT_EQ(x.awq_error, y.awq_error);
    EXPECT_EQ(x.awq_group, y.awq_group);
  }
  EXPECT_EQ(ra.quantized_bytes_before, rb.quantized_bytes_before);
  EXPECT_EQ(ra.quantized_bytes_after, rb.quantized_bytes_after);
  EXPECT_EQ(ra.quantized_matrix_bytes, rb.quantized_matrix_bytes);
  EXPECT_EQ(ra.quantized_elements, rb.quantized_elements);
  EXPECT_EQ(ra.unmatched_keep_patterns, rb.unmatched_keep_patterns);
  const std::vector<LinearSlot> la = a.linear_layers(), lb = b.linear_layers();
  ASSERT_EQ(la.size(), lb.size());
  for (size_t i = 0; i < la.size(); ++i) {
    EXPECT_EQ((*la[i].op)->format(), (*lb[i].op)->format()) << la[i].name;
    EXPECT_EQ((*la[i].op)->weight_bytes(), (*lb[i].op)->weight_bytes()) << la[i].name;
    EXPECT_EQ(la[i].disk_dtype, lb[i].disk_dtype) << la[i].name;
  }
  EXPECT_EQ(a.weight_breakdown().linear, b.weight_breakdown().linear);
  EXPECT_EQ(a.weight_breakdown().other, b.weight_breakdown().other);
  const std::vector<float> xa = prefill_decode_logits(a), xb = prefill_decode_logits(b);
  ASSERT_EQ(xa.size(), xb.size());
  EXPECT_EQ(std::memcmp(xa.data(), xb.data(), xa.size() * sizeof(float)), 0) << "logits differ";
}

}  // namespace kq::testing
