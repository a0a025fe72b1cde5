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


def quantize_int8_sum_preserving(w: Tensor, segment: Optional[int] = None) -> tuple[Tensor, Tensor]:
    """Symmetric int8 per output channel (the scales of :func:`quantize_int8_symmetric`, absmax / 127) with
    the rounding chosen so that each segment of ``segment`` consecutive weights of a row (the whole row when
    None) keeps its sum: ``|sum(q * s) - sum(w)| <= s / 2`` per segment, each weight within one step.

    Why: a conv filter after BatchNorm folding often has a large DC gain cancelled by its bias, and it sees
    inputs that are locally nearly constant (smooth images, ReLU6 saturated at 6). Its output error is then
    about ``x * sum(q * s - w)``: rounding each weight to nearest leaves a sum error of ``sqrt(k / 12)`` steps
    (0.9 for a 3x3 depthwise filter, 1.4 for 5x5), which is what made EfficientNet's int8 depthwise layers
    cost most of its accuracy. Rule: round to nearest (ties to even), then per segment move the
    ``n = round(sum(q - w / s))`` weights whose rounding went furthest in ``n``'s direction by one step back
    (the fewest, cheapest changes: it minimizes the squared error under that sum bound). Returns ``q`` (int8,
    N x K, in [-127, 127]) and ``scales`` (float32, 1 x N)."""
    w = check_weight(w)
    n, k = w.shape
    seg = k if segment is None else int(segment)
    if seg < 1 or k % seg:
        raise ValueError(f"segment={segment} must divide the row length {k}")
    absmax = w.abs().amax(dim=1, keepdim=True)
    scales = torch.where(absmax > 0, absmax / 127.0, torch.ones_like(absmax))
    r = (w / scales).reshape(n, k // seg, seg)
    q = torch.round(r)
    over = q - r                                        # in [-1/2, 1/2]
    moves = torch.round(over.sum(dim=2, keepdim=True))  # steps to give back per segment
    order = torch.argsort(over * torch.sign(moves), dim=2, descending=True, stable=True)
    rank = torch.empty_like(order)
    rank.scatter_(2, order, torch.arange(seg).expand_as(order).contiguous())
    q = (q - (rank < moves.abs()).to(q.dtype) * torch.sign(moves)).clamp_(-127, 127)
    return q.reshape(n, k).to(torch.int8), scales.t().contiguous()


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


def int4_params_search(
    wg: Tensor, symmetric: bool, scale_dtype: torch.dtype = torch.float16, grid: int = 24, chunk: int = 1 << 16,
    weight: Optional[Tensor] = None,
) -> tuple[Tensor, Optional[Tensor]]:
    """Scale and zero point of each group of ``wg`` (..., gs) that minimise the group's squared error, found
    without data: the min/max rule's scale times each of ``grid`` factors in [0.6, 1.1] (zero point
    re-rounded for each), then the best candidate's scale refitted by least squares for its codes (the
    closed form ``s = sum(w (q - z)) / sum((q - z)^2)``), kept when it lowers the error. The search of
    llama.cpp's K-quants (make_qkx2_quants), restricted to slimnn's integer zero points. Never worse than
    :func:`int4_params` (its scale is a candidate). ``weight``: optional per-element weights of the error
    (same shape as ``wg``; 0 leaves an element out, e.g. the padding of a short last group). Same return
    convention."""
    s0, z0 = int4_params(wg, symmetric, scale_dtype)
    shape = wg.shape[:-1]
    w = wg.reshape(-1, wg.shape[-1]).to(torch.float32)
    wt = None if weight is None else weight.expand_as(wg).reshape(w.shape).to(torch.float32)
    base = s0.reshape(-1).to(torch.float32)
    out_s = torch.empty_like(base)
    out_z = None if symmetric else torch.empty(base.shape, dtype=torch.uint8)
    factors = torch.cat([torch.ones(1), torch.linspace(0.6, 1.1, grid)])
    mn = w.amin(dim=-1).clamp(max=0)

    def rounded(v: Tensor) -> Tensor:  # symmetric scales are signed: round the magnitude
        return (_round_scales(v.abs(), scale_dtype).to(torch.float32) * torch.where(v < 0, -1.0, 1.0))

    def err_of(x: Tensor, sc: Tensor, z: Tensor, c: Optional[Tensor]) -> tuple[Tensor, Tensor]:
        q = torch.round(x / sc.unsqueeze(-1)) + z.unsqueeze(-1)
        q.clamp_(0, 15)
        e = (sc.unsqueeze(-1) * (q - z.unsqueeze(-1)) - x).square()
        return (e if c is None else e * c).sum(-1), q

    for lo in range(0, w.shape[0], chunk):
        x, b = w[lo:lo + chunk], base[lo:lo + chunk]
        c = None if wt is None else wt[lo:lo + chunk]
        best_e = best_s = best_z = None
        for f in factors.tolist():
            sc = rounded(b * f)
            sc = torch.where(sc == 0, b, sc)
            if symmetric:
                z = torch.full_like(sc, 8.0)
            else:
                z = torch.round(-mn[lo:lo + chunk] / sc).clamp(0, 15)
            e, _ = err_of(x, sc, z, c)
            if best_e is None:
                best_e, best_s, best_z = e, sc, z
            else:
                take = e < best_e
                best_e = torch.where(take, e, best_e)
                best_s = torch.where(take, sc, best_s)
                best_z = torch.where(take, z, best_z)
        # least-squares refit of the scale for the chosen codes
        _, q = err_of(x, best_s, best_z, c)
        d = q - best_z.unsqueeze(-1)
        dc = d if c is None else d * c
        den = (dc * d).sum(-1)
        ls = torch.where(den > 0, (x * dc).sum(-1) / den.clamp(min=1e-30), best_s)
        ls = rounded(torch.where(ls == 0, best_s, ls))
        e2, _ = err_of(x, ls, best_z, c)
        take = e2 < best_e
        out_s[lo:lo + chunk] = torch.where(take, ls, best_s)
        if out_z is not None:
            out_z[lo:lo + chunk] = best_z.to(torch.uint8)
    scales = out_s.reshape(shape).to(scale_dtype)
    return scales, None if out_z is None else out_z.reshape(shape)


def int4_codes(wg: Tensor, scales: Tensor, zeros: Optional[Tensor]) -> Tensor:
    """Codes (uint8 in [0, 15]) of ``wg`` (..., gs) for given per-group scales and zeros (round half to even):
    ``round(w / s) + z`` for integer zero points (uint8, or None: 8), ``round(w / s + z)`` for float ones."""
    if zeros is not None and zeros.is_floating_point():
        q = torch.round(wg / scales.to(torch.float32).unsqueeze(-1) + zeros.to(torch.float32).unsqueeze(-1))
        return q.clamp_(0, 15).to(torch.uint8)
    z = 8.0 if zeros is None else zeros.to(torch.float32).unsqueeze(-1)
    q = torch.round(wg / scales.to(torch.float32).unsqueeze(-1)) + z
    return q.clamp_(0, 15).to(torch.uint8)


def _float_zero_round(d: Tensor, m: Tensor, scale_dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """(scale, float zero point) in ``scale_dtype`` for the affine map w = d * q + m, i.e. z = -m / d, both
    kept finite (d > 0)."""
    s = _round_scales(d, scale_dtype)
    big = torch.finfo(scale_dtype).max / 2
    z = (-m / s.to(torch.float32)).clamp(-big, big).to(scale_dtype)
    return s, z


def int4_params_float_zero(
    wg: Tensor, scale_dtype: torch.dtype = torch.float16, search: bool = True, weight: Optional[Tensor] = None,
    steps: Optional[Tensor] = None, refits: int = 2, chunk: int = 1 << 16,
) -> tuple[Tensor, Tensor]:
    """Scale and *float* zero point of each group of ``wg`` (..., gs): w ~= s * (q - z), q in 0..15, z any
    float (the affine map w = d * q + m of llama.cpp's Q4_1 / K-quants, z = -m / d), without data.

    ``search=False``: the min/max rule over the group's own range (no widening to include 0), s = (max - min)
    / 15, z = -min / s. ``search=True``: an error-minimising search of our own after llama.cpp's
    make_qkx quantizers: for each candidate inverse step ``(15 + r) / (max - min)`` (``steps``: the r, default
    31 values in [-1, 2]; r > 0 clips the extremes), codes are rounded from the group's minimum, then scale and
    minimum refitted jointly by (weighted) least squares for those codes (a 2 x 2 normal system); the
    candidate of least squared error is kept, then ``refits`` rounds of re-rounding the codes and refitting.
    Scale and zero point are rounded to ``scale_dtype`` before the final codes and error, and the result is
    never worse per group than the min/max rule (it is a candidate). ``weight``: optional per-element error
    weights (same shape as ``wg``, 0 leaves an element out, e.g. a short last group's padding). Constant
    groups are exact. Returns (scales, zeros), both in ``scale_dtype``."""
    shape = wg.shape[:-1]
    w = wg.reshape(-1, wg.shape[-1]).to(torch.float32)
    wt = None if weight is None else weight.expand_as(wg).reshape(w.shape).to(torch.float32)
    if steps is None:
        steps = torch.linspace(-1.0, 2.0, 31)
    out_s = torch.empty(w.shape[0], dtype=scale_dtype)
    out_z = torch.empty(w.shape[0], dtype=scale_dtype)

    def err(x: Tensor, s: Tensor, z: Tensor, c: Optional[Tensor]) -> Tensor:
        q = torch.round(x / s.unsqueeze(-1) + z.unsqueeze(-1)).clamp_(0, 15)
        e = (s.unsqueeze(-1) * (q - z.unsqueeze(-1)) - x).square_()
        return (e if c is None else e * c).sum(-1)

    def lsq(x: Tensor, q: Tensor, c: Optional[Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        cw = torch.ones_like(x) if c is None else c
        sw, sq, sx = cw.sum(-1), (cw * q).sum(-1), (cw * x).sum(-1)
        sqq, sqx = (cw * q * q).sum(-1), (cw * q * x).sum(-1)
        det = sw * sqq - sq * sq
        ok = det > 1e-12 * sw * sw.clamp(min=1)
        dd = torch.where(ok, (sw * sqx - sq * sx) / torch.where(ok, det, 1.0), 0.0)
        mm = torch.where(ok, (sqq * sx - sq * sqx) / torch.where(ok, det, 1.0), 0.0)
        return dd, mm, ok & (dd > 0)

    for lo in range(0, w.shape[0], chunk):
        x = w[lo:lo + chunk]
        c = None if wt is None else wt[lo:lo + chunk]
        if c is None:
            mn, mx = x.amin(-1), x.amax(-1)
        else:  # the range of the elements that count
            inf = torch.tensor(float("inf"))
            mn = torch.where(c > 0, x, inf).amin(-1)
            mx = torch.where(c > 0, x, -inf).amax(-1)
        rng = mx - mn
        flat = rng <= 1e-30 * mx.abs().clamp(min=1e-30)
        # min/max rule; a constant group c: s = |c| / 8 (1 when c = 0), z = 8 - c / s, so code 8 is c exactly
        d0 = torch.where(flat, torch.where(mn != 0, mn.abs() / 8, 1.0), rng / 15)
        m0 = torch.where(flat, mn - 8 * d0, mn)
        best_s, best_z = _float_zero_round(d0, m0, scale_dtype)
        if search:
            best_e = err(x, best_s.float(), best_z.float(), c)
            cand_d, cand_m = [], []
            safe = torch.where(flat, 1.0, rng)
            for r in steps.tolist():
                q = torch.round((x - mn.unsqueeze(-1)) * ((15 + r) / safe).unsqueeze(-1)).clamp_(0, 15)
                dd, mm, ok = lsq(x, q, c)
                cand_d.append(torch.where(ok & ~flat, dd, d0))
                cand_m.append(torch.where(ok & ~flat, mm, m0))
            for dd, mm in zip(cand_d, cand_m):
                s_, z_ = _float_zero_round(dd, mm, scale_dtype)
                e = err(x, s_.float(), z_.float(), c)
                take = e < best_e
                best_e = torch.where(take, e, best_e)
                best_s, best_z = torch.where(take, s_, best_s), torch.where(take, z_, best_z)
            for _ in range(refits):  # alternate: codes for the current map, then the map for those codes
                sf, zf = best_s.float(), best_z.float()
                q = torch.round(x / sf.unsqueeze(-1) + zf.unsqueeze(-1)).clamp_(0, 15)
                dd, mm, ok = lsq(x, q, c)
                s_, z_ = _float_zero_round(torch.where(ok, dd, sf), torch.where(ok, mm, -zf * sf), scale_dtype)
                e = err(x, s_.float(), z_.float(), c)
                take = (e < best_e) & ok & ~flat
                best_e = torch.where(take, e, best_e)
                best_s, best_z = torch.where(take, s_, best_s), torch.where(take, z_, best_z)
        out_s[lo:lo + chunk], out_z[lo:lo + chunk] = best_s, best_z
    return out_s.reshape(shape), out_z.reshape(shape)


def int4_params_hqq(
    wg: Tensor, scale_dtype: torch.dtype = torch.float16, init: Optional[tuple[Tensor, Tensor]] = None,
    iters: int = 20, p: float = 0.7, beta: float = 10.0, kappa: float = 1.01, weight: Optional[Tensor] = None,
    chunk: int = 1 << 16,
) -> tuple[Tensor, Tensor]:
    """Float zero points of each group of ``wg`` (..., gs) by half-quadratic optimisation, after HQQ (Badri &
    Shaji, 2023), without data: the scale is kept (the min/max rule's, or ``init``'s) and the zero point
    minimises the group's l_p error (``p`` < 1: a few large rounding errors cost less than many small ones, so
    outliers do not pull the whole group). Each of ``iters`` rounds: codes for the current zero point, the
    residual split by the l_p proximal step (shrinkage ``|e|^(p-1) / beta``), then the zero point in closed
    form (the mean over the group), ``beta *= kappa``; a group keeps its last zero point that lowered the l_p
    error. ``init``: (scales, zeros) to start from (e.g. :func:`int4_params_float_zero`'s), same shapes and
    dtype as the result. ``weight``: per-element weights of the mean (0 leaves an element out). Returns
    (scales, zeros) in ``scale_dtype``."""
    if iters < 0 or not 0 < p <= 2 or beta <= 0 or kappa < 1:
        raise ValueError(f"int4_params_hqq: iters >= 0, 0 < p <= 2, beta > 0, kappa >= 1 needed, got "
                         f"{iters}, {p}, {beta}, {kappa}")
    if init is None:
        init = int4_params_float_zero(wg, scale_dtype, search=False, weight=weight)
    shape = wg.shape[:-1]
    w = wg.reshape(-1, wg.shape[-1]).to(torch.float32)
    wt = torch.ones_like(w) if weight is None else weight.expand_as(wg).reshape(w.shape).to(torch.float32)
    s_all = init[0].reshape(-1).to(torch.float32)
    z_all = init[1].reshape(-1).to(torch.float32)
    out_z = torch.empty(w.shape[0], dtype=scale_dtype)

    def lp_err(x: Tensor, s: Tensor, z: Tensor) -> Tensor:
        q = torch.round(x / s.unsqueeze(-1) + z.unsqueeze(-1)).clamp_(0, 15)
        return ((s.unsqueeze(-1) * (q - z.unsqueeze(-1)) - x).abs().pow(p) * c).sum(-1)

    for lo in range(0, w.shape[0], chunk):
        x, s, c = w[lo:lo + chunk], s_all[lo:lo + chunk], wt[lo:lo + chunk]
        z = z_all[lo:lo + chunk].to(scale_dtype).float()
        best_z, best_e = z, lp_err(x, s, z)
        b = beta
        n = c.sum(-1).clamp(min=1e-30)
        for _ in range(iters):
            q = torch.round(x / s.unsqueeze(-1) + z.unsqueeze(-1)).clamp_(0, 15)
            r = x - s.unsqueeze(-1) * (q - z.unsqueeze(-1))
            a = r.abs()
            e = torch.sign(r) * torch.relu(a - a.clamp(min=1e-12).pow(p - 1) / b)
            z = ((q - (x - e) / s.unsqueeze(-1)) * c).sum(-1) / n
            z = z.to(scale_dtype).float()
            err = lp_err(x, s, z)
            take = err < best_e
            best_e, best_z = torch.where(take, err, best_e), torch.where(take, z, best_z)
            b *= kappa
        out_z[lo:lo + chunk] = best_z.to(scale_dtype)
    return s_all.reshape(shape).to(scale_dtype), out_z.reshape(shape)


INT4_IMPORTANCE = ("none", "rms_abs", "square")


def int4_importance(wg: Tensor, kind: str) -> Tensor:
    """Data-free per-element error weights for a scale search over groups ``wg`` (..., gs): ``"none"`` all
    ones; ``"rms_abs"`` ``rms(group) + |w|`` (llama.cpp's make_qkx2_quants without an importance matrix: large
    weights, which move the output most, are fitted closer); ``"square"`` ``w ** 2`` (plus a floor of 1e-6
    of the group's mean square, so no element is left out entirely)."""
    if kind not in INT4_IMPORTANCE:
        raise ValueError(f"importance must be one of {INT4_IMPORTANCE}, got {kind!r}")
    w = wg.to(torch.float32)
    if kind == "none":
        return torch.ones_like(w)
    ms = w.square().mean(-1, keepdim=True)
    imp = ms.sqrt() + w.abs() if kind == "rms_abs" else w.square() + 1e-6 * ms
    # an all-zero group would weigh every element 0 (its range then empty, its zero point NaN): plain weights
    return torch.where(ms > 0, imp, torch.ones_like(imp))


def quantize_int4(
    w: Tensor,
    group_size: Optional[int] = 64,
    symmetric: bool = True,
    scale_dtype: torch.dtype = torch.float16,
    search: bool = False,
    float_zeros: bool = False,
    importance: str = "none",
    hqq: bool = False,
) -> tuple[Tensor, Tensor, Optional[Tensor]]:
    """Round-to-nearest int4 quantization of W (N x K), group-wise along K (None: per output channel), with
    the min/max rule's scales or (``search=True``) the error-minimising ones of :func:`int4_params_search`.

    Returns the canonical form: ``codes`` (uint8 N x K in [0, 15]), ``scales`` (n_groups x N, in
    ``scale_dtype``) and ``zeros`` (uint8 n_groups x N, or None when symmetric: zero point 8), with
    W ~= scales * (codes - zeros) per group. A last group shorter than ``group_size`` (K not a multiple of
    it) is quantized over its real columns only. ``float_zeros`` (with ``symmetric=False``): float zero points
    (``zeros`` in ``scale_dtype``), from :func:`int4_params_float_zero` (searched when ``search``).
    ``importance`` (``search`` only): how the search weighs each element's squared error, see
    :func:`int4_importance`. ``hqq`` (``float_zeros`` only): the zero points then refined by
    :func:`int4_params_hqq` (half-quadratic l_p fit, scales kept).
    """
    if hqq and not float_zeros:
        raise ValueError("hqq refines float zero points: it needs float_zeros=True")
    if float_zeros and symmetric:
        raise ValueError("float zero points need symmetric=False (a symmetric format has no zero points)")
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
    weight = None
    if g * gs != k:  # the padding of the last group does not count in its error
        weight = torch.ones(g, gs)
        weight[-1, k - (g - 1) * gs :] = 0
    if search and importance != "none":
        imp = int4_importance(wg, importance)
        weight = imp if weight is None else imp * weight
    if float_zeros:
        scales, zeros = int4_params_float_zero(wg, scale_dtype, search=search, weight=weight)
        if hqq:
            scales, zeros = int4_params_hqq(wg, scale_dtype, init=(scales, zeros), weight=weight)
    elif search:
        scales, zeros = int4_params_search(wg, symmetric, scale_dtype, weight=weight)
    else:
        scales, zeros = int4_params(wg, symmetric, scale_dtype)
    codes = int4_codes(wg, scales, zeros).reshape(n, g * gs)[:, :k].contiguous()
    return codes, scales.t().contiguous(), None if zeros is None else zeros.t().contiguous()


def dequantize_int4(
    codes: Tensor, scales: Tensor, zeros: Optional[Tensor], group_size: Optional[int] = 64
) -> Tensor:
    """Inverse of :func:`quantize_int4` (float32 N x K): scales * (codes - zeros), zeros None meaning 8
    (integer or float zero points alike)."""
    n, k = codes.shape
    cg, g = group_view(codes.to(torch.float32), group_size)
    z = 8.0 if zeros is None else zeros.t().to(torch.float32).unsqueeze(2)
    return ((cg - z) * scales.t().to(torch.float32).unsqueeze(2)).reshape(n, -1)[:, :k].contiguous()
