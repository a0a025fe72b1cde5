"""pytest-benchmark cases for the lowrank family: one op call per case, fused kernel vs its peers.

    PYTHONPATH=src python -m pytest bench/bench_lowrank.py --benchmark-only --benchmark-group-by=param:shape

Shapes are (K, N, r) with r at half the parameters; M in {1, 16}; threads from SLIMNN_BENCH_THREADS (default 1).
Every case checks its output against the float reference once. extra_info carries GFLOP/s, weight GB/s and
the kernel. For the headline ratios measured interleaved in one process, use bench/tables/lowrank_peers.py.
"""

from __future__ import annotations

import os

import pytest
import torch
import torch.nn.functional as F

import slimnn
from slimnn.nn import LowRankLinear

THREADS = int(os.environ.get("SLIMNN_BENCH_THREADS", "1"))
SHAPES = [(768, 3072, 614), (4096, 4096, 1024), (4096, 14336, 1598)]
CONTENDERS = ["torch_dense", "torch_two", "lowrank_f32", "lowrank_int8_dynamic", "lowrank_int8_weight_only"]


@pytest.fixture(scope="module", autouse=True)
def _threads():
    old = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    slimnn.set_num_threads(THREADS)
    yield
    torch.set_num_threads(old)
    slimnn.set_num_threads(None)


_cache: dict = {}


def _layer(k: int, n: int, r: int) -> dict:
    key = (k, n, r)
    if key not in _cache:
        g = torch.Generator().manual_seed(0)
        u, v = torch.randn(n, r, generator=g) / r**0.5, torch.randn(r, k, generator=g) / k**0.5
        _cache.clear()  # keep one shape's tensors alive at a time
        _cache[key] = dict(
            w=u @ v, u=u, v=v,
            lowrank_f32=LowRankLinear.from_factors(u, v, None, slimnn.LowRankConfig(rank=r)),
            lowrank_int8_dynamic=LowRankLinear.from_factors(u, v, None, slimnn.LowRankConfig(rank=r, factor_dtype="int8")),
            lowrank_int8_weight_only=LowRankLinear.from_factors(
                u, v, None, slimnn.LowRankConfig(rank=r, factor_dtype="int8", int8_mode="weight_only")),
        )
    return _cache[key]


@pytest.mark.parametrize("contender", CONTENDERS)
@pytest.mark.parametrize("m", [1, 16])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{s[0]}x{s[1]}r{s[2]}")
def test_lowrank(benchmark, shape, m, contender):
    k, n, r = shape
    L = _layer(k, n, r)
    x = torch.randn(m, k)
    if contender == "torch_dense":
        fn, nbytes, flops = (lambda: F.linear(x, L["w"])), 4 * n * k, 2 * m * n * k
    elif contender == "torch_two":
        fn, nbytes, flops = (lambda: F.linear(F.linear(x, L["v"]), L["u"])), 4 * r * (n + k), 2 * m * r * (n + k)
    else:
        mod = L[contender]
        fn, nbytes, flops = (lambda: mod(x)), mod.storage_bytes(), 2 * m * r * (n + k)
    with torch.inference_mode():
        want = F.linear(x.double(), L["w"].double()).float()
        err = ((fn() - want).norm() / want.norm()).item()
        assert err < (2e-2 if "int8" in contender else 1e-4)
        benchmark.pedantic(fn, rounds=20, iterations=1, warmup_rounds=2)
    t = benchmark.stats.stats.median
    benchmark.extra_info.update(
        gflops=flops / t / 1e9, weight_gbps=nbytes / t / 1e9, threads=THREADS,
        kernel=getattr(L.get(contender), "last_kernel", "torch"),
    )
