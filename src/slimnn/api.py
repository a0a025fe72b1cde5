"""``compress_``: swap compressed modules into any PyTorch model, in place.

A registry maps each config type to a handler that turns one ``nn.Linear`` into its compressed module.
Every Linear that is not converted is listed in the returned report with the reason.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Optional, Union

from torch import nn

from .configs import Int4Config, Int8Config, LowRankConfig, SparseConfig

Handler = Callable[[nn.Module, Any], nn.Module]
_HANDLERS: dict[type, Handler] = {}
# Optional, per config type: fn(model, [(fqn, linear)], config) -> {fqn: new module, or a str = reason to skip}.
# For techniques that look at all target layers together (calibration passes over the model, progress bars).
BatchHandler = Callable[[nn.Module, list, Any], dict]
_BATCH_HANDLERS: dict[type, BatchHandler] = {}


def register_handler(config_type: type) -> Callable[[Handler], Handler]:
    """Registers ``fn(linear, config) -> module`` for a config type."""

    def deco(fn: Handler) -> Handler:
        _HANDLERS[config_type] = fn
        return fn

    return deco


@register_handler(Int8Config)
def _int8(linear: nn.Module, config: Int8Config) -> nn.Module:
    from .nn.int8 import Int8Linear

    return Int8Linear.from_linear(linear, config)


@register_handler(Int4Config)
def _int4(linear: nn.Module, config: Int4Config) -> nn.Module:
    from .nn.int4 import Int4Linear

    return Int4Linear.from_linear(linear, config)


# Model-level handlers: for configs that need the whole model (calibration runs it on data, layer by
# layer). fn(model, targets, config, report) -> True when it converted the targets itself.
ModelHandler = Callable[[nn.Module, list, Any, "CompressionReport"], bool]
_MODEL_HANDLERS: dict[type, ModelHandler] = {}


def register_model_handler(config_type: type) -> Callable[[ModelHandler], ModelHandler]:
    """Registers ``fn(model, [(fqn, linear)], config, report) -> bool`` for a config type."""

    def deco(fn: ModelHandler) -> ModelHandler:
        _MODEL_HANDLERS[config_type] = fn
        return fn

    return deco


@register_model_handler(Int4Config)
def _int4_model(model: nn.Module, targets: list, config: Int4Config, report: "CompressionReport") -> bool:
    if config.method == "rtn":
        return False  # layer by layer, no data
    from .int4_calibration import quantize_model_int4_

    quantize_model_int4_(model, targets, config, report)
    return True


@register_handler(SparseConfig)
def _sparse(linear: nn.Module, config: SparseConfig) -> nn.Module:
    from .nn.sparse import SparseLinear

    return SparseLinear.from_linear(linear, config)


Planner = Callable[[nn.Module, list, Any], dict]
_PLANNERS: dict[type, Planner] = {}


def register_planner(config_type: type) -> Callable[[Planner], Planner]:
    """Registers ``fn(model, targets, config) -> {fqn: per-layer config | reason to skip (str) | Done}``, run
    once before the handlers: for choices that need every layer at once (global sparsity, skip lists,
    structured changes across layers)."""

    def deco(fn: Planner) -> Planner:
        _PLANNERS[config_type] = fn
        return fn

    return deco


@dataclasses.dataclass(frozen=True)
class Done:
    """A planner's answer for a layer it already converted itself (e.g. structured pruning of a pair)."""

    what: str


@register_planner(SparseConfig)
def _plan_sparse(model: nn.Module, targets: list, config: SparseConfig) -> dict:
    from . import prune

    if config.pattern != "neurons":
        return prune.plan_layers(targets, config)
    names = {fqn for fqn, _ in targets}
    out: dict[str, Any] = {fqn: "matched SparseConfig.skip" for fqn in names if prune.matches_any(fqn, config.skip)}
    groups = [
        (p, c) for p, c in prune.find_mlp_pairs(model)
        if all(x in names and x not in out for x in (*p, c))
    ]
    done = prune.prune_neurons_(model, config.sparsity, groups, config.method)
    for fqn in names:
        if fqn in done:
            out[fqn] = Done(done[fqn])
        elif fqn not in out:
            out[fqn] = "no partner layer found: removing its neurons would change the model's outputs"
    return out


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

    def __str__(self) -> str:
        lines = [f"converted {len(self.converted)} layer(s), skipped {len(self.skipped)}"]
        lines += [f"  {k}: {v}" for k, v in self.converted.items()]
        lines += [f"  skipped {k}: {v}" for k, v in self.skipped.items()]
        if self.fused:
            lines.append(f"fused {len(self.fused)} activation(s) into their Linear")
            lines += [f"  fused {k}: {v}" for k, v in self.fused.items()]
        return "\n".join(lines)


