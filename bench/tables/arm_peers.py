"""The Arm benchmark: slimnn's int8 and int4 layers against torch fp32 and torch's dynamic int8, on this machine.

    PYTHONPATH=src python bench/tables/arm_peers.py                # 1 thread, standard shapes, M in {1, 16, 128}
    PYTHONPATH=src python bench/tables/arm_peers.py --threads 4 --shapes 4096x4096 --m 1 16
    PYTHONPATH=src python bench/tables/arm_peers.py --quick        # one small shape, 2 reps (a smoke run)

Written for aarch64 machines (Graviton, Ampere, Grace, Raspberry Pi 5, Jetson), where slimnn picks its
neon / dotprod / i8mm kernels (docs/arm.md); it runs on x86-64 too. Every figure is a ratio to peers timed
in the same process with the same thread count, interleaved (bench/harness.interleaved_medians), so noise
hits all of them alike. The peers are what a user of torch would otherwise run: ``torch_fp32``
(F.linear) and ``torch_int8_<engine>`` (torch.ao.quantization.quantize_dynamic) for every quantized engine
this torch lists (qnnpack on Arm builds; fbgemm/onednn/x86 on x86). Each implementation's output is
checked once against float64 math before timing, so a fast wrong kernel fails instead of printing a ratio.
Also printed: slimnn.cpu_info()'s ISA line and the kernel each slimnn layer ran, so a table says which
path it measured. Under qemu (scripts/arm_check.sh does not run this; see docs/arm.md) the ratios mean
nothing: emulation speed is not hardware speed.
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


def impls(linear: nn.Linear) -> dict[str, tuple[str, object, object]]:
    """name -> (kind, module or function, engine to select before calling)."""
    w, b = linear.weight.detach(), linear.bias.detach()
    out = {"torch_fp32": ("fp32", lambda x: F.linear(x, w, b), None)}
    for e in torch.backends.quantized.supported_engines:
        if e != "none":
            out[f"torch_int8_{e}"] = ("int8", torch_int8(linear, e), e)
    out["slimnn_int8_dynamic"] = ("int8", slimnn.nn.Int8Linear.from_linear(linear, slimnn.Int8Config(mode="dynamic")), None)
    out["slimnn_int8_weight_only"] = ("int8", slimnn.nn.Int8Linear.from_linear(linear, slimnn.Int8Config(mode="weight_only")), None)
    for mode in ("dynamic", "weight_only"):
        cfg = slimnn.Int4Config(group_size=64, mode=mode, progress=False)
        out[f"slimnn_int4_{mode}"] = ("int4", slimnn.nn.Int4Linear.from_linear(linear, cfg), None)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--shapes", nargs="*", default=None, help="KxN (in x out), default: the standard list")
    ap.add_argument("--m", nargs="*", type=int, default=[1, 16, 128])
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--quick", action="store_true", help="one 256x512 layer, M in {1, 5}, 2 reps")
    args = ap.parse_args()
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
    with torch.inference_mode():
        for k, n in shapes:
            linear = nn.Linear(k, n)
            table = impls(linear)
            for m in ms:
                x = torch.randn(m, k)
                y64 = float64_reference(linear, x)
                calls, inner = {}, {}
                for name, (kind, fn, engine) in table.items():
                    def enter(engine=engine):
                        if engine is not None:
                            torch.backends.quantized.engine = engine
                    enter()
                    err = rel_err(fn(x), y64)
                    if not err <= TOL[kind]:
                        raise SystemExit(f"{name} {k}x{n} M={m}: error {err:.3g} vs float64 above {TOL[kind]}")
                    calls[name] = (enter, lambda fn=fn: fn(x))
                    inner[name] = max(1, int(0.01 / max(per_call_estimate(calls[name][1], min_time=0.005), 1e-7)))
                med = interleaved_medians(calls, inner, reps)
                peers = [p for p in table if p.startswith("torch_")]
                for name in (p for p in table if p.startswith("slimnn_")):
                    ratios = "  ".join(f"{p}/{name[7:]} {med[p] / med[name]:5.2f}" for p in peers)
                    kernel = getattr(table[name][1], "last_kernel", "")
                    print(f"{k}x{n} M={m:<4} {name:<24} {med[name] * 1e6:9.1f} us  {ratios}  [{kernel}]")


if __name__ == "__main__":
    main()
