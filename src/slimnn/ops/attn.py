"""Fused scaled-dot-product attention on the CPU: ``slimnn.ops.attention`` and ``torch.ops.slimnn.attention``.

    out = softmax(q @ k.transpose(-2, -1) * scale + mask) @ v        per (batch, head)

The kernel (csrc/kernels/attention) streams the keys in blocks with an online softmax, reads q/k/v through
their strides (the ``.view(...).transpose(1, 2)`` layout transformers passes needs no copy) and writes the
output as [B, Lq, H, Dv] rows, returned as the [B, H, Lq, Dv] view torch's SDPA would return: so
``out.transpose(1, 2)`` is contiguous for free, which is what transformers' attention functions return.

Semantics follow ``torch.nn.functional.scaled_dot_product_attention`` on the CPU (torch 2.13):
  - ``attn_mask``: boolean (True = attend) or additive float, broadcastable to [B, Hq, Lq, Lk];
  - ``is_causal``: top-left aligned (query i attends keys j <= i); unlike torch, it may be combined with a mask;
  - a row whose keys are all masked (-inf scores) gives zeros; Lk == 0 gives zeros;
  - grouped-query attention (Hq a multiple of Hkv) is accepted directly (torch needs ``enable_gqa=True``).
Inputs are float32 (bfloat16/float16 are computed in float32 and returned in their dtype). Autograd: when
q, k or v requires grad and grad mode is on, the call goes to torch's SDPA (same semantics, differentiable).
"""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from .. import _C
from ..runtime.threads import get_num_threads
from .common import check_cpu_tensor

_F32 = torch.float32
_FLOATS = (torch.float32, torch.bfloat16, torch.float16)


def _check_qkv(q: Tensor, k: Tensor, v: Tensor) -> None:
    for name, t in (("q", q), ("k", k), ("v", v)):
        check_cpu_tensor(t, "attention", name)
        if t.dtype not in _FLOATS:
            raise ValueError(f"attention: {name} dtype must be float32, bfloat16 or float16, got {t.dtype}")
        if t.dim() != 4:
            raise ValueError(f"attention: {name} must be 4-D [batch, heads, length, dim], got shape {tuple(t.shape)}")
    if not (q.dtype == k.dtype == v.dtype):
        raise ValueError(f"attention: q, k, v must share a dtype, got {q.dtype}, {k.dtype}, {v.dtype}")
    b, hq, _, d = q.shape
    if k.shape[0] != b or v.shape[0] != b:
        raise ValueError(f"attention: batch sizes differ: q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}")
    if k.shape[1] != v.shape[1] or k.shape[2] != v.shape[2]:
        raise ValueError(f"attention: k {tuple(k.shape)} and v {tuple(v.shape)} must agree in heads and length")
    if k.shape[3] != d:
        raise ValueError(f"attention: q and k head dims differ: {d} vs {k.shape[3]}")
    hkv = k.shape[1]
    if (hkv == 0 and hq != 0) or (hkv > 0 and hq % hkv != 0):
        raise ValueError(f"attention: query heads ({hq}) must be a multiple of key/value heads ({hkv})")


def _compact(m: Tensor) -> Tensor:
    """The storage a broadcast (stride-0) view really holds: stride-0 dims become size 1."""
    size = [1 if st == 0 else s for s, st in zip(m.shape, m.stride())]
    return m.as_strided(size, m.stride())


def _prepare_mask(mask: Tensor, shape: tuple[int, int, int, int]) -> tuple[int, Tensor]:
    if not isinstance(mask, Tensor):
        raise TypeError(f"attention: attn_mask must be a torch.Tensor or None, got {type(mask).__name__}")
    if mask.device.type != "cpu":
        raise ValueError(f"attention: attn_mask is on {mask.device}; slimnn kernels run on the CPU")
    if mask.dtype == torch.bool:
        kind = 1
    elif mask.dtype.is_floating_point:
        kind = 2
    else:
        raise ValueError(f"attention: attn_mask must be bool (True = attend) or float (additive), got {mask.dtype}")
    ms = mask.shape
    if mask.dim() > 4:
        raise ValueError(f"attention: attn_mask has {mask.dim()} dims, at most 4 broadcast to {shape}")
    if not (mask.dim() == 4 and all(a == b or a == 1 for a, b in zip(ms, shape))):  # fast path: HF's 4-D masks
        try:
            ok = torch.broadcast_shapes(tuple(ms), shape) == torch.Size(shape)
        except RuntimeError:
            ok = False
        if not ok:
            raise ValueError(f"attention: attn_mask of shape {tuple(ms)} does not broadcast to {shape} [B, Hq, Lq, Lk]")
    m = mask.expand(shape)
    if kind == 2 and m.dtype != _F32:
        m = _compact(m).to(_F32).expand(shape)
    if shape[3] > 1 and m.stride(3) != 1:
        m = _compact(m).contiguous().expand(shape)
    return kind, m


def _sdpa(q: Tensor, k: Tensor, v: Tensor, attn_mask: Optional[Tensor], scale: Optional[float], is_causal: bool) -> Tensor:
    """torch's SDPA with our semantics (GQA accepted, causal combined with a mask)."""
    if is_causal and attn_mask is not None:
        keep = torch.ones(q.shape[2], k.shape[2], dtype=torch.bool).tril()
        attn_mask = attn_mask & keep if attn_mask.dtype == torch.bool else attn_mask.masked_fill(~keep, -math.inf)
        is_causal = False
    return F.scaled_dot_product_attention(
        q, k, v, attn_mask=attn_mask, scale=scale, is_causal=is_causal, enable_gqa=q.shape[1] != k.shape[1]
    )


