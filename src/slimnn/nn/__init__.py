"""Compressed drop-in replacements for ``torch.nn.Linear``."""

from .int8 import Int8Linear
from .sparse import SparseLinear

__all__ = ["Int8Linear", "SparseLinear"]
