"""Sparse + int8 (bitmap format, W8A8) vs slimnn dense int8 dynamic (and torch fp32), ratios in one process.

    PYTHONPATH=src python bench/compare_bitmap.py                      # 4096x4096, 4096x14336; 80%, 90%
    PYTHONPATH=src python bench/compare_bitmap.py --model-sized        # cycle >= 1 GiB of fp32 weights
    PYTHONPATH=src python bench/compare_bitmap.py --shapes 768x3072 --sparsity 0.9 --m 1

Rows: shape (K in, N out), sparsity, M. Columns: our time (the bitmap kernel through the SparseLinear
module call), slimnn dense int8 dynamic (Int8Linear, same int8 weights), torch fp32 F.linear, the csr int8
layer (the previous sparse+int8 path), ratios peer/ours (above 1: we are faster), nonzeros/ns, and the
bitmap blob's size in % of the fp32 weights. Interleaved repetitions (each repetition runs every candidate
once, in rotating order), medians; every output is checked against the dense int8 result once (same
quantized activations: the integer parts are identical, the float epilogue may differ by rounding).
--model-sized cycles through enough distinct layers (>= 1 GiB of fp32 weights, per candidate) that every
call streams its weights from DRAM, as a model's decoding step does.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Callable

import torch

import slimnn
from slimnn.configs import Int8Config, SparseConfig
from slimnn.nn import Int8Linear, SparseLinear

from compare_sparse import make_weight


def interleaved(cands: dict[str, Callable[[], object]], reps: int, stat: str) -> dict[str, float]:
    """Seconds per candidate (median or min over repetitions); each repetition runs every candidate once,
    in rotating order, so all see the same machine load. Also returns the other statistic under "_alt"."""
    names = list(cands)
    for f in cands.values():  # warm up
        f()
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(reps):
        for n in names[r % len(names):] + names[: r % len(names)]:
            t0 = time.perf_counter()
            cands[n]()
            times[n].append(time.perf_counter() - t0)
    pick = statistics.median if stat == "median" else min
    other = min if stat == "median" else statistics.median
    out: dict = {n: pick(v) for n, v in times.items()}
    out["_alt"] = {n: other(v) for n, v in times.items()}
    return out


def build(k: int, n: int, sparsity: float, copies: int):
    layers = {"bitmap": [], "int8": [], "fp32": [], "csr": []}
    for c in range(copies):
        lin = torch.nn.Linear(k, n, bias=False)
        with torch.no_grad():
            lin.weight.copy_(make_weight(k, n, seed=c))
        bm = SparseLinear.from_linear(lin, SparseConfig(sparsity, values="int8", int8_mode="dynamic",
                                                        index="bitmap", backend="sparse"))
        w = bm.dequantized_weight()
        pruned = torch.nn.Linear(k, n, bias=False)
        with torch.no_grad():
            pruned.weight.copy_(w)
        layers["bitmap"].append(bm)
        layers["int8"].append(Int8Linear.from_linear(pruned, Int8Config(mode="dynamic")))
        layers["fp32"].append(w)
        layers["csr"].append(SparseLinear.from_linear(lin, SparseConfig(sparsity, values="int8", index="csr",
                                                                        index_bits=8, backend="sparse")))
    return layers


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shapes", default="4096x4096,4096x14336")
    ap.add_argument("--sparsity", default="0.8,0.9")
    ap.add_argument("--m", default="1,16")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--model-sized", action="store_true")
    ap.add_argument("--stat", choices=("median", "min"), default="median",
                    help="min: the undisturbed time on a loaded shared machine (medians measure the scheduler)")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    slimnn.set_num_threads(a.threads)
    print(f"# {slimnn.cpu_info()['brand']}, isa {slimnn.isa.best()}, torch {torch.__version__}, {a.threads} thread(s)"
          f"{', model-sized' if a.model_sized else ', cache-resident'}, {a.stat} of {a.reps} interleaved reps")
    alt = "median" if a.stat == "min" else "min"
    print(f"| K x N | sparsity | M | bitmap us | vs int8 dyn | vs int8 dyn ({alt}) | vs fp32 | vs csr i8 | nnz/ns |"
          " storage % fp32 |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    rows = []
    for shape in a.shapes.split(","):
        k, n = (int(v) for v in shape.split("x"))
        copies = max(1, -(-(2**30) // (4 * k * n))) if a.model_sized else 1
        for s in (float(v) for v in a.sparsity.split(",")):
            L = build(k, n, s, copies)
            nnz = slimnn.formats.sparse.sparse_info(L["bitmap"][0].packed).nnz
            storage = L["bitmap"][0].storage_bytes() / (4 * k * n) * 100
            for m in (int(v) for v in a.m.split(",")):
                x = torch.randn(m, k)
                with torch.inference_mode():
                    yb, yi = L["bitmap"][0](x), L["int8"][0](x)
                    err = (yb - yi).abs().max().item() / max(yi.abs().max().item(), 1e-30)
                    assert err < 1e-5, f"bitmap output differs from dense int8: {err}"
                    it = {key: 0 for key in L}

                    def step(key, fn):
                        def f():
                            i = it[key] = (it[key] + 1) % copies
                            return fn(L[key][i])
                        return f

                    t = interleaved({
                        "bitmap": step("bitmap", lambda mod: mod(x)),
                        "int8": step("int8", lambda mod: mod(x)),
                        "fp32": step("fp32", lambda w: torch.nn.functional.linear(x, w)),
                        "csr": step("csr", lambda mod: mod(x)),
                    }, a.reps, a.stat)
                row = {"k": k, "n": n, "sparsity": s, "m": m, "us": t["bitmap"] * 1e6,
                       "vs_int8": t["int8"] / t["bitmap"], "vs_fp32": t["fp32"] / t["bitmap"],
                       "vs_csr": t["csr"] / t["bitmap"], "nnz_per_ns": m * nnz / t["bitmap"] / 1e9,
                       "vs_int8_alt": t["_alt"]["int8"] / t["_alt"]["bitmap"],
                       "storage_pct": storage, "kernel": L["bitmap"][0].last_kernel}
                rows.append(row)
                print(f"| {k}x{n} | {s:.0%} | {m} | {row['us']:.0f} | {row['vs_int8']:.2f}x | {row['vs_int8_alt']:.2f}x |"
                      f" {row['vs_fp32']:.2f}x |"
                      f" {row['vs_csr']:.2f}x | {row['nnz_per_ns']:.1f} | {storage:.2f} |", flush=True)
            del L
    if a.json:
        print(json.dumps(rows))


if __name__ == "__main__":
    main()
