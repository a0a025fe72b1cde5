"""The Arm benchmark: slimnn's int8 and int4 layers against torch fp32 and torch's dynamic int8, on this machine.

    PYTHONPATH=src python bench/tables/arm_peers.py                # 1 thread, standard shapes, M in {1, 16, 128}
    PYTHONPATH=src python bench/tables/arm_peers.py --threads 4 --shapes 4096x4096 --m 1 16
    PYTHONPATH=src python bench/tables/arm_peers.py --quick        # one small shape, 2 reps (a smoke run)
    PYTHONPATH=src python bench/tables/arm_peers.py --families-only  # only the second table (below)

A second table covers the fp32 families with NEON kernels: sparse linears (csr 80%, bsr 16x1 80%, 2:4 int8),
a rank-k/8 low-rank linear, a linear with GELU fused, attention (SDPA shapes) and a depthwise 3x3 conv, each
as ratios to torch fp32 (F.linear on the same pruned / reconstructed weights, F.scaled_dot_product_attention,
F.conv2d channels-last) and, where torch has one, its dynamic int8 (linears only).

Written for aarch64 machines (Graviton, Ampere, Grace, Raspberry Pi 5, Jetson), where slimnn picks its
neon / dotprod / i8mm kernels (docs/arm.md); it runs on x86-64 too. Every figure is a ratio to peers timed
in the same process with the same thread count, interleaved (bench/harness.interleaved_medians), so noise
hits all of them alike. The peers are what a user of torch would otherwise run: ``torch_fp32``
(F.linear) and ``torch_int8_<engine>`` (torch.ao.quantization.quantize_dynamic) for every quantized engine
this torch lists (qnnpack on Arm builds; fbgemm/onednn/x86 on x86). Each implementation's output is
checked once against float64 math before timing, so a fast wrong kernel fails instead of printing a ratio.
Also printed: slimnn.cpu_info()'s ISA line and the kernel each slimnn layer ran, so a table says which
path it measured. scripts/arm_bench_qemu.sh runs it under qemu-aarch64 on x86-64 as a smoke test (docs/arm.md,
Benchmark under qemu); there the ratios mean nothing: emulation speed is not hardware speed.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

import slimnn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from harness import float64_reference, interleaved_medians, per_call_estimate, rel_err  # noqa: E402

SHAPES = [(384, 1536), (1536, 384), (768, 3072), (4096, 4096), (4096, 14336)]
# Relative Frobenius error against float64 (bench/harness.TOL_VS_FLOAT; int4 at group 64: ~8% on these
# random layers, torch's per-tensor int8 ~2%).
TOL = {"fp32": 1e-5, "int8": 6e-2, "int4": 0.2}


def torch_int8(linear: nn.Linear, engine: str) -> nn.Module:
    torch.backends.quantized.engine = engine
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's eager quantization deprecation notices
        return torch.ao.quantization.quantize_dynamic(nn.Sequential(linear), {nn.Linear}, dtype=torch.qint8)[0]


_ENGINES: list[str] | None = None
_ONLY_ENGINES: list[str] | None = None  # --torch-engines


def int8_engines() -> list[str]:
    """The quantized engines this torch lists that can actually pack a dynamic int8 linear here, probed once on
    a small layer. torch's aarch64 wheels list x86/fbgemm too, whose packing raises ("unknown architecure")
    on Arm; such an engine is reported and left out instead of ending the run."""
    global _ENGINES
    if _ENGINES is None:
        _ENGINES = []
        for e in torch.backends.quantized.supported_engines:
            if e == "none" or (_ONLY_ENGINES is not None and e not in _ONLY_ENGINES):
                continue
            try:
                torch_int8(nn.Linear(8, 8), e)
                _ENGINES.append(e)
            except RuntimeError as err:
                print(f"# torch engine {e} listed but unusable here ({str(err).splitlines()[0]}): left out")
    return _ENGINES


def impls(linear: nn.Linear) -> dict[str, tuple[str, object, object]]:
    """name -> (kind, module or function, engine to select before calling)."""
    w, b = linear.weight.detach(), linear.bias.detach()
    out = {"torch_fp32": ("fp32", lambda x: F.linear(x, w, b), None)}
    for e in int8_engines():
        out[f"torch_int8_{e}"] = ("int8", torch_int8(linear, e), e)
    out["slimnn_int8_dynamic"] = ("int8", slimnn.nn.Int8Linear.from_linear(linear, slimnn.Int8Config(mode="dynamic")), None)
    out["slimnn_int8_weight_only"] = ("int8", slimnn.nn.Int8Linear.from_linear(linear, slimnn.Int8Config(mode="weight_only")), None)
    for mode in ("dynamic", "weight_only"):
        cfg = slimnn.Int4Config(group_size=64, mode=mode, progress=False)
        out[f"slimnn_int4_{mode}"] = ("int4", slimnn.nn.Int4Linear.from_linear(linear, cfg), None)
    return out


def measure(label: str, table: dict, run_args: tuple, ref: torch.Tensor, reps: int) -> None:
    """Checks each implementation against ``ref`` (float64) once, then times them interleaved and prints one
    row per slimnn_* implementation: its median and the ratio of every torch_* peer's median to it."""
    calls, inner = {}, {}
    for name, (kind, fn, engine) in table.items():
        def enter(engine=engine):
            if engine is not None:
                torch.backends.quantized.engine = engine
        enter()
        err = rel_err(fn(*run_args), ref)
        if not err <= TOL[kind]:
            raise SystemExit(f"{name} {label}: error {err:.3g} vs float64 above {TOL[kind]}")
        calls[name] = (enter, lambda fn=fn: fn(*run_args))
        inner[name] = max(1, int(0.01 / max(per_call_estimate(calls[name][1], min_time=0.005), 1e-7)))
    med = interleaved_medians(calls, inner, reps)
    peers = [p for p in table if p.startswith("torch_")]
    for name in (p for p in table if p.startswith("slimnn_")):
        ratios = "  ".join(f"{p}/{name[7:]} {med[p] / med[name]:5.2f}" for p in peers)
        kernel = getattr(table[name][1], "last_kernel", "") or ""
        print(f"{label:<18} {name:<24} {med[name] * 1e6:9.1f} us  {ratios}  [{kernel}]")


