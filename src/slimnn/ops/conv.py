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
- depthwise (groups == c == oc): fp32 activations times the int8 weights (both modes), prepared once per
  module as fp32 (:func:`prepare_dw`).
- ``quant="static"`` (:func:`conv2d_q8_static`, :func:`conv2d_dw_static`): the input's (scale, zero point)
  fixed at calibration; the input may be fp32 (quantized with them) or uint8 codes on that grid, and the
  output fp32 or uint8 on the next conv's grid (``out_q``), so a chain of convs passes uint8 tensors.
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
STATIC = "static"
QUANTS = (*QUANT, STATIC)  # every Conv2dInt8.quant; "static" runs conv2d_q8_static / conv2d_dw_static
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


def _prepare_static(x: Tensor, c: int, op: str) -> Tensor:
    """_prepare, but uint8 codes (a static conv's input on its own grid) pass as uint8."""
    if isinstance(x, Tensor) and x.dtype == torch.uint8:
        if x.dim() != 4 or x.shape[1] != c:
            raise ValueError(f"{op}: input must be (N, {c}, H, W), got {tuple(x.shape)}")
        if x.device.type != "cpu":
            raise ValueError(f"{op}: input is on {x.device}; slimnn kernels run on the CPU")
        if x.shape[2] == 0 or x.shape[3] == 0:
            raise ValueError(f"{op}: input has an empty spatial size {tuple(x.shape[2:])}")
        return x.contiguous(memory_format=torch.channels_last)
    return _prepare(x, c, op)


def check_qparams(q, what: str, op: str) -> tuple[float, int]:  # noqa: ANN001
    """(scale, zero point) as (float, int): scale finite and > 0, zero point an integer in [0, 255]."""
    try:
        scale, zp = q
    except (TypeError, ValueError):
        raise ValueError(f"{op}: {what} quantization must be a (scale, zero point) pair, got {q!r}") from None
    if isinstance(zp, bool) or not isinstance(zp, int) or not 0 <= zp <= 255:
        raise ValueError(f"{op}: {what} zero point must be an int in [0, 255], got {zp!r}")
    scale = float(scale)
    if not (scale > 0.0 and scale < float("inf") and 1.0 / scale < float("inf")):
        raise ValueError(f"{op}: {what} scale must be finite and > 0, got {scale!r}")
    return scale, int(zp)


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
             op: str, out_dtype: torch.dtype = torch.float32, u8_in: bool = False) -> tuple[Tensor, Tensor, Optional[Tensor]]:
    """What every conv op checks and allocates alike: x as channels-last fp32 (C = ``c``; uint8 kept when
    ``u8_in``), the empty channels-last output (N, ``oc``, OH, OW) of ``out_dtype`` (ValueError if the kernel
    does not fit), the checked bias."""
    x = _prepare_static(x, c, op) if u8_in else _prepare(x, c, op)
    t, b, l, r = padding  # already four pads (_geometry)
    oh = _out_len(x.shape[2], kernel[0], stride[0], t + b, dilation[0])
    ow = _out_len(x.shape[3], kernel[1], stride[1], l + r, dilation[1])
    if oh <= 0 or ow <= 0:
        raise ValueError(f"{op}: the kernel {kernel} (dilation {dilation}) does not fit the padded input {tuple(x.shape[2:])}")
    y = torch.empty((x.shape[0], oc, oh, ow), dtype=out_dtype, memory_format=torch.channels_last)
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
    _check_packed(packed, group_bytes, groups, "conv2d_q8")
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


