"""The schema of a compressed module's saved form, and validators for untrusted manifest values.

A technique describes how its modules are stored with a :class:`ModuleFormat` (registered with the
technique, see :mod:`slimnn.techniques`); :mod:`slimnn.io` writes and reads files with them. The
validators raise ``ValueError`` naming the field: manifest values come from files of unknown origin.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Callable, Optional

import torch
from torch import Tensor, nn

MAX_DIM = 2**31 - 1

DTYPES: dict[str, torch.dtype] = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
    "BOOL": torch.bool,
}
"""safetensors dtype names -> torch dtypes."""
DTYPE_NAMES = {v: k for k, v in DTYPES.items()}
ITEMSIZE = {k: torch.empty(0, dtype=v).element_size() for k, v in DTYPES.items()}

FUSABLE = ("relu", "gelu", "gelu_tanh", "silu")
"""Activations a saved module may apply in its epilogue (the kernels' activation codes 1..4)."""

TensorSpec = dict[str, tuple[torch.dtype, tuple[int, ...]]]


@dataclasses.dataclass(frozen=True)
class ModuleFormat:
    """How one compressed module class is stored.

    to_canonical(module) -> (tensors, meta): CPU-independent tensors and JSON-able metadata.
    spec(meta) -> {tensor name: (dtype, shape)}: what the tensors must be for this (validated) metadata;
        raises ValueError on bad metadata. Called before any tensor data is read.
    from_canonical(tensors, meta) -> module: rebuilds (and packs for this CPU) the module.
    """

    name: str
    version: int
    cls: type
    to_canonical: Callable[[nn.Module], tuple[dict[str, Tensor], dict[str, Any]]]
    spec: Callable[[dict[str, Any]], TensorSpec]
    from_canonical: Callable[[dict[str, Tensor], dict[str, Any]], nn.Module]
    # Optional: the version to write for a given module (formats that gained a feature write the new
    # version only for modules that use it, so older readers still read the rest), and older versions this
    # format still reads.
    version_for: Optional[Callable[[nn.Module], int]] = None
    reads: tuple = ()


def int_field(meta: dict, key: str, lo: int = 0, hi: int = MAX_DIM) -> int:
    """``meta[key]`` as an integer in [lo, hi] (bools rejected)."""
    v = meta.get(key)
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise ValueError(f"manifest field {key!r} must be an integer in [{lo}, {hi}], got {v!r}")
    return v


def bool_field(meta: dict, key: str) -> bool:
    """``meta[key]`` as a JSON boolean."""
    v = meta.get(key)
    if not isinstance(v, bool):
        raise ValueError(f"manifest field {key!r} must be true or false, got {v!r}")
    return v


def dict_field(obj: Any, what: str) -> dict:
    """``obj`` if it is a JSON object."""
    if not isinstance(obj, dict):
        raise ValueError(f"{what} must be a JSON object, got {type(obj).__name__}")
    return obj


def config_field(meta: dict, cls: type, fmt: str) -> Any:
    """``meta["config"]`` parsed as a config of type ``cls`` (allow-listed JSON, never code)."""
    from ..configs import config_from_json  # configs is a leaf; imported here to keep this module's import light

    try:
        cfg = config_from_json(json.dumps(dict_field(meta.get("config"), f"{fmt} config")))
    except TypeError as e:  # a field of the wrong type reaches the dataclass
        raise ValueError(f"{fmt} config: {e}") from None
    if not isinstance(cfg, cls):
        raise ValueError(f"{fmt} module has a {type(cfg).__name__}, expected {cls.__name__}")
    return cfg


def linear_meta(mod: nn.Module, config: Any) -> dict[str, Any]:
    """The metadata every linear format stores alike: the layer's shape, whether it has a bias, and its
    config (``config``, as JSON); a format adds its own fields to the dict."""
    return {
        "in_features": mod.in_features,
        "out_features": mod.out_features,
        "bias": mod.bias is not None,
        "config": json.loads(config.to_json()),
    }
