"""Compressed drop-in replacements for ``torch.nn.Linear``."""

from .int8 import Int8Linear
from .int4 import Int4Linear
from .lowrank import LowRankLinear
from .sparse import SparseLinear
from .fused import FusedActivation

__all__ = ["Int8Linear", "Int4Linear", "LowRankLinear", "SparseLinear", "FusedActivation"]
