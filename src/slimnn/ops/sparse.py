"""Torch-facing sparse ops over the private extension.

``sparse_linear`` is the eager entry (checks inputs, allocates the output, calls ``_C`` with the GIL
released). ``torch.ops.slimnn.sparse_linear`` is the same computation registered with ``torch.library``
(fake implementation for tracing, autograd for the input), which ``torch.compile`` and ``torch.export``
trace; modules call the eager entry outside tracing to skip the dispatcher's Python overhead.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from .. import _C
from ..runtime.threads import get_num_threads
from .common import check_input
from ..formats.sparse import dense_weight

_F32 = torch.float32


def _in_features(packed: Tensor, op: str) -> int:
    # Header field K at byte offset 24 (csrc/formats/header.h); the C++ side re-validates the blob.
    if (
        not isinstance(packed, Tensor) or packed.dtype != torch.uint8 or packed.dim() != 1 or packed.numel() < 128
        or not packed.is_contiguous() or packed.device.type != "cpu"
    ):
        raise ValueError(f"{op}: packed weights must be a contiguous 1-D uint8 CPU blob with a slimnn header")
    return int(packed[24:32].view(torch.int64).item())


def sparse_linear_with_kernel(
    x: Tensor, packed: Tensor, bias: Optional[Tensor], out_features: int, in_features: Optional[int] = None,
    kernel: str = "",
) -> tuple[Tensor, str]:
    """y = x W^T + bias with W a sparse blob; also returns the kernel that ran. ``in_features`` saves reading
    the blob's header here (the C++ side checks the blob against both sizes); ``kernel`` forces a kernel by
    name (tests). x: (..., K) float32 (bf16/fp16/fp64 converted); y has x's dtype.
    """
    if in_features is None or not isinstance(packed, Tensor) or packed.dtype != torch.uint8 or packed.dim() != 1:
        in_features = _in_features(packed, "sparse_linear")
    elif not packed.is_contiguous() or packed.device.type != "cpu":
        raise ValueError("sparse_linear: packed weights must be a contiguous 1-D uint8 CPU blob with a slimnn header")
    k = in_features
    if bias is not None and (
        not isinstance(bias, Tensor) or bias.dtype is not _F32 or bias.shape != (out_features,)
        or not bias.is_contiguous() or bias.device.type != "cpu"
    ):
        raise ValueError(f"sparse_linear: bias must be a contiguous float32 CPU tensor of shape ({out_features},)")
    x = check_input(x, k, "sparse_linear")
    dt = x.dtype
    lead = x.shape[:-1]
    x2 = x.reshape(-1, k)
    if x2.dtype is not _F32:
        x2 = x2.to(_F32)
    m = x2.shape[0]
    if x2.stride(-1) != 1 or (m > 1 and x2.stride(0) < k):
        x2 = x2.contiguous()
    y = torch.empty((m, out_features), dtype=_F32)
    name = _C.sparse_linear(
        x2.data_ptr(), m, k, x2.stride(0) if m > 1 else k, packed.data_ptr(), packed.numel(),
        0 if bias is None else bias.data_ptr(), y.data_ptr(), out_features, out_features, get_num_threads(), kernel,
    )
    y = y.view(*lead, out_features)
    return (y if dt is _F32 else y.to(dt)), name


def sparse_linear_trusted(
    x: Tensor, packed: Tensor, bias: Optional[Tensor], out_features: int, in_features: int
) -> tuple[Tensor, str]:
    """:func:`sparse_linear_with_kernel` for callers that own ``packed`` and ``bias`` and checked them once
    (SparseLinear): only the input is checked here, which keeps a small layer's call to a few microseconds.
    The C++ side still validates the blob's header and row pointers against the sizes.
    """
    if type(x) is Tensor and x.dtype is _F32 and x.is_cpu and x.is_contiguous() and x.shape[-1:] == (in_features,):
        if x.dim() == 2:
            y = torch.empty(x.shape[0], out_features, dtype=_F32)
        else:
            y = torch.empty(*x.shape[:-1], out_features, dtype=_F32)
        name = _C.sparse_linear(
            x.data_ptr(), x.numel() // in_features if in_features else 0, in_features, in_features,
            packed.data_ptr(), packed.numel(), 0 if bias is None else bias.data_ptr(), y.data_ptr(), out_features,
            out_features, get_num_threads(), "",
        )
        return y, name
    return sparse_linear_with_kernel(x, packed, bias, out_features, in_features)


def sparse_linear(x: Tensor, packed: Tensor, bias: Optional[Tensor], out_features: int) -> Tensor:
    """y = x W^T + bias with W a sparse blob (see :mod:`slimnn.sparse_formats`)."""
    return sparse_linear_with_kernel(x, packed, bias, out_features)[0]


@torch.library.custom_op("slimnn::sparse_linear", mutates_args=())
def _sparse_linear_op(x: Tensor, packed: Tensor, bias: Optional[Tensor], out_features: int) -> Tensor:
    return sparse_linear(x, packed, bias, out_features)


@_sparse_linear_op.register_fake
def _(x: Tensor, packed: Tensor, bias: Optional[Tensor], out_features: int) -> Tensor:
    return x.new_empty((*x.shape[:-1], out_features))


@torch.library.custom_op("slimnn::sparse_to_dense", mutates_args=())
def _sparse_to_dense_op(packed: Tensor, out_features: int, in_features: int) -> Tensor:
    """The float32 weights (out_features x in_features) a sparse blob stands for."""
    w = dense_weight(packed)
    if w.shape != (out_features, in_features):
        raise ValueError(f"sparse_to_dense: blob is {w.shape[1]}->{w.shape[0]}, expected {in_features}->{out_features}")
    return w


@_sparse_to_dense_op.register_fake
def _(packed: Tensor, out_features: int, in_features: int) -> Tensor:
    return packed.new_empty((out_features, in_features), dtype=_F32)


def _setup_ctx(ctx, inputs, output) -> None:  # noqa: ANN001
    x, packed, _bias, n = inputs
    ctx.save_for_backward(packed)
    ctx.x_dtype = x.dtype
    ctx.shape = (n, x.shape[-1])


def _backward(ctx, grad):  # noqa: ANN001
    # The gradient w.r.t. x uses the stored (pruned, possibly int8) weights; none for the blob.
    (packed,) = ctx.saved_tensors
    w = torch.ops.slimnn.sparse_to_dense(packed, *ctx.shape)
    gx = grad.to(_F32) @ w
    return gx.to(ctx.x_dtype), None, None, None


_sparse_linear_op.register_autograd(_backward, setup_context=_setup_ctx)
