"""pytest-benchmark: one spmm call per test, every ISA path x shape x case x M.

    PYTHONPATH=src python -m pytest bench/bench_sparse.py --benchmark-only --benchmark-columns=median,iqr
    PYTHONPATH=src python -m pytest bench/bench_sparse.py -k "4096 and csr" --benchmark-only

Each case checks its output against the reference once before timing. ``extra_info`` holds the kernel name,
GFLOP/s (2 M K N dense-equivalent flops per second), the GB/s of blob bytes streamed and the blob's size
relative to fp32 dense. The ``cold`` variants cycle through enough copies of the weights (>= 256 MiB of
blobs or 1 GiB of fp32-equivalent weights) that every call reads its weights from DRAM. Ratios against
peers (torch dense, torch.sparse, scipy.sparse, slimnn int8) come from bench/compare_sparse.py, which
interleaves the candidates in one process.
"""

from __future__ import annotations

import pytest
import torch

import slimnn
from slimnn import prune
from slimnn.math import reference
from slimnn.ops import sparse as sparse_ops
from slimnn.formats import sparse as sf

SHAPES = [(384, 1536), (1536, 384), (768, 3072), (4096, 4096), (4096, 14336)]
CASES = [
    ("csr", "unstructured", 0.9, "fp32"),
    ("csr", "unstructured", 0.9, "int8"),
    ("csr", "unstructured", 0.8, "int8"),
    ("bsr16x1", "16x1", 0.5, "fp32"),
    ("bsr1x8", "1x8", 0.5, "fp32"),
    ("nm2:4", "2:4", 0.5, "fp32"),
]
ISAS = [i for i in ("portable", "avx2", "avx512") if i in slimnn.isa.available()]


def _blob(k: int, n: int, fmt: str, pattern: str, sparsity: float, values: str, seed: int = 0):
    w = torch.randn(n, k, generator=torch.Generator().manual_seed(seed)) / k**0.5
    w = w * prune.prune_mask(w, pattern, sparsity)
    if values == "int8":
        q, s = slimnn.math.quantize.quantize_int8_symmetric(w)
        return sf.pack_sparse(q, fmt, scales=s[0]), q.float() * s[0][:, None]
    return sf.pack_sparse(w, fmt), w


def _run(benchmark, isa, shape, case, m, copies):
    k, n = shape
    fmt, pattern, sparsity, values = case
    if isa == "portable" and k * n > 1 << 22:
        pytest.skip("portable path: small shapes only")
    blobs = [_blob(k, n, fmt, pattern, sparsity, values, seed=c) for c in range(copies)]
    x = torch.randn(m, k, generator=torch.Generator().manual_seed(1))
    slimnn.set_num_threads(1)
    with slimnn.isa.forced(isa):
        y, name = sparse_ops.sparse_linear_with_kernel(x, blobs[0][0], None, n, k)
        ref = reference.sparse_linear(x, blobs[0][1])
        assert (y - ref).abs().max().item() <= 1e-3 * (1 + ref.abs().max().item())
        state = {"i": 0}

        def call():
            state["i"] = (state["i"] + 1) % copies
            return sparse_ops.sparse_linear_trusted(x, blobs[state["i"]][0], None, n, k)

        benchmark(call)
    slimnn.set_num_threads(None)
    t = benchmark.stats.stats.median
    nbytes = blobs[0][0].numel()
    benchmark.extra_info.update(
        kernel=name, gflops=2 * m * k * n / t / 1e9, gbs=nbytes / t / 1e9, bytes_vs_fp32=nbytes / (4 * k * n),
        copies=copies,
    )


@pytest.mark.parametrize("m", [1, 16])
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}-{c[2]}-{c[3]}")
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("isa", ISAS)
def test_spmm(benchmark, isa, shape, case, m):
    _run(benchmark, isa, shape, case, m, copies=1)


@pytest.mark.parametrize("case", CASES[:3], ids=lambda c: f"{c[0]}-{c[2]}-{c[3]}")
@pytest.mark.parametrize("shape", [(4096, 4096)], ids=lambda s: f"{s[0]}x{s[1]}")
def test_spmm_cold(benchmark, shape, case):
    k, n = shape
    copies = max(1, (1 << 30) // (4 * k * n))
    _run(benchmark, ISAS[-1], shape, case, 1, copies)
