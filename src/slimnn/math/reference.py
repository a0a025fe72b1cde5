"""Reference implementations in plain torch math: the specification the C++ kernels are tested against.

Integer parts are computed in int64 and must match the kernels exactly; float parts in float64.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from .quantize import dequantize_int8, group_view

_FLT_MAX = float(torch.finfo(torch.float32).max)
_FLT_MIN = torch.finfo(torch.float32).tiny


def quantize_rows_u8(x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Per-row asymmetric uint8 quantization of activations x (M x K, float32), exactly as the kernels do.

    In float32: mn = min(0, min(row)), mx = max(0, max(row)); scale = mx/255 - mn/255 (1 if below
    FLT_MIN); inv = 1/scale; zp = clamp(rint(-mn * inv), 0, 255); q = clamp(rint(x * inv) + zp, 0, 255),
    rint rounding half to even. Rows with a NaN or infinity are flagged (``finite`` False); the linear ops
    compute those rows in float instead (see q8_linear_dynamic). Returns (q uint8 M x K, scale float32 M,
    zp int32 M, finite bool M).
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


def _plus_bias_f32(y: Tensor, bias: Optional[Tensor]) -> Tensor:
    """The references' epilogue: y (float64) + bias in float64, rounded once to float32."""
    if bias is not None:
        y = y + bias.to(torch.float64)
    return y.to(torch.float32)


def _scale_groups(centered: Tensor, scales: Tensor, a_scale: Tensor) -> Tensor:
    """The W8A8 / W4A8 dequantization in float64: a_scale[m] * sum_g scales[g, n] * centered[m, g, n]."""
    y = (centered.to(torch.float64) * scales.to(torch.float64).unsqueeze(0)).sum(dim=1)
    return y * a_scale.to(torch.float64).unsqueeze(1)


def _times_in_mul(x: Tensor, in_mul: Optional[Tensor]) -> Tensor:
    """x in float32, its columns multiplied by ``in_mul`` (K, AWQ's input scaling) in float32 as the kernels do."""
    x = x.to(torch.float32)
    return x if in_mul is None else x * in_mul.to(torch.float32)


