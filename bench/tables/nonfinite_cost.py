"""Cost of the non-finite check on the hot path (docs/reliability.md, "Non-finite activations").

Run it under two builds of the same tree, alternating, on the same machine (the check lives in the C++
driver): a copy with ``if (row_needs_float(row, k, kp))`` in csrc/kernels/qgemm/qgemm.cc replaced by
``if (false)``, built with scripts/build_inplace.sh, and this one:

    for i in 1 2 3 4 5 6 7 8; do PYTHONPATH=<copy>/src python bench/tables/nonfinite_cost.py; \
                                 PYTHONPATH=src python bench/tables/nonfinite_cost.py; done

Prints the median and the minimum over 15 repetitions of 200 calls of a 384 -> 1536 Int8Linear at M = 1,
one thread, both modes.
"""

from __future__ import annotations

import time

import torch

import slimnn
from slimnn.nn import Int8Linear

torch.manual_seed(0)
slimnn.set_num_threads(1)
torch.set_num_threads(1)
out = []
for mode in ("dynamic", "weight_only"):
    m = Int8Linear.from_linear(torch.nn.Linear(384, 1536), slimnn.Int8Config(mode=mode))
    x = torch.randn(1, 384)
    with torch.inference_mode():
        for _ in range(200):
            m(x)
        ts = []
        for _ in range(15):
            t0 = time.perf_counter()
            for _ in range(200):
                m(x)
            ts.append((time.perf_counter() - t0) / 200)
    ts.sort()
    out.append(f"{mode}: median {ts[len(ts) // 2] * 1e6:.2f} us, min {ts[0] * 1e6:.2f} us")
print(f"{slimnn.__file__}: " + "; ".join(out))
