"""slimnn: compressed neural-network layers with fast CPU kernels, as drop-in ``torch.nn.Linear`` replacements.

    import slimnn
    slimnn.compress_(model, slimnn.Int8Config())   # every nn.Linear -> slimnn.nn.Int8Linear, in place
"""

from __future__ import annotations

import torch as _torch  # noqa: F401  (the ops below register with torch.library)

from . import isa, nn, ops, prune, sparse_ops  # noqa: F401
from ._threads import get_num_threads, set_num_threads
from .api import CompressionReport, compress_
from .configs import Int8Config, SparseConfig
from .info import cpu_info, kernels

__version__ = "0.1.0"

__all__ = [
    "CompressionReport",
    "Int8Config",
    "compress_",
    "cpu_info",
    "get_num_threads",
    "isa",
    "kernels",
    "nn",
    "prune",
    "set_num_threads",
    "SparseConfig",
]