def q8_linear_dynamic(
    x: Tensor, q: Tensor, scales: Tensor, group_size: Optional[int], bias: Optional[Tensor] = None
) -> Tensor:
    """y = a_scale * sum_g scale_g * (dot_g(a, q) - zp * colsum_g(q)) + bias, float64 math, float32 out.

    Rows holding a NaN or an infinity, or values large enough to overflow the integer kernels'
    intermediates (a_scale > FLT_MAX / 2^16 / kp / 255), follow the non-finite policy (docs/reliability.md):
    float32 math with the dequantized weights, x @ (q * scales)^T + bias."""
    m = x.shape[0]
    n, k = q.shape
    a, a_scale, zp, finite = quantize_rows_u8(x)
    ag, g = group_view(a.to(torch.int64), group_size)  # (M, G, gs)
    qg, _ = group_view(q.to(torch.int64), group_size)  # (N, G, gs)
    dots = torch.einsum("mgk,ngk->mgn", ag, qg)  # exact int64
    colsum = qg.sum(dim=2).t()  # (G, N)
    centered = dots - zp.to(torch.int64).view(m, 1, 1) * colsum.unsqueeze(0)
    y = _scale_groups(centered, scales, a_scale)
    y = _plus_bias_f32(y, bias)
    kp = -(-k // 4) * 4
    bad = ~finite | (a_scale > _FLT_MAX / 65536.0 / kp / 255.0)
    if bool(bad.any()):
        yb = x[bad].to(torch.float32) @ dequantize_int8(q, scales, group_size).t()
        y[bad] = yb if bias is None else yb + bias.to(torch.float32)
    return y


def q8_linear_weight_only(
    x: Tensor, q: Tensor, scales: Tensor, group_size: Optional[int], bias: Optional[Tensor] = None
) -> Tensor:
    """y = x @ (q * scales)^T + bias in float64 math, float32 out."""
    w = dequantize_int8(q, scales, group_size).to(torch.float64)
    y = x.to(torch.float64) @ w.t()
    return _plus_bias_f32(y, bias)


def lowrank_linear(
    x: Tensor,
    u: Tensor,
    v: Tensor,
    bias: Optional[Tensor] = None,
    residual: Optional[Tensor] = None,
) -> Tensor:
    """y = (x V^T) U^T + bias (+ x S^T, S dense N x K) in float64 math, float32 out. u: N x r, v: r x K."""
    t = x.to(torch.float64) @ v.to(torch.float64).t()
    y = t @ u.to(torch.float64).t()
    if residual is not None:
        y = y + x.to(torch.float64) @ residual.to(torch.float64).t()
    return _plus_bias_f32(y, bias)


def lowrank_q8_linear(
    x: Tensor,
    qu: Tensor,
    su: Tensor,
    qv: Tensor,
    sv: Tensor,
    mode: str,
    bias: Optional[Tensor] = None,
    residual: Optional[Tensor] = None,
) -> Tensor:
    """The int8-factor form, as the kernels compute it: t = q8 product of x with V (float32), then the q8
    product of t with U (+ bias). ``mode="dynamic"`` quantizes x and then t per row (:func:`quantize_rows_u8`);
    per-channel scales (su: 1 x N, sv: 1 x r). The residual, if any, is added in float64."""
    fn = q8_linear_dynamic if mode == "dynamic" else q8_linear_weight_only
    t = fn(x.to(torch.float32), qv, sv, None)
    y = fn(t, qu, su, None, bias)
    if residual is not None:
        y = (y.to(torch.float64) + x.to(torch.float64) @ residual.to(torch.float64).t()).to(torch.float32)
    return y
# --- int4 ----------------------------------------------------------------------------------------------------


def q4_group_dots(a: Tensor, codes: Tensor, zeros: Optional[Tensor], group_size: Optional[int]) -> Tensor:
    """The exact per-group integers of the W4A8 kernels: E[m, g, n] = sum_{k in g} a[m, k] (u[n, k] - z[g, n]).

    a: uint8 (M x K) quantized activations; codes: uint8 (N x K); zeros: uint8 (G x N) or None (8).
    Returns int64 (M x G x N).
    """
    ag, _ = group_view(a.to(torch.int64), group_size)  # (M, G, gs)
    cg, _ = group_view(codes.to(torch.int64), group_size)  # (N, G, gs); padding adds a * 0
    dots = torch.einsum("mgk,ngk->mgn", ag, cg)
    z = torch.full((cg.shape[1], cg.shape[0]), 8, dtype=torch.int64) if zeros is None else zeros.to(torch.int64)
    return dots - ag.sum(dim=2).unsqueeze(2) * z.unsqueeze(0)


def q4_linear_dynamic(
    x: Tensor,
    codes: Tensor,
    scales: Tensor,
    zeros: Optional[Tensor],
    group_size: Optional[int],
    bias: Optional[Tensor] = None,
    in_mul: Optional[Tensor] = None,
) -> Tensor:
    """W4A8: y = a_scale * sum_g scale_g * (E_g - zp * colsum_g) + bias, float64 math, float32 out.

    x (M x K float32) is first multiplied by ``in_mul`` (K, float32, in float32 as the kernels do), then
    quantized per row exactly as :func:`quantize_rows_u8`; colsum_g[n] = sum_{k in g} (u - z).
    Float zero points (``zeros`` a float tensor): the symmetric part s (u - 8) as above, plus
    sum_g s_g (8 - z_g) * sum_{k in g} x[m, k] over the float (unquantized) x, as the kernel driver adds it.
    """
    x = _times_in_mul(x, in_mul)
    fz = zeros is not None and zeros.is_floating_point()
    izeros = None if fz else zeros
    a, a_scale, zp, finite = quantize_rows_u8(x)
    e = q4_group_dots(a, codes, izeros, group_size)  # (M, G, N)
    ones = torch.ones(1, codes.shape[1], dtype=torch.uint8)
    colsum = q4_group_dots(ones, codes, izeros, group_size)[0]  # (G, N)
    centered = e - zp.to(torch.int64).view(-1, 1, 1) * colsum.unsqueeze(0)
    y = _scale_groups(centered, scales, a_scale)
    if fz:
        xg, _ = group_view(torch.where(finite.unsqueeze(1), x, torch.zeros_like(x)).to(torch.float64), group_size)
        off = scales.to(torch.float64) * (8.0 - zeros.to(torch.float64))  # (G, N)
        y = y + xg.sum(dim=2) @ off
    y = _plus_bias_f32(y, bias)
    y[~finite] = float("nan")
    return y


def q4_linear_weight_only(
    x: Tensor,
    codes: Tensor,
    scales: Tensor,
    zeros: Optional[Tensor],
    group_size: Optional[int],
    bias: Optional[Tensor] = None,
    in_mul: Optional[Tensor] = None,
) -> Tensor:
    """y = (x * in_mul) @ (scales * (codes - zeros))^T + bias in float64 math, float32 out."""
    from .quantize import dequantize_int4

    x = _times_in_mul(x, in_mul)
    w = dequantize_int4(codes, scales, zeros, group_size).to(torch.float64)
    y = x.to(torch.float64) @ w.t()
    return _plus_bias_f32(y, bias)


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
    y = _plus_bias_f32(y, bias)
    y[~finite] = float("nan")
    return y


def attention_reference(q, k, v, attn_mask=None, scale=None, is_causal=False):  # noqa: ANN001, ANN201
    """softmax(q k^T * scale + mask) v in float64 torch math: the ground truth for slimnn.ops.attention.

    q [B, Hq, Lq, D], k [B, Hkv, Lk, D], v [B, Hkv, Lk, Dv] with Hq % Hkv == 0; mask bool (True = attend) or
    additive float, broadcast to [B, Hq, Lq, Lk]; causal is top-left (j <= i) and combines with the mask.
    Rows whose scores are all -inf, and Lk == 0, give zeros (torch's CPU SDPA does the same). Returns float64.
    """
    import math as _math

    q, k, v = q.double(), k.double(), v.double()
    b, hq, lq, d = q.shape
    hkv, lk = k.shape[1], k.shape[2]
    if hkv != hq and hkv > 0:
        k = k.repeat_interleave(hq // hkv, dim=1)
        v = v.repeat_interleave(hq // hkv, dim=1)
    if scale is None:
        scale = 1.0 / _math.sqrt(d) if d > 0 else 1.0
    s = (q @ k.transpose(-2, -1)) * scale
    if attn_mask is not None:
        if attn_mask.dtype == torch.bool:
            s = s.masked_fill(~attn_mask, -_math.inf)
        else:
            s = s + attn_mask.double()
    if is_causal:
        keep = torch.ones(lq, lk, dtype=torch.bool).tril()
        s = s.masked_fill(~keep, -_math.inf)
    dead = torch.isneginf(s).all(dim=-1, keepdim=True)
    p = torch.softmax(s.masked_fill(dead, 0.0), dim=-1).masked_fill(dead, 0.0)
    return p @ v


def _conv_pair(v, name: str) -> tuple[int, int]:  # noqa: ANN001
    t = (int(v), int(v)) if isinstance(v, int) else tuple(int(e) for e in v)
    if len(t) != 2:
        raise ValueError(f"conv: {name} must be an int or a pair, got {v!r}")
    return t  # type: ignore[return-value]


def conv_pads4(padding) -> tuple[int, int, int, int]:  # noqa: ANN001
    """int, (ph, pw) or (top, bottom, left, right) -> (top, bottom, left, right)."""
    t = (int(padding),) * 4 if isinstance(padding, int) else tuple(int(e) for e in padding)
    if len(t) == 2:
        t = (t[0], t[0], t[1], t[1])
    if len(t) != 4 or min(t) < 0:
        raise ValueError(f"conv: padding must be >= 0, an int, a pair or (top, bottom, left, right), got {padding!r}")
    return t  # type: ignore[return-value]


def conv_activation(y: Tensor, activation: Optional[str]) -> Tensor:
    """The float math of the conv kernels' fused activations (torch's definitions)."""
    import torch.nn.functional as F

    fns = {None: lambda t: t, "relu": torch.relu, "relu6": F.relu6, "hardswish": F.hardswish, "silu": F.silu,
           "gelu": F.gelu, "gelu_tanh": lambda t: F.gelu(t, approximate="tanh")}
    if activation not in fns:
        raise ValueError(f"unknown activation {activation!r}; expected one of {[k for k in fns if k]}")
    return fns[activation](y)


def conv_is_depthwise(c: int, oc: int, groups: int) -> bool:
    return groups == c == oc and groups > 1


# --- conv (csrc/kernels/conv) -------------------------------------------------------------------------------


def quantize_activation_u8(x: Tensor) -> tuple[Tensor, float, int, bool]:
    """The dyn path's activation quantization of a block (an image or the batch), the kernels' exact formula.

    mn = min(x, 0), mx = max(x, 0); scale = mx/255 - mn/255 (float32; 1 when below FLT_MIN); inv = 1/scale;
    zp = clamp(rint(-mn * inv), 0, 255); q = clamp(rint(x * inv) + zp, 0, 255), products rounded to float32
    first, rint ties to even. Returns (q uint8, scale, zp, finite).
    """
    x = x.to(torch.float32)
    if not torch.isfinite(x).all():
        return torch.zeros_like(x, dtype=torch.uint8), 0.0, 0, False
    f32 = torch.float32
    mn = torch.minimum(x.min(), torch.zeros((), dtype=f32)) if x.numel() else torch.zeros((), dtype=f32)
    mx = torch.maximum(x.max(), torch.zeros((), dtype=f32)) if x.numel() else torch.zeros((), dtype=f32)
    s = mx / 255.0 - mn / 255.0
    if not bool(s >= torch.finfo(f32).tiny):
        s = torch.ones((), dtype=f32)
    inv = torch.ones((), dtype=f32) / s
    zp = torch.round(-mn * inv).clamp(0, 255)
    q = (torch.round(x * inv) + zp).clamp(0, 255).to(torch.uint8)
    return q, float(s), int(zp), True


def conv2d_per_pixel_i32(x: Tensor, q: Tensor, pad, stride, dilation, groups: int) -> tuple[Tensor, Tensor, Tensor]:
    """The dyn path's integer part with quant="per_pixel": each output pixel's receptive field in one group,
    its kh*kw*c/groups values in (ky, kx, c) order with padding taps 0.0, quantized as one row by
    quantize_rows_u8. pad: (left, right, top, bottom). Returns (acc int64 (n, oh, ow, oc): sum (qa - zp) * q,
    exact; a_scale float32 (n, oh, ow, groups); finite bool (n, oh, ow, groups))."""
    n, c, _, _ = x.shape
    oc, cg, kh, kw = q.shape
    xp = torch.nn.functional.pad(x.to(torch.float32), pad)
    cols = torch.nn.functional.unfold(xp, (kh, kw), dilation=dilation, stride=stride)  # (n, c*kh*kw, L), (c, ky, kx)
    oh = (xp.shape[2] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    ow = (xp.shape[3] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    og = oc // groups
    accs, a_scales, oks = [], [], []
    for g in range(groups):
        rows = cols.view(n, c, kh * kw, oh * ow)[:, g * cg:(g + 1) * cg]  # (n, cg, taps, L)
        rows = rows.permute(0, 3, 2, 1).reshape(-1, kh * kw * cg)  # (n*L, taps*cg): (ky, kx, c) order
        qa, a_scale, zp, finite = quantize_rows_u8(rows)
        wg = q[g * og:(g + 1) * og].permute(0, 2, 3, 1).reshape(og, -1)  # (og, taps*cg)
        acc = dot_u8_s8(qa, wg) - zp.to(torch.int64).unsqueeze(1) * wg.to(torch.int64).sum(1)
        accs.append(acc.view(n, oh, ow, og))
        a_scales.append(a_scale.view(n, oh, ow, 1))
        oks.append(finite.view(n, oh, ow, 1))
    return torch.cat(accs, dim=3), torch.cat(a_scales, dim=3), torch.cat(oks, dim=3)


def _conv2d_per_pixel(x: Tensor, q: Tensor, scales: Tensor, pad, stride, dilation, groups: int) -> Tensor:
    """conv2d_per_pixel_i32 scaled back to float64 (N, OC, OH, OW); a non-finite field gives NaN outputs for
    that pixel and group."""
    acc, a_scale, finite = conv2d_per_pixel_i32(x, q, pad, stride, dilation, groups)
    og = q.shape[0] // groups
    a = a_scale.double().repeat_interleave(og, dim=3)
    y = acc.double() * a * scales.double()
    y[~finite.repeat_interleave(og, dim=3)] = float("nan")
    return y.permute(0, 3, 1, 2)


def conv2d_reference(
    x: Tensor, q: Tensor, scales: Tensor, bias: Optional[Tensor] = None, stride=1, padding=0, dilation=1,
    groups: int = 1, activation: Optional[str] = None, mode: str = "dynamic", quant: str = "per_image",
) -> Tensor:
    """float64 reference of the int8 conv paths (float32 out). Depthwise always takes the weight-only formula
    (the kernels keep its activations in fp32). The integer part of the dyn path is exact in float64."""
    stride, dilation = _conv_pair(stride, "stride"), _conv_pair(dilation, "dilation")
    t, b, l, r = conv_pads4(padding)
    x = x.to(torch.float32)
    c, oc = x.shape[1], q.shape[0]
    wf = q.to(torch.float32) * scales.view(-1, 1, 1, 1)  # float32 product, as the depthwise kernel expands
    kw = dict(stride=stride, dilation=dilation, groups=groups)
    pad = (l, r, t, b)
    if mode == "weight_only" or conv_is_depthwise(c, oc, groups):
        y = torch.nn.functional.conv2d(torch.nn.functional.pad(x.double(), pad), wf.double(), **kw)
    elif quant == "per_pixel":
        y = _conv2d_per_pixel(x, q, scales, pad, stride, dilation, groups)
    else:
        blocks = [x] if quant == "per_tensor" else list(x.split(1))
        outs = []
        for blk in blocks:
            qa, s, zp, ok = quantize_activation_u8(blk)
            acc = torch.nn.functional.conv2d(torch.nn.functional.pad(qa.double() - zp, pad), q.double(), **kw)  # exact: |acc| < 2^53
            yb = acc * (s * scales.double().view(1, -1, 1, 1))
            if not ok:
                yb = torch.full_like(yb, float("nan"))
            outs.append(yb)
        y = torch.cat(outs) if len(outs) > 1 else outs[0]
    if bias is not None:
        y = y + bias.double().view(1, -1, 1, 1)
    return conv_activation(y, activation).to(torch.float32)


def static_range_params(mn: float, mx: float) -> tuple[float, int]:
    """(scale, zero point) of a calibrated range [mn, mx] widened to hold 0: quantize_activation_u8's formula
    (the kernels' u8_range_params) on the two ends."""
    _, s, zp, ok = quantize_activation_u8(torch.tensor([float(mn), float(mx)], dtype=torch.float32))
    if not ok:
        raise ValueError(f"static quantization: the calibrated range [{mn}, {mx}] is not finite")
    return s, zp


def requantize_u8(y: Tensor, scale: float, zp: int, lo: int = 0, hi: int = 255) -> Tensor:
    """The static path's uint8 epilogue (conv.h ConvRequantU8): rint(min(max(y * inv, lo - zp), hi - zp)) + zp
    with inv = 1 / scale and the product rounded to float32, ties to even; a NaN product gives lo."""
    f32 = torch.float32
    inv = torch.ones((), dtype=f32) / torch.tensor(scale, dtype=f32)
    v = y.to(f32) * inv
    v = torch.where(v > lo - zp, v, torch.tensor(float(lo - zp), dtype=f32))
    v = torch.where(v < hi - zp, v, torch.tensor(float(hi - zp), dtype=f32))
    return (torch.round(v) + zp).to(torch.uint8)


def conv_act_qrange(activation: Optional[str], scale: float, zp: int) -> tuple[int, int]:
    """The uint8 clamp a ReLU / ReLU6 folds into on the grid (scale, zp): [q(0), q(6)] (rint is monotone, so
    clamping codes equals quantizing clamped values); [0, 255] for the other activations."""
    if activation not in ("relu", "relu6"):
        return 0, 255
    hi = 255 if activation == "relu" else int(requantize_u8(torch.tensor([6.0]), scale, zp)[0])
    return zp, hi


def conv2d_static_reference(
    x: Tensor, q: Tensor, scales: Tensor, bias: Optional[Tensor] = None, stride=1, padding=0, dilation=1,
    groups: int = 1, activation: Optional[str] = None, in_q: tuple[float, int] = (1.0, 0),
    out_q: Optional[tuple[float, int]] = None,
) -> Tensor:
    """float64 reference of quant="static": x float (quantized with in_q, clamped to [0, 255]) or uint8 codes
    on in_q; depthwise reads the dequantized codes (q - zp) * s, or float x as is (the fp32 path). Output
    float32, or requantize_u8 of it on out_q (uint8). The dense integer part is exact in float64."""
    stride, dilation = _conv_pair(stride, "stride"), _conv_pair(dilation, "dilation")
    t, b, l, r = conv_pads4(padding)
    pad = (l, r, t, b)
    kw = dict(stride=stride, dilation=dilation, groups=groups)
    s_in, zp = in_q
    c, oc = x.shape[1], q.shape[0]
    if conv_is_depthwise(c, oc, groups):
        wf = (q.to(torch.float32) * scales.view(-1, 1, 1, 1)).double()
        xr = (x.double() - zp) * s_in if x.dtype == torch.uint8 else x.to(torch.float32).double()
        y = torch.nn.functional.conv2d(torch.nn.functional.pad(xr, pad), wf, **kw)
    else:
        codes = x if x.dtype == torch.uint8 else requantize_u8(x, s_in, zp)
        acc = torch.nn.functional.conv2d(torch.nn.functional.pad(codes.double() - zp, pad), q.double(), **kw)
        y = acc * (torch.tensor(s_in, dtype=torch.float32).double() * scales.double().view(1, -1, 1, 1))
        if x.dtype != torch.uint8:
            bad = ~torch.isfinite(x.flatten(1)).all(dim=1)
            y[bad] = float("nan")
    if bias is not None:
        y = y + bias.double().view(1, -1, 1, 1)
    y = conv_activation(y, activation).to(torch.float32)
    return y if out_q is None else requantize_u8(y, *out_q)


def conv2d_i32_reference(qa: Tensor, zp: int, q: Tensor, stride=1, padding=0, dilation=1, groups: int = 1) -> Tensor:
    """sum (qa - zp) * q over taps and channels, int64, padding contributing 0: the dyn path's integer part."""
    t, b, l, r = conv_pads4(padding)
    acc = torch.nn.functional.conv2d(torch.nn.functional.pad(qa.double() - zp, (l, r, t, b)), q.double(), stride=_conv_pair(stride, "stride"),
                   dilation=_conv_pair(dilation, "dilation"), groups=groups)
    return acc.round().to(torch.int64)
