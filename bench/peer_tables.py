#!/usr/bin/env python
"""One entry point for the peer tables of docs/benchmarks.md: each table is a script in bench/tables/ that
measures slimnn and the peers a user would pick side by side in one process and prints Markdown.

    PYTHONPATH=src python bench/peer_tables.py --list
    PYTHONPATH=src python bench/peer_tables.py int8 sparse          # the named tables, default arguments
    PYTHONPATH=src python bench/peer_tables.py int8 -- --threads 1  # arguments after -- go to every table
    PYTHONPATH=src python bench/peer_tables.py all

The per-family pytest-benchmark suites (one kernel call per case) are bench/bench_<family>.py:
``PYTHONPATH=src python -m pytest bench/``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
TABLES = {
    "int8": ("int8_peers.py", "int8 dynamic / weight-only vs torch fp32, bf16 and every quantized engine"),
    "int4": ("int4_peers.py", "int4 (W4A8, weight-only) vs slimnn int8 and torch fp32"),
    "int4-quality": ("int4_quality.py", "int4 RTN / GPTQ / AWQ output quality on all-MiniLM-L6-v2"),
    "sparse": ("sparse_peers.py", "sparse vs torch.sparse CSR, scipy.sparse and dense"),
    "bitmap": ("bitmap_peers.py", "sparse + int8 (bitmap) vs slimnn dense int8"),
    "lowrank": ("lowrank_peers.py", "low-rank U(Vx) vs dense and two torch matmuls"),
    "minilm-fusion": ("minilm_fusion.py", "all-MiniLM-L6-v2: fp32 vs int8 unfused vs fused activations"),
    "digits": ("digits_pipeline.py", "autocompress + distillation on scikit-learn's digits"),
    "qgemm-split": ("qgemm_split.py", "the dynamic int8 driver's column vs row split"),
    "minilm-ort": ("minilm_ort.py", "all-MiniLM-L6-v2 batch 32: slimnn int8 vs ONNX Runtime quantize_dynamic int8"),
    "wo-crossover": ("wo_crossover.py", "weight-only int8/int4 panel GEMM vs the old kernels and torch fp32"),
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, extra = argv[:i], argv[i + 1:]
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("tables", nargs="*", help=f"tables to run: {', '.join(TABLES)} or 'all'")
    ap.add_argument("--list", action="store_true", help="list the tables and exit")
    args = ap.parse_args(argv)
    if args.list or not args.tables:
        for name, (script, what) in TABLES.items():
            print(f"{name:14s} bench/tables/{script:20s} {what}")
        return 0
    names = list(TABLES) if args.tables == ["all"] else args.tables
    unknown = [n for n in names if n not in TABLES]
    if unknown:
        ap.error(f"unknown table(s) {unknown}; known: {', '.join(TABLES)}")
    env = dict(os.environ)
    src = str(HERE.parent / "src")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH", "")) if p)
    worst = 0
    for name in names:
        script = HERE / "tables" / TABLES[name][0]
        print(f"\n## {name}: {TABLES[name][1]}\n", flush=True)
        rc = subprocess.call([sys.executable, str(script), *extra], env=env)
        if rc:
            print(f"(table {name} exited with {rc})", flush=True)
            worst = worst or rc
    return worst


if __name__ == "__main__":
    raise SystemExit(main())
