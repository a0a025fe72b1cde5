"""slimnn: compressed neural-network layers with fast CPU kernels, as drop-in ``torch.nn.Linear`` replacements.

    import slimnn
    slimnn.compress_(model, slimnn.Int8Config())   # every nn.Linear -> slimnn.nn.Int8Linear, in place
"""

from __future__ import annotations

import torch as _torch  # noqa: F401  (the ops below register with torch.library)

from . import isa, nn, ops, prune, sparse_ops  # noqa: F401
from . import calibration, lowrank  # noqa: F401
from ._threads import get_num_threads, set_num_threads
from .api import CompressionReport, compress_
from .configs import Int8Config
from .configs import Int4Config, LowRankConfig, SparseConfig
from .info import cpu_info, kernels
from .io import load, save
from .pipeline import autocompress
from .distill import distill
from .mixed import mixed_int4_
from .fuse import fuse_activations_
from .integrations.transformers import fast_attention_

__version__ = "0.1.0"

__all__ = [
    "CompressionReport",
    "Int4Config",
    "Int8Config",
    "LowRankConfig",
    "compress_",
    "cpu_info",
    "get_num_threads",
    "isa",
    "kernels",
    "nn",
    "prune",
    "set_num_threads",
    "autocompress",
    "distill",
    "load",
    "save",
    "SparseConfig",
    "mixed_int4_",
    "fuse_activations_",
    "fast_attention_",
]
