"""Same-run A/B of the bitmap layouts (group_rows 1 / 2 / 8) through the op, on the same int8 weights.

    PYTHONPATH=src python bench/proto/ab_group_rows.py

1 thread, M = 1 and 16, 4096x4096 and 4096x14336 (K x N), 90% and 80% sparsity, medians of 15 interleaved
repetitions; asserts the outputs are bitwise equal across layouts first. Figures: docs/sparse.md.
"""

from __future__ import annotations

import statistics
import time

import torch

import slimnn
from slimnn.formats import sparse as sf
from slimnn.ops import sparse as sparse_ops


def main() -> None:
    torch.set_num_threads(1)
    slimnn.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    for k, n in ((4096, 4096), (4096, 14336)):
        for dens in (0.1, 0.2):
            q = torch.randint(-127, 128, (n, k), generator=g, dtype=torch.int8)
            q = (q * (torch.rand(n, k, generator=g) < dens)).to(torch.int8)
            s = torch.rand(n, generator=g) * 0.01 + 1e-4
            blobs = {G: sf.pack_sparse(q, "bitmap", scales=s, group_rows=G) for G in (1, 2, 8)}
            for m in (1, 16):
                x = torch.randn(m, k)
                ys = {G: sparse_ops.sparse_linear(x, b, None, n) for G, b in blobs.items()}
                assert torch.equal(ys[1], ys[8]) and torch.equal(ys[1], ys[2])
                t: dict[int, list[float]] = {G: [] for G in blobs}
                names = list(blobs)
                for r in range(15):
                    for G in names[r % 3:] + names[: r % 3]:
                        t0 = time.perf_counter()
                        sparse_ops.sparse_linear(x, blobs[G], None, n)
                        t[G].append(time.perf_counter() - t0)
                med = {G: statistics.median(v) * 1e6 for G, v in t.items()}
                print(f"{k}x{n} density {dens} M={m}: G1 {med[1]:.0f} us, G2 {med[2]:.0f} us, G8 {med[8]:.0f} us;"
                      f" G8 vs G2 {med[2] / med[8]:.2f}x, vs G1 {med[1] / med[8]:.2f}x; bytes/weight"
                      f" G8 {blobs[8].numel() / (n * k):.3f} G2 {blobs[2].numel() / (n * k):.3f}", flush=True)


if __name__ == "__main__":
    main()
