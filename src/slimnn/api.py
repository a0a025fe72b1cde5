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
from .techniques import Done, for_config, run_model_hooks, techniques
from .techniques.embedding import is_hf_conv1d, tie_to_head
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
    # Every module that holds parameters and stays float: fqn -> (bytes of its own parameters, reason).
    float_modules: dict[str, tuple] = dataclasses.field(default_factory=dict)
    bytes_before: int = 0       # parameter and buffer bytes of the model before (tied tensors once)
    bytes_after: int = 0        # the same after
    bytes_compressed_from: int = 0  # float bytes of the parameters that were compressed

    def summary(self) -> str:
        if not self.bytes_before:
            return "no parameters"
        share = self.bytes_compressed_from / self.bytes_before
        left = sum(b for b, _ in self.float_modules.values())
        return (f"parameter bytes {self.bytes_before / 1e6:.2f} MB -> {self.bytes_after / 1e6:.2f} MB "
                f"({self.bytes_before / max(self.bytes_after, 1):.2f}x smaller); {share:.1%} of the float bytes "
                f"compressed, {left / 1e6:.2f} MB left in float in {len(self.float_modules)} module(s)")

    def __str__(self) -> str:
        lines = [f"converted {len(self.converted)} layer(s), skipped {len(self.skipped)}"]
        lines += [f"  {k}: {v}" for k, v in self.converted.items()]
        lines += [f"  skipped {k}: {v}" for k, v in self.skipped.items()]
        if self.prepared:
            lines += [f"  prepared {k}: {v}" for k, v in self.prepared.items()]
        if self.fused:
            lines.append(f"fused {len(self.fused)} activation(s) into their layer")
            lines += [f"  fused {k}: {v}" for k, v in self.fused.items()]
        if self.float_modules:
            lines.append(f"left in float: {len(self.float_modules)} module(s) holding parameters")
            lines += [f"  float {k}: {b} bytes, {why}" for k, (b, why) in self.float_modules.items()]
        lines.append(self.summary())
        return "\n".join(lines)


def _finish(model: nn.Module, config: Any, report: "CompressionReport") -> "CompressionReport":
    if report.converted:
        run_model_hooks(model, config)  # e.g. transformers models get slimnn's quantizer (integrations)
    return report


EMBEDDINGS_OPT_IN = ("embedding: converted only when filter_fn accepts it (e.g. filter_fn=lambda m, fqn: True); "
                     "a tied head then shares one compressed table")


def _default_filter(module: nn.Module, fqn: str) -> bool:
    # Every layer the technique targets but embeddings: quantizing a lookup table changes every token's input,
    # and the transformers checkpoint path does not carry compressed tables yet, so they are opt-in.
    return not isinstance(module, nn.Embedding)


