#!/usr/bin/env python3
"""A PyTorch reference for kq's GPU decode benchmark (bench_gpu_model --shape=llama-7b).

The same decode step as bench_gpu_model measures -- a random-weight Llama-7B shape (hidden 4096, ffn 11008,
32 layers, 32 heads of 128, vocab 32000), batch 1, a KV cache holding a 512-token prompt, 32 greedy steps --
written the way PyTorch's own fast-decoding recipe does it (static KV cache, torch.compile with CUDA graphs,
weight-only quantized linears: the dequantization fused into the GEMV by Inductor for INT8 / FP8, the tinygemm
INT4 kernel `aten._weight_int4pack_mm` for INT4 group 128). It exists to put kq's tokens/s and its ratios to
BF16 beside what PyTorch reaches on the same GPU in the same call; it is not part of kq.

Only the layout and the bytes matter for timing: weights, codes and scales are random, the KV cache's prompt
part is random, and the tokens fed back are the argmax of the logits (as in kq's benchmark).

Usage (on the GPU machine, python3 with torch >= 2.5):
  python3 benchmarks/reference/torch_decode.py [--modes bf16,int8,fp8,int4-g128] [--runs 3] [--decode 32]
          [--prompt 512] [--layers 32]
Prints one line per mode: decode tokens/s (median of the runs' own figures) and the ratio to BF16.
"""
import argparse
import statistics
import sys
import time

import torch
import torch._inductor.config
import torch.nn.functional as F

HIDDEN, FFN, HEADS, HEAD_DIM, VOCAB = 4096, 11008, 32, 128, 32000
GROUP = 128  # INT4 group size


class Linear(torch.nn.Module):
    """y = x W^T for x [M, K] BF16; W [N, K] held as `mode` stores it (buffers: static for CUDA graphs)."""

    def __init__(self, n, k, mode, gen):
        super().__init__()
        self.mode = mode
        w = torch.randn(n, k, device="cuda", dtype=torch.bfloat16, generator=gen) * 0.02
        if mode == "bf16":
            self.register_buffer("w", w)
        elif mode == "int8":  # per-output-channel absmax / 127, weight-only
            s = w.abs().amax(dim=1).float() / 127
            self.register_buffer("w", torch.clamp(torch.round(w.float() / s[:, None]), -127, 127).to(torch.int8))
            self.register_buffer("s", s.to(torch.bfloat16))
        elif mode == "fp8":  # E4M3, per-output-channel absmax / 448, weight-only
            s = w.abs().amax(dim=1).float() / 448
            self.register_buffer("w", (w.float() / s[:, None]).to(torch.float8_e4m3fn))
            self.register_buffer("s", s.to(torch.bfloat16))
        elif mode == "int4-g128":  # asymmetric groups of 128 along K, tinygemm's packed layout
            codes = torch.randint(0, 16, (n, k), device="cuda", dtype=torch.int32, generator=gen)
            packed = (codes[:, ::2] << 4 | codes[:, 1::2]).to(torch.uint8)
            self.register_buffer("w", torch.ops.aten._convert_weight_to_int4pack(packed, 8))
            sz = torch.empty(k // GROUP, n, 2, device="cuda", dtype=torch.bfloat16)
            sz[..., 0] = 0.002
            sz[..., 1] = 0.016
            self.register_buffer("sz", sz)
        else:
            raise SystemExit(f"unknown mode {mode}")
        del w

    def forward(self, x):
        if self.mode == "bf16":
            return F.linear(x, self.w)
        if self.mode in ("int8", "fp8"):
            return F.linear(x, self.w.to(torch.bfloat16)) * self.s
        return torch.ops.aten._weight_int4pack_mm(x, self.w, GROUP, self.sz)


def rms_norm(x, w):
    x32 = x.float()
    return (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + 1e-5)).to(x.dtype) * w


