"""int8: ``Int8Config`` -> :class:`slimnn.nn.Int8Linear` (W8A8 dynamic or weight-only, per channel or group).

Saved as ``int8_linear`` (v1; v2 when a fused activation is set): the int8 matrix, float32 scales, the bias.
Trains in distillation through a float shadow with straight-through fake quantization.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Optional

import torch
from torch import Tensor, nn

from ..configs import Int8Config
from ..formats.manifest import config_field, FUSABLE, ModuleFormat, TensorSpec, bool_field, int_field, linear_meta
from ..formats.packed import pack_q8, unpack_q8
from ..math.quantize import dequantize_int8, quantize_int8_symmetric
from ..nn.base import bare_linear
from ..nn.int8 import Int8Linear
from .registry import AutoStep, Technique, Trainable, register


def convert(linear: nn.Module, config: Int8Config) -> nn.Module:
    return Int8Linear.from_linear(linear, config)


# --- saved form ---

def _to_canonical(mod: nn.Module) -> tuple[dict[str, Tensor], dict[str, Any]]:
    q, scales, gs = unpack_q8(mod.packed)
    tensors = {"q": q, "scales": scales}
    if mod.bias is not None:
        tensors["bias"] = mod.bias.detach().to(torch.float32).contiguous()
    meta = linear_meta(mod, dataclasses.replace(mod.config, group_size=gs))
    if mod.activation is not None:  # int8_linear v2
        meta["activation"] = mod.activation
    return tensors, meta


def _config(meta: dict) -> Any:
    return config_field(meta, Int8Config, "int8_linear")


_META = {"in_features", "out_features", "bias", "config", "activation"}


def _spec(meta: dict) -> TensorSpec:
    if set(meta) - _META:
        raise ValueError(f"int8_linear metadata has unknown fields {sorted(set(meta) - _META)}")
    act = meta.get("activation")
    if act is not None and act not in FUSABLE:
        raise ValueError(f"int8_linear activation must be one of {list(FUSABLE)}, got {act!r}")
    k, n = int_field(meta, "in_features", 1), int_field(meta, "out_features", 1)
    cfg = _config(meta)
    if cfg.group_size is not None and cfg.group_size >= -(-k // 4) * 4:
        # one group as long as the (padded) row is per-channel; slimnn stores it as group_size null
        raise ValueError(f"group_size {cfg.group_size} is not smaller than K={k} (one group: group_size null)")
    groups = 1 if cfg.group_size is None else -(-k // cfg.group_size)
    spec = {"q": (torch.int8, (n, k)), "scales": (torch.float32, (groups, n))}
    if bool_field(meta, "bias"):
        spec["bias"] = (torch.float32, (n,))
    return spec


def _from_canonical(tensors: dict[str, Tensor], meta: dict) -> nn.Module:
    cfg = _config(meta)
    q, scales = tensors["q"], tensors["scales"]
    if q.numel() and int(q.min()) < -127:
        raise ValueError("int8 weights hold -128; slimnn's symmetric int8 format uses [-127, 127]")
    if not bool(torch.isfinite(scales).all()) or not bool((scales > 0).all()):
        raise ValueError("int8 scales must be finite and positive")
    bias = tensors.get("bias")
    if bias is not None and not bool(torch.isfinite(bias).all()):
        raise ValueError("bias has a NaN or infinite value")
    activation = meta.get("activation")  # absent in v1 files: no fused activation
    if activation is not None and activation not in FUSABLE:
        raise ValueError(f"int8_linear activation must be one of {sorted(FUSABLE)}, got {activation!r}")
    mod = bare_linear(Int8Linear, cfg, meta["in_features"], meta["out_features"])
    mod.activation = activation
    mod.register_buffer("packed", pack_q8(q, scales, cfg.group_size))
    mod.register_buffer("bias", None if bias is None else bias.clone())
    mod.last_kernel = None
    return mod


# --- distillation ---

def _to_shadow(mod: nn.Module) -> tuple:
    gs = mod.config.group_size

    def fake_quant(w: Tensor) -> Tensor:
        q, s = quantize_int8_symmetric(w, gs)
        return dequantize_int8(q, s, gs)

    b = None if mod.bias is None else mod.bias.detach().clone()
    return mod.dequantized_weight(), b, fake_quant, None


def _from_shadow(mod: nn.Module, w: Tensor, b: Optional[Tensor]) -> nn.Module:
    lin = nn.Linear(w.shape[1], w.shape[0], bias=b is not None)
    with torch.no_grad():
        lin.weight.copy_(w)
        if b is not None:
            lin.bias.copy_(b)
    return Int8Linear.from_linear(lin, mod.config, getattr(mod, "activation", None))


def _cli_config(args: Any) -> Int8Config:
    return Int8Config(mode=getattr(args, "mode", None) or "dynamic", group_size=getattr(args, "group_size", None))


TECHNIQUE = register(Technique(
    name="int8",
    config=Int8Config,
    modules=(Int8Linear,),
    convert=convert,
    summary="int8 weights (per channel or group); dynamic int8 activations (VNNI) or weight-only",
    save_formats=(ModuleFormat("int8_linear", 2, Int8Linear, _to_canonical, _spec, _from_canonical,
                               version_for=lambda m: 1 if m.activation is None else 2, reads=(1,)),),
    trainable=(Trainable(Int8Linear, _to_shadow, _from_shadow),),
    cli_config=_cli_config,
    autocompress=AutoStep(lambda: [Int8Config(mode="dynamic"), Int8Config(mode="weight_only")], "all", order=0),
))
