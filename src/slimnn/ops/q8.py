"""Torch-facing ops over the private extension.

``q8_linear`` is the eager entry (checks inputs, allocates the output, calls ``_C`` with the GIL released).
``torch.ops.slimnn.q8_linear`` is the same computation registered with ``torch.library`` (with a fake
implementation and autograd for the input), which ``torch.compile`` and ``torch.export`` trace. Modules
call the eager entry directly outside tracing, so eager calls skip the dispatcher's Python overhead.
"""

from __future__ import annotations

import struct
from typing import Optional

import torch
from torch import Tensor

from .. import _C
from ..runtime.threads import get_num_threads
from .common import blob_shape, check_bias, module_rows, run_linear
from ..formats.packed import unpack_q8
from ..math.quantize import dequantize_int8

_KINDS = {"dynamic": "q8_dynamic", "weight_only": "q8_weight_only"}
# Activations the GEMM epilogue can fuse (codes of csrc/kernels/act/act.h's Activation enum).
ACTIVATIONS = {None: 0, "relu": 1, "gelu": 2, "gelu_tanh": 3, "silu": 4}


def activation_code(activation: Optional[str]) -> int:
    """The kernel's code for ``activation`` (None, "relu", "gelu", "gelu_tanh" or "silu"); ValueError else."""
    code = ACTIVATIONS.get(activation) if activation is None or isinstance(activation, str) else None
    if code is None:
        raise ValueError(f"activation must be one of {list(ACTIVATIONS)}, got {activation!r}")
    return code


def apply_activation(y: Tensor, activation: Optional[str]) -> Tensor:
    """The float math a fused activation stands for (torch's own functions): what the kernels are tested
    against, the reference path, and the unfused fallback."""
    if activation is None:
        return y
    if activation == "relu":
        return torch.relu(y)
    if activation == "gelu":
        return torch.nn.functional.gelu(y)
    if activation == "gelu_tanh":
        return torch.nn.functional.gelu(y, approximate="tanh")
    if activation == "silu":
        return torch.nn.functional.silu(y)
    raise ValueError(f"activation must be one of {list(ACTIVATIONS)}, got {activation!r}")


def activation_grad(z: Tensor, activation: Optional[str]) -> Tensor:
    """d activation(z) / dz, elementwise, in closed form (for the custom op's backward)."""
    if activation is None:
        return torch.ones_like(z)
    if activation == "relu":
        return (z > 0).to(z.dtype)
    if activation == "gelu":
        return 0.5 * torch.special.erfc(-z * 0.7071067811865476) + z * torch.exp(-0.5 * z * z) * 0.3989422804014327
    if activation == "gelu_tanh":
        k = 0.7978845608028654
        th = torch.tanh(k * (z + 0.044715 * z * z * z))
        return 0.5 * (1.0 + th) + 0.5 * z * (1.0 - th * th) * k * (1.0 + 3 * 0.044715 * z * z)
    if activation == "silu":
        sg = torch.sigmoid(z)
        return sg * (1.0 + z * (1.0 - sg))
    raise ValueError(f"activation must be one of {list(ACTIVATIONS)}, got {activation!r}")
_F32 = torch.float32
_BF16 = torch.bfloat16


def q8_linear(
    x: Tensor, packed: Tensor, bias: Optional[Tensor], mode: str, out_features: int,
    activation: Optional[str] = None,
) -> Tensor:
    """y = act(x W^T + bias) with W a q8 blob. x: (..., K) float32/bf16 (float16/float64 converted); y: x's
    dtype. ``activation``: None, "relu", "gelu", "gelu_tanh" or "silu", applied in the GEMM's epilogue."""
    return q8_linear_with_kernel(x, packed, bias, mode, out_features, activation)[0]


