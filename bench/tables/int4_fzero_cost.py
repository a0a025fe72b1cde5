"""Per-call cost of int4 float zero points against symmetric int4, one layer at 1 thread: what the q4 driver's
offset term adds (docs/int4.md, "Float zero points cost speed"). Both variants interleaved, fastest of 3 rounds.

    PYTHONPATH=src python3 bench/tables/int4_fzero_cost.py
"""

from __future__ import annotations

import time

import torch

import slimnn

SHAPES = ((576, 1536), (1536, 576))  # SmolLM2-135M's attention/MLP widths
ROWS = (1, 32)
VARIANTS = {
    "symmetric g32": slimnn.Int4Config(group_size=32),
    "float-zero g32": slimnn.Int4Config(group_size=32, symmetric=False, float_zeros=True, scale_search=True),
}


def per_call_us(model: torch.nn.Module, x: torch.Tensor, calls: int = 300) -> float:
    for _ in range(20):
        model(x)
    t = time.perf_counter()
    for _ in range(calls):
        model(x)
    return (time.perf_counter() - t) / calls * 1e6


def main() -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    print("| K -> N | M | " + " | ".join(f"{v} us" for v in VARIANTS) + " | float-zero / symmetric |")
    print("|---|---|" + "---|" * (len(VARIANTS) + 1))
    for k, n in SHAPES:
        base = torch.nn.Linear(k, n)
        models = {}
        for name, cfg in VARIANTS.items():
            m = torch.nn.Sequential(torch.nn.Linear(k, n))
            m[0].load_state_dict(base.state_dict())
            slimnn.compress_(m, cfg)
            models[name] = m
        for rows in ROWS:
            x = torch.randn(rows, k)
            best = {name: float("inf") for name in models}
            with torch.inference_mode():
                for _ in range(3):
                    for name, m in models.items():
                        best[name] = min(best[name], per_call_us(m, x))
            sym, fz = best.values()
            print(f"| {k} -> {n} | {rows} | {sym:.1f} | {fz:.1f} | {fz / sym:.2f}x |")


if __name__ == "__main__":
    main()
