"""Low-rank targets, measured side by side in one process (see shared BENCHMARKING.md).

    PYTHONPATH=src python bench/tables/lowrank_peers.py --threads 1 --reps 40
    PYTHONPATH=src python bench/tables/lowrank_peers.py --threads 1 --model-sized   # cycle > 1 GiB of fp32 weights

For each M, every contender is called once per round, in rotating order, for --reps rounds; medians are
reported, with ratios to torch fp32 dense ``F.linear`` and to two separate torch matmuls
``F.linear(F.linear(x, V), U)``. Every contender's output is checked against the float reference once.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

import slimnn
from slimnn.nn import LowRankLinear


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=4096)
    p.add_argument("--k", type=int, default=4096)
    p.add_argument("--rank", type=int, default=1024)
    p.add_argument("--m", type=int, nargs="+", default=[1, 16])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--reps", type=int, default=40)
    p.add_argument("--model-sized", action="store_true", help="cycle distinct layers totalling > 1 GiB of fp32")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    slimnn.set_num_threads(args.threads)
    n, k, r = args.n, args.k, args.rank
    copies = max(1, -(-(1 << 30) // (4 * n * k))) if args.model_sized else 1
    g = torch.Generator().manual_seed(0)
    layers = []
    for _ in range(copies):
        u = torch.randn(n, r, generator=g) / r**0.5
        v = torch.randn(r, k, generator=g) / k**0.5
        w = u @ v
        lr = LowRankLinear.from_factors(u, v, None, slimnn.LowRankConfig(rank=r))
        q8 = LowRankLinear.from_factors(u, v, None, slimnn.LowRankConfig(rank=r, factor_dtype="int8"))
        q8wo = LowRankLinear.from_factors(
            u, v, None, slimnn.LowRankConfig(rank=r, factor_dtype="int8", int8_mode="weight_only")
        )
        layers.append(dict(w=w, u=u, v=v, lr=lr, q8=q8, q8wo=q8wo))
    info = slimnn.cpu_info()
    print(f"# {info['brand']} | isa {info['isa_best']} | torch {torch.__version__} | threads {args.threads} | "
          f"N={n} K={k} r={r} | {'model-sized: ' + str(copies) + ' layers cycled' if copies > 1 else 'one layer (cache-warm)'}")
    contenders = {
        "torch fp32 dense": lambda L, x: F.linear(x, L["w"]),
        "torch two matmuls": lambda L, x: F.linear(F.linear(x, L["v"]), L["u"]),
        "slimnn lowrank fp32": lambda L, x: L["lr"](x),
        "slimnn lowrank int8 dyn": lambda L, x: L["q8"](x),
        "slimnn lowrank int8 w-only": lambda L, x: L["q8wo"](x),
    }
    bytes_of = {
        "torch fp32 dense": 4 * n * k,
        "torch two matmuls": 4 * r * (n + k),
        "slimnn lowrank fp32": 4 * r * (n + k),
        "slimnn lowrank int8 dyn": layers[0]["q8"].storage_bytes(),
        "slimnn lowrank int8 w-only": layers[0]["q8wo"].storage_bytes(),
    }
    with torch.inference_mode():
        for m in args.m:
            x = torch.randn(m, k, generator=g)
            want = F.linear(x.double(), layers[0]["w"].double()).float()
            for name, fn in contenders.items():  # correctness once, and warm-up
                err = ((fn(layers[0], x) - want).norm() / want.norm()).item()
                assert err < (2e-2 if "int8" in name else 1e-4), (name, err)
            times = {name: [] for name in contenders}
            names = list(contenders)
            for i in range(args.reps):
                L = layers[i % copies]
                for j in range(len(names)):
                    name = names[(i + j) % len(names)]
                    t0 = time.perf_counter()
                    contenders[name](L, x)
                    times[name].append(time.perf_counter() - t0)
            med = {name: statistics.median(ts) for name, ts in times.items()}
            print(f"\nM={m}  (medians of {args.reps}, interleaved)")
            print(f"{'contender':28} {'ms':>9} {'vs dense':>9} {'vs two':>8} {'GB/s':>7} {'GFLOP/s':>8}")
            for name in names:
                t = med[name]
                flops = 2 * m * (n * k if name == "torch fp32 dense" else r * (n + k))
                print(f"{name:28} {t * 1e3:9.3f} {med['torch fp32 dense'] / t:8.2f}x {med['torch two matmuls'] / t:7.2f}x "
                      f"{bytes_of[name] / t / 1e9:7.1f} {flops / t / 1e9:8.1f}")
            print(f"kernels: {layers[0]['lr'].last_kernel}, {layers[0]['q8'].last_kernel}, {layers[0]['q8wo'].last_kernel}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
