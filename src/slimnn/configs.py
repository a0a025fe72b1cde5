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


_ALLOWED: dict[str, type] = {"Int8Config": Int8Config}


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
