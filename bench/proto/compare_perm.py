"""Prototype vpermi2b window-permute GEMV (bench/proto/perm_gemv.cc, via ctypes) vs slimnn's modules.

    PYTHONPATH=src:bench python bench/proto/compare_perm.py [--reps 21] [--shapes 4096x4096,4096x14336]

Same layers as bench/compare_bitmap.py (SparseLinear bitmap W8A8 and Int8Linear dynamic on the same int8
weights, 1 thread, M = 1, cache-resident), interleaved repetitions, medians (min in brackets). The
prototype rows time the integer kernel alone on u8 activations (no quantization, no epilogue: the module
calls add ~5 us of those and call overhead); "bitmap loop" is the bitmap GEMV loop re-built in the
prototype, so (bitmap module - bitmap loop) shows that overhead. The prototype's int32 dots are checked
against an exact int64 reference first.
The figures in docs/sparse.md were taken when the bitmap module's default was row pairs at 90%; since the
permute layout became the default below 15% density, the "bitmap module" column shows that layout there
(for the layouts side by side through the op, pack with sparse_formats.pack_sparse(..., group_rows=1/2/8)).
"""
from __future__ import annotations

import argparse
import ctypes
import os
import statistics
import subprocess
import tempfile
import time

import torch

import slimnn
from slimnn.configs import Int8Config, SparseConfig
from slimnn.nn import Int8Linear, SparseLinear
from slimnn.sparse_formats import unpack_sparse

from compare_sparse import make_weight

HERE = os.path.dirname(os.path.abspath(__file__))


def load_proto():
    so = os.path.join(tempfile.gettempdir(), f"perm_proto_{os.getuid()}.so")
    subprocess.run(["g++", "-O3", "-march=native", "-shared", "-fPIC", "-DPROTO_NO_MAIN", "-o", so,
                    os.path.join(HERE, "perm_gemv.cc")], check=True)
    lib = ctypes.CDLL(so)
    lib.proto_create.restype = ctypes.c_void_p
    lib.proto_create.argtypes = [ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_int]
    lib.proto_bytes.restype = ctypes.c_int64
    lib.proto_bytes.argtypes = [ctypes.c_void_p]
    lib.proto_run.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
    lib.proto_free.argtypes = [ctypes.c_void_p]
    return lib


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shapes", default="4096x4096,4096x14336")
    ap.add_argument("--sparsity", default="0.8,0.9")
    ap.add_argument("--reps", type=int, default=21)
    a = ap.parse_args()
    torch.set_num_threads(1)
    slimnn.set_num_threads(1)
    lib = load_proto()
    print(f"# {slimnn.cpu_info()['brand']}, 1 thread, M = 1, cache-resident, median (min) of {a.reps} interleaved reps")
    print("| K x N | sparsity | int8 dyn us | bitmap module us | bitmap loop us | perm128 us | perm256 us |"
          " perm256 vs int8 dyn | perm256 vs bitmap module | perm256 nnz/ns | perm256 bytes/weight |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for shape in a.shapes.split(","):
        k, n = (int(v) for v in shape.split("x"))
        for s in (float(v) for v in a.sparsity.split(",")):
            lin = torch.nn.Linear(k, n, bias=False)
            with torch.no_grad():
                lin.weight.copy_(make_weight(k, n, seed=0))
            bm = SparseLinear.from_linear(lin, SparseConfig(s, values="int8", int8_mode="dynamic",
                                                            index="bitmap", backend="sparse"))
            pruned = torch.nn.Linear(k, n, bias=False)
            with torch.no_grad():
                pruned.weight.copy_(bm.dequantized_weight())
            i8 = Int8Linear.from_linear(pruned, Int8Config(mode="dynamic"))
            wq, _ = unpack_sparse(bm.packed)
            wq = wq.to(torch.int8).contiguous()
            nnz = int((wq != 0).sum())
            hs = [lib.proto_create(wq.data_ptr(), n, k, kind) for kind in (0, 1, 2)]
            xq = torch.zeros(k + 512, dtype=torch.uint8)
            xq[:k] = torch.randint(0, 256, (k,), dtype=torch.uint8)
            ref = (wq.to(torch.int64) @ xq[:k].to(torch.int64)).to(torch.int32)
            outs = [torch.empty(n, dtype=torch.int32) for _ in hs]
            for h, o in zip(hs, outs):
                lib.proto_run(h, xq.data_ptr(), o.data_ptr())
                assert torch.equal(o, ref), "prototype dots differ from the exact reference"
            x = torch.randn(1, k)
            cands = {
                "int8": lambda: i8(x),
                "bitmap": lambda: bm(x),
                **{f"p{j}": (lambda h=h, o=o: lib.proto_run(h, xq.data_ptr(), o.data_ptr())) for j, (h, o) in enumerate(zip(hs, outs))},
            }
            names = list(cands)
            times = {nm: [] for nm in names}
            with torch.inference_mode():
                for f in cands.values():
                    f()
                for r in range(a.reps):
                    for nm in names[r % len(names):] + names[: r % len(names)]:
                        t0 = time.perf_counter()
                        cands[nm]()
                        times[nm].append(time.perf_counter() - t0)
            med = {nm: statistics.median(v) * 1e6 for nm, v in times.items()}
            mn = {nm: min(v) * 1e6 for nm, v in times.items()}
            cell = lambda nm: f"{med[nm]:.0f} ({mn[nm]:.0f})"
            print(f"| {k}x{n} | {s:.0%} | {cell('int8')} | {cell('bitmap')} | {cell('p0')} | {cell('p1')} | {cell('p2')} |"
                  f" {med['int8'] / med['p2']:.2f}x ({mn['int8'] / mn['p2']:.2f}x) |"
                  f" {med['bitmap'] / med['p2']:.2f}x ({mn['bitmap'] / mn['p2']:.2f}x) | {nnz / med['p2'] / 1e3:.1f} |"
                  f" {lib.proto_bytes(hs[2]) / (n * k):.3f} |", flush=True)
            for h in hs:
                lib.proto_free(h)


if __name__ == "__main__":
    main()