def q8_linear_with_kernel(
    x: Tensor, packed: Tensor, bias: Optional[Tensor], mode: str, out_features: int,
    activation: Optional[str] = None,
) -> tuple[Tensor, str]:
    """:func:`q8_linear`, also returning the name of the kernel that ran."""
    act = activation_code(activation)
    kind = _KINDS.get(mode)
    if kind is None:
        raise ValueError(f"q8_linear: mode must be 'dynamic' or 'weight_only', got {mode!r}")
    n, k = blob_shape(packed)
    if out_features != n:
        raise ValueError(f"q8_linear: out_features={out_features} but the packed weights have N={n}")
    check_bias(bias, out_features, "q8_linear")
    return run_linear(_C.q8_linear, kind, x, k, packed, bias, out_features, "q8_linear", after=(act,))


def q8_linear_module(
    x: Tensor, packed: Tensor, bias: Optional[Tensor], kind: str, k: int, n: int, act: int = 0,
    activation: Optional[str] = None,
) -> tuple[Tensor, str]:
    """Eager fast path for modules, whose packed/bias buffers are known valid: the common case (CPU,
    float32/bf16, last dim k, rows at a constant stride) is checked inline; anything else takes the full
    path. ``act`` is ``activation``'s code (the module keeps both, so the hot path does no lookup)."""
    rows = module_rows(x, k)  # any leading dims at one row stride: one (M, K) matrix, one binding call
    if rows is not None:
        m, ldx = rows
        dt = x.dtype
        y = torch.empty((*x.shape[:-1], n), dtype=_F32)
        name = _C.q8_linear(
            kind, x.data_ptr(), dt is _BF16, m, ldx, packed.data_ptr(), packed.numel(),
            0 if bias is None else bias.data_ptr(), y.data_ptr(), n, get_num_threads(), act,
        )
        return (y if dt is _F32 else y.to(dt)), name
    return q8_linear_with_kernel(x, packed, bias, _MODES[kind], n, activation)


_MODES = {v: k for k, v in _KINDS.items()}


@torch.library.custom_op("slimnn::q8_linear", mutates_args=())
def _q8_linear_op(
    x: Tensor, packed: Tensor, bias: Optional[Tensor], mode: str, out_features: int,
    activation: Optional[str] = None,
) -> Tensor:
    return q8_linear(x, packed, bias, mode, out_features, activation)


@_q8_linear_op.register_fake
def _(
    x: Tensor, packed: Tensor, bias: Optional[Tensor], mode: str, out_features: int,
    activation: Optional[str] = None,
) -> Tensor:
    activation_code(activation)
    out_dtype = x.dtype if x.dtype in (_F32, _BF16, torch.float16, torch.float64) else _F32
    return x.new_empty((*x.shape[:-1], out_features), dtype=out_dtype)


@torch.library.custom_op("slimnn::q8_linear_grad_input", mutates_args=())
def _q8_linear_grad_input_op(grad: Tensor, packed: Tensor, in_features: int) -> Tensor:
    """grad (..., N) @ W (N x K) with W the dequantized blob: the gradient of q8_linear w.r.t. its input.

    An op of its own (opaque to tracing) because it reads the blob's bytes, which FakeTensors do not have.
    """
    q, scales, gs = unpack_q8(packed)
    w = dequantize_int8(q, scales, gs)
    return grad.to(_F32) @ w


@_q8_linear_grad_input_op.register_fake
def _(grad: Tensor, packed: Tensor, in_features: int) -> Tensor:
    return grad.new_empty((*grad.shape[:-1], in_features), dtype=_F32)


def _setup_ctx(ctx, inputs, output) -> None:  # noqa: ANN001
    x, packed, bias, mode, n, *rest = inputs
    activation = rest[0] if rest else None
    ctx.activation = activation
    # With a fused activation the backward needs the pre-activation output: it recomputes it from x.
    ctx.save_for_backward(packed, x if activation is not None else None, bias if activation is not None else None)
    ctx.mode, ctx.out_features = mode, n
    ctx.x_dtype = x.dtype
    ctx.in_features = x.shape[-1]


def _backward(ctx, grad):  # noqa: ANN001
    # Straight-through: the gradient w.r.t. x uses the dequantized weights (no gradient for the blob); a
    # fused activation contributes its exact derivative at the (recomputed) pre-activation output.
    packed, x, bias = ctx.saved_tensors
    if ctx.activation is not None:
        z = torch.ops.slimnn.q8_linear(x.detach(), packed, bias, ctx.mode, ctx.out_features)
        grad = grad * activation_grad(z.to(grad.dtype), ctx.activation)
    gx = torch.ops.slimnn.q8_linear_grad_input(grad, packed, ctx.in_features)
    return gx.to(ctx.x_dtype), None, None, None, None, None


