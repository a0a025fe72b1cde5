"""Calibrated quantizers: GPTQ and AWQ for int4, GPTQ for int8 (:func:`gptq_quantize_int8`, used for
convolutions), written from the papers (torch math, no kernels, no modules).

Both return the int4 canonical form of :func:`slimnn.quantize.quantize_int4` (codes, scales, zeros), so
their output packs and runs exactly like round to nearest.

- GPTQ (Frantar et al., "GPTQ: Accurate Post-Training Quantization for Generative Pre-trained
  Transformers", 2022): quantizes W column by column and spreads each column's rounding error over the
  columns not yet quantized, weighted by the inverse Hessian H = 2 X^T X of the layer's inputs, so the
  layer's *output* error on the calibration inputs is minimized rather than the weight error. Lazy batches
  of columns; a group's scale and zero point are chosen from the already-updated weights when quantization
  reaches the group's first column.
- AWQ (Lin et al., "AWQ: Activation-aware Weight Quantization for LLM Compression and Acceleration",
  2023): weights that meet large activations matter most; scaling input channel k of W up by s_k (and the
  input down by s_k) protects them at no cost in bits. s = mean|x|^alpha, alpha searched on a grid to
  minimize the output error; then a clipping ratio per (row, group) is searched likewise. The 1/s factor
  is returned as ``in_mul``: the layer multiplies its input by it (``Int4Linear.in_mul``), since a
  preceding layer to fold it into is not known in general.
"""

from __future__ import annotations

import math
from typing import Any, Optional

import torch
from torch import Tensor

from .quantize import check_weight, group_view, int4_codes, int4_params
from .reference import quantize_rows_u8


def _params_clipped(wg: Tensor, ratio: Tensor | float, symmetric: bool, scale_dtype: torch.dtype):
    """int4_params of ``wg`` with its range shrunk by ``ratio`` (broadcast over groups)."""
    return int4_params(wg * (ratio if isinstance(ratio, float) else ratio.unsqueeze(-1)), symmetric, scale_dtype)


def _fake_quant(wg: Tensor, symmetric: bool, scale_dtype: torch.dtype, ratio: Tensor | float = 1.0) -> Tensor:
    """Quantize-dequantize ``wg`` (..., gs) with round to nearest (float32)."""
    s, z = _params_clipped(wg, ratio, symmetric, scale_dtype)
    q = int4_codes(wg, s, z).to(torch.float32)
    zf = 8.0 if z is None else z.to(torch.float32).unsqueeze(-1)
    return (q - zf) * s.to(torch.float32).unsqueeze(-1)


def _quantize_grouped(
    w: Tensor, group_size: Optional[int], symmetric: bool, scale_dtype: torch.dtype, ratio: Optional[Tensor] = None
) -> tuple[Tensor, Tensor, Optional[Tensor]]:
    """Canonical int4 form of w (N x K) with an optional clipping ratio per (row, group)."""
    n, k = w.shape
    wg, g = group_view(w, group_size)
    gs = wg.shape[2]
    if g * gs != k:  # keep the zero padding out of the last group's range (as quantize_int4 does)
        pad = torch.zeros(gs, dtype=torch.bool)
        pad[k - (g - 1) * gs :] = True
        wg = wg.clone()
        wg[:, -1, :] = torch.where(pad, wg[:, -1, :1].expand(-1, gs), wg[:, -1, :])
    s, z = _params_clipped(wg, 1.0 if ratio is None else ratio, symmetric, scale_dtype)
    codes = int4_codes(wg, s, z).reshape(n, g * gs)[:, :k].contiguous()
    return codes, s.t().contiguous(), None if z is None else z.t().contiguous()


def _inverse_upper_factor(h: Tensor, damp: float) -> Tensor:
    """The upper Cholesky factor U of (H + damp * mean(diag H) * I)^-1 (H: ... x K x K, batched over the leading
    dimensions), GPTQ's form of the inverse Hessian. If the factorization fails, the damping is raised tenfold
    (up to 3 times), then ValueError."""
    k = h.shape[-1]
    diag_mean = torch.diagonal(h, dim1=-2, dim2=-1).mean(-1)
    for attempt in range(4):
        if h.dim() == 2:
            add: Any = (damp * 10**attempt) * float(diag_mean)
        else:
            add = ((damp * 10**attempt) * diag_mean).unsqueeze(-1).unsqueeze(-1)
        hd = h + add * torch.eye(k, dtype=h.dtype)
        chol, info = torch.linalg.cholesky_ex(hd)
        if not bool((info != 0).any()):
            u, info = torch.linalg.cholesky_ex(torch.cholesky_inverse(chol), upper=True)
            if not bool((info != 0).any()):
                return u
    raise ValueError("GPTQ: the Hessian is not positive definite even after damping (degenerate calibration data?)")


