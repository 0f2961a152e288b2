// Bodies of the VecKernels (ops_vec.hpp), written once with GCC/Clang vector
// extensions and compiled per ISA: ops_vec.cpp includes this with
// KQ_VEC_BYTES 16 (SSE2, any x86-64), ops_vec_avx2.cpp with 32 (-mavx2 -mfma).
// Explicit vectors (rather than auto-vectorized loops) because compilers will
// not if-convert the clamps of exp under -ftrapping-math (the default).
// No include guard and no #includes on purpose: the includer includes
// <bit>, <cmath>, <cstdint>, <cstring> and ops_vec.hpp, defines KQ_VEC_BYTES and
// opens a namespace of its own; everything here has internal linkage.

namespace {

using VF = float __attribute__((vector_size(KQ_VEC_BYTES)));
using VI = int32_t __attribute__((vector_size(KQ_VEC_BYTES)));
constexpr int64_t kW = KQ_VEC_BYTES / 4;  // lanes
constexpr float kNegInf = -__builtin_inff();

inline VF vload(const float* p) {
  VF v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
inline void vstore(float* p, VF v) { std::memcpy(p, &v, sizeof v); }
inline VF vset(float s) { return VF{} + s; }
// The first `n` < kW floats of p, the other lanes `fill`.
inline VF vload_tail(const float* p, int64_t n, float fill) {
  VF v = vset(fill);
  std::memcpy(&v, p, size_t(n) * sizeof(float));
  return v;
}
inline float hsum(VF v) {
  float s = 0.0f;
  for (int64_t i = 0; i < kW; ++i) s += v[i];
  return s;
}
inline float hmax(VF v) {
  float m = v[0];
  for (int64_t i = 1; i < kW; ++i) m = v[i] > m ? v[i] : m;
  return m;
}

// e^x per lane: the exp_f32 algorithm of ops_math.hpp (Cephes expf, relative
// error < 2e-7 on [-87, 88]), 0 below -87.3 (and for -inf), clamped above 88.3.
inline VF vexp(VF x) {
  const VI keep = x >= -87.3f;  // all-ones lanes survive, the others underflow to 0
  x = x > 88.3f ? vset(88.3f) : x;
  x = x < -87.3f ? vset(-87.3f) : x;
  const float kRound = 12582912.0f;  // 1.5·2^23: round to nearest
  const VF n = (x * 1.44269504088896341f + kRound) - kRound;
  VF r = x - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  VF p = vset(1.9875691500e-4f);
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const VF er = p * r * r + r + 1.0f;
  const VI bits = (__builtin_convertvector(n, VI) + 127) << 23;
  const VF y = er * std::bit_cast<VF>(bits);
  return std::bit_cast<VF>(std::bit_cast<VI>(y) & keep);
}

float vmax_of(const float* x, int64_t n) {
  // Four running maxima (independent chains), NaNs skipped (v > m is false).
  VF m = vset(kNegInf), m1 = m, m2 = m, m3 = m;
  int64_t i = 0;
  for (; i + 4 * kW <= n; i += 4 * kW) {
    const VF v0 = vload(x + i), v1 = vload(x + i + kW), v2 = vload(x + i + 2 * kW), v3 = vload(x + i + 3 * kW);
    m = v0 > m ? v0 : m;
    m1 = v1 > m1 ? v1 : m1;
    m2 = v2 > m2 ? v2 : m2;
    m3 = v3 > m3 ? v3 : m3;
  }
  m1 = m1 > m ? m1 : m;
  m3 = m3 > m2 ? m3 : m2;
  m = m3 > m1 ? m3 : m1;
  for (; i + kW <= n; i += kW) {
    const VF v = vload(x + i);
    m = v > m ? v : m;
  }
  if (i < n) {
    const VF v = vload_tail(x + i, n - i, kNegInf);
    m = v > m ? v : m;
  }
  return hmax(m);
}

constexpr int64_t kBlock = 256;  // F32 partial sums of <= 256 terms, then double

double k_log_sum_exp(const float* x, int64_t n) {
  const float m = vmax_of(x, n);
  double total = 0.0;
  for (int64_t b = 0; b < n; b += kBlock) {
    const int64_t e = b + kBlock < n ? b + kBlock : n;
    VF s = vset(0.0f);
    int64_t i = b;
    for (; i + kW <= e; i += kW) s += vexp(vload(x + i) - m);
    if (i < e) s += vexp(vload_tail(x + i, e - i, kNegInf) - m);
    total += double(hsum(s));
  }
  return double(m) + std::log(total);
}

void k_softmax(float* x, int64_t n) {
  const float m = vmax_of(x, n);
  VF s = vset(0.0f);
  int64_t i = 0;
  for (; i + kW <= n; i += kW) {
    const VF e = vexp(vload(x + i) - m);
    vstore(x + i, e);
    s += e;
  }
  if (i < n) {
    const VF e = vexp(vload_tail(x + i, n - i, kNegInf) - m);
    std::memcpy(x + i, &e, size_t(n - i) * sizeof(float));
    s += e;
  }
  const float inv = 1.0f / hsum(s);
  for (i = 0; i < n; ++i) x[i] *= inv;
}

// x[i] = f(x[i]) over n floats, full vectors then one padded tail.
template <class F>
void map_inplace(float* x, int64_t n, F f) {
  int64_t i = 0;
  for (; i + kW <= n; i += kW) vstore(x + i, f(vload(x + i)));
  if (i < n) {
    const VF y = f(vload_tail(x + i, n - i, 0.0f));
    std::memcpy(x + i, &y, size_t(n - i) * sizeof(float));
  }
}

inline VF vgelu_tanh(VF v) {
  const float kC = 0.7978845608028654f;  // sqrt(2/pi)
  const VF u = kC * (v + 0.044715f * v * v * v);
  const VF t = 1.0f - 2.0f / (vexp(2.0f * u) + 1.0f);  // tanh(u)
  return 0.5f * v * (1.0f + t);
}

inline VF vsilu(VF v) { return v / (1.0f + vexp(-v)); }

void k_gelu_tanh(float* x, int64_t n) { map_inplace(x, n, vgelu_tanh); }

void k_silu(float* x, int64_t n) { map_inplace(x, n, vsilu); }

void k_swiglu(float* gate, const float* up, int64_t n) {
  int64_t i = 0;
  for (; i + kW <= n; i += kW) vstore(gate + i, vsilu(vload(gate + i)) * vload(up + i));
  if (i < n) {
    const VF y = vsilu(vload_tail(gate + i, n - i, 0.0f)) * vload_tail(up + i, n - i, 0.0f);
    std::memcpy(gate + i, &y, size_t(n - i) * sizeof(float));
  }
}

float k_dot(const float* a, const float* b, int64_t n) {
  VF s = vset(0.0f);
  int64_t i = 0;
  for (; i + kW <= n; i += kW) s += vload(a + i) * vload(b + i);
  float t = hsum(s);
  for (; i < n; ++i) t += a[i] * b[i];
  return t;
}

void k_axpy(float a, const float* x, float* y, int64_t n) {
  int64_t i = 0;
  for (; i + kW <= n; i += kW) vstore(y + i, vload(y + i) + a * vload(x + i));
  for (; i < n; ++i) y[i] += a * x[i];
}

void k_kl_sums(const float* r, const float* c, double lse_r, int64_t n, double* weighted, double* mass) {
  const float shift = float(lse_r);
  const float shift_lo = float(lse_r - double(shift));  // keeps lse_r to ~double precision
  double w = 0.0, z = 0.0;
  for (int64_t b = 0; b < n; b += kBlock) {
    const int64_t e = b + kBlock < n ? b + kBlock : n;
    VF s = vset(0.0f), q = vset(0.0f);
    int64_t i = b;
    for (; i + kW <= e; i += kW) {
      const VF rv = vload(r + i);
      const VF p = vexp((rv - shift) - shift_lo);
      s += p * (rv - vload(c + i));
      q += p;
    }
    if (i < e) {  // padding: r = -inf gives p = 0, and r − c = 0 keeps 0·x finite
      const VF rv = vload_tail(r + i, e - i, kNegInf);
      const VF p = vexp((rv - shift) - shift_lo);
      s += p * (vload_tail(r + i, e - i, 0.0f) - vload_tail(c + i, e - i, 0.0f));
      q += p;
    }
    w += double(hsum(s));
    z += double(hsum(q));
  }
  *weighted += w;
  *mass += z;
}

int64_t k_argmax(const float* x, int64_t n) {
  const float m = vmax_of(x, n);
  const VF vm = vset(m);
  int64_t i = 0;
  for (; i + kW <= n; i += kW) {  // the first vector holding m, then the lane
    const VI eq = vload(x + i) == vm;
    uint64_t w[sizeof(VI) / sizeof(uint64_t)];
    std::memcpy(w, &eq, sizeof eq);
    uint64_t any = 0;
    for (const uint64_t v : w) any |= v;
    if (any) break;
  }
  for (; i < n; ++i)
    if (x[i] == m) return i;
  return 0;  // every value NaN
}

constexpr ::kq::cpu::VecKernels make_table(const char* isa) {
  return {isa, k_log_sum_exp, k_softmax, k_gelu_tanh, k_silu, k_swiglu, k_dot, k_axpy, k_kl_sums, k_argmax};
}

}  // namespace
