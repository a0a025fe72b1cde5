"""Sparse vs. its peers, ratios in one process with interleaved repetitions (medians).

    PYTHONPATH=src python bench/tables/sparse_peers.py                 # the table in docs/sparse.md
    PYTHONPATH=src python bench/tables/sparse_peers.py --quick         # one shape, fewer repetitions
    PYTHONPATH=src python bench/tables/sparse_peers.py --model-sized   # cycle through >= 1 GiB of fp32 weights

Sparse + int8 in the bitmap format (W8A8) against slimnn dense int8: bench/tables/bitmap_peers.py.

Rows: shape (K in, N out), sparsity and pattern, values, M. Columns: our time and the peers' (torch fp32
dense F.linear on the pruned weights, torch.sparse CSR, scipy.sparse CSR, slimnn dense int8 dynamic and
weight-only), each as a ratio peer/ours (above 1: we are faster). Every repetition runs each candidate once,
in rotating order, so all see the same machine load; each candidate's output is checked against the
reference once. Threads: --threads (default 1) for torch and slimnn alike; scipy is single-threaded.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import time
import warnings
from typing import Callable

import numpy as np
import scipy.sparse as sp
import torch

import slimnn
from slimnn import prune
from slimnn.configs import SparseConfig
from slimnn.nn import Int8Linear, SparseLinear

SHAPES = [(384, 1536), (1536, 384), (768, 3072), (4096, 4096), (4096, 14336), (14336, 4096)]


def make_weight(k: int, n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, k, generator=g) / k**0.5


def interleaved(cands: dict[str, Callable[[], object]], reps: int, min_time: float = 0.3) -> dict[str, float]:
    """Median seconds per candidate; each repetition runs all candidates once, in rotating order."""
    names = list(cands)
    for f in cands.values():  # warm up
        f()
    times: dict[str, list[float]] = {n: [] for n in names}
    t_start = time.perf_counter()
    r = 0
    while r < reps or (time.perf_counter() - t_start < min_time and r < 20 * reps):
        order = names[r % len(names):] + names[: r % len(names)]
        for n in order:
            t0 = time.perf_counter()
            cands[n]()
            times[n].append(time.perf_counter() - t0)
        r += 1
    return {n: statistics.median(v) for n, v in times.items()}


def build(k: int, n: int, sparsity: float, pattern: str, values: str, copies: int = 1, index_bits=None):
    """Layers for one case: ours (SparseLinear, sparse backend), and the peers on the same pruned weights."""
    out = []
    for c in range(copies):
        w = make_weight(k, n, seed=c)
        lin = torch.nn.Linear(k, n, bias=False)
        with torch.no_grad():
            lin.weight.copy_(w)
        cfg = SparseConfig(sparsity, pattern=pattern, values=values, backend="sparse", index_bits=index_bits)
        ours = SparseLinear.from_linear(lin, cfg)
        wp = ours.dequantized_weight() if values == "int8" else w * prune.prune_mask(w, pattern, sparsity)
        with torch.no_grad():
            lin.weight.copy_(wp)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            wcsr = wp.to_sparse_csr()
        out.append({
            "ours": ours,
            "dense": wp.contiguous(),
            "csr": wcsr,
            "scipy": sp.csr_matrix(wp.numpy()),
            "int8": Int8Linear.from_linear(lin, slimnn.Int8Config()),
            "int8wo": Int8Linear.from_linear(lin, slimnn.Int8Config(mode="weight_only")),
        })
    return out


def candidates(layers: list[dict], x: torch.Tensor, peers: list[str]) -> dict[str, Callable[[], object]]:
    m = x.shape[0]
    xn = x.numpy()
    xt = x.t().contiguous()
    state = {"i": 0}

    def cyc(fn):
        def run():
            i = state["i"] = (state["i"] + 1) % len(layers)
            return fn(layers[i])
        return run

    c = {"ours": cyc(lambda L: L["ours"](x))}
    if "dense" in peers:
        c["torch_fp32"] = cyc(lambda L: torch.nn.functional.linear(x, L["dense"]))
    if "csr" in peers:
        if m == 1:
            c["torch_csr"] = cyc(lambda L: torch.mv(L["csr"], x[0]))
        else:
            c["torch_csr"] = cyc(lambda L: torch.sparse.mm(L["csr"], xt).t())
    if "scipy" in peers:
        c["scipy_csr"] = cyc(lambda L: L["scipy"] @ (xn[0] if m == 1 else xn.T))
    if "int8" in peers:
        c["slimnn_int8"] = cyc(lambda L: L["int8"](x))
        c["slimnn_int8_wo"] = cyc(lambda L: L["int8wo"](x))
    return c


def check_once(layers: list[dict], x: torch.Tensor, c: dict[str, Callable[[], object]]) -> None:
    """Every candidate's output against the float64 reference of the first layer (tolerance for int8)."""
    L = layers[0]
    ref = x.double() @ L["dense"].double().t()
    outs = {
        "ours": L["ours"](x),
        "torch_fp32": torch.nn.functional.linear(x, L["dense"]),
        "torch_csr": torch.sparse.mm(L["csr"], x.t().contiguous()).t(),
        "scipy_csr": torch.from_numpy(np.ascontiguousarray((L["scipy"] @ x.numpy().T).T)),
    }
    for name, y in outs.items():
        if name in c or name == "ours":
            err = (y.double() - ref).abs().max().item()
            assert err < 1e-3 * (1 + ref.abs().max().item()), (name, err)
    for name in ("int8", "int8wo"):
        y = L[name](x).double()
        cos = torch.nn.functional.cosine_similarity(y.flatten(), ref.flatten(), dim=0).item()
        assert cos > 0.99, (name, cos)


