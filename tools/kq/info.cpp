// `kq info`: version, build, CPU features, threads, CUDA.
#include <cstdlib>

#include <fmt/core.h>

#include "commands.hpp"
#include "kernels/cpu/dispatch.hpp"
#include "kq/context.hpp"
#include "kq/fp8.hpp"
#include "kq/info.hpp"

namespace kq::cli {

void add_info_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("info", "Show version, build, CPU features, threads and CUDA status");
  cmd->callback([] {
    const std::string isa = active_isa();  // throws on a bad KQ_ISA before anything is printed
    const CpuFeatures& f = cpu_features();
    auto yn = [](bool b) { return b ? "yes" : "no"; };
    fmt::print("KernelQuant {} ({} build)\n", version(), build_type());
    fmt::print("CPU:      {}\n", cpu_model_name());
    fmt::print("features: AVX2 {}  FMA {}  F16C {}  AVX-512F {}  AVX-512BW {}  AVX-512VL {}\n",
               yn(f.avx2), yn(f.fma), yn(f.f16c), yn(f.avx512f), yn(f.avx512bw), yn(f.avx512vl));
    fmt::print("          AVX-512 VNNI {}  AVX-VNNI {}  AVX-512 BF16 {}  AVX-512 FP16 {}\n",
               yn(f.avx512vnni), yn(f.avxvnni), yn(f.avx512bf16), yn(f.avx512fp16));
    fmt::print("kernels:  {} (force with KQ_ISA=ref|avx2|avx512vnni)\n", isa);
    const char* wait = std::getenv("OMP_WAIT_POLICY");
    fmt::print("threads:  {} (OpenMP wait policy {}; kq's default is PASSIVE, OMP_WAIT_POLICY=ACTIVE spins)\n",
               resolve_threads(0), wait ? wait : "runtime default");
    fmt::print("{}", fp8_info_report());
  });
}

}  // namespace kq::cli
