// AutoAWQ / AutoGPTQ 4-bit layers into kq's INT4 group format (see hub_int4.hpp).
#include "quant/hub_int4.hpp"

#include <bit>
#include <cmath>
#include <cstring>
#include <vector>

#include "formats/traits.hpp"
#include "kq/error.hpp"

namespace kq {
namespace {

constexpr int64_t kMinBlock = 32, kMaxBlock = 256;  // kq's INT4 group sizes (QuantSpec.block_size)

/// The tensors of one layer, checked for dtype and shape.
struct HubTensors {
  Tensor qweight, qzeros, scales, g_idx;  // g_idx: GPTQ only, may be undefined
};

/// Nibble `i` (0..7) of a packed int32.
inline uint8_t nibble(int32_t word, int i) { return uint8_t((uint32_t(word) >> (4 * i)) & 0xFu); }

/// The position i of the nibble holding column j of an AWQ int32 (inverse of kAwqPackOrder).
constexpr int awq_nibble_of(int j) {
  for (int i = 0; i < 8; ++i)
    if (kAwqPackOrder[i] == j) return i;
  return -1;
}

HubTensors fetch(const TensorGetter& get, const std::string& prefix, const HubInt4Config& c, int64_t N, int64_t K,
                 int64_t G) {
  const std::string layout = hub_int4_layout_name(c.layout);
  const bool awq = c.layout == HubInt4Layout::AwqGemm;
  const std::string a_layout = (awq ? "an " : "a ") + layout;  // "an AWQ (gemm)", "a GPTQ (v1)"
  const std::string sizes = fmt::format("weight [N = {}, K = {}], group_size {}", N, K, c.group_size);
  // Each tensor is asked for once (a getter may count the bytes it hands out).
  auto check = [&](const char* suffix, Tensor t, const Shape& shape, bool float_ok) {
    const std::string name = prefix + suffix;
    if (!t.defined()) raise<FormatError>("tensor '{}' is missing (needed by {} layer)", name, a_layout);
    const bool dtype_ok = float_ok ? (t.dtype() == DType::F16 || t.dtype() == DType::BF16 || t.dtype() == DType::F32)
                                   : t.dtype() == DType::I32;
    if (!dtype_ok || t.shape() != shape)
      raise<FormatError>("tensor '{}': expected {} {} for {} layer with {}, got {} {}", name,
                         float_ok ? "F16 (or BF16, F32)" : "I32", shape_str(shape), a_layout, sizes,
                         dtype_name(t.dtype()), shape_str(t.shape()));
    if (reinterpret_cast<uintptr_t>(t.raw()) % dtype_size(t.dtype()) != 0) t = t.clone();
    return t;
  };
  auto need = [&](const char* suffix, const Shape& shape, bool float_ok) {
    return check(suffix, get(prefix + suffix), shape, float_ok);
  };
  HubTensors h;
  h.qweight = need(".qweight", awq ? Shape{K, N / 8} : Shape{K / 8, N}, false);
  h.qzeros = need(".qzeros", {G, N / 8}, false);
  h.scales = need(".scales", {G, N}, true);
  if (!awq) {
    const std::string name = prefix + ".g_idx";
    if (Tensor g = get(name); g.defined())
      h.g_idx = check(".g_idx", std::move(g), {K}, false);
    else if (c.desc_act)
      raise<FormatError>("tensor '{}' is missing: quantization_config.desc_act is true (act-order), so the groups "
                         "of the input channels are given by g_idx, not by k / group_size",
                         name);
  }
  return h;
}

/// The group of each input channel: g_idx when given (checked to lie in [0, G)), else k / group_size.
std::vector<int32_t> channel_groups(const HubTensors& h, const std::string& prefix, const HubInt4Config& c,
                                    int64_t K, int64_t G) {
  std::vector<int32_t> g(size_t(K), 0);
  if (h.g_idx.defined()) {
    const int32_t* p = h.g_idx.data<int32_t>();
    for (int64_t k = 0; k < K; ++k) {
      if (p[k] < 0 || p[k] >= G)
        raise<FormatError>("tensor '{}.g_idx': group {} at index {} is outside [0, {}) (the groups of .scales)",
                           prefix, p[k], k, G);
      g[size_t(k)] = p[k];
    }
  } else if (c.group_size > 0) {
    for (int64_t k = 0; k < K; ++k) g[size_t(k)] = int32_t(k / c.group_size);
  }
  return g;
}

/// The largest kq group size B (a power of two in [32, 256], not above K's
/// largest power of two unless that is below 32) whose every block of B
/// consecutive channels lies in one checkpoint group; 0 when none does.
int64_t kq_block_for(const std::vector<int32_t>& groups) {
  const int64_t K = int64_t(groups.size());
  const int64_t top = std::max(kMinBlock, std::min(kMaxBlock, int64_t(std::bit_floor(uint64_t(K)))));
  for (int64_t B = top; B >= kMinBlock; B /= 2) {
    bool ok = true;
    for (int64_t k = 0; k < K && ok; ++k) ok = groups[size_t(k)] == groups[size_t(k - k % B)];
    if (ok) return B;
  }
  return 0;
}

/// The first index at which a scale is negative or not finite; −1 when none is.
int64_t first_bad_scale(const std::vector<float>& s) {
  for (size_t i = 0; i < s.size(); ++i)
    if (!std::isfinite(s[i]) || s[i] < 0.0f) return int64_t(i);
  return -1;
}

}  // namespace

std::string hub_int4_layout_name(HubInt4Layout layout) {
  switch (layout) {
    case HubInt4Layout::AwqGemm: return "AWQ (gemm)";
    case HubInt4Layout::GptqV1: return "GPTQ (v1)";
    case HubInt4Layout::GptqV2: return "GPTQ (v2)";
  }
  return "unknown";
}

PackedWeight import_hub_int4(const TensorGetter& get, const std::string& prefix, const HubInt4Config& c, int64_t N,
                             int64_t K) {
  if (N < 1 || K < 1) raise<InvalidArgument>("'{}': weight shape [{}, {}] must have N, K >= 1", prefix, N, K);
  if (c.group_size == 0 || c.group_size < -1)
    raise<InvalidArgument>("'{}': group_size {} must be -1 or positive", prefix, c.group_size);
  const bool awq = c.layout == HubInt4Layout::AwqGemm;
  const std::string layout = hub_int4_layout_name(c.layout);
  const std::string a_layout = (awq ? "an " : "a ") + layout;  // "an AWQ (gemm)", "a GPTQ (v1)"
  // The packed dimension must hold whole int32s: N (AWQ's columns, both formats' zeros), GPTQ's K.
  if (N % 8 != 0 || (!awq && K % 8 != 0))
    raise<FormatError>("tensor '{}.qweight': {} layer of weight [{}, {}] cannot be packed eight 4-bit codes per "
                       "int32 ({} must be a multiple of 8)",
                       prefix, a_layout, N, K, N % 8 != 0 ? "out_features" : "in_features");
  // A group size that is not a multiple of kMinBlock splits the row into groups no kq group fits in (unless
  // the row is one group): named as such, not as the act-order layout the check after the tensors reports.
  if (c.group_size > 0 && c.group_size % kMinBlock != 0 && K > c.group_size)
    raise<FormatError>("'{}': {} group_size {} is not a multiple of {}: kq's INT4 groups are {}-{} consecutive "
                       "input channels (a power of two), and each checkpoint group must split into whole kq groups",
                       prefix, layout, c.group_size, kMinBlock, kMinBlock, kMaxBlock);
  const int64_t G = c.group_size < 0 ? 1 : (K + c.group_size - 1) / c.group_size;
  const HubTensors h = fetch(get, prefix, c, N, K, G);

  // Scales: F32 [G, N], exact from F16/BF16; never negative or non-finite (kq's loaders refuse those too).
  const Tensor s32 = h.scales.dtype() == DType::F32 ? h.scales : h.scales.to_f32();
  std::vector<float> s(size_t(G * N));
  std::memcpy(s.data(), s32.data<float>(), s.size() * sizeof(float));
  if (const int64_t i = first_bad_scale(s); i >= 0)
    raise<FormatError>("tensor '{}.scales': {} scale {} at [{}, {}] (group, output channel); {} checkpoint "
                       "writes finite scales >= 0",
                       prefix, std::isfinite(s[size_t(i)]) ? "negative" : "non-finite", s[size_t(i)], i / N, i % N,
                       a_layout);

  // Zero points [G, N] as the dequantization uses them.
  std::vector<uint8_t> z(size_t(G * N));
  const int32_t* qz = h.qzeros.data<int32_t>();
  for (int64_t g = 0; g < G; ++g)
    for (int64_t col = 0; col < N / 8; ++col) {
      const int32_t word = qz[g * (N / 8) + col];
      for (int i = 0; i < 8; ++i) {
        const int64_t n = 8 * col + (awq ? kAwqPackOrder[i] : i);
        uint8_t v = nibble(word, i);
        if (c.layout == HubInt4Layout::GptqV1) {
          if (v == 15)
            raise<FormatError>("tensor '{}.qzeros': stored zero 15 at [{}, {}] (group, output channel) is zero "
                               "point 16 in the GPTQ v1 format (stored = zero - 1), outside 0..15; AutoGPTQ writes "
                               "zero points 0..15 as -1..14 (a stored -1 wraps and damages the word), so the file "
                               "is damaged or not v1 (checkpoint_format \"gptq_v2\" stores the zero itself)",
                               prefix, g, n);
          ++v;
        }
        z[size_t(g * N + n)] = v;
      }
    }

  const std::vector<int32_t> groups = channel_groups(h, prefix, c, K, G);
  const int64_t B = kq_block_for(groups);
  if (B == 0) {
    // The first channel whose run of kMinBlock (aligned) mixes two groups.
    int64_t k = 0;
    while (k < K && groups[size_t(k)] == groups[size_t(k - k % kMinBlock)]) ++k;
    const int64_t k0 = k - k % kMinBlock;
    raise<FormatError>("tensor '{}': the groups of the input channels are not runs of {} consecutive channels "
                       "(input channel {} is in group {}, channel {} in group {}); kq's INT4 groups are {}-{} "
                       "consecutive input channels, so this layout (GPTQ act-order, desc_act: true) cannot be "
                       "converted losslessly: use a checkpoint quantized without desc_act",
                       prefix + (h.g_idx.defined() ? ".g_idx" : ".qweight"), kMinBlock, k0, groups[size_t(k0)], k,
                       groups[size_t(k)], kMinBlock, kMaxBlock);
  }
  const int64_t nb = formats::blocks_per_row(K, B);
  std::vector<int32_t> block_group(static_cast<size_t>(nb));
  bool all_eight = true;
  for (int64_t b = 0; b < nb; ++b) {
    block_group[size_t(b)] = groups[size_t(b * B)];
    for (int64_t n = 0; n < N; ++n) all_eight = all_eight && z[size_t(block_group[size_t(b)] * N + n)] == 8;
  }

  PackedWeight p;
  p.spec = parse_quant_mode(fmt::format("int4-g{}{}", B, all_eight ? "" : "-asym"));
  p.N = N;
  p.K = K;
  p.block = B;
  p.blocks_per_row = nb;
  const int64_t row_bytes = (K + 1) / 2;
  p.codes = Tensor::empty(DType::U8, {N, row_bytes});
  p.scales = Tensor::empty(DType::F32, {N, nb});
  if (!all_eight) p.zeros = Tensor::empty(DType::U8, {N, nb});
  uint8_t* codes = p.codes.mutable_data<uint8_t>();
  float* scales = p.scales.mutable_data<float>();
  uint8_t* zeros = all_eight ? nullptr : p.zeros.mutable_data<uint8_t>();
  const int32_t* qw = h.qweight.data<int32_t>();

#pragma omp parallel for schedule(static) if (N * K > (1 << 20))
  for (int64_t n = 0; n < N; ++n) {
    uint8_t* row = codes + n * row_bytes;
    if (awq) {
      // Column n sits in int32 column n / 8 of every row k, at nibble awq_nibble_of(n % 8).
      const int64_t col = n / 8;
      const int i = awq_nibble_of(int(n % 8));
      std::memset(row, 0, size_t(row_bytes));
      for (int64_t k = 0; k < K; ++k) row[k / 2] |= uint8_t(nibble(qw[k * (N / 8) + col], i) << (4 * (k & 1)));
    } else {
      // Eight consecutive k, low nibble first: the int32's bytes are kq's packed bytes (low nibble = even k).
      for (int64_t r = 0; r < K / 8; ++r) {
        const uint32_t word = uint32_t(qw[r * N + n]);
        for (int m = 0; m < 4; ++m) row[4 * r + m] = uint8_t(word >> (8 * m));
      }
    }
    for (int64_t b = 0; b < nb; ++b) {
      const size_t gi = size_t(block_group[size_t(b)] * N + n);
      scales[n * nb + b] = s[gi];
      if (zeros) zeros[n * nb + b] = z[gi];
    }
  }
  return p;
}

PackedWeight hub_int4_rows(const PackedWeight& w, int64_t row0, int64_t rows) {
  const formats::WeightFormat f = w.weight_format();
  if (f != formats::WeightFormat::INT4_SYM && f != formats::WeightFormat::INT4_ASYM)
    raise<InvalidArgument>("hub_int4_rows: the weight is {}, not INT4", w.spec.name());
  if (rows < 1 || row0 < 0 || row0 + rows > w.N)
    raise<InvalidArgument>("hub_int4_rows: rows [{}, {}) are not a non-empty range of the weight's {} rows", row0,
                           row0 + rows, w.N);
  PackedWeight p;
  p.N = rows;
  p.K = w.K;
  p.block = w.block;
  p.blocks_per_row = w.blocks_per_row;
  p.codes = w.codes.slice_rows(row0, row0 + rows).clone();
  p.scales = w.scales.slice_rows(row0, row0 + rows).clone();
  bool all_eight = true;
  if (w.zeros.defined()) {
    p.zeros = w.zeros.slice_rows(row0, row0 + rows).clone();
    const uint8_t* z = p.zeros.data<uint8_t>();
    for (int64_t i = 0; i < p.zeros.numel() && all_eight; ++i) all_eight = z[i] == 8;
    if (all_eight) p.zeros = Tensor();
  }
  p.spec = parse_quant_mode(fmt::format("int4-g{}{}", p.block, all_eight ? "" : "-asym"));
  return p;
}

}  // namespace kq
