"""One-row (M = 1) GEMV weight bandwidth, int4 against int8, with the weights streamed from DRAM (issue 15).

A decode step reads every weight once per token, so the M = 1 kernels are judged by the bytes they stream per
second. Per shape (K in, N out) and format, enough distinct random matrices are built that one set exceeds
``--mib`` MiB (default 256, 8x this machine's 32 MB L3), and each timed pass calls the bound kernel
(``_C.q8_linear`` / ``_C.q4_linear``, as ``slimnn.Decoder`` does, preallocated output) once per matrix in turn.
Formats are interleaved pass by pass; figures are medians of ``--runs`` passes.

Formats: int8 per channel (``Int8Config()``), int4 g32 symmetric and int4 g32 float zero points
(``Int4Config()``'s format), both with fp16 scales (the default ``scale_dtype``; a name ending in "fp32" uses fp32).
Bytes per call are what the kernel reads: codes plus scales (plus, for float zero points, the zero points where
the VNNI GEMV computes the offsets in registers, else the blob's fp32 offsets) plus the activation row.
Each format's first matrix is checked against the dequantized float product once.

    PYTHONPATH=src python3 bench/tables/q4_gemv_bw.py [--threads 1 2] [--runs 7] [--shapes smollm 1b]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

import slimnn
from slimnn import _C
from slimnn.formats.packed import pack_q4, pack_q8, unpack_q4

SHAPES = {
    # SmolLM2-135M: q/o (576x576), k/v (576x192, fused q/k/v 576x960), fused gate/up 576x3072, down 1536x576
    "smollm": [(576, 576), (576, 960), (576, 3072), (1536, 576)],
    # TinyLlama-1.1B: q/o 2048x2048, fused q/k/v 2048x2560, fused gate/up 2048x11264, down 5632x2048
    "1b": [(2048, 2048), (2048, 2560), (2048, 11264), (5632, 2048)],
}


def make_blob(fmt: str, n: int, k: int, gen: torch.Generator) -> tuple[str, torch.Tensor, int]:
    """(kind, blob, bytes the M = 1 kernel reads of it)."""
    if fmt == "int8":
        q = torch.randint(-127, 128, (n, k), dtype=torch.int8, generator=gen)
        s = torch.rand(1, n, generator=gen) * 0.01 + 1e-3
        return "q8_dynamic", pack_q8(q, s, None), n * k + 4 * n
    gs = 32
    ng = -(-k // gs)
    codes = torch.randint(0, 16, (n, k), dtype=torch.uint8, generator=gen)
    dt = torch.float32 if fmt.endswith("fp32") else torch.float16  # fp16: Int4Config's default scale_dtype
    sb = 2 if dt == torch.float16 else 4
    s = (torch.rand(ng, n, generator=gen) * 0.01 + 1e-3).to(dt)
    if fmt.startswith("int4 g32 sym"):
        return "q4_dynamic", pack_q4(codes, s, None, gs), n * k // 2 + ng * n * sb
    z = (torch.rand(ng, n, generator=gen) * 15).to(dt)
    # the VNNI GEMV reads the float zero points (o = s (8 - z) in registers); other paths read the fp32 offsets
    zb = sb if _C.q4_select_kernel("q4_dynamic", 1) == "qgemm_q4_u8_1x128__avx512vnni" else 4
    return "q4_dynamic", pack_q4(codes, s, z, gs), n * k // 2 + ng * n * (sb + zb)


def dequant(fmt: str, blob: torch.Tensor, n: int, k: int) -> torch.Tensor:
    if fmt == "int8":
        from slimnn.formats.packed import unpack_q8

        q, s, _ = unpack_q8(blob)
        return q.float() * s.float().reshape(n, 1)
    codes, s, z, gs = unpack_q4(blob)
    g = torch.arange(k) // gs
    sf = s.float()[g].t()
    zf = torch.full_like(sf, 8.0) if z is None else z.float()[g].t()
    return sf * (codes.float() - zf)


def call(fmt: str, kind: str, x: torch.Tensor, blob: torch.Tensor, k: int, y: torch.Tensor, nt: int) -> None:
    if fmt == "int8":
        _C.q8_linear(kind, x.data_ptr(), False, 1, k, blob.data_ptr(), blob.numel(), 0, y.data_ptr(), y.shape[1], nt)
    else:
        _C.q4_linear(kind, x.data_ptr(), False, 1, k, 0, blob.data_ptr(), blob.numel(), 0, y.data_ptr(), y.shape[1],
                     nt)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--mib", type=float, default=256.0)
    ap.add_argument("--shapes", nargs="+", default=["smollm", "1b"])
    ap.add_argument("--formats", nargs="+", default=["int8", "int4 g32 sym", "int4 g32 fzero"])
    args = ap.parse_args()
    info = slimnn.cpu_info()
    print(f"cpu: {info['vendor']} {info['brand']}, best ISA {info['isa_best']}, torch {info['torch_version']}")
    print(f"load average at start: {os.getloadavg()}")
    print("| K x N | format | threads | kernel | us/call | GB/s | time / int8 | best GB/s |")
    print("|---|---|---|---|---|---|---|---|")
    gen = torch.Generator().manual_seed(0)
    for shapes in args.shapes:
        for k, n in SHAPES[shapes]:
            sets = {}
            for fmt in args.formats:
                kind, b0, nbytes = make_blob(fmt, n, k, gen)
                count = max(2, int(args.mib * 2**20 // nbytes))
                blobs = [b0] + [make_blob(fmt, n, k, gen)[1] for _ in range(count - 1)]
                x = torch.randn(1, k, generator=gen)
                y = torch.zeros(1, n)
                call(fmt, kind, x, b0, k, y, 1)
                ref = x @ dequant(fmt, b0, n, k).t()
                err = float((y - ref).abs().max() / ref.abs().max())
                if err > 0.05:
                    raise SystemExit(f"{fmt} {k}x{n}: output off the reference by {err:.3g} (relative max)")
                sets[fmt] = (kind, blobs, nbytes + 4 * k, x, y)
            for nt in args.threads:
                times = {f: [] for f in sets}
                for _ in range(args.runs):
                    for fmt, (kind, blobs, _, x, y) in sets.items():
                        call(fmt, kind, x, blobs[-1], k, y, nt)
                        t = time.perf_counter()
                        for b in blobs:
                            call(fmt, kind, x, b, k, y, nt)
                        times[fmt].append((time.perf_counter() - t) / len(blobs))
                name = {f: call_name(f, sets[f], k, nt) for f in sets}
                base = statistics.median(times["int8"]) if "int8" in times else None
                for fmt, ts in times.items():
                    t = statistics.median(ts)
                    ratio = f"{t / base:.2f}" if base else "-"
                    print(f"| {k} x {n} | {fmt} | {nt} | {name[fmt]} | {t * 1e6:.1f} | {sets[fmt][2] / t / 1e9:.1f} |"
                          f" {ratio} | {sets[fmt][2] / min(ts) / 1e9:.1f} |", flush=True)
            del sets
    print(f"load average at end: {os.getloadavg()}")


def call_name(fmt, s, k, nt) -> str:
    kind, blobs, _, x, y = s
    if fmt == "int8":
        return _C.q8_linear(kind, x.data_ptr(), False, 1, k, blobs[0].data_ptr(), blobs[0].numel(), 0, y.data_ptr(),
                            y.shape[1], nt)
    return _C.q4_linear(kind, x.data_ptr(), False, 1, k, 0, blobs[0].data_ptr(), blobs[0].numel(), 0, y.data_ptr(),
                        y.shape[1], nt)


if __name__ == "__main__":
    main()