def conv2d_q8_static(
    x: Tensor, packed: Tensor, group_bytes: int, out_channels: int, kernel_size, stride=1, padding=0, dilation=1,
    groups: int = 1, bias: Optional[Tensor] = None, activation: Optional[str] = None,
    in_q: tuple[float, int] = (1.0, 0), out_q: Optional[tuple[float, int]] = None,
) -> tuple[Tensor, str]:
    """Dense/pointwise int8 conv with static activation quantization. x: (N, C, H, W) float (quantized with
    ``in_q`` = (scale, zero point), clamped to [0, 255]) or uint8 codes on that grid. Returns (y, kernel):
    y channels-last fp32, or uint8 on the grid ``out_q`` when given (the activation's clamp folded in).
    A NaN or infinity in a float input gives NaN outputs for that image (fp32 out) or a ValueError (uint8 out)."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"conv2d_q8_static: unknown activation {activation!r}")
    in_q = check_qparams(in_q, "input", "conv2d_q8_static")
    out_q = None if out_q is None else check_qparams(out_q, "output", "conv2d_q8_static")
    kernel, stride, padding, dilation = _geometry(kernel_size, stride, padding, dilation)
    _check_packed(packed, group_bytes, groups, "conv2d_q8_static")
    c = x.shape[1] if isinstance(x, Tensor) and x.dim() == 4 else -1
    x, y, b = _conv_io(x, c, out_channels, kernel, stride, padding, dilation, bias, "conv2d_q8_static",
                       torch.uint8 if out_q else torch.float32, u8_in=True)
    u8 = x.dtype == torch.uint8
    name, finite = _C.conv2d_q8_static(
        x.data_ptr(), u8, x.numel(), _dims(x, out_channels, kernel, stride, padding, dilation, groups),
        packed.data_ptr(), group_bytes, 0 if b is None else b.data_ptr(), ACTIVATIONS[activation], in_q[0], in_q[1],
        y.data_ptr(), out_q is not None, out_q[0] if out_q else 1.0, out_q[1] if out_q else 0, y.numel(),
        get_num_threads(),
    )
    if not finite and out_q is not None:
        raise ValueError("conv2d_q8_static: the input holds a NaN or an infinity, which a uint8 output cannot carry")
    return y, name


def prepare_dw(q: Tensor, scales: Tensor, bias: Optional[Tensor]) -> tuple[Tensor, Tensor]:
    """The depthwise kernels' fp32 weights [kh*kw][cp] (wf[t][c] = float(q[c][t]) * scales[c], the fp32
    product the C entry forms per call, so bit-identical; cp = C rounded up to 16, zero tail) and bias [cp]."""
    c, taps = q.shape
    cp = (c + 15) // 16 * 16
    wf = torch.zeros(taps, cp, dtype=torch.float32)
    wf[:, :c] = (q.to(torch.float32) * scales.to(torch.float32).view(c, 1)).t()
    bp = torch.zeros(cp, dtype=torch.float32)
    if bias is not None:
        bp[:c] = bias.to(torch.float32)
    return wf, bp


def conv2d_dw_prepared(
    x: Tensor, wf: Tensor, bias_p: Tensor, channels: int, kernel_size, stride=1, padding=0, dilation=1,
    activation: Optional[str] = None, in_q: Optional[tuple[float, int]] = None, out_q: Optional[tuple[float, int]] = None,
) -> tuple[Tensor, str]:
    """Depthwise conv on weights from :func:`prepare_dw`. x float, or uint8 codes on the grid ``in_q``
    (static path); y fp32, or uint8 on the grid ``out_q``. With fp32 in and out this is conv2d_dw's result
    bit for bit. Returns (y channels-last, kernel)."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"conv2d_dw: unknown activation {activation!r}")
    kernel, stride, padding, dilation = _geometry(kernel_size, stride, padding, dilation)
    c, taps = channels, kernel[0] * kernel[1]
    cp = (c + 15) // 16 * 16
    if wf.dtype != torch.float32 or wf.shape != (taps, cp) or not wf.is_contiguous():
        raise ValueError(f"conv2d_dw: prepared weights must be contiguous float32 ({taps}, {cp}), got {tuple(wf.shape)}")
    if bias_p.dtype != torch.float32 or bias_p.shape != (cp,) or not bias_p.is_contiguous():
        raise ValueError(f"conv2d_dw: prepared bias must be contiguous float32 ({cp},)")
    u8_in = isinstance(x, Tensor) and x.dtype == torch.uint8
    if u8_in and in_q is None:
        raise ValueError("conv2d_dw: a uint8 input needs its (scale, zero point), in_q")
    in_q = check_qparams(in_q, "input", "conv2d_dw") if in_q is not None else (1.0, 0)
    out_q = None if out_q is None else check_qparams(out_q, "output", "conv2d_dw")
    x, y, _ = _conv_io(x, c, c, kernel, stride, padding, dilation, None, "conv2d_dw",
                       torch.uint8 if out_q else torch.float32, u8_in=u8_in)
    name, finite = _C.conv2d_dw_prepared(
        x.data_ptr(), u8_in, x.numel(), _dims(x, c, kernel, stride, padding, dilation, c), wf.data_ptr(), wf.numel(),
        bias_p.data_ptr(), bias_p.numel(), ACTIVATIONS[activation], in_q[0], in_q[1], y.data_ptr(), out_q is not None,
        out_q[0] if out_q else 1.0, out_q[1] if out_q else 0, y.numel(), get_num_threads(),
    )
    if not finite:
        raise ValueError("conv2d_dw: the input holds a NaN or an infinity, which a uint8 output cannot carry")
    return y, name


