"""Compressed drop-in replacements for ``torch.nn.Linear``."""

from .int8 import Int8Linear
from .lowrank import LowRankLinear

__all__ = ["Int8Linear", "LowRankLinear"]
