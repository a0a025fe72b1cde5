"""conv: ``Int8Config`` also converts ``nn.Conv2d`` / ``nn.Conv1d`` into :class:`slimnn.nn.conv.Conv2dInt8` /
``Conv1dInt8`` (int8 weights per output channel; dynamic uint8 activations per image, or weight-only).

This file extends the ``int8`` technique rather than adding a config: ``compress_(model, Int8Config())``
compresses a CNN's convolutions and its Linears alike. Before conversion, every eval-mode BatchNorm that
provably takes a float conv's output alone is folded into it (``prepare``); afterwards, the activation that
provably follows each int8 conv (ReLU, ReLU6, SiLU, hard-swish, GELU) runs in its kernel (``fuse``). Conv2d
subclasses are converted only when their traced forward is the EfficientNet ports' static same padding
(``accepts``). Saved as ``int8_conv`` v1: the int8 weight (oc, c/groups, kh, kw), fp32 scales (oc,), bias,
and the conv's geometry, mode and fused activation.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import Tensor, nn

from ..configs import Int8Config
from ..formats.manifest import ModuleFormat, TensorSpec, bool_field, int_field
from ..math.calibration import capture_patch_grams, progress_iter
from ..math.gptq import gptq_quantize_int8
from ..nn.conv import (
    Conv1dInt8, Conv2dInt8, FoldedBatchNorm, FusedConvActivation, conv_padding, conv_patch_fn, fold_batchnorm_,
    fuse_conv_activations_,
)
from ..nn.int8 import Int8Linear
from ..ops.conv import ACTIVATIONS, QUANTS, STATIC, check_qparams
from .registry import for_config, register

_BASE = for_config(Int8Config)  # the int8 technique (techniques/int8.py registers first)
_CONVS = (nn.Conv1d, nn.Conv2d)


def convert(layer: nn.Module, config: Int8Config) -> Any:
    if not isinstance(layer, _CONVS):
        return _BASE.convert(layer, config)
    if conv_padding(layer) is None:
        return f"{type(layer).__name__} with padding_mode={layer.padding_mode!r} is not converted"
    cls = Conv1dInt8 if isinstance(layer, nn.Conv1d) else Conv2dInt8
    return cls.from_conv(layer, mode=config.mode)


def convert_model(model: nn.Module, targets: list, config: Int8Config, report: Any) -> bool:
    """``method="gptq"``: every conv and Linear of ``targets`` in order, each quantized by GPTQ with the Hessian
    of its inputs in the model as converted so far (the earlier layers already int8) over ``config.calib_data``.
    A layer reachable under several names is converted once."""
    if config.method != "gptq":
        return False
    if config.calib_data is None:
        raise ValueError("Int8Config(method='gptq') needs calibration data: pass calib_data=<iterable of model inputs>")
    data = list(config.calib_data)
    if not data:
        raise ValueError("Int8Config.calib_data is empty")
    was_training = model.training
    model.eval()
    done: dict[int, nn.Module] = {}
    # A head tied to an embedding keeps round to nearest: the lookup reads the same rows, and GPTQ's rows
    # serve the head's outputs, not the table (on SmolLM2 a GPTQ'd tied head measured worse than RTN).
    tables = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    try:
        for fqn, layer in progress_iter(targets, "int8 gptq", config.progress):
            new = done.get(id(layer))
            if new is None and id(layer.weight) in tables:
                new = done[id(layer)] = _BASE.convert(layer, config)
                model.set_submodule(fqn, new)
                report.converted[fqn] = type(new).__name__ + " (tied to an embedding: round to nearest)"
                continue
            if new is None:
                new = _gptq_layer(model, layer, data, config)
                if isinstance(new, str):
                    report.skipped[fqn] = new
                    continue
                done[id(layer)] = new
            model.set_submodule(fqn, new)
            summary = getattr(new, "summary", None)
            report.converted[fqn] = type(new).__name__ + (f" ({summary()})" if callable(summary) else "") + ", GPTQ"
    finally:
        model.train(was_training)
    return True


def _gptq_layer(model: nn.Module, layer: nn.Module, data: list, config: Int8Config) -> Any:
    if isinstance(layer, _CONVS):
        if conv_padding(layer) is None:
            return f"{type(layer).__name__} with padding_mode={layer.padding_mode!r} is not converted"
        patches, groups = conv_patch_fn(layer), layer.groups
    else:
        patches, groups = (lambda x: x.reshape(1, -1, x.shape[-1])), 1
    gram, rows = capture_patch_grams(model, layer, data, patches)
    w = layer.weight.detach().to(torch.float32)
    q, scales = gptq_quantize_int8(w.reshape(groups, w.shape[0] // groups, -1), gram * (2.0 / max(rows, 1)),
                                   config.gptq_damp)
    if isinstance(layer, nn.Linear):
        return Int8Linear.from_quantized(layer, q.reshape(w.shape), scales.reshape(-1), config)
    cls = Conv1dInt8 if isinstance(layer, nn.Conv1d) else Conv2dInt8
    return cls.from_quantized(layer, q.reshape(w.shape), scales.reshape(-1), mode=config.mode)


def accepts(layer: nn.Module) -> bool:
    return isinstance(layer, nn.Conv2d) and conv_padding(layer) is not None


def prepare(model: nn.Module, targets: list, config: Int8Config) -> dict:
    if not any(isinstance(m, _CONVS) for _, m in targets):
        return {}
    ids = {id(m) for _, m in targets}
    done = fold_batchnorm_(model, lambda conv: id(conv) in ids)
    return {conv: f"BatchNorm {bn} folded in" for conv, bn in done.items()}


# --- saved form ---

def _to_canonical(mod: nn.Module) -> tuple[dict[str, Tensor], dict[str, Any]]:
    q, scales = mod.int8_weight()
    tensors = {"q": q.contiguous(), "scales": scales.contiguous()}
    if mod.bias is not None:
        tensors["bias"] = mod.bias.detach().to(torch.float32).contiguous()
    meta = {
        "dims": 1 if isinstance(mod, Conv1dInt8) else 2,
        "in_channels": mod.in_channels, "out_channels": mod.out_channels,
        "kernel_size": list(mod.kernel_size), "stride": list(mod.stride), "padding": list(mod.padding),
        "dilation": list(mod.dilation), "groups": mod.groups, "bias": mod.bias is not None,
        "mode": mod.mode, "quant": mod.quant, "activation": mod.activation,
    }
    if mod.quant == STATIC:  # the calibrated grids (floats written by json exactly, as repr)
        meta["in_q"] = None if mod.in_q is None else [float(mod.in_q[0]), int(mod.in_q[1])]
        meta["out_q"] = None if mod.out_q is None else [float(mod.out_q[0]), int(mod.out_q[1])]
    return tensors, meta


def _ints(meta: dict, key: str, n: int, lo: int) -> list:
    v = meta.get(key)
    if not isinstance(v, list) or len(v) != n or any(isinstance(e, bool) or not isinstance(e, int) or not lo <= e <= 2**24 for e in v):
        raise ValueError(f"int8_conv field {key!r} must be {n} integers >= {lo}, got {v!r}")
    return v


def _qgrid(meta: dict, key: str):  # noqa: ANN202
    """A static conv's grid from the manifest: None, or [scale, zero point] checked (ValueError)."""
    v = meta.get(key)
    if v is None:
        return None
    if meta.get("quant") != STATIC or not isinstance(v, list) or len(v) != 2 or not isinstance(v[0], (int, float)) \
            or isinstance(v[0], bool):
        raise ValueError(f"int8_conv field {key!r} must be null or [scale, zero point] of a static conv, got {v!r}")
    return check_qparams((v[0], v[1]), key, "int8_conv")