def _check_packed(packed: Tensor, group_bytes: int, groups: int, op: str) -> None:
    if packed.dtype != torch.uint8 or packed.dim() != 1 or not packed.is_contiguous():
        raise ValueError(f"{op}: packed weights must be a contiguous 1-D uint8 tensor")
    if group_bytes <= 0 or packed.numel() != group_bytes * groups:
        raise ValueError(f"{op}: packed weights hold {packed.numel()} bytes, expected {groups} x {group_bytes}")


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


def _fake_static(x: Tensor, oc: int, kernel, stride, padding, dilation, out_scale: Optional[float]) -> Tensor:
    y = _fake_out(x, oc, kernel, stride, padding, dilation)
    return y if out_scale is None else y.to(torch.uint8).contiguous(memory_format=torch.channels_last)


@torch.library.custom_op("slimnn::conv2d_q8_static", mutates_args=())
def _conv2d_q8_static_op(x: Tensor, packed: Tensor, group_bytes: int, out_channels: int, kernel: list[int],
                         stride: list[int], padding: list[int], dilation: list[int], groups: int,
                         bias: Optional[Tensor], activation: Optional[str], in_scale: float, in_zp: int,
                         out_scale: Optional[float], out_zp: int) -> Tensor:
    return conv2d_q8_static(x, packed, group_bytes, out_channels, kernel, stride, padding, dilation, groups, bias,
                            activation, (in_scale, in_zp), None if out_scale is None else (out_scale, out_zp))[0]


@_conv2d_q8_static_op.register_fake
def _(x, packed, group_bytes, out_channels, kernel, stride, padding, dilation, groups, bias, activation,  # noqa: ANN001
      in_scale, in_zp, out_scale, out_zp):
    return _fake_static(x, out_channels, kernel, stride, padding, dilation, out_scale)


@torch.library.custom_op("slimnn::conv2d_dw_static", mutates_args=())
def _conv2d_dw_static_op(x: Tensor, q: Tensor, scales: Tensor, kernel: list[int], stride: list[int],
                         padding: list[int], dilation: list[int], bias: Optional[Tensor], activation: Optional[str],
                         in_scale: float, in_zp: int, out_scale: Optional[float], out_zp: int) -> Tensor:
    wf, bp = prepare_dw(q, scales, bias)  # traced graphs see the module's int8 weights; prepared per call here
    return conv2d_dw_prepared(x, wf, bp, q.shape[0], kernel, stride, padding, dilation, activation,
                              (in_scale, in_zp), None if out_scale is None else (out_scale, out_zp))[0]


@_conv2d_dw_static_op.register_fake
def _(x, q, scales, kernel, stride, padding, dilation, bias, activation, in_scale, in_zp, out_scale, out_zp):  # noqa: ANN001
    return _fake_static(x, q.shape[0], kernel, stride, padding, dilation, out_scale)
