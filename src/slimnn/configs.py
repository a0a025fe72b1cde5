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


SPARSE_VALUES = ("fp32", "int8")
SPARSE_BACKENDS = ("auto", "sparse", "dense")


@dataclass(frozen=True)
class SparseConfig:
    """Pruning, stored and multiplied sparse. See :mod:`slimnn.prune` for the criteria and patterns.

    sparsity: fraction of weights removed, in [0, 1] (of blocks for block patterns, of hidden units for
        ``"neurons"``; ignored for N:M, whose sparsity is 1 - N/M).
    pattern: ``"unstructured"``, ``"N:M"`` (``"2:4"``, ``"4:8"``, ...), ``"RxC"`` blocks (``"1x4"``,
        ``"1x8"``, ``"4x1"``, ``"16x1"``) or ``"neurons"`` (structured: smaller dense MLP layer pairs).
    method: ``"magnitude"``, ``"wanda"`` (activation-aware; run ``slimnn.prune.calibrate_`` first) or
        ``"existing"`` (keep the current nonzeros, e.g. after ``slimnn.prune.GradualPruner``).
    scope: ``"layer"`` (every layer at ``sparsity``) or ``"global"`` (one threshold across the layers).
    skip: fnmatch patterns of layer names left dense (reported as skipped).
    layer_sparsity: (fnmatch pattern, sparsity) pairs overriding ``sparsity``; the first match wins.
    values: ``"fp32"``, or ``"int8"`` (one scale per output row; also what ``[SparseConfig, Int8Config]``
        composes to).
    int8_mode: the dense int8 kernel (Int8Config.mode) used where ``backend`` picks dense for int8 values.
    backend: ``"auto"`` (time the sparse and the dense kernel for this layer on this machine, at M = 1 and
        M = 16, and keep the faster; the module says which), ``"sparse"`` or ``"dense"``.
    index_bits: csr column-delta width, 4 or 8; ``None`` picks the smaller blob.
    kernel: ``"auto"`` or ``"reference"`` (torch float math; slow, for checking).
    """

    sparsity: float = 0.5
    pattern: str = "unstructured"
    method: str = "magnitude"
    scope: str = "layer"
    skip: tuple = ()
    layer_sparsity: tuple = ()
    values: str = "fp32"
    int8_mode: str = "weight_only"
    backend: str = "auto"
    index_bits: Optional[int] = None
    kernel: str = "auto"
    version: int = 1

    def __post_init__(self) -> None:
        from .prune import METHODS, parse_pattern

        s = self.sparsity
        if isinstance(s, bool) or not isinstance(s, (int, float)) or not 0.0 <= float(s) <= 1.0:
            raise ValueError(f"SparseConfig.sparsity must be a number in [0, 1], got {s!r}")
        parse_pattern(self.pattern)
        if self.method not in METHODS:
            raise ValueError(f"SparseConfig.method must be one of {METHODS}, got {self.method!r}")
        if self.scope not in ("layer", "global"):
            raise ValueError(f"SparseConfig.scope must be 'layer' or 'global', got {self.scope!r}")
        skip = (self.skip,) if isinstance(self.skip, str) else self.skip
        if not isinstance(skip, (tuple, list)) or not all(isinstance(p, str) for p in skip):
            raise ValueError(f"SparseConfig.skip must be a sequence of fnmatch patterns, got {self.skip!r}")
        object.__setattr__(self, "skip", tuple(skip))
        ls = self.layer_sparsity
        if isinstance(ls, dict):
            ls = tuple(ls.items())
        try:
            ls = tuple((str(p), float(v)) for p, v in ls)
        except (TypeError, ValueError):
            raise ValueError(f"SparseConfig.layer_sparsity must be (pattern, sparsity) pairs, got {self.layer_sparsity!r}")
        if any(not 0.0 <= v <= 1.0 for _, v in ls):
            raise ValueError("SparseConfig.layer_sparsity values must be in [0, 1]")
        object.__setattr__(self, "layer_sparsity", ls)
        if self.values not in SPARSE_VALUES:
            raise ValueError(f"SparseConfig.values must be one of {SPARSE_VALUES}, got {self.values!r}")
        if self.int8_mode not in ("dynamic", "weight_only"):
            raise ValueError(f"SparseConfig.int8_mode must be 'dynamic' or 'weight_only', got {self.int8_mode!r}")
        if self.backend not in SPARSE_BACKENDS:
            raise ValueError(f"SparseConfig.backend must be one of {SPARSE_BACKENDS}, got {self.backend!r}")
        if self.index_bits not in (None, 4, 8) or isinstance(self.index_bits, bool):
            raise ValueError(f"SparseConfig.index_bits must be 4, 8 or None, got {self.index_bits!r}")
        if self.index_bits is not None and self.pattern != "unstructured":
            raise ValueError("SparseConfig.index_bits is for pattern 'unstructured' (the csr format) only")
        if self.kernel not in KERNELS:
            raise ValueError(f"SparseConfig.kernel must be one of {KERNELS}, got {self.kernel!r}")
        if self.version != 1:
            raise ValueError(f"SparseConfig.version {self.version} is not supported (this slimnn reads 1)")

    def to_json(self) -> str:
        return json.dumps({"type": type(self).__name__, **dataclasses.asdict(self)}, sort_keys=True)


_ALLOWED["SparseConfig"] = SparseConfig
