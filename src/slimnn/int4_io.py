"""How :class:`slimnn.nn.Int4Linear` is stored by :func:`slimnn.save` (module format ``"int4_linear"`` v1).

Canonical tensors (CPU-independent; the q4 blob is rebuilt by ``pack_q4`` at load, byte for byte the one
saved): ``codes`` (uint8 N x K, values 0..15), ``scales`` (n_groups x N, in the config's scale dtype:
float16, bfloat16 or float32), ``zeros`` (uint8 n_groups x N, asymmetric only), ``bias`` (float32 N) and
``in_mul`` (float32 K, AWQ's input scaling). Metadata: shapes, which optional tensors are present and the
config (JSON: group size, symmetry, scale dtype, mode, method). Every group size, both symmetries and
both modes use the same format; the config says which.
"""

from __future__ import annotations

import json
from typing import Any

import torch
from torch import Tensor, nn

from .io import ModuleFormat, TensorSpec, _bool, _dict, _int


def _to_canonical(mod: nn.Module) -> tuple[dict[str, Tensor], dict[str, Any]]:
    from .formats import unpack_q4

    codes, scales, zeros, _gs = unpack_q4(mod.packed)
    tensors = {"codes": codes, "scales": scales}
    if zeros is not None:
        tensors["zeros"] = zeros
    if mod.bias is not None:
        tensors["bias"] = mod.bias.detach().to(torch.float32).contiguous()
    if mod.in_mul is not None:
        tensors["in_mul"] = mod.in_mul.detach().to(torch.float32).contiguous()
    meta = {
        "in_features": mod.in_features,
        "out_features": mod.out_features,
        "bias": mod.bias is not None,
        "in_mul": mod.in_mul is not None,
        "config": json.loads(mod.config.to_json()),
    }
    return tensors, meta


def _config(meta: dict) -> Any:
    from .configs import Int4Config, config_from_json

    try:
        cfg = config_from_json(json.dumps(_dict(meta.get("config"), "int4 config")))
    except TypeError as e:  # a field of the wrong type reaches the dataclass
        raise ValueError(f"int4 config: {e}") from None
    if not isinstance(cfg, Int4Config):
        raise ValueError(f"int4_linear module has a {type(cfg).__name__}, expected Int4Config")
    return cfg


def _spec(meta: dict) -> TensorSpec:
    from .quantize import INT4_SCALE_DTYPES

    k, n = _int(meta, "in_features", 1), _int(meta, "out_features", 1)
    cfg = _config(meta)
    groups = 1 if cfg.group_size is None else -(-k // cfg.group_size)
    spec = {"codes": (torch.uint8, (n, k)), "scales": (INT4_SCALE_DTYPES[cfg.scale_dtype], (groups, n))}
    if not cfg.symmetric:
        spec["zeros"] = (torch.uint8, (groups, n))
    if _bool(meta, "bias"):
        spec["bias"] = (torch.float32, (n,))
    if _bool(meta, "in_mul"):
        spec["in_mul"] = (torch.float32, (k,))
    return spec


def _from_canonical(tensors: dict[str, Tensor], meta: dict) -> nn.Module:
    from .formats import q4_info
    from .nn.int4 import Int4Linear

    cfg = _config(meta)
    codes, scales, zeros = tensors["codes"], tensors["scales"], tensors.get("zeros")
    for name, t in (("codes", codes), ("zeros", zeros)):
        if t is not None and t.numel() and int(t.max()) > 15:
            raise ValueError(f"int4 {name} hold {int(t.max())}; 4-bit values are 0..15")
    if not bool(torch.isfinite(scales.float()).all()):
        raise ValueError("int4 scales must be finite")
    bias, in_mul = tensors.get("bias"), tensors.get("in_mul")
    if bias is not None and not bool(torch.isfinite(bias).all()):
        raise ValueError("bias has a NaN or infinite value")
    mod = Int4Linear.from_quantized(codes, scales, zeros, cfg.group_size, bias, in_mul, cfg)  # validates in_mul
    q4_info(mod.packed, full_check=True)
    if (mod.in_features, mod.out_features) != (meta["in_features"], meta["out_features"]):
        raise ValueError("int4 tensors do not match the module's shape")
    return mod


def int4_linear_format() -> ModuleFormat:
    from .nn.int4 import Int4Linear

    return ModuleFormat("int4_linear", 1, Int4Linear, _to_canonical, _spec, _from_canonical)
