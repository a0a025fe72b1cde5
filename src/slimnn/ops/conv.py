"""Int8 convolution and embedding lookups: the eager ops over ``_C`` (kernels/conv, kernels/embed).

The float references they are tested against are in :mod:`slimnn.math.reference` (``conv2d_reference``).

Layouts: activations NCHW logical shape, channels-last (NHWC) storage preferred; a channels-first input is
converted once per call (``x.contiguous(memory_format=torch.channels_last)``), and the output is returned
channels-last. Weights: int8 (oc, c/groups, kh, kw) with one fp32 scale per output channel.

Paths (chosen from the shape, see csrc/kernels/conv/conv.h):
- dense / pointwise (any groups except depthwise): q8 blobs, one per group, N = oc/groups by
  K = kh*kw*c/groups in (ky, kx, c) order, run as an implicit GEMM on the qgemm micro-kernels;
  ``mode="dynamic"`` quantizes activations to uint8 (per image, per tensor or per pixel: each output
  pixel's receptive field on its own, measured per call),
  ``"weight_only"`` keeps them fp32.
- depthwise (groups == c == oc): fp32 activations times the int8 weights (both modes).
"""

from __future__ import annotations

import functools
from typing import Optional, Sequence

import torch
from torch import Tensor

from .. import _C
from ..formats.packed import pack_q8
from ..math.reference import conv_is_depthwise as is_depthwise
from ..math.reference import conv_pads4 as pads4
from ..runtime.threads import get_num_threads

# Activation codes of the conv kernels (csrc/kernels/act/act.h 0-4, csrc/kernels/conv/conv.h 5-6).
ACTIVATIONS = {None: 0, "relu": 1, "gelu": 2, "gelu_tanh": 3, "silu": 4, "relu6": 5, "hardswish": 6}
QUANT = {"per_tensor": 0, "per_image": 1, "per_pixel": 2}
MODES = ("dynamic", "weight_only")


def as_pair(v: int | Sequence[int], name: str) -> tuple[int, int]:
    t = (int(v), int(v)) if isinstance(v, int) else tuple(int(e) for e in v)
    if len(t) != 2:
        raise ValueError(f"conv: {name} must be an int or a pair, got {v!r}")
    low = 0 if name == "padding" else 1
    if min(t) < low:
        raise ValueError(f"conv: {name} must be >= {low}, got {v!r}")
    return t  # type: ignore[return-value]


def pack_conv_weight(q: Tensor, scales: Tensor, groups: int) -> tuple[Tensor, int]:
    """int8 (oc, c/g, kh, kw) and fp32 (oc,) scales -> (one uint8 tensor holding ``groups`` q8 blobs, bytes each)."""
    if q.dtype != torch.int8 or q.dim() != 4:
        raise ValueError(f"conv weights must be a 4-D int8 tensor, got {q.dtype} {tuple(q.shape)}")
    oc = q.shape[0]
    if groups < 1 or oc % groups:
        raise ValueError(f"conv: groups={groups} must divide out_channels={oc}")
    og = oc // groups
    rows = q.permute(0, 2, 3, 1).reshape(oc, -1)  # (ky, kx, c) order along K
    blobs = [pack_q8(rows[g * og:(g + 1) * og].contiguous(), scales[g * og:(g + 1) * og].reshape(1, og)) for g in range(groups)]
    return torch.cat(blobs), blobs[0].numel()


def _dims(x: Tensor, oc: int, kernel: tuple[int, int], stride, pads, dilation, groups: int) -> list[int]:
    n, c, h, w = x.shape
    return [n, h, w, c, oc, *kernel, *stride, *pads, *dilation, groups]


def out_size(h: int, w: int, kernel, stride, padding, dilation) -> tuple[int, int]:
    t, b, l, r = pads4(padding)
    return (
        _C.conv_out_size(h, kernel[0], stride[0], t + b, dilation[0]),
        _C.conv_out_size(w, kernel[1], stride[1], l + r, dilation[1]),
    )


