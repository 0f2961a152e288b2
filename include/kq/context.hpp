#pragma once
// Execution context passed explicitly to ops: no mutable globals.
#include <string>

namespace kq {

/// Where a model runs.
enum class Device { CPU, CUDA };

/// "cpu" / "cuda"
std::string device_name(Device d);
/// Parses "cpu" or "cuda" (case-insensitive). Throws InvalidArgument naming the value.
Device parse_device(const std::string& s);

/// Largest accepted ExecContext::threads (more would only oversubscribe the CPU).
inline constexpr int kMaxThreads = 1024;

/// Runtime settings shared by every op of one model.
struct ExecContext {
  Device device = Device::CPU;
  /// Worker threads for CPU ops; 0 means OpenMP's default (all cores or OMP_NUM_THREADS).
  int threads = 0;
};

/// Number of threads ExecContext{threads} will actually use: `threads` when
/// positive (returned as given: the range [0, kMaxThreads] is checked where an
/// ExecContext is set, not here), else OpenMP's default.
int resolve_threads(int threads);

}  // namespace kq
