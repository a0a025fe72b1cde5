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


# --- int4 ----------------------------------------------------------------------------------------------------

INT4_SCALE_DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
}
"""Scale dtypes of the int4 canonical form (and of the packed blob)."""


def _round_scales(s: Tensor, scale_dtype: torch.dtype) -> Tensor:
    """Rounds float32 scales to ``scale_dtype`` (nearest), keeping them finite and away from zero."""
    finfo = torch.finfo(scale_dtype)
    s = s.clamp(min=finfo.tiny, max=finfo.max)
    return s.to(scale_dtype)


def int4_params(
    wg: Tensor, symmetric: bool, scale_dtype: torch.dtype = torch.float16
) -> tuple[Tensor, Optional[Tensor]]:
    """Scale and zero point of each group of ``wg`` (..., gs): round-to-nearest min/max rule.

    Symmetric: the code 8 is zero and ``scale = m / -8`` with ``m`` the group's value of largest magnitude
    (signed), so ``m`` itself is code 0 exactly and the 16 codes are all used (values of the opposite sign
    reach code 15 = 7 steps; the one beyond is clamped). Asymmetric: ``scale = (max - min) / 15`` over the
    range widened to include 0, ``zero = clamp(round(-min / scale), 0, 15)``. An all-zero group gets
    scale 1. Scales are rounded to ``scale_dtype`` before codes are computed, so codes match the stored
    scales. Returns (scales in ``scale_dtype``, zeros uint8 or None).
    """
    if symmetric:
        idx = wg.abs().argmax(dim=-1, keepdim=True)
        m = wg.gather(-1, idx).squeeze(-1)
        s = torch.where(m != 0, m / -8.0, torch.ones_like(m))
        sign = torch.where(s < 0, -1.0, 1.0)
        s = _round_scales(s.abs(), scale_dtype) * sign.to(scale_dtype)
        return s, None
    mn = wg.amin(dim=-1).clamp(max=0)
    mx = wg.amax(dim=-1).clamp(min=0)
    s = (mx - mn) / 15.0
    s = torch.where(s > 0, s, torch.ones_like(s))
    s = _round_scales(s, scale_dtype)
    z = torch.round(-mn / s.to(torch.float32)).clamp(0, 15).to(torch.uint8)
    return s, z


def int4_codes(wg: Tensor, scales: Tensor, zeros: Optional[Tensor]) -> Tensor:
    """Codes (uint8 in [0, 15]) of ``wg`` (..., gs) for given per-group scales and zeros (round half to even)."""
    z = 8.0 if zeros is None else zeros.to(torch.float32).unsqueeze(-1)
    q = torch.round(wg / scales.to(torch.float32).unsqueeze(-1)) + z
    return q.clamp_(0, 15).to(torch.uint8)


def quantize_int4(
    w: Tensor,
    group_size: Optional[int] = 64,
    symmetric: bool = True,
    scale_dtype: torch.dtype = torch.float16,
) -> tuple[Tensor, Tensor, Optional[Tensor]]:
    """Round-to-nearest int4 quantization of W (N x K), group-wise along K (None: per output channel).

    Returns the canonical form: ``codes`` (uint8 N x K in [0, 15]), ``scales`` (n_groups x N, in
    ``scale_dtype``) and ``zeros`` (uint8 n_groups x N, or None when symmetric: zero point 8), with
    W ~= scales * (codes - zeros) per group. A last group shorter than ``group_size`` (K not a multiple of
    it) is quantized over its real columns only.
    """
    w = check_weight(w)
    n, k = w.shape
    wg, g = group_view(w, group_size)
    gs = wg.shape[2]
    if g * gs != k:  # keep the zero padding out of the last group's min/max: it is not part of W
        pad = torch.zeros(gs, dtype=torch.bool)
        pad[k - (g - 1) * gs :] = True
        last = wg[:, -1, :]
        fill = last[:, :1].expand_as(last)  # a real value of the group: leaves min, max and argmax unchanged
        wg = wg.clone()
        wg[:, -1, :] = torch.where(pad, fill, last)
    scales, zeros = int4_params(wg, symmetric, scale_dtype)
    codes = int4_codes(wg, scales, zeros).reshape(n, g * gs)[:, :k].contiguous()
    return codes, scales.t().contiguous(), None if zeros is None else zeros.t().contiguous()


def dequantize_int4(
    codes: Tensor, scales: Tensor, zeros: Optional[Tensor], group_size: Optional[int] = 64
) -> Tensor:
    """Inverse of :func:`quantize_int4` (float32 N x K): scales * (codes - zeros), zeros None meaning 8."""
    n, k = codes.shape
    cg, g = group_view(codes.to(torch.float32), group_size)
    z = 8.0 if zeros is None else zeros.t().to(torch.float32).unsqueeze(2)
    return ((cg - z) * scales.t().to(torch.float32).unsqueeze(2)).reshape(n, -1)[:, :k].contiguous()
