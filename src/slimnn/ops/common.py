"""Checks shared by every op entry point: the activation input and the packed blob's header fields.

Each op validates what it is handed before a pointer reaches the kernels; the C++ side re-validates the blob.
"""

from __future__ import annotations

import torch
from torch import Tensor

_F32 = torch.float32
_BF16 = torch.bfloat16
INPUT_DTYPES = (torch.float32, torch.bfloat16, torch.float16, torch.float64)


def check_input(x: Tensor, k: int, op: str) -> Tensor:
    """Raises unless ``x`` is a CPU float tensor whose last dimension is ``k``; returns it unchanged."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{op}: input must be a torch.Tensor, got {type(x).__name__}")
    if x.device.type != "cpu":
        raise ValueError(f"{op}: input is on {x.device}; slimnn kernels run on the CPU")
    if x.dtype not in INPUT_DTYPES:
        raise TypeError(f"{op}: input dtype must be float32, bfloat16, float16 or float64, got {x.dtype}")
    if x.dim() == 0 or x.shape[-1] != k:
        raise ValueError(f"{op}: input's last dimension must be in_features={k}, got shape {tuple(x.shape)}")
    return x


def prepare_input(x: Tensor, k: int, op: str) -> tuple[Tensor, torch.dtype]:
    """:func:`check_input`, then float16/float64 converted to float32. Returns (x, the caller's dtype)."""
    check_input(x, k, op)
    dt = x.dtype
    if dt is not _F32 and dt is not _BF16:
        x = x.to(_F32)
    return x, dt


def blob_shape(packed: Tensor, op: str = "q8_linear") -> tuple[int, int]:
    """Header fields N and K of a packed blob (byte offsets 16 and 24, csrc/formats/header.h)."""
    if not isinstance(packed, Tensor):
        raise TypeError(f"{op}: packed weights must be a torch.Tensor, got {type(packed).__name__}")
    if packed.dtype != torch.uint8 or packed.dim() != 1 or packed.numel() < 128 or not packed.is_contiguous():
        raise ValueError(f"{op}: packed weights must be a contiguous 1-D uint8 blob with a slimnn header")
    if packed.device.type != "cpu":
        raise ValueError(f"{op}: packed weights are on {packed.device}; slimnn kernels run on the CPU")
    n, k = packed[16:32].view(torch.int64).tolist()
    return int(n), int(k)