def gptq_quantize(
    w: Tensor,
    hessian: Tensor,
    group_size: Optional[int] = 64,
    symmetric: bool = True,
    scale_dtype: torch.dtype = torch.float16,
    damp: float = 0.01,
    block_size: int = 128,
    act_order: bool = True,
    params: Optional[tuple[Tensor, Optional[Tensor]]] = None,
) -> tuple[Tensor, Tensor, Optional[Tensor]]:
    """GPTQ of W (N x K) given H = 2/n * sum_t x_t x_t^T (K x K) of its calibration inputs.

    ``params``: optional fixed group parameters ``(scales, zeros)`` in the canonical layout (n_groups x N;
    zeros uint8, float in the scales' dtype for float zero points, or None when symmetric), e.g. those of the
    data-free scale search (:func:`slimnn.math.quantize.quantize_int4`); they replace the min/max rule's
    static groups (``act_order`` or per channel only, since they are fixed before any column is updated).

    Inputs that never fire (H[k, k] == 0) get zero weight. ``damp`` * mean(diag H) is added to the diagonal
    for a stable Cholesky factorization; if it still fails, the damping is raised tenfold (up to 3 times).
    ``act_order``: columns are quantized in decreasing order of H's diagonal (the inputs with the most
    energy first, while the most columns remain to absorb their error); each group's scale and zero point
    are then fixed beforehand from the original weights ("static groups"), so groups stay contiguous in K
    as the format needs. Without it, columns go in order and a group's parameters come from the weights as
    updated when quantization reaches the group's first column; ``block_size`` (the lazy-batch width) is
    then rounded up to a multiple of the group size so a group never straddles two batches. Per channel,
    each row's scale is always chosen from the original weights. Returns (codes, scales, zeros) as
    :func:`slimnn.quantize.quantize_int4` does.
    """
    w = check_weight(w).clone()
    n, k = w.shape
    if hessian.shape != (k, k):
        raise ValueError(f"hessian must be {k} x {k} for a weight with K={k}, got {tuple(hessian.shape)}")
    h = hessian.detach().to(torch.float32).clone()
    if not bool(torch.isfinite(h).all()):
        raise ValueError("hessian has NaN or infinite values")
    dead = torch.diagonal(h) == 0
    h[dead, dead] = 1.0
    w[:, dead] = 0.0
    gs = k if group_size is None else group_size
    ng = -(-k // gs)
    static = act_order or group_size is None
    if params is not None and not static:
        raise ValueError("gptq_quantize: fixed params need act_order=True (or group_size=None)")
    if params is not None:
        s_all, z_all = params[0].t(), None if params[1] is None else params[1].t()
        if tuple(s_all.shape) != (n, ng) or (z_all is not None and tuple(z_all.shape) != (n, ng)):
            raise ValueError(f"gptq_quantize: params must be {ng} x {n} (n_groups x N), got {tuple(params[0].shape)}")
        if (z_all is None) != symmetric:
            raise ValueError("gptq_quantize: params' zeros must be None exactly when symmetric")
        block = block_size
    elif static:  # parameters per group from the original weights
        wg, _ = group_view(w, gs)
        s_all, z_all = int4_params(wg, symmetric, scale_dtype)  # (N, G)
        block = block_size
    else:
        block = max(1, -(-block_size // gs)) * gs
    perm = torch.argsort(torch.diagonal(h), descending=True, stable=True) if act_order else torch.arange(k)
    w = w[:, perm]
    h = h[perm][:, perm]
    u = _inverse_upper_factor(h, damp)

    codes = torch.zeros(n, k, dtype=torch.uint8)  # in permuted column order until the end
    if static:
        scales, zeros = s_all, z_all
    else:
        scales = torch.empty(n, ng, dtype=scale_dtype)
        zeros = None if symmetric else torch.empty(n, ng, dtype=torch.uint8)
    group_of = (perm // gs).tolist()
    for i1 in range(0, k, block):
        i2 = min(i1 + block, k)
        w1 = w[:, i1:i2].clone()
        err1 = torch.zeros_like(w1)
        u1 = u[i1:i2, i1:i2]
        s_cur = z_cur = None
        for j in range(i2 - i1):
            col = i1 + j
            if static:
                g = group_of[col]
                s_cur, z_cur = scales[:, g], None if zeros is None else zeros[:, g]
            elif col % gs == 0:
                g = col // gs
                s_cur, z_cur = int4_params(w1[:, j : min(j + gs, i2 - i1)], symmetric, scale_dtype)
                scales[:, g] = s_cur
                if zeros is not None:
                    zeros[:, g] = z_cur
            wc = w1[:, j]
            q = int4_codes(wc.unsqueeze(1), s_cur, z_cur).squeeze(1)
            codes[:, col] = q
            zf = 8.0 if z_cur is None else z_cur.to(torch.float32)
            e = (wc - (q.to(torch.float32) - zf) * s_cur.to(torch.float32)) / u1[j, j]
            w1[:, j:] -= e.unsqueeze(1) * u1[j, j:].unsqueeze(0)
            err1[:, j] = e
        if i2 < k:
            w[:, i2:] -= err1 @ u[i1:i2, i2:]
    out = torch.empty_like(codes)
    out[:, perm] = codes
    return out, scales.t().contiguous(), None if zeros is None else zeros.t().contiguous()


def _fake_quant_rows(x: Tensor) -> Tensor:
    """What the W4A8 kernels see of x: per-row uint8 quantization, dequantized (float32)."""
    a, scale, zp, _ = quantize_rows_u8(x)
    return (a.to(torch.float32) - zp.to(torch.float32).unsqueeze(1)) * scale.unsqueeze(1)


def awq_quantize(
    w: Tensor,
    x: Tensor,
    group_size: Optional[int] = 64,
    symmetric: bool = True,
    scale_dtype: torch.dtype = torch.float16,
    grid: int = 20,
    clip: bool = True,
    quantize_inputs: bool = False,
    clip_rows: int = 512,
) -> tuple[Tensor, Tensor, Tensor, Optional[Tensor]]:
    """AWQ of W (N x K) on calibration inputs x (rows x K). Returns (in_mul, codes, scales, zeros).

    Scale search: for alpha in {0, 1/grid, ..., 1}, s = mean_t|x_tk|^alpha normalized so that
    sqrt(max(s) * min(s)) = 1; W' = W * s is quantized by round to nearest and the output error
    ||(x/s) Q(W')^T - x W^T||^2 is measured (with ``quantize_inputs``, x/s is first quantized per row to
    uint8 as the W4A8 kernels do). alpha = 0 is plain round to nearest, so the result is never worse than
    RTN on the calibration inputs. Clipping search (``clip``): for each (row, group), the ratio r in
    {1, 0.95, ..., 0.5} of the range kept that minimizes the group's share of the output error on (up to
    ``clip_rows``) inputs. ``in_mul`` = 1/s, for the layer to apply to its input.
    """
    w = check_weight(w)
    n, k = w.shape
    x = x.detach().to(torch.float32).reshape(-1, k)
    if x.shape[0] == 0:
        raise ValueError("AWQ needs at least one calibration input row")
    if not bool(torch.isfinite(x).all()):
        raise ValueError("calibration inputs hold NaN or infinite values")
    y_ref = x @ w.t()
    x_mean = x.abs().mean(dim=0).clamp(min=1e-8)
    best = (math.inf, None)
    for i in range(grid + 1):
        alpha = i / grid
        s = x_mean.pow(alpha)
        s = s / (s.max() * s.min()).sqrt()
        ws = w * s
        wq = _dequant_grouped(ws, group_size, symmetric, scale_dtype)
        xs = x / s
        if quantize_inputs:
            xs = _fake_quant_rows(xs)
        err = float(((xs @ wq.t() - y_ref) ** 2).mean())
        if err < best[0]:
            best = (err, s)
    s = best[1]
    ws = w * s
    ratio = None
    if clip:
        ratio = _search_clip(ws, x[_even_rows(x.shape[0], clip_rows)] / s, group_size, symmetric, scale_dtype)
    codes, scales, zeros = _quantize_grouped(ws, group_size, symmetric, scale_dtype, ratio)
    return (1.0 / s).contiguous(), codes, scales, zeros


def _even_rows(total: int, keep: int) -> Tensor:
    if total <= keep:
        return torch.arange(total)
    return torch.linspace(0, total - 1, keep).round().long()


def _dequant_grouped(w: Tensor, group_size: Optional[int], symmetric: bool, scale_dtype: torch.dtype) -> Tensor:
    from .quantize import dequantize_int4

    codes, scales, zeros = _quantize_grouped(w, group_size, symmetric, scale_dtype)
    return dequantize_int4(codes, scales, zeros, group_size)


def _search_clip(
    w: Tensor, x: Tensor, group_size: Optional[int], symmetric: bool, scale_dtype: torch.dtype,
    ratios: tuple[float, ...] = tuple(1.0 - 0.05 * i for i in range(11)),
) -> Tensor:
    """Per (row, group) clipping ratio minimizing mean_t (x_tg . (w_g - Q_r(w_g)))^2. Returns (N, G)."""
    n, k = w.shape
    wg, g = group_view(w, group_size)
    xg, _ = group_view(x, group_size)  # (T, G, gs), zero padded like wg
    best_err = torch.full((n, g), math.inf)
    best_r = torch.ones(n, g)
    for r in ratios:
        dq = _fake_quant(wg, symmetric, scale_dtype, r)
        diff = wg - dq  # (N, G, gs); padded columns meet zero inputs
        err = torch.einsum("tgk,ngk->tng", xg, diff).pow(2).mean(dim=0)  # (N, G)
        better = err < best_err
        best_err = torch.where(better, err, best_err)
        best_r = torch.where(better, torch.full_like(best_r, r), best_r)
    return best_r


def gptq_quantize_int8(w: Tensor, hessian: Tensor, damp: float = 0.01, block_size: int = 128) -> tuple[Tensor, Tensor]:
    """GPTQ for symmetric int8 with one scale per output row (absmax / 127 of the original row, as round to
    nearest has), batched: ``w`` (G x N x T) are G independent problems of N rows over T inputs, each with its
    Hessian ``hessian[g]`` (G x T x T, = 2/n X_g^T X_g of its calibration inputs); 2-D ``w`` (N x T) with a
    T x T Hessian is one problem. Used for convolutions: G = 1 with T = c * kh * kw for a dense conv, G = groups
    (the channels, T = kh * kw, for a depthwise one). Columns in order, lazy batches of ``block_size``; an input
    that never fires (H[t, t] == 0) gets zero weight. With H = I the result is round to nearest.
    Returns (q int8 in [-127, 127], same shape as w; scales float32, w's shape without T)."""
    one = w.dim() == 2
    if one:
        w, hessian = w.unsqueeze(0), hessian.unsqueeze(0)
    if w.dim() != 3 or hessian.shape != (w.shape[0], w.shape[2], w.shape[2]):
        raise ValueError(f"gptq_quantize_int8: hessian must be (G, T, T) for a weight (G, N, T), got "
                         f"{tuple(hessian.shape)} for {tuple(w.shape)}")
    if not bool(torch.isfinite(w).all()):
        raise ValueError("weight has NaN or infinite values")
    h = hessian.detach().to(torch.float64).clone()
    if not bool(torch.isfinite(h).all()):
        raise ValueError("hessian has NaN or infinite values")
    w = w.detach().to(torch.float64).clone()
    g, n, t = w.shape
    dead = torch.diagonal(h, dim1=-2, dim2=-1) == 0  # (G, T)
    h = h + torch.diag_embed(dead.to(h.dtype))
    w = w.masked_fill(dead.unsqueeze(1), 0.0)
    s = w.abs().amax(-1) / 127.0  # (G, N)
    s = torch.where(s > 0, s, torch.ones_like(s)).to(torch.float32)
    sd = s.to(torch.float64)
    u = _inverse_upper_factor(h, damp)
    q = torch.zeros(g, n, t, dtype=torch.int8)
    for i1 in range(0, t, block_size):
        i2 = min(i1 + block_size, t)
        w1 = w[:, :, i1:i2].clone()
        err1 = torch.zeros_like(w1)
        u1 = u[:, i1:i2, i1:i2]
        for j in range(i2 - i1):
            wc = w1[:, :, j]
            qc = torch.clamp(torch.round(wc / sd), -127, 127)
            q[:, :, i1 + j] = qc.to(torch.int8)
            e = (wc - qc * sd) / u1[:, j, j].unsqueeze(1)
            w1[:, :, j:] -= e.unsqueeze(2) * u1[:, j, j:].unsqueeze(1)
            err1[:, :, j] = e
        if i2 < t:
            w[:, :, i2:] -= err1 @ u[:, i1:i2, i2:]
    return (q[0], s[0]) if one else (q, s)
