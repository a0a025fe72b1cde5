"""``compress_``: swap compressed modules into any PyTorch model, in place.

The technique registry (:mod:`slimnn.techniques`) maps each config type to its technique, which converts
one layer (or the whole model, for calibrated methods). Every candidate layer that is not converted is
listed in the returned report with the reason.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Optional, Union

from torch import nn

from .configs import Int8Config, SparseConfig
from .techniques import Done, for_config, techniques
from .techniques.fusion import fuse_activations_

def _compose(configs: list) -> Any:
    """One config for a list: ``[SparseConfig, Int8Config]`` (either order) is sparse storage with int8
    values, one scale per output row; the Int8Config's mode is the dense kernel used where dense wins."""
    if len(configs) == 1:
        return configs[0]
    sparse = [c for c in configs if isinstance(c, SparseConfig)]
    int8 = [c for c in configs if isinstance(c, Int8Config)]
    if len(configs) == 2 and len(sparse) == 1 and len(int8) == 1:
        s, q = sparse[0], int8[0]
        if q.group_size is not None:
            raise ValueError("sparse + int8 stores one scale per output row: Int8Config.group_size must be None")
        if s.pattern == "neurons":
            raise ValueError("pattern 'neurons' leaves dense layers: compress them with Int8Config in a second call")
        kernel = "reference" if "reference" in (s.kernel, q.kernel) else "auto"
        return dataclasses.replace(s, values="int8", int8_mode=q.mode, kernel=kernel)
    names = [type(c).__name__ for c in configs]
    raise NotImplementedError(f"composing {names} is not supported; supported: [SparseConfig, Int8Config]")


@dataclasses.dataclass
class CompressionReport:
    """What ``compress_`` did: converted layers (fqn -> new module type) and skipped ones (fqn -> reason)."""

    converted: dict[str, str] = dataclasses.field(default_factory=dict)
    skipped: dict[str, str] = dataclasses.field(default_factory=dict)
    # Linear fqn -> "<activation> (from <activation module fqn>)", for activations fused into their Linear.
    fused: dict[str, str] = dataclasses.field(default_factory=dict)
    # fqn -> what a technique's prepare step did there before conversion (e.g. a BatchNorm folded into a conv).
    prepared: dict[str, str] = dataclasses.field(default_factory=dict)

    def __str__(self) -> str:
        lines = [f"converted {len(self.converted)} layer(s), skipped {len(self.skipped)}"]
        lines += [f"  {k}: {v}" for k, v in self.converted.items()]
        lines += [f"  skipped {k}: {v}" for k, v in self.skipped.items()]
        if self.prepared:
            lines += [f"  prepared {k}: {v}" for k, v in self.prepared.items()]
        if self.fused:
            lines.append(f"fused {len(self.fused)} activation(s) into their layer")
            lines += [f"  fused {k}: {v}" for k, v in self.fused.items()]
        return "\n".join(lines)


def _default_filter(module: nn.Module, fqn: str) -> bool:
    return True  # every layer the technique targets


def compress_(
    model: nn.Module,
    config: Union[Any, list],
    filter_fn: Optional[Callable[[nn.Module, str], bool]] = None,
    fuse: bool = True,
) -> CompressionReport:
    """Replaces, in place, every ``nn.Linear`` of ``model`` that ``filter_fn(module, fqn)`` accepts
    (default: all ``nn.Linear``) by the compressed module ``config`` describes. Returns a report.
    ``config`` may be a list to compose techniques: ``[SparseConfig(...), Int8Config()]`` stores sparse
    weights with int8 values. ``fuse``: then run :func:`slimnn.fuse_activations_`, so compressed Linears
    apply the activation that provably follows them in their GEMM epilogue (same model up to float
    rounding; listed in ``report.fused``).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"compress_ expects an nn.Module, got {type(model).__name__}")
    configs = config if isinstance(config, (list, tuple)) else [config]
    if not configs:
        raise ValueError("compress_ needs at least one config")
    cfg = _compose(list(configs))
    tech = for_config(type(cfg))
    if tech is None:
        known = [t.config.__name__ for t in techniques().values()]
        raise TypeError(f"no compression technique for {type(cfg).__name__}; known: {known}")
    handler = tech.convert
    keep = filter_fn or _default_filter
    report = CompressionReport()
    targets = []
    # remove_duplicate=False: a Linear shared under several names (tied layers) is seen under each of them,
    # converted once below and swapped in everywhere, so no alias silently stays float.
    kinds = tuple(tech.targets)
    for fqn, mod in model.named_modules(remove_duplicate=False):
        if isinstance(mod, kinds) and type(mod) not in kinds and not (tech.accepts is not None and tech.accepts(mod)):
            base = next(k for k in kinds if isinstance(mod, k))
            where = "nn." if base.__module__.startswith("torch.nn") else ""
            report.skipped[fqn] = f"subclass {type(mod).__name__} of {where}{base.__name__} is not converted"
            continue
        if not isinstance(mod, kinds):
            continue
        if not keep(mod, fqn):
            report.skipped[fqn] = "rejected by filter_fn"
            continue
        if mod.weight.device.type != "cpu":
            report.skipped[fqn] = f"weight on {mod.weight.device}; slimnn runs on the CPU"
            continue
        targets.append((fqn, mod))
    if targets and targets[0][0] == "":
        where = "nn." if type(model).__module__.startswith("torch.nn") else ""
        raise ValueError(f"compress_ replaces submodules in place; wrap a bare {where}{type(model).__name__} in a "
                         "container")
    if tech.prepare is not None:
        report.prepared = tech.prepare(model, targets, cfg)
    if tech.convert_model is not None and tech.convert_model(model, targets, cfg, report):
        return report
    plan = tech.plan(model, targets, cfg) if tech.plan is not None else {}
    prepared = tech.convert_batch(model, targets, cfg) if tech.convert_batch is not None else None
    # Convert every layer before swapping any in: if one fails (e.g. NaN weights), the model is unchanged.
    # A module reachable under several names (shared/tied) is converted once and stays shared.
    by_id: dict[int, Any] = {}
    for fqn, mod in targets:
        layer_cfg = plan.get(fqn, cfg)
        if isinstance(layer_cfg, (str, Done)) or id(mod) in by_id:
            continue
        by_id[id(mod)] = handler(mod, layer_cfg) if prepared is None else prepared[fqn]
    for fqn, mod in targets:
        layer_cfg = plan.get(fqn, cfg)
        if isinstance(layer_cfg, str):  # the planner skipped this layer, with the reason
            report.skipped[fqn] = layer_cfg
            continue
        if isinstance(layer_cfg, Done):  # the planner converted it itself
            report.converted[fqn] = layer_cfg.what
            continue
        new = by_id[id(mod)]
        if isinstance(new, str):  # the handler declined this layer, with the reason
            report.skipped[fqn] = new
            continue
        parent_name, _, child = fqn.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, new)
        summary = getattr(new, "summary", None)
        report.converted[fqn] = type(new).__name__ + (f" ({summary()})" if callable(summary) else "")
    if fuse:
        report.fused = fuse_activations_(model)
        if tech.fuse is not None:
            report.fused.update(tech.fuse(model))
    return report
