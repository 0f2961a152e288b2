#include "kq/context.hpp"

#include <omp.h>

#include <algorithm>
#include <cctype>

#include "core/enum_name.hpp"
#include "kq/error.hpp"

namespace kq {

std::string device_name(Device d) {
  switch (d) {
    case Device::CPU: return "cpu";
    case Device::CUDA: return "cuda";
  }
  return std::string(unknown_enum_name(int64_t(d)));
}

Device parse_device(const std::string& s) {
  std::string l = s;
  std::transform(l.begin(), l.end(), l.begin(), [](unsigned char c) { return char(std::tolower(c)); });
  if (l == "cpu") return Device::CPU;
  if (l == "cuda" || l == "gpu") return Device::CUDA;
  raise<InvalidArgument>("parse_device: unknown device '{}' (expected cpu, cuda or gpu = cuda)", s);
}

int resolve_threads(int threads) { return threads > 0 ? threads : omp_get_max_threads(); }

}  // namespace kq
