#include "kernels/cpu/ops_norm.hpp"

#include <cmath>

namespace kq::cpu {

void layer_norm(const float* x, int64_t n, int64_t d, const float* gamma, const float* beta, float eps,
                float* y, int threads) {
#pragma omp parallel for num_threads(threads) schedule(static) if (n > 1 && threads > 1)
  for (int64_t i = 0; i < n; ++i) {
    const float* xr = x + i * d;
    float* yr = y + i * d;
    double sum = 0.0;
    for (int64_t j = 0; j < d; ++j) sum += xr[j];
    const double mean = sum / double(d);
    double sq = 0.0;
    for (int64_t j = 0; j < d; ++j) {
      const double c = double(xr[j]) - mean;
      sq += c * c;
    }
    const float inv = float(1.0 / std::sqrt(sq / double(d) + double(eps)));
    const float m = float(mean);
    for (int64_t j = 0; j < d; ++j) yr[j] = (xr[j] - m) * inv * gamma[j] + beta[j];
  }
}

void rms_norm(const float* x, int64_t n, int64_t d, const float* gamma, float eps, float* y, int threads) {
#pragma omp parallel for num_threads(threads) schedule(static) if (n > 1 && threads > 1)
  for (int64_t i = 0; i < n; ++i) {
    const float* xr = x + i * d;
    float* yr = y + i * d;
    double sq = 0.0;
    for (int64_t j = 0; j < d; ++j) sq += double(xr[j]) * double(xr[j]);
    const float inv = float(1.0 / std::sqrt(sq / double(d) + double(eps)));
    for (int64_t j = 0; j < d; ++j) yr[j] = gamma[j] * (xr[j] * inv);
  }
}

}  // namespace kq::cpu
