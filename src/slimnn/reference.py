"""Reference implementations in plain torch math: the specification the C++ kernels are tested against.

Integer parts are computed in int64 and must match the kernels exactly; float parts in float64.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from .quantize import dequantize_int8, group_view

_FLT_MIN = torch.finfo(torch.float32).tiny


def quantize_rows_u8(x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Per-row asymmetric uint8 quantization of activations x (M x K, float32), exactly as the kernels do.

    In float32: mn = min(0, min(row)), mx = max(0, max(row)); scale = mx/255 - mn/255 (1 if below
    FLT_MIN); inv = 1/scale; zp = clamp(rint(-mn * inv), 0, 255); q = clamp(rint(x * inv) + zp, 0, 255),
    rint rounding half to even. Rows with a NaN or infinity are flagged (``finite`` False) and their
    output row is NaN. Returns (q uint8 M x K, scale float32 M, zp int32 M, finite bool M).
    """
    x = x.to(torch.float32)
    m, k = x.shape
    finite = torch.isfinite(x).all(dim=1) if k else torch.ones(m, dtype=torch.bool)
    xs = torch.where(finite.unsqueeze(1), x, torch.zeros_like(x))
    zero = torch.zeros(m, dtype=torch.float32)
    mn = torch.minimum(xs.amin(dim=1), zero) if k else zero
    mx = torch.maximum(xs.amax(dim=1), zero) if k else zero
    scale = mx / 255.0 - mn / 255.0
    scale = torch.where(scale >= _FLT_MIN, scale, torch.ones_like(scale))
    inv = 1.0 / scale
    zp = torch.round(-mn * inv).clamp(0, 255)
    q = (torch.round(xs * inv.unsqueeze(1)) + zp.unsqueeze(1)).clamp(0, 255).to(torch.uint8)
    return q, scale, zp.to(torch.int32), finite


def dot_u8_s8(a: Tensor, q: Tensor) -> Tensor:
    """Exact integer dot products: a (M x K uint8) times q^T (q: N x K int8) -> int64 M x N."""
    return a.to(torch.int64) @ q.to(torch.int64).t()


def q8_linear_dynamic(
    x: Tensor, q: Tensor, scales: Tensor, group_size: Optional[int], bias: Optional[Tensor] = None
) -> Tensor:
    """y = a_scale * sum_g scale_g * (dot_g(a, q) - zp * colsum_g(q)) + bias, float64 math, float32 out."""
    m = x.shape[0]
    n, k = q.shape
    a, a_scale, zp, finite = quantize_rows_u8(x)
    ag, g = group_view(a.to(torch.int64), group_size)  # (M, G, gs)
    qg, _ = group_view(q.to(torch.int64), group_size)  # (N, G, gs)
    dots = torch.einsum("mgk,ngk->mgn", ag, qg)  # exact int64
    colsum = qg.sum(dim=2).t()  # (G, N)
    centered = dots - zp.to(torch.int64).view(m, 1, 1) * colsum.unsqueeze(0)
    y = (centered.to(torch.float64) * scales.to(torch.float64).unsqueeze(0)).sum(dim=1)
    y = y * a_scale.to(torch.float64).unsqueeze(1)
    if bias is not None:
        y = y + bias.to(torch.float64)
    y = y.to(torch.float32)
    y[~finite] = float("nan")
    return y


def q8_linear_weight_only(
    x: Tensor, q: Tensor, scales: Tensor, group_size: Optional[int], bias: Optional[Tensor] = None
) -> Tensor:
    """y = x @ (q * scales)^T + bias in float64 math, float32 out."""
    w = dequantize_int8(q, scales, group_size).to(torch.float64)
    y = x.to(torch.float64) @ w.t()
    if bias is not None:
        y = y + bias.to(torch.float64)
    return y.to(torch.float32)


def sparse_linear(
    x: Tensor, w: Tensor, scales: Optional[Tensor] = None, bias: Optional[Tensor] = None
) -> Tensor:
    """The sparse kernels' contract: y = x @ (w * scales[:, None])^T + bias in float64, float32 out, where w
    is the unpacked weight matrix (float32, or int8 with float32 row ``scales``). Only stored weights take
    part; a row of x holding a NaN or an infinity gives a NaN row (a dense product would give NaN or inf).
    """
    w64 = w.to(torch.float64)
    if scales is not None:
        w64 = w64 * scales.to(torch.float64).unsqueeze(1)
    x64 = x.to(torch.float64)
    finite = torch.isfinite(x64).all(dim=1) if x64.shape[1] else torch.ones(x64.shape[0], dtype=torch.bool)
    y = torch.where(finite.unsqueeze(1), x64, torch.zeros_like(x64)) @ w64.t()
    if bias is not None:
        y = y + bias.to(torch.float64)
    y = y.to(torch.float32)
    y[~finite] = float("nan")
    return y