def linear_peers(w: torch.Tensor, b: torch.Tensor) -> dict:
    """torch fp32 and dynamic int8 (every quantized engine) of the dense layer with weight w, bias b."""
    lin = nn.Linear(w.shape[1], w.shape[0])
    with torch.no_grad():
        lin.weight.copy_(w)
        lin.bias.copy_(b)
    out = {"torch_fp32": ("fp32", lambda x: F.linear(x, w, b), None)}
    for e in int8_engines():
        out[f"torch_int8_{e}"] = ("int8", torch_int8(lin, e), e)
    return out


def family_cases(k: int, n: int) -> list[tuple[str, dict, object]]:
    """(label, implementations, float64 reference of one input) for the linear-shaped families at K x N."""
    cases = []
    lin = nn.Linear(k, n)
    b = lin.bias.detach()
    for pattern, values in (("unstructured", "fp32"), ("16x1", "fp32"), ("2:4", "int8")):
        sp = 0.5 if pattern == "2:4" else 0.8
        ours = slimnn.nn.SparseLinear.from_linear(lin, slimnn.SparseConfig(sp, pattern=pattern, values=values,
                                                                            backend="sparse"))
        wp = ours.dequantized_weight().to(torch.float32)  # the pruned (int8: dequantized) weights it holds
        impls = linear_peers(wp, b)
        impls[f"slimnn_sparse_{values}"] = ("fp32" if values == "fp32" else "int8", ours, None)
        cases.append((f"sparse {pattern}", impls, lambda x, w=wp: x.double() @ w.double().t() + b.double()))
    r = max(8, k // 8)
    u, v = torch.randn(n, r) / r**0.5, torch.randn(r, k) / k**0.5
    lr = slimnn.nn.LowRankLinear.from_factors(u, v, b, slimnn.LowRankConfig(rank=r))
    impls = linear_peers(u @ v, b)
    impls["slimnn_lowrank_fp32"] = ("fp32", lr, None)
    cases.append((f"lowrank r={r}", impls, lambda x: x.double() @ (u.double() @ v.double()).t() + b.double()))
    w = lin.weight.detach()
    impls = {"torch_fp32": ("fp32", lambda x: F.gelu(F.linear(x, w, b)), None)}
    for e in int8_engines():
        q = torch_int8(lin, e)
        impls[f"torch_int8_{e}"] = ("int8", lambda x, q=q: F.gelu(q(x)), e)
    impls["slimnn_int8_gelu_fused"] = ("int8", slimnn.nn.Int8Linear.from_linear(lin, activation="gelu"), None)
    cases.append(("linear+gelu", impls, lambda x: F.gelu(x.double() @ w.double().t() + b.double())))
    return cases


def families(shapes, ms, reps: int, quick: bool) -> None:
    """The second table: sparse, low-rank, fused activation, attention, depthwise conv."""
    print("# families: peer time / slimnn time; torch_int8_* only where torch has a dynamic int8 op")
    with torch.inference_mode():
        for k, n in shapes:
            for label, impls, ref in family_cases(k, n):
                for m in ms:
                    x = torch.randn(m, k)
                    measure(f"{label} {k}x{n} M={m}", impls, (x,), ref(x), reps)
        from slimnn.ops.attn import attention
        attn_shapes = [(1, 4, 64, 64)] if quick else [(1, 12, 128, 64), (1, 12, 512, 64), (1, 32, 1, 128)]
        for b_, h, lq, d in attn_shapes:
            lk = max(lq, 256) if lq == 1 else lq
            q, kk, vv = torch.randn(b_, h, lq, d), torch.randn(b_, h, lk, d), torch.randn(b_, h, lk, d)
            ref = F.scaled_dot_product_attention(q.double(), kk.double(), vv.double())
            impls = {"torch_fp32": ("fp32", F.scaled_dot_product_attention, None),
                     "slimnn_attention": ("fp32", attention, None)}
            measure(f"attn h={h} L={lq}/{lk} d={d}", impls, (q, kk, vv), ref, reps)
        conv_shapes = [(32, 16)] if quick else [(96, 56), (144, 28), (384, 14)]
        for c, hw in conv_shapes:
            conv = nn.Conv2d(c, c, 3, 1, 1, groups=c).eval()
            ours = slimnn.nn.conv.Conv2dInt8.from_conv(conv)
            x = torch.randn(1, c, hw, hw).contiguous(memory_format=torch.channels_last)
            wq = ours.dequantized_weight().to(torch.float32)  # the peer runs the same (int8-valued) weights
            with torch.no_grad():
                conv.weight.copy_(wq.reshape(conv.weight.shape))
            ref = F.conv2d(x.double(), conv.weight.double(), conv.bias.detach().double(), 1, 1, 1, c)
            impls = {"torch_fp32": ("fp32", conv, None), "slimnn_dwconv_int8w": ("fp32", ours, None)}
            measure(f"dw3x3 c={c} {hw}x{hw}", impls, (x,), ref, reps)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--shapes", nargs="*", default=None, help="KxN (in x out), default: the standard list")
    ap.add_argument("--m", nargs="*", type=int, default=[1, 16, 128])
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--quick", action="store_true", help="one 256x512 layer, M in {1, 5}, 2 reps")
    ap.add_argument("--torch-engines", nargs="*", default=None,
                    help="torch quantized engines to compare with (default: every usable one this torch lists)")
    ap.add_argument("--families-only", action="store_true", help="only the sparse/low-rank/act/attention/conv table")
    args = ap.parse_args()
    global _ONLY_ENGINES
    _ONLY_ENGINES = args.torch_engines
    shapes = [tuple(int(v) for v in s.split("x")) for s in args.shapes] if args.shapes else SHAPES
    ms, reps = args.m, args.reps
    if args.quick:
        shapes, ms, reps = [(256, 512)], [1, 5], 2
    torch.set_num_threads(args.threads)
    slimnn.set_num_threads(args.threads)
    info = slimnn.cpu_info()
    print(f"# {info['machine']} {info['brand']}: slimnn isa {info['isa_best']} (available {info['isa_available']},"
          f" cpu features {info.get('cpu_features') or '-'}); torch {torch.__version__}; threads {args.threads}")
    print("# time ratios: peer time / slimnn time (> 1: slimnn faster), medians of interleaved repetitions")
    torch.manual_seed(0)
    if not args.families_only:
        with torch.inference_mode():
            for k, n in shapes:
                linear = nn.Linear(k, n)
                table = impls(linear)
                for m in ms:
                    x = torch.randn(m, k)
                    measure(f"{k}x{n} M={m}", table, (x,), float64_reference(linear, x), reps)
    families(shapes[:2] if not args.quick else shapes, ms, reps, args.quick)

if __name__ == "__main__":
    main()
