"""The math that turns float weights into quantized ones (no kernels, no modules).

Rounding rule everywhere: round half to even (``torch.round``), then clamp.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor


def check_weight(w: Tensor, name: str = "weight") -> Tensor:
    """Validates a float weight matrix (N x K) and returns it as float32."""
    if not isinstance(w, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(w).__name__}")
    if w.dim() != 2:
        raise ValueError(f"{name} must be 2-D (out_features x in_features), got shape {tuple(w.shape)}")
    if not w.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got {w.dtype}")
    if w.device.type != "cpu":
        raise ValueError(f"{name} must be on the CPU, got device {w.device}")
    if w.shape[0] == 0 or w.shape[1] == 0:
        raise ValueError(f"{name} must have non-zero dimensions, got shape {tuple(w.shape)}")
    w = w.detach().to(torch.float32)
    if not bool(torch.isfinite(w).all()):
        bad = (~torch.isfinite(w)).nonzero()[0].tolist()
        raise ValueError(f"{name} has a NaN or infinite value (first at index {tuple(bad)}); cannot quantize it")
    return w


def group_view(w: Tensor, group_size: Optional[int]) -> tuple[Tensor, int]:
    """Returns w as (N, G, gs), zero-padded along K, and G. group_size None means one group (per channel)."""
    n, k = w.shape
    gs = k if group_size is None else group_size
    g = -(-k // gs)
    if g * gs != k:
        w = torch.nn.functional.pad(w, (0, g * gs - k))
    return w.reshape(n, g, gs), g


def quantize_int8_symmetric(w: Tensor, group_size: Optional[int] = None) -> tuple[Tensor, Tensor]:
    """Symmetric int8 quantization of W (N x K): scale = absmax / 127 per output channel or per group.

    Returns ``q`` (int8, N x K, values in [-127, 127]) and ``scales`` (float32, n_groups x N), with
    W ~= q * scales (broadcast per group). An all-zero channel or group gets scale 1.
    """
    w = check_weight(w)
    n, k = w.shape
    wg, g = group_view(w, group_size)
    absmax = wg.abs().amax(dim=2)  # (N, G)
    scales = torch.where(absmax > 0, absmax / 127.0, torch.ones_like(absmax))
    q = torch.round(wg / scales.unsqueeze(2)).clamp_(-127, 127).to(torch.int8)
    q = q.reshape(n, g * wg.shape[2])[:, :k].contiguous()
    return q, scales.t().contiguous()


def dequantize_int8(q: Tensor, scales: Tensor, group_size: Optional[int] = None) -> Tensor:
    """Inverse of :func:`quantize_int8_symmetric` (float32 N x K)."""
    n, k = q.shape
    qg, g = group_view(q.to(torch.float32), group_size)
    return (qg * scales.t().unsqueeze(2)).reshape(n, -1)[:, :k].contiguous()