def compress_(
    model: nn.Module,
    config: Union[Any, list],
    filter_fn: Optional[Callable[[nn.Module, str], bool]] = None,
    fuse: bool = True,
) -> CompressionReport:
    """Replaces, in place, every layer of ``model`` that the config's technique targets and
    ``filter_fn(module, fqn)`` accepts (default: all of them) by the compressed module ``config`` describes:
    ``nn.Linear`` (and transformers' ``Conv1D``, converted as the Linear it is) for every technique;
    ``nn.Conv1d``/``nn.Conv2d`` (BatchNorms folded first) and ``nn.Embedding`` for Int8Config, embeddings for
    Int4Config. An embedding tied to a converted head shares the head's blob. Returns a report, which also
    lists every module left in float with its bytes and reason.
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
    report.bytes_before = _tensor_bytes(model)
    if nn.Linear in tech.targets:
        _linear_twins_(model, keep)
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
            report.skipped[fqn] = EMBEDDINGS_OPT_IN if filter_fn is None else "rejected by filter_fn"
            continue
        if mod.weight.device.type != "cpu":
            report.skipped[fqn] = f"weight on {mod.weight.device}; slimnn runs on the CPU"
            continue
        targets.append((fqn, mod))
    if targets and targets[0][0] == "":
        where = "nn." if type(model).__module__.startswith("torch.nn") else ""
        raise ValueError(f"compress_ replaces submodules in place; wrap a bare {where}{type(model).__name__} in a "
                         "container")
    embeddings = [(f, m) for f, m in targets if isinstance(m, nn.Embedding)]
    targets = [(f, m) for f, m in targets if not isinstance(m, nn.Embedding)]
    float_weights = {id(p): p for p in model.parameters()}
    if tech.prepare is not None:
        report.prepared = tech.prepare(model, targets, cfg)
    if tech.convert_model is not None and tech.convert_model(model, targets, cfg, report):
        _embeddings_(model, embeddings, targets, handler, cfg, report)
        if fuse and tech.fuse is not None:  # e.g. a calibrated conv's ReLU6 into its kernel
            report.fused = tech.fuse(model)
        _account(model, report, float_weights)
        return _finish(model, config, report)
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
        model.set_submodule(fqn, new)
        summary = getattr(new, "summary", None)
        report.converted[fqn] = type(new).__name__ + (f" ({summary()})" if callable(summary) else "")
    _embeddings_(model, embeddings, targets, handler, cfg, report)
    if fuse:
        report.fused = fuse_activations_(model)
        if tech.fuse is not None:
            report.fused.update(tech.fuse(model))
    _account(model, report, float_weights)
    return _finish(model, config, report)


def _linear_twins_(model: nn.Module, keep: Callable) -> None:
    """Replaces every transformers ``Conv1D`` that ``keep`` accepts by the nn.Linear it is (weight transposed,
    the same values), so it is converted like any Linear."""
    for fqn, mod in list(model.named_modules()):
        if not is_hf_conv1d(mod) or not keep(mod, fqn) or mod._forward_hooks or mod._forward_pre_hooks:
            continue
        nx, nf = mod.weight.shape
        lin = nn.Linear(nx, nf, bias=mod.bias is not None, device="meta")
        lin.weight = nn.Parameter(mod.weight.detach().t(), requires_grad=mod.weight.requires_grad)
        if mod.bias is not None:
            lin.bias = mod.bias
        parent_name, _, child = fqn.rpartition(".")
        setattr(model.get_submodule(parent_name) if parent_name else model, child, lin)


def _embeddings_(model: nn.Module, embeddings: list, targets: list, handler: Callable, cfg: Any,
                 report: "CompressionReport") -> None:
    """Converts the embedding targets after the Linears: a table whose weight Parameter is a converted head's
    weight gets the head's blob (one compressed copy); an untied one is converted on its own."""
    heads = {id(m.weight): f for f, m in targets if isinstance(m, nn.Linear)}
    done: dict[int, Any] = {}
    for fqn, emb in embeddings:
        if id(emb) in done:
            new = done[id(emb)]
        else:
            head_fqn = heads.get(id(emb.weight))
            if head_fqn is not None:
                head = model.get_submodule(head_fqn)
                new = tie_to_head(head, emb, head_fqn)
            else:
                new = handler(emb, cfg)
            done[id(emb)] = new
        if isinstance(new, str):
            report.skipped[fqn] = new
            continue
        parent_name, _, child = fqn.rpartition(".")
        setattr(model.get_submodule(parent_name) if parent_name else model, child, new)
        summary = getattr(new, "summary", None)
        report.converted[fqn] = type(new).__name__ + (f" ({summary()})" if callable(summary) else "")


def _tensor_bytes(model: nn.Module) -> int:
    seen, total = set(), 0
    for t in list(model.parameters()) + list(model.buffers()):
        key = (t.data_ptr(), t.numel(), t.dtype)
        if t.numel() and key not in seen and t.device.type != "meta":
            seen.add(key)
            total += t.numel() * t.element_size()
    return total


def _account(model: nn.Module, report: "CompressionReport", float_weights: dict) -> None:
    """Fills the report's byte counts and lists every module that still holds float parameters, with why."""
    report.bytes_after = _tensor_bytes(model)
    left = {id(p) for p in model.parameters()}
    report.bytes_compressed_from = sum(p.numel() * p.element_size() for i, p in float_weights.items() if i not in left)
    seen = set()
    for fqn, mod in model.named_modules():
        own = [p for p in mod.parameters(recurse=False) if p.is_floating_point() and id(p) not in seen]
        if not own:
            continue
        seen.update(id(p) for p in own)
        nbytes = sum(p.numel() * p.element_size() for p in own)
        if fqn in report.skipped:
            why = report.skipped[fqn]
        elif isinstance(mod, (nn.LayerNorm, nn.GroupNorm, nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)) or "Norm" in type(mod).__name__:
            why = "normalization layer: not a compression target"
        else:
            why = f"{type(mod).__name__} is not a layer type this technique converts"
        report.float_modules[fqn or "(root)"] = (nbytes, why)