_q8_linear_op.register_autograd(_backward, setup_context=_setup_ctx)



# ----------------------------------------------------------------------------------------------------
# torch.compile: the dynamic activation quantization as torch ops, then a GEMM over the quantized rows.
# Inductor fuses those torch ops into whatever produces x (LayerNorm, GELU, a residual add). Off by
# default (FUSE_QUANTIZATION): measured slower than the kernel's own quantizer on torch 2.13.
# ----------------------------------------------------------------------------------------------------

FUSE_QUANTIZATION = False
"""Whether dynamic Int8Linear layers emit :func:`q8_linear_traced` under torch.compile (the quantization as
torch ops that Inductor fuses into the producer of x) instead of the plain ``slimnn::q8_linear`` op, which
quantizes inside the kernel. Off: on torch 2.13 Inductor's generated quantization is slower than the
kernel's own AVX-512 quantizer by more than the fusion saves (docs/ecosystem.md, "Fusing the activation
quantization"). Read at trace time (dynamo guards on it)."""


@torch.compiler.assume_constant_result
def _refuse_limit(kp: int) -> float:
    # The driver's overflow limit on a row's scale, in float32 as qgemm.cc computes it:
    # kQ8RowLimit / (255.0f * float(kp)), kQ8RowLimit = FLT_MAX / 65536 (exact: a power of two). The double
    # quotient rounded to float32 is the float32 quotient (53 >= 2 * 24 + 2 bits: no double rounding).
    return struct.unpack("f", struct.pack("f", (torch.finfo(_F32).max / 65536.0) / (255.0 * kp)))[0]


def quantize_rows_for_kernel(x2: Tensor, kp: int) -> tuple[Tensor, Tensor, Tensor]:
    """The q8 dynamic kernels' row quantization in traceable torch ops, laid out for
    :func:`q8_linear_prequantized`: codes (M, kp) uint8 zero-padded from K, scale (M,) float32 (0 for a
    row the kernel would refuse: NaN, infinity, or overflow-sized), zero point (M,) int32.

    The float32 operations of math/reference.py's quantize_rows_u8 (and of the kernels), so a finite row gets
    the same codes and scale bit for bit. Written for Inductor: one min/max pass and one quantizing pass per
    row (it fuses both into the op producing x). Non-finite rows need no pass of their own: max/min
    propagate NaN and infinity into the row's scale, which then fails ``scale <= limit``."""
    zero = x2.new_zeros(())
    mn = torch.minimum(x2.amin(dim=1), zero)  # amin/amax of an empty row (K = 0) would raise; K >= 1 here
    mx = torch.maximum(x2.amax(dim=1), zero)
    raw = mx / 255.0 - mn / 255.0
    ok = raw <= _refuse_limit(kp)  # False for NaN / inf rows and overflow-sized ones: the kernel's refusal
    scale = torch.where(raw >= _FLT_MIN, raw, torch.ones_like(raw))
    inv = 1.0 / scale
    zpf = torch.round(-mn * inv).clamp(0, 255)
    qf = (torch.round(x2 * inv.unsqueeze(1)) + zpf.unsqueeze(1)).clamp(0, 255)
    q = torch.where(ok.unsqueeze(1), qf, torch.zeros_like(qf)).to(torch.uint8)  # refused rows: codes 0, never NaN
    scale = torch.where(ok, scale, torch.zeros_like(scale))
    zp = torch.where(ok, zpf, torch.zeros_like(zpf)).to(torch.int32)
    k = x2.shape[-1]
    if kp > k:
        q = torch.nn.functional.pad(q, (0, kp - k))
    return q, scale, zp


_FLT_MIN = 1.1754943508222875e-38  # torch.finfo(torch.float32).tiny, a literal: dynamo makes a float global a graph input


