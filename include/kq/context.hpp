#pragma once
// Execution context passed explicitly to ops: no mutable globals.
#include <string>

namespace kq {

/// Where a model runs.
enum class Device { CPU, CUDA };

/// "cpu" / "cuda"; "unknown(N)" for a value outside the enum (see dtype_name).
std::string device_name(Device d);
/// Parses "cpu" or "cuda" (case-insensitive; "gpu" is accepted as another name
/// of "cuda", as the kq CLI's --device accepts it). Throws InvalidArgument naming the value.
Device parse_device(const std::string& s);

/// Largest accepted ExecContext::threads (more would only oversubscribe the CPU).
inline constexpr int kMaxThreads = 1024;

/// Runtime settings shared by every op of one model.
///
/// OpenMP's wait policy: the CPU ops run in OpenMP parallel regions, and a
/// program using the library gets OpenMP's default, under which idle worker
/// threads spin between regions. On a machine shared with other work that is
/// very slow (gpt2-tiny measure_latency on a shared 2-core machine: ~64 ms per
/// decoded token spinning vs ~0.2 ms with OMP_WAIT_POLICY=PASSIVE). The `kq`
/// CLI makes PASSIVE its default; a library user sets it: OMP_WAIT_POLICY=PASSIVE
/// in the environment the program starts with (libgomp, GCC's OpenMP, reads
/// it once when the library is loaded, before main, so a setenv() in main
/// comes too late; the `kq` program re-executes itself with it set).
/// ACTIVE (spinning) is up to ~30 % faster on a dedicated, otherwise idle machine.
struct ExecContext {
  Device device = Device::CPU;
  /// Worker threads for CPU ops, and for the CPU work on a model's weights: Model::load / random with this
  /// context (converting weights, a LinearTransform), Model::to_device to it, and quantize_model /
  /// plan_adaptive_precision on a model holding it (Model::context()); 0 means OpenMP's default (all cores or
  /// OMP_NUM_THREADS, or set_default_threads). Work that takes no ExecContext (quantize_weight,
  /// quantize_linear called directly) uses that default.
  int threads = 0;
};

/// Number of threads ExecContext{threads} will actually use: `threads` when
/// positive (the range [0, kMaxThreads] is checked where an ExecContext is set,
/// not here), else OpenMP's default (omp_get_max_threads(): OMP_NUM_THREADS
/// when set, else one per core); in both cases no more than OpenMP gives a
/// parallel region: at most OMP_THREAD_LIMIT, and 1 when called inside a
/// parallel region that allows no nested one. The CPU kernels (and oneDNN)
/// split their work by this count, so it also turns off OpenMP's dynamic
/// adjustment (omp_set_dynamic(0), for the calling thread), under which
/// OMP_DYNAMIC=true gave regions fewer threads than asked on a loaded machine.
/// Throws InvalidArgument, naming OMP_NUM_THREADS and its value, when
/// `threads` is 0 and that default is more than kMaxThreads (libgomp crashes
/// or fails to create that many threads) or, set_default_threads() not called,
/// OMP_NUM_THREADS asks more than kMaxThreads in a count that omp_get_max_threads()
/// returns cut to an int (4294967297 as 1), so a CPU forward pass with such a
/// default fails before its first op runs.
int resolve_threads(int threads);

/// Sets OpenMP's default thread count (omp_set_num_threads) for this process:
/// what resolve_threads(0) returns from then on, so what an ExecContext with
/// threads = 0 runs on, and what the CPU work that takes no ExecContext uses
/// (quantize_weight, quantize_linear); bounded and with dynamic adjustment off as in
/// resolve_threads. `threads` in [1, kMaxThreads]; throws InvalidArgument
/// otherwise. `kq --threads N` calls it, so N bounds every parallel region.
void set_default_threads(int threads);

/// CPUs this process may run on (its affinity mask: `taskset`, cgroups'
/// cpusets), else std::thread::hardware_concurrency(); 0 when unknown.
unsigned usable_cpus();

}  // namespace kq
