#!/usr/bin/env python
"""slimnn int8 linear vs its peers, measured side by side; prints the Markdown tables of docs/benchmarks.md.

    PYTHONPATH=src python bench/tables/int8_peers.py                   # everything: 1 and all cores, all shapes
    PYTHONPATH=src python bench/tables/int8_peers.py --quick           # a short run (fewer rounds), same tables
    PYTHONPATH=src python bench/tables/int8_peers.py --threads 1 --shapes 4096x4096,384x1536 --m 1,16
    PYTHONPATH=src python bench/tables/int8_peers.py --json out.json   # also the raw figures, kernels, errors

For each (shape, M, threads), every implementation is built from the same float layer, its output is
checked once (harness.check_output: a fast wrong kernel aborts the run), and then all implementations are
timed INTERLEAVED in this process: each round runs a batch of back-to-back calls of each in turn (the order
rotating every round), and the figure is the median over rounds of the time per call. Ratios are
peer time / slimnn time (above 1: slimnn is faster), from the same rounds.

Also measured: the model-sized GEMV (M=1 over 20 distinct 4096x4096 layers, > 1 GiB of fp32-equivalent
weights, interleaved with a 1 GiB DRAM read-bandwidth pass) and the per-call cost from Python at the
smallest shape, split into module, functional op and raw binding. Progress goes to stderr, tables to stdout.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # bench/harness.py

import torch  # noqa: E402

import slimnn  # noqa: E402
import ort_peers  # noqa: E402
from harness import (  # noqa: E402
    COLD_IMPLS,
    INT8_ENGINES,
    ORT_IMPLS,
    TORCH_INT8_IMPLS,
    ColdSet,
    ForeignLoad,
    ReadBandwidth,
    check_output,
    default_threads,
    float64_reference,
    interleaved_medians,
    load_shapes,
    make_impls,
    per_call_estimate,
    random_input,
    random_linear,
    set_threads,
    torch_isa,
)

# Timing budgets. batch_s: length of one timed batch (many calls of a fast kernel, one of a slow one);
# case_s: timed seconds per (shape, M, threads) over all implementations, within [min_rounds, max_rounds].
FULL = dict(batch_s=0.004, case_s=4.0, min_rounds=7, max_rounds=41, cold_rounds=15, overhead_rounds=61)
QUICK = dict(batch_s=0.002, case_s=0.6, min_rounds=3, max_rounds=11, cold_rounds=3, overhead_rounds=11)

# Targets (from the issue).
T_INT8_M1, T_INT8_BATCH, T_FP32_BATCH, T_DRAM_FRACTION, T_OVERHEAD_US = 1.25, 1.0, 10.0, 0.80, 15.0

LABEL = {
    "slimnn_dynamic": "slimnn dynamic", "slimnn_weight_only": "slimnn weight_only",
    "torch_fp32": "torch fp32 F.linear", "torch_bf16": "torch bf16 F.linear",
    **{f"torch_int8_{e}": f"torch dynamic int8 [{e}]" for e in INT8_ENGINES},
    "ort_int8": "ONNX Runtime DynamicQuantizeMatMul",
}


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def parse_list(text: str | None, conv):
    return None if text is None else [conv(s) for s in text.split(",") if s.strip()]


def parse_shape(s: str) -> tuple[int, int]:
    k, n = s.lower().split("x")
    return int(k), int(n)


def us(t: float) -> str:
    t *= 1e6
    return f"{t:.1f}" if t < 1000 else f"{t:.0f}"


def time_impls(impls, x, y64, cfg) -> tuple[dict, dict, dict]:
    """Checks each implementation once, then times them interleaved. Returns (seconds, kernels, errors)."""
    calls, est, errs = {}, {}, {}
    for name, impl in impls.items():
        impl.enter()
        fn = impl.bind(x)
        errs[name] = check_output(impl, x, fn(), y64)
        est[name] = per_call_estimate(fn, warmup=False)  # check_output's call was the warm-up
        calls[name] = (impl.enter, fn)
    inner = {n: max(1, round(cfg["batch_s"] / est[n])) for n in calls}
    per_round = sum(inner[n] * est[n] for n in calls)
    rounds = int(min(cfg["max_rounds"], max(cfg["min_rounds"], cfg["case_s"] / per_round)))
    with ForeignLoad() as fl:
        med = interleaved_medians(calls, inner, rounds)
    kernels = {n: impls[n].kernel() for n in impls}
    return med, kernels, errs, fl.cores


def run_cases(shapes, ms_filter, threads, cfg) -> list[dict]:
    rows = []
    by_shape: dict[tuple[int, int], list[int]] = {}
    for k, n, m in load_shapes():
        if (shapes is None or (k, n) in shapes) and (ms_filter is None or m in ms_filter):
            by_shape.setdefault((k, n), []).append(m)
    for (k, n), ms in by_shape.items():
        log(f"[{k}x{n}] building layers ...")
        lin = random_linear(k, n, seed=k * 100003 + n)
        impls = make_impls(lin)
        for m in ms:
            x = random_input(m, k)
            y64 = float64_reference(lin, x)
            for t in threads:
                set_threads(t)
                with torch.inference_mode():
                    med, kernels, errs, foreign = time_impls(impls, x, y64, cfg)
                best = min(TORCH_INT8_IMPLS, key=lambda e: med[e]) if TORCH_INT8_IMPLS else None
                dyn = med["slimnn_dynamic"]
                row = dict(
                    k=k, n=n, m=m, threads=t, seconds=med, kernels=kernels, err_vs_float64=errs,
                    foreign_load_cores=foreign,
                    best_int8=best,
                    ratio_vs_best_int8=(med[best] / dyn) if best else None,
                    ratio_vs_fp32=med["torch_fp32"] / dyn,
                    ratio_vs_bf16=med["torch_bf16"] / dyn,
                    ratio_vs_ort=(med["ort_int8"] / dyn) if ORT_IMPLS else None,
                    ratio_wo_vs_fp32=med["torch_fp32"] / med["slimnn_weight_only"],
                    gops=2.0 * m * k * n / dyn / 1e9,
                    gbps=(k * n / dyn / 1e9) if m == 1 else None,
                )
                rows.append(row)
                log(f"  {k}x{n} M={m} t={t}: dyn {us(dyn)} us, wo {us(med['slimnn_weight_only'])} us, "
                    f"fp32 {us(med['torch_fp32'])} us, {best} {us(med[best])} us")
        del impls, lin
    return rows


def run_overhead(threads, cfg) -> list[dict]:
    """Per-call time from Python at 384->1536, M=1: module, functional op, raw binding, and peers."""
    from slimnn import _C, ops

    k, n = 384, 1536
    lin = random_linear(k, n, seed=k * 100003 + n)
    impls = make_impls(lin, ("slimnn_dynamic", "slimnn_weight_only", "torch_fp32") + TORCH_INT8_IMPLS)
    x = random_input(1, k)
    y64 = float64_reference(lin, x)
    mod = impls["slimnn_dynamic"].module
    out = []
    for t in threads:
        set_threads(t)
        with torch.inference_mode():
            calls, est = {}, {}
            for name, impl in impls.items():
                impl.enter()
                fn = impl.bind(x)
                check_output(impl, x, fn(), y64)
                calls[name] = (impl.enter, fn)
            y_mod = mod(x)
            calls["ops.q8_linear"] = (lambda: None, lambda: ops.q8_linear(x, mod.packed, mod.bias, "dynamic", n))
            y = torch.empty(1, n)
            args = ("q8_dynamic", x.data_ptr(), False, 1, k, mod.packed.data_ptr(), mod.packed.numel(),
                    mod.bias.data_ptr(), y.data_ptr(), n, t)
            try:  # the private binding's signature as of this writing; skipped if it changed
                _C.q8_linear(*args)
                if not torch.equal(y, y_mod):
                    raise AssertionError("raw _C.q8_linear output differs from Int8Linear's")
                calls["_C.q8_linear"] = (lambda: None, lambda: _C.q8_linear(*args))
            except TypeError as e:
                log(f"  raw binding skipped: {e}")
            for name, (enter, fn) in calls.items():
                enter()
                est[name] = per_call_estimate(fn)
            inner = {nm: max(1, round(cfg["batch_s"] / est[nm])) for nm in calls}
            with ForeignLoad() as fl:
                med = interleaved_medians(calls, inner, cfg["overhead_rounds"])
        out.append(dict(threads=t, seconds=med, foreign_load_cores=fl.cores))
        log(f"  overhead t={t}: " + ", ".join(f"{nm} {us(s)} us" for nm, s in med.items()))
    return out


def run_cold(threads, cfg) -> list[dict]:
    log("[model-sized GEMV] DRAM buffer + distinct layers ...")
    bw = ReadBandwidth()
    cs = ColdSet(COLD_IMPLS)
    k, n = cs.k, cs.n
    out = []
    for t in threads:
        set_threads(t)
        x = random_input(1, k)
        with torch.inference_mode():
            errs = cs.check(x)
            calls = {"dram_read": (lambda: None, bw.run)}
            for name in COLD_IMPLS:
                calls[name] = (cs.impls[name][0].enter, cs.bind_pass(name, x))
            for enter, fn in calls.values():  # warm-up pass (and first touch)
                enter()
                fn()
            with ForeignLoad() as fl:
                med = interleaved_medians(calls, {nm: 1 for nm in calls}, cfg["cold_rounds"])
        dram = bw.gbps(med["dram_read"])
        res = {}
        for name in COLD_IMPLS:
            per = med[name] / cs.count
            gbps = k * n * cs.impls[name][0].bytes_per_weight / per / 1e9
            res[name] = dict(us_per_gemv=per * 1e6, gbps=gbps, fraction_of_dram=gbps / dram,
                             kernel=cs.impls[name][0].kernel(), err_vs_float64=errs[name])
        out.append(dict(threads=t, k=k, n=n, layers=cs.count, fp32_equivalent_bytes=cs.fp32_bytes,
                        int8_bytes=k * n * cs.count, dram_read_gbps=dram, impls=res, foreign_load_cores=fl.cores))
        log(f"  cold t={t}: DRAM {dram:.1f} GB/s, slimnn dyn {res['slimnn_dynamic']['gbps']:.1f} GB/s")
    del cs, bw
    return out


# ------------------------------------------------------------------------------------------------ report
def environment(args_line: str) -> dict:
    info = slimnn.cpu_info()
    return dict(
        date=datetime.datetime.now().isoformat(timespec="seconds"), command=args_line,
        cpu_info=info, python=platform.python_version(), torch_version=torch.__version__,
        torch_isa=torch_isa(), torch_int8_engines=list(INT8_ENGINES), slimnn_version=slimnn.__version__,
        cores=os.cpu_count(), loadavg_start=os.getloadavg(),
    )


def load(v) -> str:
    return "n/a" if v is None else f"{v:.2f}"


def target_note(r: dict) -> str:
    if r["m"] == 1:
        ok = r["ratio_vs_best_int8"] >= T_INT8_M1
        return "met" if ok else f"no (<{T_INT8_M1}x int8)"
    miss = []
    if r["ratio_vs_best_int8"] < T_INT8_BATCH:
        miss.append(f"<{T_INT8_BATCH}x int8")
    if r["ratio_vs_fp32"] < T_FP32_BATCH:
        miss.append(f"<{T_FP32_BATCH:g}x fp32")
    return "met" if not miss else "no (" + ", ".join(miss) + ")"


def markdown(env: dict, rows: list[dict], overhead: list[dict], cold: list[dict]) -> str:
    L = []
    info = env["cpu_info"]
    L.append(f"Run {env['date']}: `{env['command']}`  ")
    L.append(f"CPU: {info['brand']} ({info['vendor']}, {env['cores']} cores), slimnn ISAs available: "
             f"{', '.join(info['isa_available'])}; torch {env['torch_version']} (ATen ISA {env['torch_isa']}), "
             f"int8 engines: {', '.join(env['torch_int8_engines'])}; onnxruntime {ort_peers.version()}; "
             f"AMX used: {'yes' if 'amx' in info['isa_available'] else 'no'}; Python {env['python']}.  ")
    L.append(f"Load average at start / end: {', '.join(f'{v:.2f}' for v in env['loadavg_start'])} / "
             f"{', '.join(f'{v:.2f}' for v in env['loadavg_end'])}.")
    L.append("")
    if rows:
        L.append("### int8 linear, time per call (median of interleaved rounds)")
        L.append("")
        L.append("Ratios are peer time / slimnn dynamic time (above 1: slimnn faster). GOP/s = 2·M·K·N / t "
                 "(slimnn dynamic); GB/s (M=1) = int8 weight bytes K·N / t. Other load: CPU cores' worth "
                 "of time other processes used while the case was timed (from /proc/stat).")
        L.append("")
        L.append("| K x N | M | thr | slimnn dynamic us | slimnn weight_only us | torch fp32 us | torch bf16 us "
                 "| best torch int8 us (engine) | vs best int8 | vs fp32 | GOP/s | GB/s | target | other load |")
        L.append("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|--:|")
        for r in rows:
            s = r["seconds"]
            best = r["best_int8"]
            L.append(
                f"| {r['k']}x{r['n']} | {r['m']} | {r['threads']} | {us(s['slimnn_dynamic'])} | "
                f"{us(s['slimnn_weight_only'])} | {us(s['torch_fp32'])} | {us(s['torch_bf16'])} | "
                f"{us(s[best])} ({best[len('torch_int8_'):]}) | {r['ratio_vs_best_int8']:.2f}x | "
                f"{r['ratio_vs_fp32']:.1f}x | {r['gops']:.0f} | "
                f"{'' if r['gbps'] is None else format(r['gbps'], '.1f')} | {target_note(r)} | "
                f"{load(r['foreign_load_cores'])} |"
            )
        L.append("")
        if ORT_IMPLS:
            L.append("ONNX Runtime int8 (DynamicQuantizeMatMul, one-node graph, intra_op threads = thr, bound "
                     "once) and slimnn weight-only against torch fp32, same rounds:")
            L.append("")
            L.append("| K x N | M | thr | ORT int8 us | slimnn dynamic vs ORT | slimnn weight_only vs fp32 |")
            L.append("|---|--:|--:|--:|--:|--:|")
            for r in rows:
                L.append(f"| {r['k']}x{r['n']} | {r['m']} | {r['threads']} | {us(r['seconds']['ort_int8'])} | "
                         f"{r['ratio_vs_ort']:.2f}x | {r['ratio_wo_vs_fp32']:.2f}x |")
            L.append("")
        L.append("torch dynamic int8 per engine (us per call):")
        L.append("")
        L.append("| K x N | M | thr | " + " | ".join(INT8_ENGINES) + " |")
        L.append("|---|--:|--:|" + "--:|" * len(INT8_ENGINES))
        for r in rows:
            L.append(f"| {r['k']}x{r['n']} | {r['m']} | {r['threads']} | "
                     + " | ".join(us(r["seconds"][f"torch_int8_{e}"]) for e in INT8_ENGINES) + " |")
        L.append("")
        L.append("Kernels slimnn ran (Int8Linear.last_kernel):")
        L.append("")
        seen: dict[tuple[str, int], set] = {}
        for r in rows:
            for mode in ("slimnn_dynamic", "slimnn_weight_only"):
                seen.setdefault((mode, r["m"]), set()).add(r["kernels"][mode])
        for (mode, m), names in sorted(seen.items()):
            L.append(f"- {LABEL[mode]}, M={m}: {', '.join(sorted(names))}")
        L.append("")
    if cold:
        c0 = cold[0]
        L.append(f"### Model-sized GEMV: M=1 over {c0['layers']} distinct {c0['k']}x{c0['n']} layers "
                 f"({c0['fp32_equivalent_bytes'] / 2**30:.2f} GiB as fp32, {c0['int8_bytes'] / 2**20:.0f} MiB as int8)")
        L.append("")
        L.append("GB/s = nominal weight bytes (int8: 1, fp32: 4 per weight) / time per GEMV; DRAM = read "
                 "bandwidth of a torch.sum pass over a 1 GiB buffer, interleaved with the GEMV passes.")
        L.append("")
        L.append("| thr | DRAM read GB/s | " + " | ".join(LABEL[nm] for nm in COLD_IMPLS) + " | other load |")
        L.append("|--:|--:|" + "--:|" * (len(COLD_IMPLS) + 1))
        for c in cold:
            cells = [f"{us(v['us_per_gemv'] * 1e-6)} us, {v['gbps']:.1f} GB/s ({100 * v['fraction_of_dram']:.0f}%)"
                     for v in (c["impls"][nm] for nm in COLD_IMPLS)]
            L.append(f"| {c['threads']} | {c['dram_read_gbps']:.1f} | " + " | ".join(cells)
                     + f" | {load(c['foreign_load_cores'])} |")
        L.append("")
    if overhead:
        names = list(overhead[0]["seconds"])
        L.append("### Per-call time from Python, 384 -> 1536, M=1 (us per call)")
        L.append("")
        L.append("`ops.q8_linear` is the functional entry; `_C.q8_linear` the raw binding with a preallocated "
                 "output (kernel + pybind11 only). Python-side overhead of the module = module - raw binding.")
        L.append("")
        L.append("| thr | " + " | ".join(LABEL.get(nm, f"`{nm}`") for nm in names)
                 + " | module overhead | other load |")
        L.append("|--:|" + "--:|" * (len(names) + 2))
        for o in overhead:
            s = o["seconds"]
            ovh = (us(s["slimnn_dynamic"] - s["_C.q8_linear"]) if "_C.q8_linear" in s else "n/a")
            L.append(f"| {o['threads']} | " + " | ".join(us(s[nm]) for nm in names)
                     + f" | {ovh} | {load(o['foreign_load_cores'])} |")
        L.append("")
    L.append("### Targets")
    L.append("")
    L.extend(target_summary(rows, overhead, cold))
    return "\n".join(L)


def target_summary(rows, overhead, cold) -> list[str]:
    out = []
    m1 = [r for r in rows if r["m"] == 1]
    mb = [r for r in rows if r["m"] > 1]
    if mb:
        a = sum(r["ratio_vs_best_int8"] >= T_INT8_BATCH for r in mb)
        b = sum(r["ratio_vs_fp32"] >= T_FP32_BATCH for r in mb)
        out.append(f"- M=16/128, >= {T_INT8_BATCH}x best torch int8: {a}/{len(mb)} cases "
                   f"(ratios {min(r['ratio_vs_best_int8'] for r in mb):.2f}x to "
                   f"{max(r['ratio_vs_best_int8'] for r in mb):.2f}x).")
        out.append(f"- M=16/128, >= {T_FP32_BATCH:g}x torch fp32: {b}/{len(mb)} cases "
                   f"(ratios {min(r['ratio_vs_fp32'] for r in mb):.1f}x to "
                   f"{max(r['ratio_vs_fp32'] for r in mb):.1f}x).")
    if m1:
        a = sum(r["ratio_vs_best_int8"] >= T_INT8_M1 for r in m1)
        out.append(f"- M=1, >= {T_INT8_M1}x best torch int8: {a}/{len(m1)} cases "
                   f"(ratios {min(r['ratio_vs_best_int8'] for r in m1):.2f}x to "
                   f"{max(r['ratio_vs_best_int8'] for r in m1):.2f}x).")
    for c in cold:
        d, w = c["impls"]["slimnn_dynamic"], c["impls"]["slimnn_weight_only"]
        met = "met" if d["fraction_of_dram"] >= T_DRAM_FRACTION else "not met"
        out.append(f"- Model-sized GEMV, {c['threads']} thread(s), >= {100 * T_DRAM_FRACTION:.0f}% of DRAM read "
                   f"bandwidth: dynamic {100 * d['fraction_of_dram']:.0f}%, weight_only "
                   f"{100 * w['fraction_of_dram']:.0f}% -> {met}.")
    for o in overhead:
        t = o["seconds"]["slimnn_dynamic"] * 1e6
        out.append(f"- 384->1536, M=1, {o['threads']} thread(s), < {T_OVERHEAD_US:g} us per call from Python: "
                   f"{t:.1f} us -> {'met' if t < T_OVERHEAD_US else 'not met'}.")
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", help="comma-separated thread counts (default: 1 and all cores)")
    p.add_argument("--shapes", help="comma-separated KxN from shapes/llm_linear.csv (default: all)")
    p.add_argument("--m", help="comma-separated M values (default: all in the CSV)")
    p.add_argument("--quick", action="store_true", help="fewer, shorter rounds (a smoke run; noisier)")
    p.add_argument("--no-cold", action="store_true", help="skip the model-sized GEMV")
    p.add_argument("--no-overhead", action="store_true", help="skip the per-call overhead section")
    p.add_argument("--json", help="write the raw results here too")
    a = p.parse_args(argv)
    cfg = QUICK if a.quick else FULL
    threads = parse_list(a.threads, int) or default_threads()
    shapes = parse_list(a.shapes, parse_shape)
    ms = parse_list(a.m, int)
    env = environment("python bench/tables/int8_peers.py " + " ".join(shlex.quote(s) for s in (argv or sys.argv[1:])))
    torch_threads = torch.get_num_threads()
    try:
        rows = run_cases(set(shapes) if shapes else None, set(ms) if ms else None, threads, cfg)
        overhead = [] if a.no_overhead else run_overhead(threads, cfg)
        cold = [] if a.no_cold else run_cold(threads, cfg)
    finally:
        torch.set_num_threads(torch_threads)
        slimnn.set_num_threads(None)
    env["loadavg_end"] = os.getloadavg()
    print(markdown(env, rows, overhead, cold))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(dict(environment=env, config=cfg, cases=rows, overhead=overhead, model_sized_gemv=cold),
                      f, indent=1, default=str)
        log(f"wrote {a.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
