"""Decode of a 1B-parameter Llama configuration (random weights) as weight bandwidth, against the machine's
measured DRAM read bandwidth (issue 15: "at least 80% of measured DRAM bandwidth in weight bytes").

No ~1B model ships on PyPI, so the model is transformers' ``LlamaForCausalLM`` built from a TinyLlama-1.1B
configuration (hidden 2048, 22 layers, 32 heads, 4 KV heads, FFN 5632, vocabulary 32000, untied head) with
random weights (normal, std 0.02, seeded). Speed does not depend on the values.

What is measured, per variant and thread count (median of ``--runs``):
- decode seconds per token for ``--new`` greedy tokens after a ``--prompt``-token prompt;
- weight bytes read per token: every parameter and buffer except the input embedding table (a decode step reads
  one of its rows) -- the compressed Linear blobs, the head, the norms;
- weight GB/s = bytes per token / seconds per token, and its share of the DRAM read bandwidth.

DRAM read bandwidth: the best of ``--bw-runs`` sums of a 2 GiB float32 tensor (``torch.sum``, vectorized, far
larger than any cache) at the same thread count. A sum reads each byte once and writes nothing, which is what a
GEMV over weights does.

    PYTHONPATH=src python3 bench/tables/llm_1b.py [--threads 1 2] [--runs 3] [--only int8 int4] [--eager]

Two decode paths per variant: transformers' own eager loop ("eager") and ``slimnn.Decoder`` ("Decoder";
``--eager`` skips it).
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
from typing import Any, Callable

TINYLLAMA_1B = dict(hidden_size=2048, intermediate_size=5632, num_hidden_layers=22, num_attention_heads=32,
                    num_key_value_heads=4, vocab_size=32000, max_position_embeddings=2048, rms_norm_eps=1e-5,
                    tie_word_embeddings=False, rope_theta=10000.0)


def dram_read_gbs(threads: int, runs: int, gib: float = 2.0) -> float:
    """Best read bandwidth (GB/s) of a float32 sum over ``gib`` GiB at ``threads`` threads."""
    import torch

    prev = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        x = torch.ones(int(gib * (1 << 30)) // 4, dtype=torch.float32)
        float(x.sum())  # pages touched, code warm
        best = float("inf")
        for _ in range(runs):
            t = time.perf_counter()
            float(x.sum())
            best = min(best, time.perf_counter() - t)
        return x.numel() * 4 / best / 1e9
    finally:
        torch.set_num_threads(prev)


def build_float(seed: int = 0) -> Any:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(**TINYLLAMA_1B)
    with torch.no_grad():
        model = LlamaForCausalLM(cfg).eval()
    return model


def weight_bytes_per_token(model: Any) -> int:
    """Bytes of every parameter and buffer except the input embedding table (shared tensors counted once)."""
    emb = model.get_input_embeddings()
    skip = {t.data_ptr() for t in list(emb.parameters()) + list(emb.buffers())}
    seen, total = set(), 0
    for t in list(model.parameters()) + list(model.buffers()):
        key = (t.data_ptr(), t.numel(), t.dtype)
        if t.numel() and key not in seen and t.data_ptr() not in skip:
            seen.add(key)
            total += t.numel() * t.element_size()
    return total


def variants() -> dict[str, Callable[[Any], Any]]:
    import slimnn

    def comp(cfg: Any) -> Callable[[Any], Any]:
        def build(m: Any) -> Any:
            slimnn.compress_(m, cfg)
            return m
        return build

    return {
        "slimnn int8 dynamic": comp(slimnn.Int8Config()),
        "slimnn int4 g32 sym": comp(slimnn.Int4Config(group_size=32, symmetric=True, scale_search=False,
                                                      progress=False)),
        "slimnn int4 default": comp(slimnn.Int4Config(progress=False)),
    }


def eager_decode_s(model: Any, prompt: Any, new: int) -> float:
    from slimnn.app.llm import greedy_timed

    return greedy_timed(model, prompt, new)[1]


def decoder_decode_s(decoder: Any) -> Callable[[Any, Any, int], float]:
    """Seconds for ``new`` decode steps through ``decoder`` (a ``slimnn.Decoder`` of that model)."""
    from slimnn.app.llm import decoder_timed

    return lambda model, prompt, new: decoder_timed(decoder, prompt, new)[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--bw-runs", type=int, default=5)
    ap.add_argument("--prompt", type=int, default=16)
    ap.add_argument("--new", type=int, default=16)
    ap.add_argument("--only", nargs="*", help="variants whose name contains one of these words")
    ap.add_argument("--eager", action="store_true", help="time transformers' eager loop only")
    args = ap.parse_args()

    import torch

    import slimnn

    info = slimnn.cpu_info()
    print(f"CPU: {info.get('model', info.get('vendor', '?'))}")
    bw = {nt: dram_read_gbs(nt, args.bw_runs) for nt in args.threads}
    print("DRAM read bandwidth (float32 sum over 2 GiB): "
          + ", ".join(f"{nt}t {g:.1f} GB/s" for nt, g in bw.items()))
    gc.collect()
    prompt = torch.randint(0, TINYLLAMA_1B["vocab_size"], (1, args.prompt), generator=torch.Generator().manual_seed(1))
    rows = []
    for name, build in variants().items():
        if args.only and not any(o.lower() in name.lower() for o in args.only):
            continue
        t = time.perf_counter()
        model = build(build_float())
        gc.collect()
        nbytes = weight_bytes_per_token(model)
        print(f"built {name} in {time.perf_counter() - t:.0f}s: {nbytes / 1e9:.3f} GB of weights per token")
        paths = [("eager", eager_decode_s)]
        if not args.eager:
            paths.append(("Decoder", decoder_decode_s(slimnn.Decoder(model, max_len=args.prompt + args.new + 1))))
        for nt in args.threads:
            torch.set_num_threads(nt)
            slimnn.set_num_threads(nt)
            for pname, fn in paths:
                secs = []
                with torch.inference_mode():
                    for _ in range(args.runs):
                        secs.append(fn(model, prompt, args.new) / args.new)
                per_tok = statistics.median(secs)
                gbs = nbytes / per_tok / 1e9
                rows.append((name, pname, nt, nbytes, per_tok, gbs, gbs / bw[nt]))
                print(f"  {pname} {nt}t: {1 / per_tok:.2f} tok/s, {gbs:.1f} GB/s = {gbs / bw[nt]:.0%} of DRAM")
        slimnn.set_num_threads(None)
        del model, paths  # the Decoder holds the model (and its fused copies)
        gc.collect()
    print()
    print("| variant | decode path | threads | GB/token | tok/s | weight GB/s | share of DRAM read bandwidth |")
    print("|---|---|---|---|---|---|---|")
    for name, pname, nt, nbytes, per_tok, gbs, share in rows:
        print(f"| {name} | {pname} | {nt} | {nbytes / 1e9:.3f} | {1 / per_tok:.2f} | {gbs:.1f} | {share:.0%} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