def rope(x, cos, sin):  # x [1, H, 1, D], cos / sin [1, 1, 1, D]; the rotate-half form of Llama's checkpoints
    x1, x2 = x[..., : HEAD_DIM // 2], x[..., HEAD_DIM // 2 :]
    return x * cos + torch.cat((-x2, x1), dim=-1) * sin


class Block(torch.nn.Module):
    """One decoder layer: RMSNorm, fused q/k/v, RoPE, KV-cache write, attention, o, RMSNorm, gate/up, SwiGLU, down."""

    def __init__(self, mode, max_len, gen):
        super().__init__()
        self.register_buffer("ln1", torch.ones(HIDDEN, device="cuda", dtype=torch.bfloat16))
        self.register_buffer("ln2", torch.ones(HIDDEN, device="cuda", dtype=torch.bfloat16))
        self.qkv = Linear(3 * HIDDEN, HIDDEN, mode, gen)
        self.o = Linear(HIDDEN, HIDDEN, mode, gen)
        self.gate_up = Linear(2 * FFN, HIDDEN, mode, gen)
        self.down = Linear(HIDDEN, FFN, mode, gen)
        shape = (1, HEADS, max_len, HEAD_DIM)
        self.register_buffer("k", torch.randn(shape, device="cuda", dtype=torch.bfloat16, generator=gen))
        self.register_buffer("v", torch.randn(shape, device="cuda", dtype=torch.bfloat16, generator=gen))

    def forward(self, x, pos, cos, sin, mask):
        h = rms_norm(x, self.ln1)
        q, k, v = self.qkv(h).split(HIDDEN, dim=-1)
        q = rope(q.view(1, HEADS, 1, HEAD_DIM), cos, sin)
        k = rope(k.view(1, HEADS, 1, HEAD_DIM), cos, sin)
        self.k.index_copy_(2, pos, k)
        self.v.index_copy_(2, pos, v.view(1, HEADS, 1, HEAD_DIM))
        a = F.scaled_dot_product_attention(q, self.k, self.v, attn_mask=mask)
        x = x + self.o(a.reshape(1, HIDDEN))
        h = rms_norm(x, self.ln2)
        g, u = self.gate_up(h).split(FFN, dim=-1)
        return x + self.down(F.silu(g) * u)


class Model(torch.nn.Module):
    def __init__(self, mode, layers, max_len, gen):
        super().__init__()
        self.register_buffer("embed", torch.randn(VOCAB, HIDDEN, device="cuda", dtype=torch.bfloat16, generator=gen) * 0.02)
        self.blocks = torch.nn.ModuleList(Block(mode, max_len, gen) for _ in range(layers))
        self.register_buffer("norm", torch.ones(HIDDEN, device="cuda", dtype=torch.bfloat16))
        self.register_buffer("lm_head", torch.randn(VOCAB, HIDDEN, device="cuda", dtype=torch.bfloat16, generator=gen) * 0.02)
        inv = 1.0 / (10000.0 ** (torch.arange(0, HEAD_DIM, 2, device="cuda").float() / HEAD_DIM))
        ang = torch.arange(max_len, device="cuda").float()[:, None] * inv[None, :]
        self.register_buffer("cos", torch.cat((ang.cos(), ang.cos()), -1).to(torch.bfloat16))
        self.register_buffer("sin", torch.cat((ang.sin(), ang.sin()), -1).to(torch.bfloat16))
        self.register_buffer("positions", torch.arange(max_len, device="cuda"))

    def forward(self, token, pos):
        """token: int64 [1]; pos: int64 [1] (the position written). Returns logits [1, VOCAB] FP32."""
        x = self.embed[token]  # [1, HIDDEN]
        cos, sin = self.cos[pos].view(1, 1, 1, HEAD_DIM), self.sin[pos].view(1, 1, 1, HEAD_DIM)
        mask = (self.positions <= pos).view(1, 1, 1, -1)
        for b in self.blocks:
            x = b(x, pos, cos, sin, mask)
        return F.linear(rms_norm(x, self.norm), self.lm_head).float()


def bench(mode, args):
    gen = torch.Generator(device="cuda").manual_seed(1)
    max_len = args.prompt + args.decode
    m = Model(mode, args.layers, max_len, gen)
    step = torch.compile(m, mode=args.compile_mode, fullgraph=True)
    token = torch.zeros(1, dtype=torch.long, device="cuda")
    t0 = time.time()
    for i in range(3):  # compile and record the graph
        logits = step(token, torch.tensor([args.prompt + i], device="cuda"))
        token = logits.argmax(-1)
    torch.cuda.synchronize()
    compile_s = time.time() - t0
    runs = []
    for _ in range(args.runs):
        token = torch.zeros(1, dtype=torch.long, device="cuda")
        pos = [torch.tensor([args.prompt + i], device="cuda") for i in range(args.decode)]
        torch.cuda.synchronize()
        t = time.perf_counter()
        for i in range(args.decode):
            logits = step(token, pos[i])
            token = logits.argmax(-1)
        torch.cuda.synchronize()
        runs.append(args.decode / (time.perf_counter() - t))
    weight_gb = torch.cuda.memory_allocated() / 1e9
    del m, step
    torch._dynamo.reset()
    torch.cuda.empty_cache()
    return statistics.median(runs), runs, compile_s, weight_gb


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--modes", default="bf16,int8,fp8,int4-g128")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--decode", type=int, default=32)
    p.add_argument("--prompt", type=int, default=512)
    p.add_argument("--layers", type=int, default=32)
    p.add_argument("--compile-mode", default="reduce-overhead",
                   help="torch.compile mode: reduce-overhead (CUDA graphs) or max-autotune (CUDA graphs, tuned Triton "
                        "GEMM templates into which Inductor can fuse the INT8 / FP8 dequantization)")
    args = p.parse_args()
    torch._inductor.config.coordinate_descent_tuning = True  # as PyTorch's fast-decoding recipe sets it
    print(f"torch {torch.__version__}, {torch.cuda.get_device_name()}, layers {args.layers}, prompt {args.prompt}, "
          f"decode {args.decode}, runs {args.runs}, compile mode {args.compile_mode}", flush=True)
    base = None
    torch.set_grad_enabled(False)
    for mode in args.modes.split(","):
        try:
            tps, runs, cs, gb = bench(mode, args)
        except Exception as e:  # report and go on: one mode's failure says nothing of the others
            print(f"{mode:10s} failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}", flush=True)
            torch._dynamo.reset()
            torch.cuda.empty_cache()
            continue
        if mode == "bf16":
            base = tps
        ratio = f"{tps / base:.2f}x" if base else "-"
        print(f"{mode:10s} decode b1 {tps:7.1f} tok/s ({ratio} BF16); runs {', '.join(f'{r:.1f}' for r in runs)}; "
              f"allocated {gb:.2f} GB; compile {cs:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
