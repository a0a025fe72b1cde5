"""Pruning: which weights to remove, as masks over float weights (the math; no kernels, no modules).

Criteria (``method``):
    ``"magnitude"``: score = |W|.
    ``"wanda"``: activation-aware, score = |W[n, k]| * ||X[:, k]||_2 with X the layer's inputs on calibration
    data (:func:`calibrate_`); as in Wanda (Sun et al., 2023) each output row keeps the same number of weights.
    ``"existing"``: keep the weights that are nonzero now (for a model pruned by :class:`GradualPruner`).
Patterns (``pattern``):
    ``"unstructured"``; ``"N:M"`` (e.g. ``"2:4"``, ``"4:8"``: at most N of every M consecutive inputs);
    ``"RxC"`` blocks (``"1x4"``, ``"1x8"``, ``"4x1"``, ``"16x1"``: R outputs x C inputs, scored by the sum of
    their scores); ``"neurons"``: whole hidden units of an MLP (see :func:`prune_neurons_`), which leaves
    smaller dense layers.
Sparsity is the fraction of weights (or blocks, or neurons) removed; ties are broken by position, so masks
are deterministic. Counts are ``round(sparsity * total)``.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import math
from typing import Any, Callable, Iterable, Optional, Sequence, Union

import torch
from torch import Tensor, nn

from ..configs import BLOCKS, METHODS, Pattern, parse_pattern  # noqa: F401  (the pattern grammar lives with the config)
from .quantize import check_weight

INPUT_NORM_ATTR = "_slimnn_input_norm"
"""Attribute :func:`calibrate_` sets on each ``nn.Linear``: float32 [in_features], the L2 norm of each input
feature over the calibration rows. A plain attribute (not a buffer), so state_dicts are unchanged."""


def _check_sparsity(s: float, name: str = "sparsity") -> float:
    if isinstance(s, bool) or not isinstance(s, (int, float)) or not 0.0 <= float(s) <= 1.0:
        raise ValueError(f"{name} must be a number in [0, 1], got {s!r}")
    return float(s)


# ------------------------------------------------------------------------------------------ scores


def scores(w: Tensor, method: str = "magnitude", input_norm: Optional[Tensor] = None) -> Tensor:
    """Importance of each weight (float32, W's shape): |W|, or |W| * input_norm[None, :] for ``"wanda"``."""
    w = check_weight(w)
    if method == "magnitude" or method == "existing":
        return w.abs()
    if method == "wanda":
        if input_norm is None:
            raise ValueError("method 'wanda' needs input feature norms: run slimnn.prune.calibrate_(model, batches) "
                             "on calibration data first (or pass input_norm)")
        norm = torch.as_tensor(input_norm).detach().to(torch.float32).reshape(-1)
        if norm.numel() != w.shape[1]:
            raise ValueError(f"input_norm has {norm.numel()} entries, the weight has {w.shape[1]} input features")
        if not bool(torch.isfinite(norm).all()) or bool((norm < 0).any()):
            raise ValueError("input_norm must be finite and non-negative")
        return w.abs() * norm.unsqueeze(0)
    raise ValueError(f"unknown pruning method {method!r}; expected one of {METHODS}")


def _prune_lowest(flat: Tensor, count: int) -> Tensor:
    """Keep-mask of a 1-D score tensor with the ``count`` lowest scores removed (ties: lower index first)."""
    keep = torch.ones_like(flat, dtype=torch.bool)
    if count > 0:
        order = torch.argsort(flat, stable=True)
        keep[order[:count]] = False
    return keep


def mask_unstructured(s: Tensor, sparsity: float, per_row: bool = False) -> Tensor:
    """Keep-mask removing ``round(sparsity * numel)`` lowest scores (per row: ``round(sparsity * K)`` each)."""
    sparsity = _check_sparsity(sparsity)
    n, k = s.shape
    if per_row:
        count = round(sparsity * k)
        keep = torch.ones_like(s, dtype=torch.bool)
        if count > 0:
            order = torch.argsort(s, dim=1, stable=True)
            keep.scatter_(1, order[:, :count], False)
        return keep
    return _prune_lowest(s.reshape(-1), round(sparsity * s.numel())).reshape(n, k)


def mask_nm(s: Tensor, n_keep: int, m: int) -> Tensor:
    """Keep-mask with the ``n_keep`` highest scores of every ``m`` consecutive inputs of each row."""
    rows, k = s.shape
    kp = -(-k // m) * m
    sp = torch.nn.functional.pad(s, (0, kp - k), value=-1.0).reshape(rows, kp // m, m)
    order = torch.argsort(-sp, dim=2, stable=True)  # highest first; ties by position
    keep = torch.zeros_like(sp, dtype=torch.bool).scatter_(2, order[:, :, :n_keep], True)
    return keep.reshape(rows, kp)[:, :k].contiguous()


def block_scores(s: Tensor, r: int, c: int) -> Tensor:
    """Sum of the scores of each r x c block (edge blocks padded with zeros): (ceil(N/r), ceil(K/c))."""
    n, k = s.shape
    np_, kp = -(-n // r) * r, -(-k // c) * c
    sp = torch.nn.functional.pad(s, (0, kp - k, 0, np_ - n))
    return sp.reshape(np_ // r, r, kp // c, c).sum(dim=(1, 3))


def expand_block_mask(bm: Tensor, r: int, c: int, n: int, k: int) -> Tensor:
    return bm.repeat_interleave(r, 0).repeat_interleave(c, 1)[:n, :k].contiguous()


def mask_block(s: Tensor, r: int, c: int, sparsity: float) -> Tensor:
    """Keep-mask removing ``round(sparsity * blocks)`` r x c blocks of lowest total score."""
    sparsity = _check_sparsity(sparsity)
    bs = block_scores(s, r, c)
    bm = _prune_lowest(bs.reshape(-1), round(sparsity * bs.numel())).reshape(bs.shape)
    return expand_block_mask(bm, r, c, *s.shape)


def prune_mask(
    w: Tensor,
    pattern: Union[str, Pattern] = "unstructured",
    sparsity: float = 0.5,
    method: str = "magnitude",
    input_norm: Optional[Tensor] = None,
) -> Tensor:
    """The keep-mask (bool, W's shape) of one weight matrix for a pattern, sparsity and method."""
    p = parse_pattern(pattern) if isinstance(pattern, str) else pattern
    if p.kind == "neurons":
        raise ValueError("pattern 'neurons' removes whole units of a layer pair; use prune_neurons_")
    if method not in METHODS:
        raise ValueError(f"unknown pruning method {method!r}; expected one of {METHODS}")
    if method == "existing":
        w = check_weight(w)
        keep = w != 0
        if p.kind == "nm" and not bool(mask_nm(keep.float(), p.a, p.b).ge(keep).all()):
            raise ValueError(f"method 'existing': the weights' zeros do not form a {p.a}:{p.b} pattern")
        if p.kind == "block":
            keep = expand_block_mask(block_scores(keep.float(), p.a, p.b) > 0, p.a, p.b, *w.shape)
        return keep
    s = scores(w, method, input_norm)
    if p.kind == "nm":
        return mask_nm(s, p.a, p.b)
    if p.kind == "block":
        return mask_block(s, p.a, p.b, sparsity)
    return mask_unstructured(s, sparsity, per_row=method == "wanda")


def prune_weight(w: Tensor, pattern: Union[str, Pattern] = "unstructured", sparsity: float = 0.5,
                 method: str = "magnitude", input_norm: Optional[Tensor] = None) -> tuple[Tensor, Tensor]:
    """(W with pruned weights set to zero, keep-mask). W float32, N x K."""
    keep = prune_mask(w, pattern, sparsity, method, input_norm)
    return check_weight(w) * keep, keep


def sparsity_of(w: Tensor) -> float:
    """Fraction of zeros."""
    return float((w == 0).sum()) / max(1, w.numel())


# ------------------------------------------------------------------------------------------ calibration


def calibrate_(
    model: nn.Module,
    batches: Iterable[Any],
    filter_fn: Optional[Callable[[nn.Module, str], bool]] = None,
    progress: bool = False,
) -> dict[str, Tensor]:
    """Runs ``model`` on calibration ``batches`` and records, for every ``nn.Linear`` (that ``filter_fn``
    accepts), the L2 norm of each input feature over all rows seen. Each norm is stored on its module (as
    :data:`INPUT_NORM_ATTR`) for ``method="wanda"`` and returned as {fqn: norm}. A batch is passed as
    ``model(*b)`` if a tuple/list, ``model(**b)`` if a dict, else ``model(b)``. Runs under ``no_grad``.
    """
    from .calibration import capture_linear_inputs

    targets = [(fqn, mod) for fqn, mod in model.named_modules()
               if isinstance(mod, nn.Linear) and (filter_fn is None or filter_fn(mod, fqn))]
    stats = capture_linear_inputs(model, targets, batches if isinstance(batches, list) else list(batches),
                                  gram=False, progress=progress)
    out = {}
    for fqn, st in stats.items():
        if st.n_rows == 0:  # never called on these batches: no norm, as before
            continue
        norm = st.sq_sum.sqrt().to(torch.float32)
        setattr(model.get_submodule(fqn), INPUT_NORM_ATTR, norm)
        out[fqn] = norm
    return out


def input_norm_of(module: nn.Module) -> Optional[Tensor]:
    return getattr(module, INPUT_NORM_ATTR, None)


# ------------------------------------------------------------------------------------------ targets


def matches_any(fqn: str, patterns: Sequence[str]) -> bool:
    """True if the layer name matches one of the fnmatch patterns."""
    return any(fnmatch.fnmatchcase(fqn, p) for p in patterns)


def layer_sparsity(fqn: str, default: float, overrides: Sequence[tuple[str, float]]) -> float:
    """The sparsity for layer ``fqn``: the first (fnmatch pattern, sparsity) override matching it, else default."""
    for pat, s in overrides:
        if fnmatch.fnmatchcase(fqn, pat):
            return float(s)
    return default


def global_allocation(
    layers: Sequence[tuple[str, Tensor]], sparsity: float, unit: Optional[tuple[int, int]] = None
) -> dict[str, float]:
    """Global target: removes ``round(sparsity * total)`` of the lowest scores across all ``layers``
    ({fqn, scores}); returns each layer's resulting sparsity. ``unit`` (r, c) compares block scores.
    Ties at the threshold go to the earlier layers, then lower positions, so the result is deterministic.
    """
    sparsity = _check_sparsity(sparsity)
    flat = []
    for _, s in layers:
        flat.append((block_scores(s, *unit) if unit else s).reshape(-1))
    sizes = [f.numel() for f in flat]
    total = sum(sizes)
    count = round(sparsity * total)
    if total == 0:
        return {}
    allv = torch.cat(flat)
    if count == 0:
        return {name: 0.0 for name, _ in layers}
    thr = torch.kthvalue(allv, count).values
    below = [int((f < thr).sum()) for f in flat]
    left = count - sum(below)
    out = {}
    for (name, _), f, nb, size in zip(layers, flat, below, sizes):
        ties = int((f == thr).sum())
        take = min(ties, left)
        left -= take
        out[name] = (nb + take) / size
    return out


# ------------------------------------------------------------------------------------------ gradual schedule


@dataclasses.dataclass(frozen=True)
class GradualSchedule:
    """Sparsity over training steps (Zhu & Gupta, 2017): ``initial`` before ``start_step``, then
    ``final + (initial - final) * (1 - t)^power`` with t = (step - start) / (end - start), ``final`` after
    ``end_step``; masks are recomputed every ``every`` steps in between.
    """

    final: float
    start_step: int = 0
    end_step: int = 1000
    initial: float = 0.0
    every: int = 100
    power: float = 3.0

    def __post_init__(self) -> None:
        _check_sparsity(self.final, "final")
        _check_sparsity(self.initial, "initial")
        for f in ("start_step", "end_step", "every"):
            v = getattr(self, f)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ValueError(f"GradualSchedule.{f} must be a non-negative int, got {v!r}")
        if self.end_step <= self.start_step:
            raise ValueError("GradualSchedule.end_step must be after start_step")
        if self.every < 1 or self.power <= 0:
            raise ValueError("GradualSchedule.every must be >= 1 and power > 0")

    def sparsity_at(self, step: int) -> float:
        if step < self.start_step:
            return self.initial
        if step >= self.end_step:
            return self.final
        t = (step - self.start_step) / (self.end_step - self.start_step)
        return self.final + (self.initial - self.final) * (1.0 - t) ** self.power

    def is_update_step(self, step: int) -> bool:
        """Masks are recomputed at start_step, every ``every`` steps after it, and at end_step."""
        if step < self.start_step or step > self.end_step:
            return False
        return step == self.end_step or (step - self.start_step) % self.every == 0


class GradualPruner:
    """Prunes a model gradually while it trains. Call :meth:`step` after each optimizer step::

        pruner = GradualPruner(model, SparseConfig(0.9), GradualSchedule(0.9, 0, 1000, every=50))
        for step, batch in enumerate(data):
            loss(model(batch)).backward(); opt.step(); opt.zero_grad()
            pruner.step(step)
        slimnn.compress_(model, SparseConfig(method="existing"))   # store what training kept

    On update steps the masks are recomputed at the schedule's sparsity (the config's pattern, method and
    scope; N:M patterns are applied from ``start_step`` on at their fixed sparsity); on every step the
    pruned weights are set back to zero. Layers follow ``filter_fn`` and the config's ``skip`` patterns.
    """

    def __init__(self, model: nn.Module, config: Any, schedule: GradualSchedule,
                 filter_fn: Optional[Callable[[nn.Module, str], bool]] = None) -> None:
        self.model = model
        self.config = config
        self.schedule = schedule
        self.pattern = parse_pattern(config.pattern)
        if self.pattern.kind == "neurons":
            raise ValueError("GradualPruner does not remove neurons; prune them once with prune_neurons_")
        if config.method == "existing":
            raise ValueError("GradualPruner needs method 'magnitude' or 'wanda'")
        self.layers = [
            (fqn, m) for fqn, m in model.named_modules()
            if type(m) is nn.Linear and (filter_fn is None or filter_fn(m, fqn)) and not matches_any(fqn, config.skip)
        ]
        self.masks: dict[str, Tensor] = {}
        self.sparsity = 0.0

    @torch.no_grad()
    def update_masks(self, sparsity: float) -> None:
        cfg = self.config
        if self.pattern.kind == "nm":
            for fqn, m in self.layers:
                self.masks[fqn] = prune_mask(m.weight, self.pattern, 0.0, cfg.method, input_norm_of(m))
            self.sparsity = self.pattern.fixed_sparsity or 0.0
            return
        alloc = {fqn: layer_sparsity(fqn, sparsity, cfg.layer_sparsity) for fqn, _ in self.layers}
        if cfg.scope == "global":
            free = [(fqn, m) for fqn, m in self.layers if not _match_override(fqn, cfg.layer_sparsity)]
            unit = (self.pattern.a, self.pattern.b) if self.pattern.kind == "block" else None
            alloc.update(global_allocation(
                [(fqn, scores(m.weight, cfg.method, input_norm_of(m))) for fqn, m in free], sparsity, unit))
        for fqn, m in self.layers:
            self.masks[fqn] = prune_mask(m.weight, self.pattern, alloc[fqn], cfg.method, input_norm_of(m))
        self.sparsity = sparsity

    @torch.no_grad()
    def apply_masks(self) -> None:
        for fqn, m in self.layers:
            mask = self.masks.get(fqn)
            if mask is not None:
                m.weight.mul_(mask.to(m.weight.dtype))

    def step(self, step: int) -> float:
        """Recomputes masks on update steps, re-applies them on every step; returns the current sparsity."""
        s = self.schedule
        if s.is_update_step(step):
            if self.pattern.kind == "nm" or s.sparsity_at(step) > 0:
                self.update_masks(s.sparsity_at(step))
        self.apply_masks()
        return self.sparsity


def _match_override(fqn: str, overrides: Sequence[tuple[str, float]]) -> bool:
    return any(fnmatch.fnmatchcase(fqn, p) for p, _ in overrides)


def plan_layers(targets: Sequence[tuple[str, nn.Module]], config: Any) -> dict[str, Any]:
    """For ``compress_``: resolves skip patterns, per-layer overrides and a global target into one
    per-layer config each (or a reason string for layers to skip)."""
    pat = parse_pattern(config.pattern)
    out: dict[str, Any] = {}
    kept = []
    for fqn, mod in targets:
        if matches_any(fqn, config.skip):
            out[fqn] = "matched SparseConfig.skip"
        else:
            kept.append((fqn, mod))
    if config.method == "wanda":  # fail before any layer is converted
        missing = [fqn for fqn, m in kept if input_norm_of(m) is None]
        if missing:
            raise ValueError(f"method 'wanda' needs calibration: run slimnn.prune.calibrate_(model, batches) first "
                             f"(no input norms for {missing[:3]}{' ...' if len(missing) > 3 else ''})")
    alloc = {fqn: layer_sparsity(fqn, config.sparsity, config.layer_sparsity) for fqn, _ in kept}
    if config.scope == "global" and pat.kind in ("unstructured", "block") and config.method != "existing":
        free = [(fqn, m) for fqn, m in kept if not _match_override(fqn, config.layer_sparsity)]
        unit = (pat.a, pat.b) if pat.kind == "block" else None
        alloc.update(global_allocation(
            [(fqn, scores(m.weight, config.method, input_norm_of(m))) for fqn, m in free], config.sparsity, unit))
    for fqn, _ in kept:
        out[fqn] = dataclasses.replace(config, sparsity=alloc[fqn], scope="layer", skip=(), layer_sparsity=())
    return out


# ------------------------------------------------------------------------------------------ structured


_ELEMENTWISE = (
    nn.ReLU, nn.GELU, nn.SiLU, nn.Tanh, nn.Sigmoid, nn.Dropout, nn.Identity, nn.LeakyReLU, nn.ELU, nn.Mish,
    nn.Hardswish, nn.ReLU6, nn.Softplus,
)
# Gated forms first: a gated MLP must not match as its ungated pair (the gate would keep its width).
_NAMED_PAIRS = (
    (("gate_proj", "up_proj"), "down_proj"), (("w1", "w3"), "w2"),
    (("fc1",), "fc2"), (("up",), "down"), (("up_proj",), "down_proj"), (("w1",), "w2"), (("c_fc",), "c_proj"),
    (("lin1",), "lin2"), (("dense_h_to_4h",), "dense_4h_to_h"),
)


def _is_elementwise(m: nn.Module) -> bool:
    return type(m) in _ELEMENTWISE


def find_mlp_pairs(model: nn.Module) -> list[tuple[tuple[str, ...], str]]:
    """Groups (producers, consumer) of ``nn.Linear`` whose hidden units can be removed together: the
    consumer reads only the producers' outputs through an elementwise function. Found in ``nn.Sequential``
    (Linear, elementwise modules, Linear) and by the usual attribute names of transformer MLPs (fc1/fc2,
    up/down, up_proj/down_proj with gate_proj, w1/w3/w2, c_fc/c_proj, lin1/lin2). The names are a heuristic:
    check that the module's forward really is consumer(f(producers(x))), or pass explicit groups.
    """
    found: list[tuple[tuple[str, ...], str]] = []
    used: set[str] = set()
    for fqn, mod in model.named_modules():
        prefix = f"{fqn}." if fqn else ""
        if isinstance(mod, nn.Sequential):
            kids = list(mod.named_children())
            for i, (name, child) in enumerate(kids):
                if type(child) is not nn.Linear:
                    continue
                j = i + 1
                while j < len(kids) and _is_elementwise(kids[j][1]):
                    j += 1
                if j < len(kids) and type(kids[j][1]) is nn.Linear and kids[j][1].in_features == child.out_features:
                    a, b = prefix + name, prefix + kids[j][0]
                    if a not in used and b not in used:
                        found.append(((a,), b))
                        used.update((a, b))
        for prods, cons in _NAMED_PAIRS:
            c = getattr(mod, cons, None)
            ps = [getattr(mod, p, None) for p in prods]
            if type(c) is not nn.Linear or any(type(p) is not nn.Linear for p in ps):
                continue
            if any(p.out_features != c.in_features for p in ps):
                continue
            names = tuple(prefix + p for p in prods)
            if any(n in used for n in names) or prefix + cons in used:
                continue
            found.append((names, prefix + cons))
            used.update(names + (prefix + cons,))
    return found


def _linear_subset(lin: nn.Linear, rows: Optional[Tensor] = None, cols: Optional[Tensor] = None) -> nn.Linear:
    w = lin.weight.detach()
    if rows is not None:
        w = w[rows]
    if cols is not None:
        w = w[:, cols]
    new = nn.Linear(w.shape[1], w.shape[0], bias=lin.bias is not None, device=w.device, dtype=w.dtype)
    with torch.no_grad():
        new.weight.copy_(w)
        if lin.bias is not None:
            new.bias.copy_(lin.bias.detach() if rows is None else lin.bias.detach()[rows])
    new.train(lin.training)
    return new


def neuron_scores(producers: Sequence[nn.Linear], consumer: nn.Linear, method: str = "magnitude") -> Tensor:
    """Importance of each hidden unit i: ||rows i of the producers||_2 * ||column i of the consumer||_2
    (magnitude), or ||consumer's input feature i||_2 * ||column i of the consumer||_2 (wanda: needs
    :func:`calibrate_`, the input of the consumer being the hidden activation)."""
    col = consumer.weight.detach().to(torch.float32).norm(dim=0)
    if method == "wanda":
        norm = input_norm_of(consumer)
        if norm is None:
            raise ValueError("method 'wanda' needs calibration: run slimnn.prune.calibrate_(model, batches) first")
        return norm.to(torch.float32) * col
    if method != "magnitude":
        raise ValueError(f"neuron pruning supports methods 'magnitude' and 'wanda', got {method!r}")
    row = torch.stack([p.weight.detach().to(torch.float32).norm(dim=1) for p in producers]).pow(2).sum(0).sqrt()
    return row * col


def prune_neurons_(
    model: nn.Module,
    sparsity: float,
    groups: Optional[Sequence[tuple[Sequence[str], str]]] = None,
    method: str = "magnitude",
    multiple_of: int = 1,
) -> dict[str, str]:
    """Removes ``round(sparsity * H)`` hidden units (rounded so the kept count is a multiple of
    ``multiple_of``) from each (producers, consumer) group (default: :func:`find_mlp_pairs`), replacing the
    layers in place by smaller ``nn.Linear`` modules: producers lose output rows (and bias entries), the
    consumer loses the matching input columns. Returns {fqn: what changed}.
    """
    _check_sparsity(sparsity)
    if isinstance(multiple_of, bool) or not isinstance(multiple_of, int) or multiple_of < 1:
        raise ValueError(f"multiple_of must be a positive int, got {multiple_of!r}")
    groups = find_mlp_pairs(model) if groups is None else [(tuple(p), c) for p, c in groups]
    done: dict[str, str] = {}
    for prods, cons in groups:
        pm = [model.get_submodule(p) for p in prods]
        cm = model.get_submodule(cons)
        if any(type(m) is not nn.Linear for m in pm + [cm]):
            raise ValueError(f"group {prods} -> {cons}: every member must be an nn.Linear")
        h = cm.in_features
        if any(p.out_features != h for p in pm):
            raise ValueError(f"group {prods} -> {cons}: producers' out_features must equal the consumer's in_features")
        keep_n = h - round(sparsity * h)
        keep_n = max(multiple_of, int(math.ceil(keep_n / multiple_of)) * multiple_of) if keep_n else 0
        keep_n = min(h, max(1, keep_n))
        sc = neuron_scores(pm, cm, method)
        kept = torch.sort(torch.argsort(-sc, stable=True)[:keep_n]).values
        for name, m in zip(prods, pm):
            _set_module(model, name, _linear_subset(m, rows=kept))
            done[name] = f"Linear out_features {h} -> {keep_n} (neurons)"
        _set_module(model, cons, _linear_subset(cm, cols=kept))
        done[cons] = f"Linear in_features {h} -> {keep_n} (neurons)"
    return done


def _set_module(model: nn.Module, fqn: str, new: nn.Module) -> None:
    parent_name, _, child = fqn.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)
