"""The low-rank op ``slimnn::lowrank_linear``: both products U(Vx) (+ a sparse residual S x) in one fused
kernel call (see csrc/kernels/lowrank): the r-wide intermediate never leaves the cache and the threads
start once.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from .. import _C
from ..configs import LowRankConfig
from ..formats.packed import q8_info, unpack_q8
from ..math import lowrank
from ..math.quantize import dequantize_int8
from ..runtime.threads import get_num_threads
from .common import blob_shape, prepare_input

_F32 = torch.float32
FACTORS = ("float32", "q8_dynamic", "q8_weight_only")
"""How the factors are stored and multiplied: fp32 matrices, or q8 blobs with W8A8 (dynamic activation
quantization of x and of the intermediate) or weight-only int8 kernels."""


def factors_of(config: LowRankConfig) -> str:
    return "float32" if config.factor_dtype == "float32" else f"q8_{config.int8_mode}"


def check_residual(rowptr: Optional[Tensor], col: Optional[Tensor], val: Optional[Tensor], n: int) -> int:
    have = [t is not None for t in (rowptr, col, val)]
    if not any(have):
        return -1
    if not all(have):
        raise ValueError("lowrank_linear: the sparse residual needs rowptr, col and val together")
    if rowptr.dtype != torch.int64 or rowptr.dim() != 1 or rowptr.numel() != n + 1 or not rowptr.is_contiguous():
        raise ValueError(f"lowrank_linear: residual rowptr must be a contiguous int64 tensor of {n + 1} entries")
    if col.dtype != torch.int32 or val.dtype != _F32 or col.dim() != 1 or val.shape != col.shape:
        raise ValueError("lowrank_linear: residual col (int32) and val (float32) must be 1-D of the same length")
    if not (col.is_contiguous() and val.is_contiguous()):
        raise ValueError("lowrank_linear: residual col and val must be contiguous")
    return col.numel()


def _dims(u: Tensor, v: Tensor, factors: str) -> tuple[int, int]:
    """(N, K) of the factors, checking they fit together."""
    if factors == "float32":
        for name, t in (("u", u), ("v", v)):
            if not isinstance(t, Tensor) or t.dtype != _F32 or t.dim() != 2 or not t.is_contiguous():
                raise ValueError(f"lowrank_linear: {name} must be a contiguous 2-D float32 tensor")
            if t.device.type != "cpu":
                raise ValueError(f"lowrank_linear: {name} must be on the CPU, got {t.device}")
        if u.shape[1] != v.shape[0] or u.shape[1] == 0:
            raise ValueError(
                f"lowrank_linear: u is {tuple(u.shape)} and v is {tuple(v.shape)}; need u: N x r, v: r x K, r >= 1"
            )
        return u.shape[0], v.shape[1]
    if factors not in FACTORS:
        raise ValueError(f"lowrank_linear: factors must be one of {FACTORS}, got {factors!r}")
    iu, iv = q8_info(u), q8_info(v)
    if iu.k != iv.n:
        raise ValueError(f"lowrank_linear: U has {iu.k} inputs but V has {iv.n} outputs (the rank must match)")
    return iu.n, blob_shape(v)[1]


def lowrank_linear_with_kernel(
    x: Tensor,
    u: Tensor,
    v: Tensor,
    bias: Optional[Tensor],
    rowptr: Optional[Tensor],
    col: Optional[Tensor],
    val: Optional[Tensor],
    factors: str,
    out_features: int,
) -> tuple[Tensor, str]:
    """y = (x V^T) U^T + bias (+ x S^T). Returns y (x's dtype) and the kernel that ran."""
    n, k = _dims(u, v, factors)
    if n != out_features:
        raise ValueError(f"lowrank_linear: factors have {n} outputs, out_features is {out_features}")
    if bias is not None and (bias.dtype is not _F32 or bias.shape != (n,) or not bias.is_contiguous()):
        raise ValueError(f"lowrank_linear: bias must be a contiguous float32 tensor of shape ({n},)")
    nnz = check_residual(rowptr, col, val, n)
    x, dt = prepare_input(x, k, "lowrank_linear")
    lead = x.shape[:-1]
    x2 = x.reshape(-1, k)
    if x2.dtype is not _F32:
        x2 = x2.to(_F32)
    m = x2.shape[0]
    if x2.stride(-1) != 1 or (m > 1 and x2.stride(0) < k):
        x2 = x2.contiguous()
    ldx = x2.stride(0) if m > 1 else k
    y = torch.empty((m, n), dtype=_F32)
    res = (0, 0, 0, 0) if nnz < 0 else (rowptr.data_ptr(), col.data_ptr(), val.data_ptr(), nnz)
    b = 0 if bias is None else bias.data_ptr()
    if factors == "float32":
        r = u.shape[1]
        name = _C.lowrank_f32_linear(
            x2.data_ptr(), m, ldx, n, k, r, u.data_ptr(), v.data_ptr(), b, y.data_ptr(), n, get_num_threads(), "",
            *res,
        )
    else:
        name = _C.lowrank_q8_linear(
            factors, x2.data_ptr(), m, ldx, v.data_ptr(), v.numel(), u.data_ptr(), u.numel(), b, y.data_ptr(), n,
            get_num_threads(), *res,
        )
        name = f"lowrank_{factors}[{name}]"
    y = y.view(*lead, n)
    return (y if dt is _F32 else y.to(dt)), name


def lowrank_linear(x, u, v, bias, rowptr, col, val, factors: str, out_features: int) -> Tensor:  # noqa: ANN001
    """:func:`lowrank_linear_with_kernel` without the kernel name."""
    return lowrank_linear_with_kernel(x, u, v, bias, rowptr, col, val, factors, out_features)[0]


@torch.library.custom_op("slimnn::lowrank_linear", mutates_args=())
def _lowrank_linear_op(
    x: Tensor,
    u: Tensor,
    v: Tensor,
    bias: Optional[Tensor],
    rowptr: Optional[Tensor],
    col: Optional[Tensor],
    val: Optional[Tensor],
    factors: str,
    out_features: int,
) -> Tensor:
    return lowrank_linear(x, u, v, bias, rowptr, col, val, factors, out_features)


@_lowrank_linear_op.register_fake
def _(x, u, v, bias, rowptr, col, val, factors, out_features):  # noqa: ANN001, ANN202
    out_dtype = x.dtype if x.dtype in (_F32, torch.bfloat16, torch.float16, torch.float64) else _F32
    return x.new_empty((*x.shape[:-1], out_features), dtype=out_dtype)


def dense_factors(u: Tensor, v: Tensor, factors: str) -> tuple[Tensor, Tensor]:
    """U (N x r) and V (r x K) as float32 matrices (dequantized for q8 factors)."""
    if factors == "float32":
        return u, v
    out = []
    for blob in (u, v):
        q, s, gs = unpack_q8(blob)
        out.append(dequantize_int8(q, s, gs))
    return out[0], out[1]


def _setup_ctx(ctx, inputs, output) -> None:  # noqa: ANN001
    x, u, v, _b, rowptr, col, val, factors, n = inputs
    ctx.save_for_backward(u, v, rowptr, col, val)
    ctx.factors = factors
    ctx.x_dtype = x.dtype
    ctx.k = x.shape[-1]


def _backward(ctx, grad):  # noqa: ANN001
    # dL/dx = grad (U V + S); no gradient for the factors (they are buffers; straight-through for q8).
    u, v, rowptr, col, val = ctx.saved_tensors
    uf, vf = dense_factors(u, v, ctx.factors)
    g = grad.to(_F32)
    gx = (g @ uf) @ vf
    if rowptr is not None:
        s = lowrank.csr_to_dense(rowptr, col, val, uf.shape[0], ctx.k)
        gx = gx + g @ s
    return gx.to(ctx.x_dtype), None, None, None, None, None, None, None, None


_lowrank_linear_op.register_autograd(_backward, setup_context=_setup_ctx)


