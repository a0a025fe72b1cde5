"""slimnn: compressed neural-network layers with fast CPU kernels, as drop-in ``torch.nn.Linear`` replacements.

    import slimnn
    slimnn.compress_(model, slimnn.Int8Config())   # every nn.Linear -> slimnn.nn.Int8Linear, in place

The package is layered (docs/architecture.md): ``runtime`` -> ``math`` -> ``formats`` -> ``ops`` -> ``nn`` ->
``techniques`` -> ``api`` -> ``io`` -> ``recipes`` -> ``app``, with ``configs`` a leaf every layer may use.
"""

from __future__ import annotations

import torch as _torch  # noqa: F401  (the ops below register with torch.library)

from . import _compat
from ._version import __version__  # noqa: F401  (slimnn.__version__)
from .runtime import isa
from .runtime.info import cpu_info, kernels
from .runtime.threads import get_num_threads, set_num_threads
from .configs import Int4Config, Int8Config, LowRankConfig, SparseConfig
from . import ops, nn, techniques  # noqa: F401
from .math import prune
from .api import CompressionReport, compress_
from .techniques.fusion import fuse_activations_
from .io import load, save
from .recipes.pipeline import autocompress
from .recipes.distill import distill
from .recipes.mixed import mixed_int4_
from .integrations.transformers import fast_attention_

_compat.install(__name__)

__all__ = [
    "CompressionReport",
    "Int4Config",
    "Int8Config",
    "LowRankConfig",
    "SparseConfig",
    "autocompress",
    "compress_",
    "cpu_info",
    "distill",
    "fast_attention_",
    "fuse_activations_",
    "get_num_threads",
    "isa",
    "kernels",
    "load",
    "mixed_int4_",
    "nn",
    "ops",
    "prune",
    "save",
    "set_num_threads",
    "techniques",
]


def __getattr__(name: str):
    # slimnn.<module> names of the flat layout before 0.2 (slimnn.calibration, slimnn.reference, ...).
    return _compat.attribute(__name__, name)
