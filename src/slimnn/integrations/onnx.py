"""ONNX export of slimnn models: a real graph for int8 layers, a clear error for everything else.

``torch.onnx.export`` cannot see slimnn's packed weights: the kernels read them through raw pointers, so
the TorchScript exporter (``dynamo=False``) would record a graph without the layer (it used to export a
constant: a graph that ignores its input), and the dynamo exporter finds no ONNX function for the custom
op. slimnn's modules therefore raise ``ValueError`` under ``torch.onnx.export`` (see :func:`refuse`) and
name the way out:

    slimnn.export_onnx(model, (example_input,), "model.onnx")

which swaps every ``Int8Linear`` for an exportable twin for the duration of the export: the int8 matrix
and its scales become initializers (int8 stays int8 in the file), the layer becomes ``DequantizeLinear``
(per output channel, ``axis=0``) + ``MatMul`` (+ bias, + the fused activation written out in ONNX ops),
which ONNX Runtime runs directly. Activations stay float in the graph: the export of a ``dynamic`` int8
layer computes ``x @ dequant(W)^T``, slimnn's weight-only arithmetic, without the per-row activation
quantization (measured on all-MiniLM-L6-v2: docs/ecosystem.md). Group-wise int8 scales (``group_size``)
dequantize the weights viewed as (N * groups) x group_size rows, one scale per row. Int4, sparse and
low-rank layers have no ONNX form yet: ``export_onnx`` raises naming each such layer.

``Conv2dInt8`` / ``Conv1dInt8`` export the same way: int8 weights (oc, c/groups, kh, kw) and one scale per
output channel as ``DequantizeLinear`` (``axis=0``) + ``Conv`` (asymmetric padding as a ``Pad`` first),
the bias and the fused activation (ReLU6 and hard-swish included) written out; float activations, as
above. The identities that record a folded BatchNorm or a fused activation export as nothing.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

import torch
from torch import Tensor, nn

_ACTIVATIONS_ONNX = ("relu", "gelu", "gelu_tanh", "silu")


def _act(y: Tensor, activation: Any) -> Tensor:
    if activation is None:
        return y
    if activation == "relu":
        return torch.relu(y)
    if activation == "relu6":
        return torch.clamp(y, 0.0, 6.0)
    if activation == "hardswish":
        return y * torch.clamp(y + 3.0, 0.0, 6.0) * (1.0 / 6.0)
    if activation == "gelu":
        return 0.5 * y * (1.0 + torch.erf(y * 0.7071067811865476))
    if activation == "gelu_tanh":
        return 0.5 * y * (1.0 + torch.tanh(0.7978845608028654 * (y + 0.044715 * y * y * y)))
    if activation == "silu":
        return y * torch.sigmoid(y)
    raise ValueError(f"activation {activation!r} has no ONNX form")


class OnnxInt8Linear(nn.Module):
    """What an Int8Linear is during :func:`export_onnx`: int8 weights, float32 scales, torch ops only."""

    def __init__(self, mod: nn.Module) -> None:
        super().__init__()
        from ..formats.packed import unpack_q8

        q, scales, gs = unpack_q8(mod.packed)
        if gs is not None and mod.in_features % gs:
            raise ValueError(f"an Int8Linear with group_size={gs} and in_features={mod.in_features} (not a multiple) "
                             "has no ONNX form")
        self.group_size = gs
        self.activation = mod.activation
        self.register_buffer("q", q.contiguous())
        self.register_buffer("scales", scales.t().contiguous())  # N x groups
        self.register_buffer("bias", None if mod.bias is None else mod.bias.detach().clone())

    def forward(self, x: Tensor) -> Tensor:
        import torch.ao.quantization.fx._decomposed  # noqa: F401  (registers quantized_decomposed ops)

        dq = torch.ops.quantized_decomposed
        if self.group_size is None:
            w = dq.dequantize_per_channel(self.q, self.scales[:, 0], None, 0, -127, 127, torch.int8)
        else:
            n, k = self.q.shape
            g = k // self.group_size
            q3 = self.q.reshape(n * g, self.group_size)
            w = dq.dequantize_per_channel(q3, self.scales.reshape(n * g), None, 0, -127, 127, torch.int8)
            w = w.reshape(n, k)
        y = torch.nn.functional.linear(x.to(torch.float32), w, self.bias)
        return _act(y, self.activation).to(x.dtype)


class OnnxConvInt8(nn.Module):
    """What a Conv2dInt8 / Conv1dInt8 is during :func:`export_onnx`: int8 weights, per-channel scales."""

    def __init__(self, mod: nn.Module) -> None:
        super().__init__()
        from ..math.reference import conv_pads4

        q, scales = mod.int8_weight()
        self.register_buffer("q", q.contiguous())
        self.register_buffer("scales", scales.to(torch.float32).contiguous())
        self.register_buffer("bias", None if mod.bias is None else mod.bias.detach().clone())
        self.one_d = bool(mod._is_1d)
        self.stride, self.dilation, self.groups = tuple(mod.stride), tuple(mod.dilation), int(mod.groups)
        t, b, l, r = conv_pads4(mod.padding)
        self.symmetric = (t == b and l == r)
        self.pad_arg = (t, l) if self.symmetric else (0, 0)
        self.pad4 = (l, r, t, b)  # F.pad's order: last dim first
        self.activation = mod.activation
        # quant="static": the calibrated input grid as QuantizeLinear + DequantizeLinear (ONNX Runtime's QDQ
        # form); the uint8 hand-over between convs becomes fp32 in the graph, the same values
        self.in_q = mod.in_q if mod.quant == "static" else None

    def forward(self, x: Tensor) -> Tensor:
        import torch.ao.quantization.fx._decomposed  # noqa: F401  (registers quantized_decomposed ops)

        dq = torch.ops.quantized_decomposed
        w = dq.dequantize_per_channel(self.q, self.scales, None, 0, -127, 127, torch.int8)
        x4 = x.to(torch.float32)
        if self.in_q is not None:
            s, zp = self.in_q
            x4 = dq.dequantize_per_tensor(dq.quantize_per_tensor(x4, s, zp, 0, 255, torch.uint8), s, zp, 0, 255,
                                          torch.uint8)
        if self.one_d:
            x4 = x4.unsqueeze(2)
        if not self.symmetric:
            x4 = torch.nn.functional.pad(x4, self.pad4)
        y = torch.nn.functional.conv2d(x4, w, self.bias, self.stride, self.pad_arg, self.dilation, self.groups)
        y = _act(y, self.activation)
        return (y.squeeze(2) if self.one_d else y).to(x.dtype)


def _exportable(model: nn.Module) -> dict[str, nn.Module]:
    from ..nn import FusedActivation, Int8Linear
    from ..nn.conv import Conv1dInt8, Conv2dInt8, FoldedBatchNorm, FusedConvActivation

    swaps, bad = {}, []
    for fqn, m in model.named_modules():
        if type(m) is Int8Linear:
            swaps[fqn] = OnnxInt8Linear(m)
        elif type(m) in (Conv2dInt8, Conv1dInt8):
            swaps[fqn] = OnnxConvInt8(m)
        elif type(m).__module__.startswith("slimnn.nn") and not isinstance(
                m, (FusedActivation, FoldedBatchNorm, FusedConvActivation)):
            bad.append(f"{fqn} ({type(m).__name__})")
    if bad:
        raise ValueError(f"these slimnn layers have no ONNX export (only Int8Linear and the int8 convs do): {bad[:8]}"
                         f"{' ...' if len(bad) > 8 else ''}")
    return swaps


@contextlib.contextmanager
def onnx_exportable(model: nn.Module) -> Iterator[nn.Module]:
    """Within the block, ``model``'s Int8Linear and int8 conv layers are exportable twins (restored afterwards)."""
    swaps = _exportable(model)
    if "" in swaps:
        raise ValueError("export_onnx: wrap a bare slimnn layer in a container")
    old = {}
    try:
        for fqn, new in swaps.items():
            parent, _, child = fqn.rpartition(".")
            owner = model.get_submodule(parent) if parent else model
            old[fqn] = (owner, child, getattr(owner, child))
            setattr(owner, child, new)
        yield model
    finally:
        for owner, child, mod in old.values():
            setattr(owner, child, mod)


