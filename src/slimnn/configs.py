"""Compression configs: dataclasses, validated on construction, JSON round-trippable."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any, Optional

KERNELS = ("auto", "reference")
"""``kernel`` values. ``"auto"``: the fastest kernel for this CPU (C++). ``"reference"``: the readable
torch float emulation in :mod:`slimnn.reference` (slow; for debugging and accuracy checks)."""


@dataclass(frozen=True)
class Int8Config:
    """int8 weights, per output channel or per group of ``group_size`` inputs (symmetric, round to nearest).

    mode:
        ``"dynamic"``: activations are quantized per row (per token) to uint8 at run time and multiplied
        with integer instructions (VNNI where present); fastest.
        ``"weight_only"``: activations stay float; weights are widened in registers. More accurate,
        for accuracy-sensitive layers and memory-bound batch-1 decoding.
    group_size: ``None`` for one scale per output channel, else a positive multiple of 4 (e.g. 32, 64, 128).
    """

    mode: str = "dynamic"
    group_size: Optional[int] = None
    kernel: str = "auto"
    version: int = 1

    def __post_init__(self) -> None:
        if self.mode not in ("dynamic", "weight_only"):
            raise ValueError(f"Int8Config.mode must be 'dynamic' or 'weight_only', got {self.mode!r}")
        gs = self.group_size
        if gs is not None and (isinstance(gs, bool) or not isinstance(gs, int) or gs < 4 or gs % 4):
            raise ValueError(f"Int8Config.group_size must be None or a positive multiple of 4, got {gs!r}")
        if self.kernel not in KERNELS:
            raise ValueError(f"Int8Config.kernel must be one of {KERNELS}, got {self.kernel!r}")
        if self.version != 1:
            raise ValueError(f"Int8Config.version {self.version} is not supported (this slimnn reads 1)")

    def to_json(self) -> str:
        return json.dumps({"type": type(self).__name__, **dataclasses.asdict(self)}, sort_keys=True)


INT4_METHODS = ("rtn", "gptq", "awq")
"""``Int4Config.method`` values. ``"rtn"``: round to nearest (no data). ``"gptq"``: GPTQ error compensation
with a Hessian from calibration inputs (Frantar et al., 2022). ``"awq"``: activation-aware per-input-channel
scaling searched on calibration inputs, plus a per-group clipping search (Lin et al., 2023)."""


@dataclass(frozen=True)
class Int4Config:
    """4-bit weights, group-wise along K (or per output channel), optionally calibrated on data.

    group_size: ``None`` for one scale per output channel, else a positive multiple of 32 (32, 64, 128, 256).
        K need not be a multiple of it: the last group is shorter (no padding cost beyond K rounded up to 8).
    method: one of :data:`INT4_METHODS`. ``"gptq"`` and ``"awq"`` need ``calib_data``.
    symmetric: ``True``: code 8 is zero, no zero points. ``False``: one integer zero point per group.
    scale_dtype: ``"float16"`` (default), ``"bfloat16"`` or ``"float32"``: how scales are stored (fp16 halves
        the scale bytes streamed per token next to fp32).
    mode: ``"dynamic"`` (W4A8: activations quantized per row to uint8 at run time, integer dot products;
        fastest) or ``"weight_only"`` (float activations; for accuracy-critical layers).
    calib_data: an iterable of model inputs (each a Tensor -> ``model(x)``, a tuple -> ``model(*x)`` or a
        dict -> ``model(**x)``), read once into a list. It is not part of the config's identity: it is left
        out of ``to_json``, equality and ``repr``.
    gptq_damp: GPTQ's dampening, as a fraction of the Hessian's mean diagonal. gptq_block: GPTQ's lazy-batch
        width. gptq_act_order: quantize columns in decreasing order of input energy, with group parameters
        fixed from the original weights (usually better; see :func:`slimnn.calibrate.gptq_quantize`).
    awq_grid: number of steps of AWQ's exponent search in [0, 1]. awq_clip: also search a clipping ratio per
        group. max_calib_rows: activation rows (tokens) kept per layer for AWQ's searches (sampled evenly).
    progress: show a progress bar over layers during calibration (needs tqdm).
    """

    group_size: Optional[int] = 64
    method: str = "rtn"
    symmetric: bool = True
    scale_dtype: str = "float16"
    mode: str = "dynamic"
    kernel: str = "auto"
    calib_data: Any = dataclasses.field(default=None, compare=False, repr=False)
    gptq_damp: float = 0.01
    gptq_block: int = 128
    gptq_act_order: bool = True
    awq_grid: int = 20
    awq_clip: bool = True
    max_calib_rows: int = 2048
    progress: bool = True
    version: int = 1

    def __post_init__(self) -> None:
        gs = self.group_size
        if gs is not None and (isinstance(gs, bool) or not isinstance(gs, int) or gs < 32 or gs % 32):
            raise ValueError(f"Int4Config.group_size must be None or a positive multiple of 32, got {gs!r}")
        if self.method not in INT4_METHODS:
            raise ValueError(f"Int4Config.method must be one of {INT4_METHODS}, got {self.method!r}")
        if not isinstance(self.symmetric, bool):
            raise ValueError(f"Int4Config.symmetric must be a bool, got {self.symmetric!r}")
        if self.scale_dtype not in ("float16", "bfloat16", "float32"):
            raise ValueError(
                f"Int4Config.scale_dtype must be 'float16', 'bfloat16' or 'float32', got {self.scale_dtype!r}"
            )
        if self.mode not in ("dynamic", "weight_only"):
            raise ValueError(f"Int4Config.mode must be 'dynamic' or 'weight_only', got {self.mode!r}")
        if self.kernel not in KERNELS:
            raise ValueError(f"Int4Config.kernel must be one of {KERNELS}, got {self.kernel!r}")
        if isinstance(self.calib_data, (str, bytes)) or (
            self.calib_data is not None and not hasattr(self.calib_data, "__iter__")
        ):
            raise ValueError("Int4Config.calib_data must be None or an iterable of model inputs")
        for name in ("gptq_act_order", "awq_clip", "progress"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"Int4Config.{name} must be a bool, got {getattr(self, name)!r}")
        if not (isinstance(self.gptq_damp, (int, float)) and 0 < self.gptq_damp < 1):
            raise ValueError(f"Int4Config.gptq_damp must be in (0, 1), got {self.gptq_damp!r}")
        for name in ("gptq_block", "awq_grid", "max_calib_rows"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"Int4Config.{name} must be a positive int, got {v!r}")
        if self.version != 1:
            raise ValueError(f"Int4Config.version {self.version} is not supported (this slimnn reads 1)")

    def to_json(self) -> str:
        d = dataclasses.asdict(dataclasses.replace(self, calib_data=None))
        d.pop("calib_data")
        return json.dumps({"type": type(self).__name__, **d}, sort_keys=True)


_ALLOWED: dict[str, type] = {"Int8Config": Int8Config}
_ALLOWED["Int4Config"] = Int4Config


def config_from_json(text: str) -> Any:
    """Rebuilds a config from :meth:`to_json` output. Only known config classes load (an allow-list)."""
    data = json.loads(text)
    if not isinstance(data, dict) or data.get("type") not in _ALLOWED:
        raise ValueError(f"not a slimnn config: {text[:80]!r}")
    cls = _ALLOWED[data.pop("type")]
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - fields
    if unknown:
        raise ValueError(f"unknown fields for {cls.__name__}: {sorted(unknown)}")
    return cls(**data)
