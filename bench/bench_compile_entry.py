"""torch.compile's fixed per-call cost under the settings that might cut it (issue 13, second round).

    PYTHONPATH=src:bench python bench/bench_compile_entry.py default
    PYTHONPATH=src:bench python bench/bench_compile_entry.py skipguard   # set_stance(skip_guard_eval_unsafe=True)
    PYTHONPATH=src:bench python bench/bench_compile_entry.py freeze      # torch._inductor.config.freezing
    PYTHONPATH=src:bench python bench/bench_compile_entry.py cpp         # torch._inductor.config.cpp_wrapper

One setting per process (Inductor's config is read when a graph compiles). Times ``lambda x: x + 1`` (the
entry cost alone) and the int8 dynamic ``mlp`` of bench_compile.py (256 -> 1024 -> GELU -> 256) eager and
compiled (``fullgraph=True, dynamic=True``), interleaved, medians of each round's fastest call, 1 thread.
A setting under which slimnn's graph fails to compile is reported with its error. Nothing asserts on time.
"""

from __future__ import annotations

import sys

import torch
from torch import nn

import slimnn
from bench_compile import per_call
from harness import interleaved


def main(mode: str) -> None:
    torch.set_num_threads(1)
    slimnn.set_num_threads(1)
    import torch._inductor.config as ic

    if mode == "cpp":
        ic.cpp_wrapper = True
    elif mode == "freeze":
        ic.freezing = True
    elif mode not in ("default", "skipguard"):
        raise SystemExit(f"unknown setting {mode!r}")
    x = torch.randn(4, 256)

    def f(t):  # noqa: ANN001, ANN202
        return t + 1

    with torch.no_grad():
        cf = torch.compile(f, fullgraph=True, dynamic=True)
        cf(x)
        torch.manual_seed(0)
        m = nn.Sequential(nn.Linear(256, 1024), nn.GELU(), nn.Linear(1024, 256)).eval()
        slimnn.compress_(m, slimnn.Int8Config())
        cm = torch.compile(m, fullgraph=True, dynamic=True)
        try:
            err = float((cm(x) - m(x)).abs().max())
            print(f"{mode}: int8 mlp compiles, max |compiled - eager| {err:.2e}")
        except Exception as e:  # noqa: BLE001 - reported, not hidden
            print(f"{mode}: int8 mlp fails to compile: {type(e).__name__}: {str(e).splitlines()[0][:200]}")
            cm = None
        if mode == "skipguard":
            torch.compiler.set_stance("default", skip_guard_eval_unsafe=True)
        t = interleaved({"eager": per_call(lambda: f(x), 300), "compiled": per_call(lambda: cf(x), 300)}, 5)
        print(f"{mode}: x + 1  eager {t['eager'] * 1e6:.1f} us, compiled {t['compiled'] * 1e6:.1f} us")
        if cm is not None:
            for rows in (4, 128):
                xx = torch.randn(rows, 256)
                cm(xx)
                t = interleaved({"eager": per_call(lambda: m(xx), 100), "compiled": per_call(lambda: cm(xx), 100)}, 5)
                print(f"{mode}: int8 mlp M={rows}  eager {t['eager'] * 1e6:.1f} us, compiled {t['compiled'] * 1e6:.1f} us")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "default")
