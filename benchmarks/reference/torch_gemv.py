#!/usr/bin/env python3
"""A PyTorch reference for kq's W4A16 decode GEMV benchmark (bench_cuda --w4gemv).

Times PyTorch's INT4 group-128 weight-only kernel (tinygemm, `aten._weight_int4pack_mm`) at M = 1 on the
Llama-7B decode shapes the way bench_cuda times kq's kernels: CUDA events around replays of one CUDA graph that
launches the kernel 4 times per weight copy, rotating through enough copies to exceed 4x the L2, median of the
replays; GB/s counts the packed codes, the scales and zero points (BF16 pairs), x and y once; "% of copy" is
against a 2 GiB device-to-device copy (bytes read + written) in the same run, and beside it the same traffic as
a copy timed like the kernel. It exists to put kq's GEMV figures beside a mainstream kernel's on the same GPU.

Usage (on the GPU machine): python3 benchmarks/reference/torch_gemv.py [--reps 30]
"""
import argparse
import statistics
import sys

import torch

GROUP = 128
L2_BYTES = 60 * 2**20


def graph_us(fn, copies, reps):
    """Median microseconds per launch: 4 * copies launches of fn(i) in one CUDA graph, replayed reps times."""
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        fn(0)
    torch.cuda.current_stream().wait_stream(s)
    torch.cuda.synchronize()
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        for i in range(4 * copies):
            fn(i % copies)
    for _ in range(2):
        g.replay()
    a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    times = []
    for _ in range(reps):
        a.record()
        g.replay()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b) * 1e3 / (4 * copies))
    return statistics.median(times)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reps", type=int, default=30)
    args = p.parse_args()
    big = 2 << 30
    src, dst = torch.empty(big, dtype=torch.uint8, device="cuda"), torch.empty(big, dtype=torch.uint8, device="cuda")
    a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    ts = []
    for _ in range(20):
        a.record()
        dst.copy_(src)
        b.record()
        b.synchronize()
        ts.append(a.elapsed_time(b))
    copy_gbs = 2 * big / (statistics.median(ts) * 1e-3) / 1e9
    del src, dst
    print(f"torch {torch.__version__}, {torch.cuda.get_device_name()}; copy 2 GiB: {copy_gbs:.0f} GB/s (read + write)")
    gen = torch.Generator(device="cuda").manual_seed(1)
    for n, k in ((11008, 4096), (4096, 11008), (12288, 4096), (22016, 4096), (4096, 4096)):
        code_bytes = n * k // 2
        sz_bytes = (k // GROUP) * n * 2 * 2
        io_bytes = (k + n) * 2
        total = code_bytes + sz_bytes + io_bytes
        copies = max(2, -(-4 * L2_BYTES // total))
        ws, szs = [], []
        for _ in range(copies):
            codes = torch.randint(0, 16, (n, k), device="cuda", dtype=torch.int32, generator=gen)
            ws.append(torch.ops.aten._convert_weight_to_int4pack((codes[:, ::2] << 4 | codes[:, 1::2]).to(torch.uint8), 8))
            sz = torch.empty(k // GROUP, n, 2, device="cuda", dtype=torch.bfloat16)
            sz[..., 0], sz[..., 1] = 0.002, 0.016
            szs.append(sz)
            del codes
        x = torch.randn(1, k, device="cuda", dtype=torch.bfloat16, generator=gen)
        us = graph_us(lambda i: torch.ops.aten._weight_int4pack_mm(x, ws[i], GROUP, szs[i]), copies, args.reps)
        gbs = total / (us * 1e-6) / 1e9
        half = code_bytes // 2  # a copy of half the codes' bytes reads + writes the codes' bytes
        csrc = [torch.empty(half, dtype=torch.uint8, device="cuda") for _ in range(copies)]
        cdst = torch.empty(half, dtype=torch.uint8, device="cuda")
        cus = graph_us(lambda i: cdst.copy_(csrc[i]), copies, args.reps)
        print(f"int4-g128 tinygemm M=1 {n}x{k}: {us:6.2f} us, {gbs:5.0f} GB/s, {100 * gbs / copy_gbs:3.0f} % of copy; "
              f"copy of the codes' traffic {cus:5.2f} us ({100 * 2 * half / (cus * 1e-6) / 1e9 / copy_gbs:3.0f} %)",
              flush=True)
        del ws, szs, csrc, cdst
        torch.cuda.empty_cache()
    return 0


if __name__ == "__main__":
    sys.exit(main())
