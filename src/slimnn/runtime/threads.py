"""Thread count used by slimnn kernels.

By default slimnn follows ``torch.get_num_threads()``, so a compressed layer uses the same threads as the
``nn.Linear`` it replaced. ``set_num_threads(n)`` overrides that; ``set_num_threads(None)`` restores it.
The kernels run on the OpenMP runtime torch already loaded (one team of threads for torch's ops and ours,
not two competing for the cores) and never use more threads than this.
"""

from __future__ import annotations

import torch

_override: int | None = None


def set_num_threads(n: int | None) -> None:
    """Sets the number of threads slimnn kernels use (``None``: follow ``torch.get_num_threads()``)."""
    global _override
    if n is not None:
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"set_num_threads expects a positive int or None, got {n!r}")
    _override = n


def get_num_threads() -> int:
    """The number of threads the next slimnn kernel call will use."""
    return _override if _override is not None else torch.get_num_threads()