def _spec(meta: dict) -> TensorSpec:
    dims = int_field(meta, "dims", 1, 2)
    c, oc, g = int_field(meta, "in_channels", 1, 2**24), int_field(meta, "out_channels", 1, 2**24), int_field(meta, "groups", 1, 2**24)
    kh, kw = _ints(meta, "kernel_size", 2, 1)
    _ints(meta, "stride", 2, 1), _ints(meta, "padding", 4, 0), _ints(meta, "dilation", 2, 1)
    if c % g or oc % g or (dims == 1 and kh != 1):
        raise ValueError(f"int8_conv: groups={g} must divide {c} and {oc} (and a Conv1d has kernel height 1)")
    if meta.get("mode") not in ("dynamic", "weight_only") or meta.get("quant") not in QUANTS:
        raise ValueError(f"int8_conv: bad mode/quant {meta.get('mode')!r}/{meta.get('quant')!r}")
    for key in ("in_q", "out_q"):
        _qgrid(meta, key)
    if meta.get("activation") not in ACTIVATIONS:
        raise ValueError(f"int8_conv: unknown activation {meta.get('activation')!r}")
    spec = {"q": (torch.int8, (oc, c // g, kh, kw)), "scales": (torch.float32, (oc,))}
    if bool_field(meta, "bias"):
        spec["bias"] = (torch.float32, (oc,))
    return spec


def _from_canonical(tensors: dict[str, Tensor], meta: dict) -> nn.Module:
    q, scales, bias = tensors["q"], tensors["scales"], tensors.get("bias")
    if q.numel() and int(q.min()) < -127:
        raise ValueError("int8 conv weights hold -128; slimnn's symmetric int8 format uses [-127, 127]")
    if not bool(torch.isfinite(scales).all()) or not bool((scales > 0).all()):
        raise ValueError("int8 conv scales must be finite and positive")
    if bias is not None and not bool(torch.isfinite(bias).all()):
        raise ValueError("int8 conv bias has a NaN or infinite value")
    cls = Conv1dInt8 if meta["dims"] == 1 else Conv2dInt8
    mod = cls.__new__(cls)
    nn.Module.__init__(mod)
    mod._setup(meta["in_channels"], meta["out_channels"], tuple(meta["kernel_size"]), tuple(meta["stride"]),
               tuple(meta["padding"]), tuple(meta["dilation"]), meta["groups"], meta["mode"], meta["quant"],
               meta["activation"])
    mod._set_weight(q.contiguous(), scales.contiguous())
    mod.register_buffer("bias", None if bias is None else bias.clone())
    mod.in_q, mod.out_q = _qgrid(meta, "in_q"), _qgrid(meta, "out_q")
    return mod


def _folded_to_canonical(mod: nn.Module) -> tuple[dict[str, Tensor], dict[str, Any]]:
    return {}, {"into": mod.into}


def _folded_from_canonical(tensors: dict[str, Tensor], meta: dict) -> nn.Module:
    into = meta.get("into")
    if not isinstance(into, str):
        raise ValueError(f"folded_batchnorm: 'into' must be a str, got {into!r}")
    return FoldedBatchNorm(into)


def _act_to_canonical(mod: nn.Module) -> tuple[dict[str, Tensor], dict[str, Any]]:
    return {}, {"activation": mod.activation, "into": mod.into}


def _act_from_canonical(tensors: dict[str, Tensor], meta: dict) -> nn.Module:
    if meta.get("activation") not in ACTIVATIONS or meta.get("activation") is None or not isinstance(meta.get("into"), str):
        raise ValueError(f"fused_conv_activation: malformed metadata {meta!r}")
    return FusedConvActivation(meta["activation"], meta["into"])


_FORMATS = (
    ModuleFormat("int8_conv", 1, Conv2dInt8, _to_canonical, _spec, _from_canonical),
    ModuleFormat("int8_conv1d", 1, Conv1dInt8, _to_canonical, _spec, _from_canonical),
    # A BatchNorm folded into its conv: no tensors; a skeleton's BatchNorm is replaced by it at load.
    ModuleFormat("fused_conv_activation", 1, FusedConvActivation, _act_to_canonical, lambda meta: {},
                 _act_from_canonical),
    ModuleFormat("folded_batchnorm", 1, FoldedBatchNorm, _folded_to_canonical, lambda meta: {}, _folded_from_canonical),
)

TECHNIQUE = register(dataclasses.replace(
    _BASE,
    modules=_BASE.modules + (Conv2dInt8, Conv1dInt8),
    targets=_BASE.targets + _CONVS,
    convert=convert,
    summary=_BASE.summary + "; Conv1d/Conv2d int8 (BatchNorm folded, activations fused)",
    save_formats=_BASE.save_formats + _FORMATS,
    accepts=accepts,
    prepare=prepare,
    convert_model=convert_model,
    fuse=fuse_conv_activations_,
))
