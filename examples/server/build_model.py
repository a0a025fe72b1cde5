"""Offline step: build the example model, compress it with slimnn int8, save both (see model.py)."""

from __future__ import annotations

import argparse
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from model import SIZES, build  # noqa: E402

if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", required=True)
    p.add_argument("--size", choices=sorted(SIZES), default="full")
    p.add_argument("--mode", choices=["dynamic", "weight_only"], default="dynamic")
    a = p.parse_args()
    print(f"wrote {build(a.out, a.size, a.mode)}")
