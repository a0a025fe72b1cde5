"""``python -m slimnn.demo``: compress a model with int8 and report size, latency and output fidelity.

The model is a transformer-style MLP stack (4 blocks of 768 -> 3072 -> 768 with GELU and residuals) with
weights drawn like a trained network's (per-channel scale spread and a few outlier input features), run
on a batch of 32 token rows. It compares float32, slimnn int8 dynamic and weight-only, and PyTorch's own
dynamic int8.
"""

from __future__ import annotations

import argparse
import copy
import time

import torch
from torch import nn

import slimnn


class Block(nn.Module):
    def __init__(self, d: int, h: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(d)
        self.up = nn.Linear(d, h)
        self.down = nn.Linear(h, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.down(torch.nn.functional.gelu(self.up(self.norm(x))))


def make_model(d: int = 768, h: int = 3072, blocks: int = 4, seed: int = 0) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    model = nn.Sequential(*[Block(d, h) for _ in range(blocks)])
    for m in model.modules():
        if isinstance(m, nn.Linear):
            k = m.in_features
            w = torch.randn(m.out_features, k, generator=g) / k**0.5
            w *= torch.exp(0.5 * torch.randn(m.out_features, 1, generator=g))  # channel scale spread
            m.weight.data.copy_(w)
            m.bias.data.copy_(0.02 * torch.randn(m.out_features, generator=g))
    return model.eval()


def latency(model: nn.Module, x: torch.Tensor, reps: int) -> float:
    with torch.inference_mode():
        model(x)
        ts = []
        for _ in range(reps):
            t0 = time.perf_counter()
            model(x)
            ts.append(time.perf_counter() - t0)
    ts.sort()
    return ts[len(ts) // 2]


def linear_bytes(model: nn.Module) -> int:
    total = 0
    for m in model.modules():
        if isinstance(m, nn.Linear):
            total += m.weight.numel() * 4 + (m.bias.numel() * 4 if m.bias is not None else 0)
        elif hasattr(m, "storage_bytes"):
            total += m.storage_bytes()
    return total


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--reps", type=int, default=20)
    p.add_argument("--small", action="store_true", help="a small, fast variant (for tests)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    d, h, blocks = (128, 512, 2) if args.small else (768, 3072, 4)
    model = make_model(d, h, blocks)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(args.batch, d, generator=g)
    x[:, :4] *= 20.0  # outlier features, as in real transformer activations
    with torch.inference_mode():
        ref = model(x)

    info = slimnn.cpu_info()
    print(f"slimnn demo on {info['brand']} ({info['isa_best']}), {args.threads} thread(s), batch {args.batch}")
    rows = [("float32", model, None)]
    for mode in ("dynamic", "weight_only"):
        m = copy.deepcopy(model)
        slimnn.compress_(m, slimnn.Int8Config(mode=mode))
        rows.append((f"slimnn int8 {mode}", m, None))
    tq = torch.ao.quantization.quantize_dynamic(copy.deepcopy(model), {nn.Linear}, dtype=torch.qint8)
    rows.append(("torch dynamic int8", tq, None))

    t_fp = latency(model, x, args.reps)
    b_fp = linear_bytes(model)
    print(f"{'model':24} {'Linear MB':>10} {'latency ms':>11} {'speedup':>8} {'cosine':>8} {'max err':>9}")
    for name, m, _ in rows:
        t = latency(m, x, args.reps)
        with torch.inference_mode():
            y = m(x)
        cos = torch.nn.functional.cosine_similarity(y, ref, dim=1).mean().item()
        err = (y - ref).abs().max().item()
        size = linear_bytes(m) if name != "torch dynamic int8" else float("nan")
        print(f"{name:24} {size / 2**20:10.2f} {t * 1e3:11.3f} {t_fp / t:7.2f}x {cos:8.5f} {err:9.4f}")
    print(f"float32 Linear bytes: {b_fp / 2**20:.2f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