def _refusal(op_name: str, hint: str) -> Any:
    def translate(*args: Any, **kwargs: Any) -> Any:
        raise ValueError(f"slimnn.{op_name} has no ONNX translation (the op reads packed weights through raw "
                         f"pointers, which the exporter cannot see): {hint}")
    translate.__name__ = f"slimnn_{op_name}_refusal"
    return translate


_REFUSALS_REGISTERED = False


def _register_refusals(_module: Any = None) -> None:
    # torch.onnx.export(dynamo=True) first tries torch.export non-strict, where the modules raise themselves;
    # it then retries strict (dynamo), where torch.onnx.is_in_onnx_export() reads False, and fails at
    # translation with "No ONNX function found for slimnn.q8_linear". A translation that raises names the
    # way out instead (torch 2.13's private torchlib registry; absent elsewhere, then torch's own error stays).
    # The registry module and _registration import each other: run once both are complete.
    global _REFUSALS_REGISTERED
    import sys

    reg = sys.modules.get("torch.onnx._internal.exporter._torchlib._torchlib_registry")
    regmod = sys.modules.get("torch.onnx._internal.exporter._registration")
    if _REFUSALS_REGISTERED or reg is None or regmod is None:
        return
    if not (hasattr(reg, "onnx_impl") and hasattr(regmod, "OnnxDecompMeta")):
        return
    _REFUSALS_REGISTERED = True
    ops = torch.ops.slimnn
    hint_q8 = "export with slimnn.export_onnx(model, args, path), which writes int8 layers as DequantizeLinear + MatMul"
    hint_conv = "export with slimnn.export_onnx(model, args, path), which writes int8 convs as DequantizeLinear + Conv"
    hint_other = ("only Int8Linear and the int8 convs have an ONNX form (slimnn.export_onnx); keep this layer "
                  "float or int8 to export it")
    for name, hint in (("q8_linear", hint_q8), ("conv2d_q8", hint_conv), ("conv2d_dw", hint_conv),
                       ("q4_linear", hint_other), ("sparse_linear", hint_other), ("lowrank_linear", hint_other)):
        reg.onnx_impl(getattr(ops, name).default, trace_only=True, no_compile=True)(_refusal(name, hint))


def install() -> None:
    """Registers the refusing ONNX translations once torch's ONNX exporter is imported."""
    from ..runtime.hooks import when_imported

    when_imported("torch.onnx._internal.exporter._torchlib._torchlib_registry", _register_refusals)
    when_imported("torch.onnx._internal.exporter._registration", _register_refusals)


def export_onnx(model: nn.Module, args: tuple, f: Any, **kwargs: Any) -> Any:
    """``torch.onnx.export(model, args, f, dynamo=True, **kwargs)`` with slimnn's int8 layers written as
    ``DequantizeLinear`` + ``MatMul`` (see the module docstring); raises ValueError for layers without an
    ONNX form. Returns what ``torch.onnx.export`` returns (an ``ONNXProgram``)."""
    # The quantized_decomposed ops must exist before the exporter builds its registry of ONNX functions.
    import torch.ao.quantization.fx._decomposed  # noqa: F401

    kwargs.setdefault("dynamo", True)
    with onnx_exportable(model):
        return torch.onnx.export(model, args, f, **kwargs)