def run_case(k, n, sparsity, pattern, values, m, reps, peers, copies=1, index_bits=None):
    layers = build(k, n, sparsity, pattern, values, copies, index_bits)
    x = torch.randn(m, k, generator=torch.Generator().manual_seed(1))
    c = candidates(layers, x, peers)
    with torch.inference_mode():
        check_once(layers, x, c)
        t = interleaved(c, reps)
    ours = layers[0]["ours"]
    row = {
        "K": k, "N": n, "sparsity": sparsity, "pattern": pattern, "values": values, "M": m, "copies": copies,
        "format": ours.format, "kernel": ours.last_kernel, "ours_us": t["ours"] * 1e6,
        "bytes_pct_fp32": 100.0 * ours.storage_bytes() / (k * n * 4),
        "gflops": 2 * m * k * n / t["ours"] / 1e9,
        "weight_gbs": ours.storage_bytes() / t["ours"] / 1e9,
    }
    for name, v in t.items():
        if name != "ours":
            row[name + "_us"] = v * 1e6
            row[name + "_ratio"] = v / t["ours"]
    del layers, c
    gc.collect()
    return row


def fmt_row(r: dict) -> str:
    cols = [f"{r['K']}x{r['N']}", f"{r['sparsity']:.0%} {r['pattern']}", r["values"], str(r["M"]),
            f"{r['ours_us']:.1f}"]
    for p in ("torch_fp32", "torch_csr", "scipy_csr", "slimnn_int8", "slimnn_int8_wo"):
        cols.append(f"{r[p + '_ratio']:.2f}x" if p + "_ratio" in r else "-")
    cols += [f"{r['bytes_pct_fp32']:.2f}%", f"{r['weight_gbs']:.1f}", r["format"]]
    return "| " + " | ".join(cols) + " |"


HEADER = ("| K x N | sparsity | values | M | ours us | vs torch fp32 | vs torch CSR | vs scipy CSR | vs int8 dyn "
          "| vs int8 wo | bytes / fp32 | GB/s | format |\n" + "|---" * 13 + "|")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--reps", type=int, default=15)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--model-sized", action="store_true", help="cycle distinct layers (>= 1 GiB of fp32 weights)")
    p.add_argument("--shapes", type=str, default=None, help="e.g. 4096x4096,768x3072 (K x N)")
    p.add_argument("--json", type=str, default=None, help="also write the rows as JSON here")
    p.add_argument("--breakeven", action="store_true", help="block patterns at 20-50%% sparsity, M = 1, vs fp32")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    slimnn.set_num_threads(a.threads)
    shapes = SHAPES[3:4] if a.quick else SHAPES
    if a.shapes:
        shapes = [tuple(int(v) for v in s.split("x")) for s in a.shapes.split(",")]
    info = slimnn.cpu_info()
    print(f"# {info['brand']}, isa {info['isa_best']}, torch {torch.__version__}, threads {a.threads}, "
          f"{'model-sized' if a.model_sized else 'cache-resident'}")
    print(HEADER)
    rows = []
    all_peers = ["dense", "csr", "scipy", "int8"]
    # (sparsity, pattern, values, Ms, peers, csr index_bits: None = the smaller blob)
    cases = [
        (0.9, "unstructured", "fp32", (1, 16), all_peers, None),
        (0.9, "unstructured", "int8", (1, 16), ["dense", "int8"], None),
        (0.9, "unstructured", "int8", (1,), ["dense", "int8"], 8),
        (0.8, "unstructured", "int8", (1,), ["dense", "int8"], None),
        (0.8, "unstructured", "int8", (1,), ["dense", "int8"], 8),
        (0.5, "unstructured", "fp32", (1,), ["dense"], None),
        (0.5, "16x1", "fp32", (1, 16), ["dense"], None),
        (0.5, "4x1", "fp32", (1,), ["dense"], None),
        (0.5, "1x8", "fp32", (1,), ["dense"], None),
        (0.5, "2:4", "fp32", (1, 16), ["dense"], None),
        (0.9, "16x1", "int8", (1,), ["dense", "int8"], None),
    ]
    if a.quick:
        cases = cases[:5]
    if a.breakeven:
        cases = [(s, p, "fp32", (1,), ["dense"], None) for p in ("16x1", "4x1", "1x8", "unstructured")
                 for s in (0.2, 0.3, 0.4, 0.5)]
    for k, n in shapes:
        copies = 1
        if a.model_sized:
            copies = max(1, -(-(1 << 30) // (k * n * 4)))
        for sparsity, pattern, values, ms, peers, bits in cases:
            for m in ms:
                reps = a.reps if k * n <= 4096 * 4096 else max(5, a.reps // 3)
                r = run_case(k, n, sparsity, pattern, values, m, reps, peers, copies, bits)
                rows.append(r)
                print(fmt_row(r), flush=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
