"""Benchmark int4 (q4) kernels against slimnn int8 and torch fp32, interleaved, medians.

    PYTHONPATH=src python bench/tables/int4_peers.py                 # 1 thread, standard shapes, M in {1, 16, 128}
    PYTHONPATH=src python bench/tables/int4_peers.py --threads 2 --shapes 4096x4096 --m 1 128

Every figure is a ratio to peers timed in the same process with the same thread count, each repetition
running every implementation once in turn (interleaved), so machine noise hits all of them alike; the
median over repetitions is reported. For M = 1 the "model-sized" GEMV cycles through enough distinct
weight matrices that their fp32 size exceeds 1 GiB, so every implementation streams its weights from
DRAM, as a model does per token; the machine's read bandwidth is measured in the same run (a pass of
torch's sum over a 1 GiB float32 buffer) and the q4 kernel's rate is given in int4 bytes (K*N/2 per
matrix, scales not counted) and as a fraction of that bandwidth. Each implementation's output is checked
once against the float reference before timing (a fast wrong kernel cannot pass).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # bench/ort_peers.py
import ort_peers  # noqa: E402

import slimnn
from slimnn import _C
from slimnn.formats import pack_q4, pack_q8
from slimnn.math.quantize import dequantize_int4, quantize_int4, quantize_int8_symmetric

SHAPES = [(384, 1536), (1536, 384), (768, 3072), (4096, 4096), (4096, 14336), (14336, 4096)]


def _q8(kind, x, blob, n, y):
    _C.q8_linear(kind, x.data_ptr(), False, x.shape[0], x.shape[1], blob.data_ptr(), blob.numel(), 0,
                 y.data_ptr(), n, slimnn.get_num_threads())


def _q4(kind, x, blob, n, y):
    return _C.q4_linear(kind, x.data_ptr(), False, x.shape[0], x.shape[1], 0, blob.data_ptr(), blob.numel(), 0,
                        y.data_ptr(), n, slimnn.get_num_threads())


_BF16_X: dict[int, torch.Tensor] = {}


def _bf16_call(x, wb, y):
    xb = _BF16_X.get(id(x))
    if xb is None:  # converted once per input, outside the timed calls
        xb = _BF16_X[id(x)] = x.to(torch.bfloat16)
    return torch.nn.functional.linear(xb, wb)


def _ort_prep(w, level, threads):
    sess = ort_peers.int4_session(w, level, threads)
    sess.slimnn_n = w.shape[0]
    return sess


def _ort_call(x, sess, y):
    bound = getattr(sess, "slimnn_bound", None)
    if bound is None or bound[0] is not x:  # bound once per (session, input)
        call, out = ort_peers.bind(sess, x, sess.slimnn_n)
        bound = sess.slimnn_bound = (x, call, out)
    bound[1]()
    return bound[2]


def dram_read_gbs(reps: int = 5) -> float:
    buf = torch.ones(1 << 28, dtype=torch.float32)  # 1 GiB
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        buf.sum()
        ts.append(time.perf_counter() - t)
    return buf.numel() * 4 / statistics.median(ts) / 1e9


def bench_shape(k: int, n: int, m: int, groups: list[int], reps: int, model_sized: bool) -> list[dict]:
    gen = torch.Generator().manual_seed(0)
    n_mats = 1
    if model_sized:
        n_mats = max(1, -(-(1 << 30) // (k * n * 4)))  # fp32 bytes of all matrices >= 1 GiB
    ws = [torch.randn(n, k, generator=gen) / k**0.5 for _ in range(n_mats)]
    x = torch.randn(m, k, generator=gen)
    y = torch.empty(m, n)
    impls: dict[str, tuple] = {}
    impls["torch_fp32"] = (lambda w: w, lambda x, w, y: torch.nn.functional.linear(x, w), None)
    impls["int8_dyn"] = (
        lambda w: pack_q8(*quantize_int8_symmetric(w)),
        lambda x, b, y: _q8("q8_dynamic", x, b, n, y),
        "q8",
    )
    for g in groups:
        gsz = None if g == 0 else g
        impls[f"int4_g{g}_dyn"] = (
            lambda w, gsz=gsz: pack_q4(*quantize_int4(w, gsz, True, torch.float16), gsz),
            lambda x, b, y: _q4("q4_dynamic", x, b, n, y),
            ("q4", gsz),
        )
    g0 = groups[0]
    gsz0 = None if g0 == 0 else g0
    impls[f"int4_g{g0}_wo"] = (
        lambda w: pack_q4(*quantize_int4(w, gsz0, True, torch.float16), gsz0),
        lambda x, b, y: _q4("q4_weight_only", x, b, n, y),
        ("q4", gsz0),
    )
    impls["torch_bf16"] = (lambda w: w.to(torch.bfloat16), _bf16_call, "bf16")
    if ort_peers.available():
        for level in ort_peers.ACCURACY_LEVELS:
            impls[f"ort_int4_acc{level}"] = (lambda w, lv=level: _ort_prep(w, lv, slimnn.get_num_threads()), _ort_call,
                                             "ort4")
    packed = {name: [prep(w) for w in ws] for name, (prep, _, _) in impls.items()}
    # correctness, once per implementation: against the float matmul of its own dequantized weights
    for name, (_, call, kindinfo) in impls.items():
        out = call(x, packed[name][0], y)
        got = out.float() if name.startswith(("torch", "ort")) else y.clone()
        if kindinfo == "ort4":
            wd, tol = ort_peers.int4_weights(ws[0])[2], 0.02
        elif kindinfo == "bf16":
            wd, tol = ws[0], 0.02
        elif kindinfo == "q8":
            wd = ws[0]
            tol = 0.05
        elif kindinfo is None:
            wd, tol = ws[0], 1e-4
        else:
            wd = dequantize_int4(*quantize_int4(ws[0], kindinfo[1], True, torch.float16), kindinfo[1])
            tol = 0.02
        ref = x @ wd.t()
        rel = ((got - ref).norm() / ref.norm()).item()
        if not rel < tol:
            raise AssertionError(f"{name} {m}x{k}x{n}: relative error {rel:.3g} >= {tol}")
    kernel = {
        name: (_q4("q4_dynamic" if "dyn" in name else "q4_weight_only", x, packed[name][0], n, y)
               if name.startswith("int4")
               else f"ORT {ort_peers.version()} MatMulNBits bits=4 block 32 accuracy_level={name[-1]}"
               if name.startswith("ort")
               else "aten::linear bf16" if name == "torch_bf16"
               else ("fbgemm/mkl" if name == "torch_fp32" else _C.select_kernel("q8_dynamic", m)))
        for name in impls
    }
    times: dict[str, list[float]] = {name: [] for name in impls}
    with torch.inference_mode():
        for name, (_, call, _) in impls.items():  # warm-up
            call(x, packed[name][0], y)
        for _ in range(reps):
            for name, (_, call, _) in impls.items():
                t = time.perf_counter()
                for b in packed[name]:
                    call(x, b, y)
                times[name].append((time.perf_counter() - t) / n_mats)
    rows = []
    for name in impls:
        med = statistics.median(times[name])
        rows.append({
            "name": name, "k": k, "n": n, "m": m, "time_us": med * 1e6, "kernel": kernel[name],
            "gops": 2 * m * k * n / med / 1e9, "int4_gbs": k * n / 2 / med / 1e9,
            "bytes": (packed[name][0].numel() * packed[name][0].element_size()
                      if isinstance(packed[name][0], torch.Tensor) else k * n // 2),
        })
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--shapes", nargs="*", default=None, help="KxN (in x out), default: the standard list")
    ap.add_argument("--m", nargs="*", type=int, default=[1, 16, 128])
    ap.add_argument("--groups", nargs="*", type=int, default=[64, 128, 32], help="0: per channel")
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--no-model-sized", action="store_true", help="M=1 from cache (one matrix) instead")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    slimnn.set_num_threads(args.threads)
    shapes = SHAPES if not args.shapes else [tuple(int(v) for v in s.split("x")) for s in args.shapes]
    info = slimnn.cpu_info()
    print(f"cpu: {info['brand']}  isa: {info['isa_best']}  AMX used: {'amx' in info['isa_available']}  "
          f"threads: {args.threads}  torch {torch.__version__}  onnxruntime {ort_peers.version()}")
    bw = dram_read_gbs()
    print(f"DRAM read bandwidth (torch sum over 1 GiB, {args.threads} thread(s)): {bw:.1f} GB/s")
    print("% DRAM: int4 bytes/s over the best read rate seen in the row's run (torch sum or the int8 kernel's blob")
    print("bytes/s, whichever is higher: the sum under-reports what a kernel can stream)")
    print("| K x N | M | impl | kernel | time (us) | vs int8 | vs fp32 | GOP/s | int4 GB/s | % DRAM |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for k, n in shapes:
        for m in args.m:
            rows = bench_shape(k, n, m, args.groups, args.reps, model_sized=(m == 1 and not args.no_model_sized))
            t8 = next(r["time_us"] for r in rows if r["name"] == "int8_dyn")
            t32 = next(r["time_us"] for r in rows if r["name"] == "torch_fp32")
            q8 = next(r for r in rows if r["name"] == "int8_dyn")
            peak = max(bw, q8["bytes"] / q8["time_us"] / 1e3)
            for r in rows:
                is4 = r["name"].startswith("int4")
                gbs = f"{r['int4_gbs']:.1f}" if is4 and m == 1 else ""
                pct = f"{100 * r['int4_gbs'] / peak:.0f}% of {peak:.1f}" if is4 and m == 1 else ""
                print(f"| {k}x{n} | {m} | {r['name']} | {r['kernel']} | {r['time_us']:.1f} | "
                      f"{t8 / r['time_us']:.2f}x | {t32 / r['time_us']:.2f}x | {r['gops']:.1f} | {gbs} | {pct} |",
                      flush=True)


if __name__ == "__main__":
    main()
