// `kq info`: version, build, CPU features, threads, CUDA.
#include <cctype>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>

#include <fmt/core.h>

#include "commands.hpp"
#include "threads_option.hpp"
#include "wait_policy.hpp"
#include "io/utf8_text.hpp"
#include "kernels/cpu/dispatch.hpp"
#include "kernels/cpu/ops_vec.hpp"
#include "kq/context.hpp"
#include "kq/fp8.hpp"
#include "kq/error.hpp"
#include "kq/info.hpp"
#include "kq/warning.hpp"

namespace kq::cli {
namespace {

/// The "kernels:" lines. `kq info` is what a user runs to see what the machine
/// supports, so a KQ_ISA this CPU lacks (or an unknown value) is reported here,
/// with the error every other command gives, instead of failing the report.
void print_kernels() {
  const std::string values = cpu::isa_env_value_names("|");
  const std::string best(cpu::isa_name(cpu::best_isa()));
  std::string available;
  for (cpu::Isa i : cpu::available_isas()) available.append(available.empty() ? "" : ", ").append(cpu::isa_name(i));
  const char* raw_env = std::getenv("KQ_ISA");
  // The value as the user set it, control characters and invalid UTF-8 escaped (\n, \xNN).
  const std::string env = raw_env ? io::escape_for_terminal(raw_env) : std::string();
  try {
    const std::string isa = active_isa();
    // What was asked (KQ_ISA) and what runs: the quantized kernels' table and
    // the FP32/vector ops' (KQ_ISA=generic selects the scalar reference
    // quantized kernels and the baseline x86-64 vector ops, no AVX2).
    const std::string runs =
        env == "generic"
            ? std::string("generic (portable C++ kernels: the scalar reference quantized kernels and the baseline "
                          "x86-64 FP32/vector ops, no AVX2")
            : fmt::format("{} (FP32/vector ops {}", isa, cpu::use_avx2() ? "avx2" : "baseline x86-64");
    fmt::print("kernels:  {}; {}; available here: {}; force with KQ_ISA={})\n", runs,
               !env.empty() ? fmt::format("forced with KQ_ISA={}", env) : std::string("the best this CPU has"),
               available, values);
  } catch (const InvalidArgument& e) {
    fmt::print("kernels:  KQ_ISA={} IS NOT USABLE HERE: {}\n", env, io::escape_for_terminal(e.what()));
    fmt::print("          every other kq command fails with that error (exit 1) while KQ_ISA is set so;\n");
    fmt::print("          unset KQ_ISA to use {} (the best this CPU has; available here: {}; values: {})\n", best,
               available, values);
    warn(fmt::format("{} (kq info reports anyway; other commands fail)", e.what()));
  }
}

/// The OpenMP wait policy in effect, from OMP_WAIT_POLICY (`env`, null when
/// unset; parse_wait_policy). kq replaces a value the runtime would ignore by
/// PASSIVE before the runtime loads (default_passive_wait in main.cpp), so the
/// last case is seen only when that re-execution failed.
std::string wait_policy_report(const char* env) {
  if (!env) return "runtime default";
  if (const std::optional<std::string> p = parse_wait_policy(env)) return *p;
  return fmt::format("runtime default: OMP_WAIT_POLICY={} is invalid (not ACTIVE or PASSIVE) and ignored",
                     io::escape_for_terminal(env));
}

/// The "threads:" line(s): OpenMP's default thread count (apply_threads: warned
/// when above the CPUs kq may run on) and wait policy. An OMP_NUM_THREADS above
/// kq::kMaxThreads is reported here, with the error every other command gives,
/// instead of failing the report (as a bad KQ_ISA in print_kernels).
void print_threads(const CLI::App& cmd) {
  const std::string policy = fmt::format("OpenMP wait policy {}; kq's default is PASSIVE, OMP_WAIT_POLICY=ACTIVE spins",
                                         wait_policy_report(std::getenv("OMP_WAIT_POLICY")));
  try {
    apply_threads(cmd);
    fmt::print("threads:  {} ({})\n", resolve_threads(0), policy);
  } catch (const InvalidArgument& e) {
    const std::string what = io::escape_for_terminal(e.what());
    fmt::print("threads:  NOT USABLE HERE: {}\n", what);
    fmt::print("          every other kq command fails with that error (exit 1) unless it is given --threads N;\n");
    fmt::print("          {}\n", policy);
    warn(fmt::format("{} (kq info reports anyway; other commands fail without --threads)", e.what()));
  }
}

}  // namespace

void add_info_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("info", "Show version, build, CPU features, threads and CUDA status");
  cmd->callback([cmd] {
    const CpuFeatures& f = cpu_features();
    auto yn = [](bool b) { return b ? "yes" : "no"; };
    fmt::print("KernelQuant {} ({} build)\n", version(), build_type());
    fmt::print("CPU:      {}\n", cpu_model_name());
    fmt::print("features: AVX2 {}  FMA {}  F16C {}  AVX-512F {}  AVX-512BW {}  AVX-512VL {}\n",
               yn(f.avx2), yn(f.fma), yn(f.f16c), yn(f.avx512f), yn(f.avx512bw), yn(f.avx512vl));
    fmt::print("          AVX-512 VNNI {}  AVX-VNNI {}  AVX-512 BF16 {}  AVX-512 FP16 {}\n",
               yn(f.avx512vnni), yn(f.avxvnni), yn(f.avx512bf16), yn(f.avx512fp16));
    print_kernels();
    print_threads(*cmd);
    fmt::print("{}", fp8_info_report());
  });
}

}  // namespace kq::cli
