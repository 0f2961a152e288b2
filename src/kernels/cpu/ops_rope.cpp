#include "kernels/cpu/ops_rope.hpp"

#include <algorithm>
#include <cmath>

namespace kq::cpu {

std::vector<float> rope_inv_freq(double theta, int64_t head_dim, const RopeScaling& scaling,
                                 LongRopeFactors factors) {
  const int64_t half = head_dim / 2;
  std::vector<float> inv_freq(static_cast<size_t>(half));
  for (int64_t i = 0; i < half; ++i)
    inv_freq[size_t(i)] = 1.0f / std::pow(float(theta), float(2 * i) / float(head_dim));
  const float factor = float(scaling.factor);
  switch (scaling.type) {
    case RopeScaling::Type::Default: break;
    case RopeScaling::Type::Linear:
      for (float& f : inv_freq) f = f / factor;
      break;
    case RopeScaling::Type::Llama3: {
      // transformers: the band limits are Python floats (double), compared with the F32 wavelengths in F32;
      // every other step is an F32 tensor op (scalars rounded to F32; x / y a true F32 division).
      const double original = double(scaling.original_max_positions);
      const float low_wavelen = float(original / scaling.low_freq_factor);
      const float high_wavelen = float(original / scaling.high_freq_factor);
      const float low = float(scaling.low_freq_factor);
      const float band = float(scaling.high_freq_factor - scaling.low_freq_factor);
      const float two_pi = float(2.0 * 3.14159265358979323846);
      for (float& f : inv_freq) {
        const float wavelen = (1.0f / f) * two_pi;  // torch's 2π / inv_freq: inv_freq.reciprocal() · 2π
        if (wavelen > low_wavelen) {
          f = f / factor;  // low frequencies: interpolated
        } else if (!(wavelen < high_wavelen)) {  // medium: a blend of both
          const float smooth = ((1.0f / wavelen) * float(original) - low) / band;
          f = (1.0f - smooth) * f / factor + smooth * f;
        }  // high frequencies: unchanged
      }
      break;
    }
    case RopeScaling::Type::Yarn: {
      // transformers' _compute_yarn_parameters: the correction range in Python floats (double), the blend of
      // 1 / pos_freq (extrapolation) and 1 / (factor · pos_freq) (interpolation) in F32 tensor ops.
      const double pi = 3.14159265358979323846, dim = double(head_dim);
      const auto correction_dim = [&](double rotations) {
        return dim * std::log(double(scaling.original_max_positions) / (rotations * 2.0 * pi)) /
               (2.0 * std::log(theta));
      };
      double low = correction_dim(scaling.beta_fast), high = correction_dim(scaling.beta_slow);
      if (scaling.truncate) {
        low = std::floor(low);
        high = std::ceil(high);
      }
      low = std::max(low, 0.0);
      high = std::min(high, dim - 1.0);
      if (low == high) high += 0.001;  // transformers' guard against a zero-width ramp
      const float low_f = float(low), width = float(high - low);
      for (int64_t i = 0; i < half; ++i) {
        const float pos_freq = std::pow(float(theta), float(2 * i) / float(head_dim));
        const float extrapolation = 1.0f / pos_freq, interpolation = 1.0f / (factor * pos_freq);
        const float ramp = std::clamp((float(i) - low_f) / width, 0.0f, 1.0f);
        const float keep = 1.0f - ramp;  // inv_freq_extrapolation_factor
        inv_freq[size_t(i)] = interpolation * (1.0f - keep) + extrapolation * keep;
      }
      break;
    }
    case RopeScaling::Type::Dynamic: break;  // within max_position_embeddings: the default frequencies
    case RopeScaling::Type::LongRope: {
      // transformers: 1.0 / (ext_factors · base^(arange(0, dim, 2) / dim)), every step an F32 tensor op.
      const std::vector<double>& ext = factors == LongRopeFactors::Long ? scaling.long_factor : scaling.short_factor;
      for (int64_t i = 0; i < half; ++i)
        inv_freq[size_t(i)] = 1.0f / (float(ext[size_t(i)]) * std::pow(float(theta), float(2 * i) / float(head_dim)));
      break;
    }
  }
  return inv_freq;
}

RopeTable make_rope_table(double theta, int64_t head_dim, int64_t max_positions, const RopeScaling& scaling,
                          int64_t rotary_dim, int64_t long_from) {
  RopeTable t;
  t.head_dim = head_dim;
  t.rotary_dim = rotary_dim > 0 ? rotary_dim : head_dim;
  t.max_positions = max_positions;
  const int64_t half = t.rotary_dim / 2;
  t.cos.resize(size_t(max_positions * half));
  t.sin.resize(size_t(max_positions * half));
  const bool longrope = scaling.type == RopeScaling::Type::LongRope;
  const std::vector<float> inv_short = rope_inv_freq(theta, t.rotary_dim, scaling);
  const std::vector<float> inv_long =
      longrope && long_from < max_positions ? rope_inv_freq(theta, t.rotary_dim, scaling, LongRopeFactors::Long)
                                            : std::vector<float>();
  // transformers: cos() · attention_scaling in F32 (1 but for longrope and yarn: then not multiplied at all).
  const bool scaled = longrope || scaling.type == RopeScaling::Type::Yarn;
  const float attention = float(scaling.attention_factor);
  for (int64_t p = 0; p < max_positions; ++p) {
    const std::vector<float>& inv_freq = longrope && p >= long_from ? inv_long : inv_short;
    for (int64_t i = 0; i < half; ++i) {
      const float angle = float(p) * inv_freq[size_t(i)];
      float c = float(std::cos(double(angle))), s = float(std::sin(double(angle)));
      if (scaled) c *= attention, s *= attention;
      t.cos[size_t(p * half + i)] = c;
      t.sin[size_t(p * half + i)] = s;
    }
  }
  return t;
}

void apply_rope(float* x, int64_t n, int64_t heads, int64_t row_stride, int64_t pos0,
                const RopeTable& table) {
  const int64_t half = table.rotary_dim / 2;
  for (int64_t t = 0; t < n; ++t) {
    const float* c = table.cos.data() + (pos0 + t) * half;
    const float* s = table.sin.data() + (pos0 + t) * half;
    for (int64_t j = 0; j < heads; ++j) {
      float* v = x + t * row_stride + j * table.head_dim;
      for (int64_t i = 0; i < half; ++i) {
        const float a = v[i], b = v[i + half];
        v[i] = a * c[i] - b * s[i];
        v[i + half] = b * c[i] + a * s[i];
      }
    }
  }
}

}  // namespace kq::cpu
