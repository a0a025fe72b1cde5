"""The dynamic int8 driver's two ways of dividing work, interleaved in one process (same layer, same input):

- columns: quantize all rows (one parallel region), then tasks over column blocks x row blocks (a second);
- rows: each task quantizes a block of rows and computes all of its columns (one region).

    PYTHONPATH=src python bench/tables/qgemm_split.py --threads 2 --rounds 21

Prints time per call (median of rounds) and GOP/s for each, the same from the fastest round of each (less
sensitive to a shared machine: with 2 threads on 2 busy cores, each parallel region can wait a scheduler
slice, and the column path has two regions per call), and which one `auto` picks. Results are
bit-identical (checked). Shapes: MiniLM's (M = 32 x 15 = 480) and some of bench/tables/int8_peers.py's.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import slimnn
from slimnn import _C

SHAPES = [(480, 384, 384), (480, 384, 1536), (480, 1536, 384), (128, 384, 1536), (128, 1536, 384),
          (128, 768, 3072), (16, 384, 1536), (128, 4096, 4096)]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=21)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"threads={args.threads}; {slimnn.cpu_info().get('brand', '')}")
    for m, k, n in SHAPES:
        q = slimnn.nn.Int8Linear.from_linear(torch.nn.Linear(k, n))
        x = torch.randn(m, k)
        ys = {s: torch.empty(m, n) for s in (0, 1, 2)}

        def call(split: int) -> None:
            _C.q8_linear("q8_dynamic", x.data_ptr(), False, m, k, q.packed.data_ptr(), q.packed.numel(),
                         q.bias.data_ptr(), ys[split].data_ptr(), n, args.threads, 0, split)

        for s in ys:
            call(s)
        assert torch.equal(ys[1], ys[2]) and torch.equal(ys[0], ys[1])
        reps = max(2, int(2e8 / (2 * m * k * n)))
        times: dict = {1: [], 2: [], 0: []}
        for r in range(args.rounds):
            order = [1, 2, 0] if r % 2 == 0 else [0, 2, 1]
            for s in order:
                t0 = time.perf_counter()
                for _ in range(reps):
                    call(s)
                times[s].append((time.perf_counter() - t0) / reps)
        med = {s: statistics.median(v) for s, v in times.items()}
        best = {s: min(v) for s, v in times.items()}
        gops = {s: 2 * m * k * n / t / 1e9 for s, t in med.items()}
        gbest = {s: 2 * m * k * n / t / 1e9 for s, t in best.items()}
        auto = "rows" if abs(med[0] - med[2]) < abs(med[0] - med[1]) else "columns"
        print(f"M={m:4d} {k:5d}->{n:<5d} columns {med[1] * 1e6:8.1f} us {gops[1]:5.0f} GOP/s | rows "
              f"{med[2] * 1e6:8.1f} us {gops[2]:5.0f} GOP/s | rows/columns speedup {med[1] / med[2]:4.2f} "
              f"| best rounds: columns {gbest[1]:4.0f}, rows {gbest[2]:4.0f} GOP/s, speedup {best[1] / best[2]:4.2f} "
              f"| auto ~ {auto}", flush=True)


if __name__ == "__main__":
    main()