def _check_prequantized(a: Tensor, a_scale: Tensor, a_zp: Tensor, x: Tensor, packed: Tensor, bias: Optional[Tensor],
                        out_features: int) -> tuple[int, int]:
    n, k = blob_shape(packed)
    kp = int(_C.q8_header(packed.data_ptr(), packed.numel(), False)[5])
    if out_features != n:
        raise ValueError(f"q8_linear_prequantized: out_features={out_features} but the packed weights have N={n}")
    if x.dtype != _F32 or x.dim() != 2 or x.shape[1] != k or x.device.type != "cpu":
        raise ValueError(f"q8_linear_prequantized: x must be a float32 CPU (M, {k}) matrix, got {x.dtype} "
                         f"{tuple(x.shape)} on {x.device}")
    m = x.shape[0]
    if a.dtype != torch.uint8 or tuple(a.shape) != (m, kp):
        raise ValueError(f"q8_linear_prequantized: codes must be uint8 ({m}, {kp}), got {a.dtype} {tuple(a.shape)}")
    if a_scale.dtype != _F32 or tuple(a_scale.shape) != (m,) or a_zp.dtype != torch.int32 or tuple(a_zp.shape) != (m,):
        raise ValueError(f"q8_linear_prequantized: scales must be float32 ({m},) and zero points int32 ({m},)")
    check_bias(bias, out_features, "q8_linear_prequantized")
    return m, k


def _prequantized_call(a: Tensor, a_scale: Tensor, a_zp: Tensor, x: Tensor, packed: Tensor, bias: Optional[Tensor],
                       n: int, act: int, m: int, k: int, out: Tensor) -> str:
    return _C.q8_linear_prequantized(
        a.data_ptr(), a_scale.data_ptr(), a_zp.data_ptr(), x.data_ptr(), m, k, packed.data_ptr(), packed.numel(),
        0 if bias is None else bias.data_ptr(), out.data_ptr(), n, get_num_threads(), act)


@torch.library.custom_op("slimnn::q8_linear_prequantized", mutates_args=())
def _q8_linear_prequantized_op(
    a: Tensor, a_scale: Tensor, a_zp: Tensor, x: Tensor, packed: Tensor, bias: Optional[Tensor], out_features: int,
    activation: Optional[str] = None,
) -> Tensor:
    """q8_linear(x, packed, bias, "dynamic", out_features, activation) given x's rows already quantized by
    :func:`quantize_rows_for_kernel` (x itself is read only for rows the quantizer refused)."""
    act = activation_code(activation)
    a, a_scale, a_zp, x = (t.contiguous() for t in (a, a_scale, a_zp, x))
    m, k = _check_prequantized(a, a_scale, a_zp, x, packed, bias, out_features)
    y = torch.empty((m, out_features), dtype=_F32)
    _prequantized_call(a, a_scale, a_zp, x, packed, bias, out_features, act, m, k, y)
    return y


@_q8_linear_prequantized_op.register_fake
def _(a, a_scale, a_zp, x, packed, bias, out_features, activation=None):  # noqa: ANN001, ANN202
    activation_code(activation)
    return x.new_empty((x.shape[0], out_features), dtype=_F32)


def q8_linear_traced(x: Tensor, packed: Tensor, bias: Optional[Tensor], out_features: int, kp: int,
                     activation: Optional[str]) -> Tensor:
    """What a dynamic Int8Linear emits under torch.compile for a float32 input without autograd: the row
    quantization as torch ops, then ``slimnn::q8_linear_prequantized``. Same bits as the eager op."""
    k = x.shape[-1]
    if k == 0:  # no row to quantize (and amin/amax of an empty row raise)
        return torch.ops.slimnn.q8_linear(x, packed, bias, "dynamic", out_features, activation)
    x2 = x.reshape(-1, k).contiguous()
    a, a_scale, a_zp = quantize_rows_for_kernel(x2, kp)
    y = torch.ops.slimnn.q8_linear_prequantized(a, a_scale, a_zp, x2, packed, bias, out_features, activation)
    return y.view(*x.shape[:-1], out_features)