def _prepare(x: Tensor, c: int, op: str) -> Tensor:
    if not isinstance(x, Tensor):
        raise TypeError(f"{op}: input must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 4 or x.shape[1] != c:
        raise ValueError(f"{op}: input must be (N, {c}, H, W), got {tuple(x.shape)}")
    if x.device.type != "cpu":
        raise ValueError(f"{op}: input is on {x.device}; slimnn kernels run on the CPU")
    if not x.is_floating_point():
        raise ValueError(f"{op}: input must be floating point, got {x.dtype}")
    if x.shape[2] == 0 or x.shape[3] == 0:
        raise ValueError(f"{op}: input has an empty spatial size {tuple(x.shape[2:])}")
    return x.to(torch.float32).contiguous(memory_format=torch.channels_last)


def _geometry_uncached(kernel_size, stride, padding, dilation) -> tuple[tuple, tuple, tuple, tuple]:
    kernel, stride, dilation = (as_pair(v, nm) for v, nm in
                                ((kernel_size, "kernel_size"), (stride, "stride"), (dilation, "dilation")))
    return kernel, stride, pads4(padding), dilation


# A module's geometry is the same tuples on every call: normalizing them once saves most of the Python
# overhead of a small conv (a 7x7 layer's kernel takes tens of microseconds). Errors are not cached.
_geometry_cached = functools.lru_cache(maxsize=1024)(_geometry_uncached)


def _geometry(kernel_size, stride, padding, dilation) -> tuple[tuple, tuple, tuple, tuple]:
    """The conv arguments as (kh, kw), (sh, sw), four pads (t, b, l, r), (dh, dw); ValueError if malformed."""
    try:
        return _geometry_cached(kernel_size, stride, padding, dilation)
    except TypeError:  # unhashable arguments (lists, from the traced ops): normalize them every time
        return _geometry_uncached(kernel_size, stride, padding, dilation)


def _out_len(n: int, k: int, s: int, pads: int, d: int) -> int:
    span = n + pads - d * (k - 1) - 1  # conv_out_size of csrc/kernels/conv (tests check they agree)
    return 0 if span < 0 else span // s + 1


def _conv_io(x: Tensor, c: int, oc: int, kernel, stride, padding, dilation, bias: Optional[Tensor],
             op: str) -> tuple[Tensor, Tensor, Optional[Tensor]]:
    """What every conv op checks and allocates alike: x as channels-last fp32 (C = ``c``), the empty
    channels-last output (N, ``oc``, OH, OW) (ValueError if the kernel does not fit), the checked bias."""
    x = _prepare(x, c, op)
    t, b, l, r = padding  # already four pads (_geometry)
    oh = _out_len(x.shape[2], kernel[0], stride[0], t + b, dilation[0])
    ow = _out_len(x.shape[3], kernel[1], stride[1], l + r, dilation[1])
    if oh <= 0 or ow <= 0:
        raise ValueError(f"{op}: the kernel {kernel} (dilation {dilation}) does not fit the padded input {tuple(x.shape[2:])}")
    y = torch.empty((x.shape[0], oc, oh, ow), dtype=torch.float32, memory_format=torch.channels_last)
    return x, y, _check_bias(bias, oc, op)


def conv2d_q8(
    x: Tensor, packed: Tensor, group_bytes: int, out_channels: int, kernel_size, stride=1, padding=0, dilation=1,
    groups: int = 1, bias: Optional[Tensor] = None, activation: Optional[str] = None, mode: str = "dynamic",
    quant: str = "per_image",
) -> tuple[Tensor, str]:
    """Dense/pointwise int8 conv. x: (N, C, H, W) float; returns (y channels-last fp32, kernel name)."""
    if mode not in MODES:
        raise ValueError(f"conv2d_q8: mode must be one of {MODES}, got {mode!r}")
    if quant not in QUANT:
        raise ValueError(f"conv2d_q8: quant must be one of {tuple(QUANT)}, got {quant!r}")
    if activation not in ACTIVATIONS:
        raise ValueError(f"conv2d_q8: unknown activation {activation!r}")
    kernel, stride, padding, dilation = _geometry(kernel_size, stride, padding, dilation)
    if packed.dtype != torch.uint8 or packed.dim() != 1 or not packed.is_contiguous():
        raise ValueError("conv2d_q8: packed weights must be a contiguous 1-D uint8 tensor")
    if group_bytes <= 0 or packed.numel() != group_bytes * groups:
        raise ValueError(f"conv2d_q8: packed weights hold {packed.numel()} bytes, expected {groups} x {group_bytes}")
    c = x.shape[1] if isinstance(x, Tensor) and x.dim() == 4 else -1
    x, y, b = _conv_io(x, c, out_channels, kernel, stride, padding, dilation, bias, "conv2d_q8")
    name = _C.conv2d_q8(
        "q8_dyn" if mode == "dynamic" else "q8_wo", x.data_ptr(), x.numel(),
        _dims(x, out_channels, kernel, stride, padding, dilation, groups), packed.data_ptr(), group_bytes,
        0 if b is None else b.data_ptr(), ACTIVATIONS[activation], QUANT[quant], y.data_ptr(), y.numel(),
        get_num_threads(),
    )
    return y, name


def conv2d_dw(
    x: Tensor, q: Tensor, scales: Tensor, kernel_size, stride=1, padding=0, dilation=1, bias: Optional[Tensor] = None,
    activation: Optional[str] = None,
) -> tuple[Tensor, str]:
    """Depthwise conv with int8 weights q (C, kh*kw) and fp32 scales (C,). Returns (y channels-last, kernel)."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"conv2d_dw: unknown activation {activation!r}")
    kernel, stride, padding, dilation = _geometry(kernel_size, stride, padding, dilation)
    c = q.shape[0]
    if q.dtype != torch.int8 or q.shape != (c, kernel[0] * kernel[1]) or not q.is_contiguous():
        raise ValueError(f"conv2d_dw: weights must be contiguous int8 (C, kh*kw), got {q.dtype} {tuple(q.shape)}")
    if scales.dtype != torch.float32 or scales.shape != (c,) or not scales.is_contiguous():
        raise ValueError("conv2d_dw: scales must be contiguous float32 (C,)")
    x, y, b = _conv_io(x, c, c, kernel, stride, padding, dilation, bias, "conv2d_dw")
    name = _C.conv2d_dw(
        x.data_ptr(), x.numel(), _dims(x, c, kernel, stride, padding, dilation, c), q.data_ptr(), q.numel(),
        scales.data_ptr(), 0 if b is None else b.data_ptr(), ACTIVATIONS[activation], y.data_ptr(), y.numel(),
        get_num_threads(),
    )
    return y, name


def _check_bias(bias: Optional[Tensor], n: int, op: str) -> Optional[Tensor]:
    if bias is None:
        return None
    if bias.dtype != torch.float32 or bias.shape != (n,) or not bias.is_contiguous():
        raise ValueError(f"{op}: bias must be a contiguous float32 tensor of shape ({n},), got {bias.dtype} {tuple(bias.shape)}")
    return bias


def embed_gather(fmt: str, packed: Tensor, ids: Tensor, rows: int, width: int) -> Tensor:
    """Rows ``ids`` (any shape, integers) of the q8/q4 blob's weight matrix, dequantized: (*ids.shape, width)."""
    flat = ids.reshape(-1).to(torch.int64).contiguous()
    out = torch.empty(flat.numel(), width)
    bad = _C.embed_gather(fmt, packed.data_ptr(), packed.numel(), flat.data_ptr(), flat.numel(), out.data_ptr(),
                          out.numel(), get_num_threads())
    if bad >= 0:
        raise IndexError(f"embedding: id {int(flat[bad])} is out of range [0, {rows})")
    return out.view(*ids.shape, width)


# --- torch.library ops: what torch.compile and torch.export trace -----------------------------------------
# The eager functions above read raw pointers, which tracing cannot see. These ops are the same computations
# (the eager functions are their implementations) with fake implementations giving the output's shape and
# its channels-last layout, so a compiled model keeps each conv as one opaque call instead of a graph break.


def _fake_out(x: Tensor, oc: int, kernel: Sequence[int], stride: Sequence[int], padding: Sequence[int],
              dilation: Sequence[int]) -> Tensor:
    t, b, l, r = padding
    oh = (x.shape[2] + t + b - dilation[0] * (kernel[0] - 1) - 1) // stride[0] + 1
    ow = (x.shape[3] + l + r - dilation[1] * (kernel[1] - 1) - 1) // stride[1] + 1
    return x.new_empty((x.shape[0], oc, oh, ow), dtype=torch.float32).contiguous(memory_format=torch.channels_last)


@torch.library.custom_op("slimnn::conv2d_q8", mutates_args=())
def _conv2d_q8_op(x: Tensor, packed: Tensor, group_bytes: int, out_channels: int, kernel: list[int],
                  stride: list[int], padding: list[int], dilation: list[int], groups: int, bias: Optional[Tensor],
                  activation: Optional[str], mode: str, quant: str) -> Tensor:
    return conv2d_q8(x, packed, group_bytes, out_channels, kernel, stride, padding, dilation, groups, bias,
                     activation, mode, quant)[0]


@_conv2d_q8_op.register_fake
def _(x, packed, group_bytes, out_channels, kernel, stride, padding, dilation, groups, bias, activation, mode,  # noqa: ANN001
      quant):
    return _fake_out(x, out_channels, kernel, stride, padding, dilation)


@torch.library.custom_op("slimnn::conv2d_dw", mutates_args=())
def _conv2d_dw_op(x: Tensor, q: Tensor, scales: Tensor, kernel: list[int], stride: list[int], padding: list[int],
                  dilation: list[int], bias: Optional[Tensor], activation: Optional[str]) -> Tensor:
    return conv2d_dw(x, q, scales, kernel, stride, padding, dilation, bias, activation)[0]


@_conv2d_dw_op.register_fake
def _(x, q, scales, kernel, stride, padding, dilation, bias, activation):  # noqa: ANN001
    return _fake_out(x, q.shape[0], kernel, stride, padding, dilation)