def _default_filter(module: nn.Module, fqn: str) -> bool:
    return type(module) is nn.Linear


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
    handler = _HANDLERS.get(type(cfg))
    if handler is None:
        raise TypeError(f"no compression handler for {type(cfg).__name__}; known: {[t.__name__ for t in _HANDLERS]}")
    keep = filter_fn or _default_filter
    report = CompressionReport()
    targets = []
    # remove_duplicate=False: a Linear shared under several names (tied layers) is seen under each of them,
    # converted once below and swapped in everywhere, so no alias silently stays float.
    for fqn, mod in model.named_modules(remove_duplicate=False):
        if isinstance(mod, nn.Linear) and type(mod) is not nn.Linear:
            report.skipped[fqn] = f"subclass {type(mod).__name__} of nn.Linear is not converted"
            continue
        if type(mod) is not nn.Linear:
            continue
        if not keep(mod, fqn):
            report.skipped[fqn] = "rejected by filter_fn"
            continue
        if mod.weight.device.type != "cpu":
            report.skipped[fqn] = f"weight on {mod.weight.device}; slimnn runs on the CPU"
            continue
        targets.append((fqn, mod))
    if isinstance(model, nn.Linear) and targets and targets[0][0] == "":
        raise ValueError("compress_ replaces submodules in place; wrap a bare nn.Linear in a container")
    model_handler = _MODEL_HANDLERS.get(type(cfg))
    if model_handler is not None and model_handler(model, targets, cfg, report):
        return report
    planner = _PLANNERS.get(type(cfg))
    plan = planner(model, targets, cfg) if planner else {}
    batch = _BATCH_HANDLERS.get(type(cfg))
    prepared = batch(model, targets, cfg) if batch is not None else None
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
        from .fuse import fuse_activations_

        report.fused = fuse_activations_(model)
    return report


@register_handler(LowRankConfig)
def _lowrank(linear: nn.Module, config: LowRankConfig) -> nn.Module:
    from .nn.lowrank import LowRankLinear

    return LowRankLinear.from_linear(linear, config)


def _lowrank_batch(model: nn.Module, targets: list, config: LowRankConfig) -> dict:
    """Calibrates once over ``config.calib_data`` (activation_aware) on the original model, then factorizes
    layer by layer with a progress bar. Layers whose factors would not save ``min_saving`` are skipped."""
    from .calibration import capture_linear_inputs, progress_iter
    from .lowrank import rank_for_ratio
    from .nn.lowrank import LowRankLinear

    stats: dict = {}
    if config.method == "activation_aware":
        if config.calib_data is None:
            raise ValueError("LowRankConfig(method='activation_aware') needs calib_data (an iterable of model inputs)")
        stats = capture_linear_inputs(model, targets, config.calib_data, progress=config.progress)
    out: dict = {}
    for fqn, mod in progress_iter(targets, "slimnn low-rank", config.progress):
        n, k = mod.out_features, mod.in_features
        if config.rank is not None or config.rank_ratio is not None:
            r = min(config.rank if config.rank is not None else rank_for_ratio(n, k, config.rank_ratio), n, k)
            if r * (n + k) > (1.0 - config.min_saving) * n * k:
                out[fqn] = f"rank {r} saves nothing on a {k}->{n} layer (r*(N+K) = {r * (n + k)} >= N*K = {n * k})"
                continue
        st = stats.get(fqn)
        if config.method == "activation_aware" and (st is None or st.n_rows == 0):
            out[fqn] = "no calibration inputs reached this layer"
            continue
        new = LowRankLinear.from_linear(mod, config, st)
        if new.rank * (n + k) > (1.0 - config.min_saving) * n * k:
            out[fqn] = f"rank {new.rank} chosen by the config saves nothing on a {k}->{n} layer"
            continue
        out[fqn] = new
    return out


_BATCH_HANDLERS[LowRankConfig] = _lowrank_batch