def attention_with_kernel(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    attn_mask: Optional[Tensor] = None,
    scale: Optional[float] = None,
    is_causal: bool = False,
    kernel: str = "",
) -> tuple[Tensor, str]:
    """:func:`attention` (eager, no autograd), also returning the kernel that ran. ``kernel`` forces one by name."""
    _check_qkv(q, k, v)
    b, hq, lq, d = q.shape
    hkv, lk, dv = k.shape[1], k.shape[2], v.shape[3]
    if scale is None:
        scale = 1.0 / math.sqrt(d) if d > 0 else 1.0
    elif isinstance(scale, bool) or not isinstance(scale, (int, float)):
        raise ValueError(f"attention: scale must be a float or None, got {scale!r}")
    dt = q.dtype
    if dt != _F32:
        q, k, v = q.to(_F32), k.to(_F32), v.to(_F32)
    # The kernel reads rows through the strides of the first three dims; the last one must be contiguous.
    if d > 1:
        q = q if q.stride(3) == 1 else q.contiguous()
        k = k if k.stride(3) == 1 else k.contiguous()
    if dv > 1:
        v = v if v.stride(3) == 1 else v.contiguous()
    out = torch.empty((b, lq, hq, dv), dtype=_F32)
    o = out.transpose(1, 2)
    kind, mptr, mst = 0, 0, [0, 0, 0]
    if attn_mask is not None:
        kind, m = _prepare_mask(attn_mask, (b, hq, lq, lk))
        mptr, mst = m.data_ptr(), list(m.stride()[:3])
    if out.numel() == 0 or lk == 0:  # nothing to compute; softmax over no keys gives zeros (as torch)
        out.zero_()
        return (o if dt == _F32 else o.to(dt)), _C.attention_select_kernel() if not kernel else kernel
    name = _C.attention_f32(
        [b, hq, hkv, lq, lk, d, dv],
        q.data_ptr(), list(q.stride()[:3]),
        k.data_ptr(), list(k.stride()[:3]),
        v.data_ptr(), list(v.stride()[:3]),
        o.data_ptr(), list(o.stride()[:3]),
        kind, mptr, mst, bool(is_causal), float(scale), get_num_threads(), kernel,
    )
    return (o if dt == _F32 else o.to(dt)), name


def attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    attn_mask: Optional[Tensor] = None,
    scale: Optional[float] = None,
    is_causal: bool = False,
) -> Tensor:
    """softmax(q k^T * scale + attn_mask) v, as ``F.scaled_dot_product_attention`` (see the module docstring).

    q: [B, Hq, Lq, D], k: [B, Hkv, Lk, D], v: [B, Hkv, Lk, Dv], any strides; returns [B, Hq, Lq, Dv] (a view of
    a contiguous [B, Lq, Hq, Dv] buffer). ``scale`` defaults to 1/sqrt(D). Raises ValueError on bad input.
    Under torch.compile/export this is ``torch.ops.slimnn.attention``; with autograd it is torch's SDPA.
    """
    if torch.is_grad_enabled() and (q.requires_grad or k.requires_grad or v.requires_grad):
        _check_qkv(q, k, v)
        return _sdpa(q, k, v, attn_mask, scale, is_causal)
    if torch.compiler.is_compiling() or torch.compiler.is_exporting():
        return torch.ops.slimnn.attention(q, k, v, attn_mask, scale, is_causal)
    return attention_with_kernel(q, k, v, attn_mask, scale, is_causal)[0]


@torch.library.custom_op("slimnn::attention", mutates_args=())
def _attention_op(
    q: Tensor, k: Tensor, v: Tensor, attn_mask: Optional[Tensor], scale: Optional[float], is_causal: bool
) -> Tensor:
    # A custom op's output may not alias its inputs; ours never does (fresh buffer, possibly dtype-converted).
    return attention_with_kernel(q, k, v, attn_mask, scale, is_causal)[0]


@_attention_op.register_fake
def _(q: Tensor, k: Tensor, v: Tensor, attn_mask: Optional[Tensor], scale: Optional[float], is_causal: bool) -> Tensor:
    _check_qkv(q, k, v)
    b, hq, lq, _ = q.shape
    return q.new_empty((b, lq, hq, v.shape[3])).transpose(1, 2)


def _setup_ctx(ctx, inputs, output) -> None:  # noqa: ANN001
    q, k, v, attn_mask, scale, is_causal = inputs
    ctx.save_for_backward(q, k, v)
    ctx.attn_mask, ctx.scale, ctx.is_causal = attn_mask, scale, is_causal


def _backward(ctx, grad):  # noqa: ANN001
    # Recompute through torch's differentiable SDPA (same function): gradients for q, k, v.
    q, k, v = ctx.saved_tensors
    with torch.enable_grad():
        qq, kk, vv = (t.detach().requires_grad_(True) for t in (q, k, v))
        out = _sdpa(qq, kk, vv, ctx.attn_mask, ctx.scale, ctx.is_causal)
        gq, gk, gv = torch.autograd.grad(out, (qq, kk, vv), grad)
    return gq, gk, gv, None, None, None


_attention_op.register_autograd(_backward, setup_context=_setup_ctx)


def attention_kernels() -> list[dict]:
    """Every attention kernel of this build, best first."""
    return list(_C.attention_kernels())
