"""The q4 op: :func:`q4_linear` (eager entry) and ``torch.ops.slimnn.q4_linear`` (the same computation
registered with ``torch.library``, with a fake implementation and autograd, for ``torch.compile`` and
``torch.export``).
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from .. import _C
from ..formats.packed import unpack_q4
from ..math.quantize import dequantize_int4
from ..runtime.threads import get_num_threads
from .common import check_bias, module_rows, run_linear

KINDS = {"dynamic": "q4_dynamic", "weight_only": "q4_weight_only"}
_F32 = torch.float32
_BF16 = torch.bfloat16


def _in_features(packed: Tensor) -> int:
    # Header field K at byte offset 24 (csrc/formats/header.h); the C++ side re-validates the blob.
    if (
        not isinstance(packed, Tensor) or packed.dtype != torch.uint8 or packed.dim() != 1
        or packed.numel() < 128 or not packed.is_contiguous()
    ):
        raise ValueError("q4_linear: packed weights must be a contiguous 1-D uint8 blob with a slimnn header")
    return int(packed[24:32].view(torch.int64).item())


def q4_linear_with_kernel(
    x: Tensor, packed: Tensor, bias: Optional[Tensor], in_mul: Optional[Tensor], mode: str, out_features: int
) -> tuple[Tensor, str]:
    """y = (x * in_mul) W^T + bias with W a q4 blob; also returns the kernel that ran.

    x: (..., K) float32 or bfloat16 (float16/float64 converted); y has x's dtype. ``in_mul``: None or K
    float32 factors applied to x's columns first (AWQ's activation scaling).
    """
    kind = KINDS.get(mode)
    if kind is None:
        raise ValueError(f"q4_linear: mode must be 'dynamic' or 'weight_only', got {mode!r}")
    k = _in_features(packed)
    check_bias(bias, out_features, "q4_linear")
    if in_mul is not None and (in_mul.dtype is not _F32 or in_mul.shape != (k,) or not in_mul.is_contiguous()):
        raise ValueError(f"q4_linear: in_mul must be None or a contiguous float32 tensor of shape ({k},)")
    in_mul_ptr = 0 if in_mul is None else in_mul.data_ptr()
    return run_linear(_C.q4_linear, kind, x, k, packed, bias, out_features, "q4_linear", before_packed=(in_mul_ptr,))


def q4_linear_module(
    x: Tensor, packed: Tensor, bias: Optional[Tensor], in_mul: Optional[Tensor], kind: str, k: int, n: int
) -> tuple[Tensor, str]:
    """Eager fast path for modules, whose packed / bias / in_mul buffers are known valid (the module checked
    them when it took them): the common case (CPU, float32/bf16, last dim k, rows at one constant stride) is
    checked inline and goes straight to the binding; anything else takes :func:`q4_linear_with_kernel`.
    ``kind`` is the binding's word ("q4_dynamic" / "q4_weight_only"). Same contract as q8's
    ``q8_linear_module``: no header read (the module knows k and n), no reshape, one binding call."""
    rows = module_rows(x, k)
    if rows is not None:
        m, ldx = rows
        dt = x.dtype
        y = torch.empty((*x.shape[:-1], n), dtype=_F32)
        name = _C.q4_linear(
            kind, x.data_ptr(), dt is _BF16, m, ldx, 0 if in_mul is None else in_mul.data_ptr(),
            packed.data_ptr(), packed.numel(), 0 if bias is None else bias.data_ptr(), y.data_ptr(), n,
            get_num_threads(),
        )
        return (y if dt is _F32 else y.to(dt)), name
    return q4_linear_with_kernel(x, packed, bias, in_mul, _MODES[kind], n)


_MODES = {v: k for k, v in KINDS.items()}


def q4_linear(
    x: Tensor, packed: Tensor, bias: Optional[Tensor], in_mul: Optional[Tensor], mode: str, out_features: int
) -> Tensor:
    """:func:`q4_linear_with_kernel` without the kernel name."""
    return q4_linear_with_kernel(x, packed, bias, in_mul, mode, out_features)[0]


@torch.library.custom_op("slimnn::q4_linear", mutates_args=())
def _q4_linear_op(
    x: Tensor, packed: Tensor, bias: Optional[Tensor], in_mul: Optional[Tensor], mode: str, out_features: int
) -> Tensor:
    return q4_linear(x, packed, bias, in_mul, mode, out_features)


@_q4_linear_op.register_fake
def _(x: Tensor, packed: Tensor, bias: Optional[Tensor], in_mul: Optional[Tensor], mode: str, out_features: int):
    out_dtype = x.dtype if x.dtype in (_F32, _BF16, torch.float16, torch.float64) else _F32
    return x.new_empty((*x.shape[:-1], out_features), dtype=out_dtype)


def _setup_ctx(ctx, inputs, output) -> None:  # noqa: ANN001
    x, packed, _bias, in_mul, _mode, _n = inputs
    ctx.save_for_backward(packed, in_mul)
    ctx.x_dtype = x.dtype


def _backward(ctx, grad):  # noqa: ANN001
    # Straight-through: the gradient w.r.t. x uses the dequantized weights (no gradient for the blob).
    packed, in_mul = ctx.saved_tensors
    codes, scales, zeros, gs = unpack_q4(packed)
    w = dequantize_int4(codes, scales, zeros, gs)
    gx = grad.to(_F32) @ w
    if in_mul is not None:
        gx = gx * in_mul
    return gx.to(ctx.x_dtype), None, None, None, None, None


_q4_linear_op.register_autograd(_backward, setup_context=_setup_ctx)


