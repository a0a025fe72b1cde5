#!/usr/bin/env python
"""Weight-only int8 / int4 at batched M: the dequantized-panel GEMM (csrc/kernels/wogemm) against the
register-widening kernels it replaces above the crossover, and against torch fp32 F.linear.

    PYTHONPATH=src python bench/tables/wo_crossover.py                        # standard shapes, M = 128, 1 thread
    PYTHONPATH=src python bench/tables/wo_crossover.py --shapes 384x1536,4096x4096 --m 8,16,32,64,128

Both slimnn paths are forced per call with _C.wo_panel_min_rows (1: panel; 2^30: the old kernels), so they run
on the same blob in the same process; every implementation is timed interleaved (one batch of each per round,
order fixed, 7 rounds) and the median is reported. Weights: randn / sqrt(K); q8 per channel, q4 group 32
with fp16 scales. Outputs are checked once against x @ W_deq^T (relative error < 1e-5). Machines are shared:
read ratios, not absolute times. This is how the crossovers in wogemm.cc were measured.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import slimnn
from slimnn import _C
from slimnn.formats import pack_q4, pack_q8
from slimnn.math.quantize import dequantize_int4, dequantize_int8, quantize_int4, quantize_int8_symmetric

SHAPES = "384x1536,1536x384,768x3072,4096x4096,4096x14336,14336x4096"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shapes", default=SHAPES)
    ap.add_argument("--m", default="128")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args()
    t = args.threads
    torch.set_num_threads(t)
    slimnn.set_num_threads(t)
    info = slimnn.cpu_info()
    print(f"cpu: {info['brand']}  isa: {info['isa_best']}  AMX used: no  threads: {t}  torch {torch.__version__}  "
          f"caches: {_C.cache_sizes()}  crossovers (q8, q4): {_C.wo_panel_min_rows()}")
    print("| K x N | M | torch fp32 us | q8 old us | q8 panel us | q4 old us | q4 panel us | q8 panel vs fp32 | "
          "q4 panel vs fp32 | q8 panel vs old | q4 panel vs old | kernels |")
    print("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|")
    default_rows = _C.wo_panel_min_rows()
    try:
        for shape in args.shapes.split(","):
            k, n = (int(v) for v in shape.lower().split("x"))
            g = torch.Generator().manual_seed(k * 7 + n)
            w = torch.randn(n, k, generator=g) / k**0.5
            q, s = quantize_int8_symmetric(w)
            b8, wd8 = pack_q8(q, s), dequantize_int8(q, s, None)
            c4 = quantize_int4(w, 32, True, torch.float16)
            b4, wd4 = pack_q4(*c4, 32), dequantize_int4(*c4, 32)
            for m in (int(v) for v in args.m.split(",")):
                x = torch.randn(m, k, generator=g)
                y = torch.empty(m, n)
                names = {}

                def q8(rows, m=m, k=k, n=n, x=x, y=y):
                    _C.wo_panel_min_rows(rows)
                    names["q8", rows] = _C.q8_linear("q8_weight_only", x.data_ptr(), False, m, k, b8.data_ptr(),
                                                     b8.numel(), 0, y.data_ptr(), n, t)
                    return y

                def q4(rows, m=m, k=k, n=n, x=x, y=y):
                    _C.wo_panel_min_rows(rows)
                    names["q4", rows] = _C.q4_linear("q4_weight_only", x.data_ptr(), False, m, k, 0, b4.data_ptr(),
                                                     b4.numel(), 0, y.data_ptr(), n, t)
                    return y

                old, new = 1 << 30, 1
                impls = {"fp32": lambda x=x, w=w: torch.nn.functional.linear(x, w),
                         "q8_old": lambda: q8(old), "q8_new": lambda: q8(new),
                         "q4_old": lambda: q4(old), "q4_new": lambda: q4(new)}
                for name, fn in impls.items():  # check once (also the warm-up)
                    ref = x @ (wd8 if name.startswith("q8") else wd4 if name.startswith("q4") else w).t()
                    err = float((fn() - ref).norm() / ref.norm())
                    if not err < 1e-5:
                        raise AssertionError(f"{name} {m}x{k}x{n}: relative error {err:.3g}")
                reps = max(1, int(4e7 / (m * k * n)))
                ts = {name: [] for name in impls}
                with torch.inference_mode():
                    for _ in range(args.rounds):
                        for name, fn in impls.items():
                            t0 = time.perf_counter()
                            for _ in range(reps):
                                fn()
                            ts[name].append((time.perf_counter() - t0) / reps)
                med = {name: statistics.median(v) for name, v in ts.items()}
                f = med["fp32"]
                print(f"| {k}x{n} | {m} | {f * 1e6:.0f} | {med['q8_old'] * 1e6:.0f} | {med['q8_new'] * 1e6:.0f} | "
                      f"{med['q4_old'] * 1e6:.0f} | {med['q4_new'] * 1e6:.0f} | {f / med['q8_new']:.2f}x | "
                      f"{f / med['q4_new']:.2f}x | {med['q8_old'] / med['q8_new']:.2f}x | "
                      f"{med['q4_old'] / med['q4_new']:.2f}x | {names['q8', new]}, {names['q4', new]} |", flush=True)
    finally:
        _C.wo_panel_min_rows(0)
        assert _C.wo_panel_min_rows() == default_rows


if __name__ == "__main__":
    main()
