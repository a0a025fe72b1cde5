"""``autocompress``: evaluate -> compress -> re-evaluate -> distill, choosing a format per layer, with a report.

The pipeline works on a copy of the model that shares the original's float tensors (no second float
copy); compressed layers are built one at a time from the original float layers, so peak memory stays
near the model's size plus the compressed layers plus one layer in flight.

Each step (int8, then int4, then pruning, ... whichever configs this slimnn has) offers a list of
formats, most aggressive first. For each format, every candidate layer gets a *sensitivity*: the metric
drop when only that layer takes the format (``sensitivity="metric"``), or the relative output error of
that layer on captured inputs (``"proxy"``, cheap, for models with many layers). Layers are taken in order
of increasing sensitivity, and a binary search on the real metric finds the largest set that keeps the
whole model within the accuracy budget; the more sensitive layers stay in the previous (higher
precision) format or try the next, milder format of the step. So formats are chosen per layer, not one
setting for the whole model. With ``objective="latency"`` a layer also takes a format only if it runs
faster on this machine, at the shapes ``example_inputs`` produce and the thread count given; with
``"size"`` only if it is smaller. After every step the whole model is re-evaluated and measured
(latency interleaved with the float model, storage bytes, metric); ``distill_data`` adds a final
knowledge-distillation step from the float model. The best model within budget is returned.
"""

from __future__ import annotations

import copy
import dataclasses
import random
import time
from typing import Any, Callable, Iterable, Optional, Sequence

import torch
from torch import Tensor, nn

from ..nn.base import is_hf_conv1d
from ..math.calibration import call_model, capture_inputs, progress_iter
from ..runtime.info import cpu_info
from ..techniques import for_config, techniques
from .report import LayerRow, Report, StepResult

# ----------------------------------------------------------------------------------------------------
# Steps and calibration hooks
# ----------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Step:
    """One pipeline step: ``choices`` are configs, most aggressive first.

    candidates: ``"all"``: every compressible layer; ``"compressed"``: only layers an earlier step
    compressed (layers kept in float for accuracy stay float).
    """

    name: str
    choices: list
    candidates: str = "all"

    def __post_init__(self) -> None:
        if not self.choices:
            raise ValueError(f"step {self.name!r} has no choices")
        if self.candidates not in ("all", "compressed"):
            raise ValueError(f"Step.candidates must be 'all' or 'compressed', got {self.candidates!r}")
        for c in self.choices:
            if for_config(type(c)) is None:
                raise TypeError(f"step {self.name!r}: no compression technique for {type(c).__name__}")


def default_steps() -> list[Step]:
    """One step per registered technique that names an autocompress step, in its order: int8 (dynamic,
    else weight-only) on every layer, then int4, pruning and low-rank on the layers already compressed."""
    steps = []
    for t in sorted((t for t in techniques().values() if t.autocompress is not None),
                    key=lambda t: t.autocompress.order):
        try:
            steps.append(Step(t.name, t.autocompress.choices(), candidates=t.autocompress.candidates))
        except (TypeError, ValueError):  # a config without usable defaults is left to the caller
            continue
    return steps


# ----------------------------------------------------------------------------------------------------
# Measuring
# ----------------------------------------------------------------------------------------------------


class _Threads:
    def __init__(self, n: int) -> None:
        self.n = n

    def __enter__(self) -> None:
        self.old = torch.get_num_threads()
        torch.set_num_threads(self.n)

    def __exit__(self, *exc: Any) -> None:
        torch.set_num_threads(self.old)


def measure_latency(
    models: Sequence[nn.Module], inputs: Any, threads: int, reps: int = 20, forward_fn: Optional[Callable] = None,
    stat: str = "median",
) -> list[float]:
    """Seconds per forward for each model, measured interleaved (one call of each per round) so machine
    noise hits all alike, with ``threads`` threads. ``stat``: ``"median"`` (reported figures), ``"min"``
    (the least noisy estimate, for deciding which of two is faster on a busy machine) or ``"raw"`` (the
    lists of times)."""
    fwd = forward_fn or call_model
    times: list[list[float]] = [[] for _ in models]
    with _Threads(threads), torch.inference_mode():
        for m in models:
            fwd(m, inputs)  # warm-up
        for _ in range(max(1, reps)):
            for i, m in enumerate(models):
                t0 = time.perf_counter()
                fwd(m, inputs)
                times[i].append(time.perf_counter() - t0)
    if stat == "min":
        return [min(t) for t in times]
    if stat == "raw":
        return times  # type: ignore[return-value]
    return [sorted(t)[len(t) // 2] for t in times]


def _tensor_bytes(t: Optional[Tensor]) -> int:
    return 0 if t is None else t.numel() * t.element_size()


def model_bytes(model: nn.Module) -> int:
    """Storage of a model: every distinct parameter and buffer (packed blobs included), in bytes."""
    seen, total = set(), 0
    for t in list(model.parameters()) + list(model.buffers()):
        if t is None or t.is_meta:
            continue
        key = (t.data_ptr(), t.numel(), t.dtype)
        if key in seen:
            continue
        seen.add(key)
        total += _tensor_bytes(t)
    return total


def layer_bytes(mod: nn.Module) -> int:
    if hasattr(mod, "storage_bytes"):
        return int(mod.storage_bytes())
    return sum(_tensor_bytes(t) for t in list(mod.parameters(recurse=False)) + list(mod.buffers(recurse=False)))


def is_linear_like(mod: nn.Module) -> bool:
    """An ``nn.Linear`` (or transformers' ``Conv1D``, the Linear GPT-2 uses) or a compressed replacement of one."""
    return (type(mod) is nn.Linear or is_hf_conv1d(mod)
            or (hasattr(mod, "storage_bytes") and hasattr(mod, "in_features")))


def linear_bytes(model: nn.Module) -> int:
    """Bytes of the model's Linear layers alone (float weights and bias, or compressed storage)."""
    return sum(layer_bytes(m) for m in model.modules() if is_linear_like(m))


def layer_format(mod: nn.Module) -> str:
    """Short description of a layer's storage format, e.g. ``int8 dynamic`` or ``float32``."""
    cfg = getattr(mod, "config", None)
    if callable(getattr(mod, "summary", None)) and hasattr(mod, "mode"):  # the int8 convs: "depthwise 3x3, dynamic"
        return f"int8 {mod.summary()}"
    if cfg is None or not dataclasses.is_dataclass(cfg):
        w = getattr(mod, "weight", None)
        return str(w.dtype).replace("torch.", "") if isinstance(w, Tensor) else type(mod).__name__
    name = type(cfg).__name__.replace("Config", "").lower()
    parts = [name]
    for f in dataclasses.fields(cfg):
        if f.name in ("version", "kernel"):
            continue
        v = getattr(cfg, f.name)
        if v is None or v == f.default:
            if f.name == "mode":
                parts.append(str(v))
            continue
        parts.append(f"{f.name}={v}" if not isinstance(v, str) else v)
    return " ".join(parts)


def layer_kernel(mod: nn.Module, m: int = 16) -> str:
    k = getattr(mod, "last_kernel", None)
    if k:
        return str(k)
    if hasattr(mod, "kernel_name"):
        try:
            return str(mod.kernel_name(m))
        except Exception:  # noqa: BLE001  (a kernel name is informative only)
            return "?"
    if hasattr(mod, "last_kernel"):  # a slimnn layer that picks its kernel per call (convs): none ran yet
        return "picked at the first call"
    return "torch"


def layer_latencies(
    model: nn.Module, inputs: Any, names: Sequence[str], threads: int, reps: int = 5,
    forward_fn: Optional[Callable] = None,
) -> dict[str, float]:
    """Median milliseconds each named module takes inside the model's forward (hooks around it)."""
    fwd = forward_fn or call_model
    acc: dict[str, list[float]] = {n: [] for n in names}
    start: dict[str, float] = {}
    handles = []
    for n in names:
        mod = model.get_submodule(n)

        def pre(_m: nn.Module, _a: Any, n: str = n) -> None:
            start[n] = time.perf_counter()

        def post(_m: nn.Module, _a: Any, _o: Any, n: str = n) -> None:
            acc[n].append(time.perf_counter() - start[n])

        handles += [mod.register_forward_pre_hook(pre), mod.register_forward_hook(post)]
    try:
        with _Threads(threads), torch.inference_mode():
            fwd(model, inputs)
            for v in acc.values():
                v.clear()
            for _ in range(reps):
                fwd(model, inputs)
    finally:
        for h in handles:
            h.remove()
    return {n: 1e3 * sorted(v)[len(v) // 2] for n, v in acc.items() if v}


def _capture_inputs(
    model: nn.Module, name: str, batches: Iterable[Any], max_rows: int, forward_fn: Optional[Callable]
) -> Optional[Tensor]:
    """The inputs layer ``name`` sees over ``batches`` (float32, rows x in_features, at most max_rows)."""
    rows: list[Tensor] = []
    count = [0]

    def add(_name: str, x: Tensor) -> bool:
        x = x.reshape(-1, x.shape[-1]).to(torch.float32)
        take = x[: max_rows - count[0]]
        rows.append(take.clone())
        count[0] += take.shape[0]
        return count[0] >= max_rows  # enough: end the run

    capture_inputs(model, [(name, model.get_submodule(name))], batches, add, forward_fn=forward_fn)
    return torch.cat(rows) if rows else None


# ----------------------------------------------------------------------------------------------------
# The pipeline
# ----------------------------------------------------------------------------------------------------


def _shared_copy(model: nn.Module) -> nn.Module:
    """A structural copy of ``model`` whose parameters and buffers ARE the original's (no data copied)."""
    memo: dict[int, Any] = {}
    for t in list(model.parameters()) + list(model.buffers()):
        memo[id(t)] = t
    return copy.deepcopy(model, memo)


def _seed(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)
    try:
        import numpy as np

        np.random.seed(seed % 2**32)
    except ImportError:  # pragma: no cover
        pass


class _Ctx:
    """State shared by the steps of one autocompress run."""

    def __init__(self, orig: nn.Module, work: nn.Module, eval_fn: Callable, base: float, max_drop: float,
                 higher: bool) -> None:
        self.orig, self.work, self.eval_fn = orig, work, eval_fn
        self.base, self.max_drop, self.higher = base, max_drop, higher
        self.evals = 0

    def metric(self) -> float:
        self.evals += 1
        with torch.inference_mode():
            v = self.eval_fn(self.work)
        return float(v)

    def drop(self, m: float) -> float:
        return (self.base - m) if self.higher else (m - self.base)

    def ok(self, m: float) -> bool:
        return self.drop(m) <= self.max_drop + 1e-12


def autocompress(
    model: nn.Module,
    eval_fn: Callable[[nn.Module], float],
    example_inputs: Any,
    calib_data: Optional[Iterable[Any]] = None,
    *,
    max_drop: float = 0.01,
    objective: str = "latency",
    target: Optional[float] = None,
    steps: Optional[list[Step]] = None,
    threads: Optional[int] = None,
    higher_is_better: bool = True,
    metric_name: str = "metric",
    sensitivity: str = "auto",
    filter_fn: Optional[Callable[[nn.Module, str], bool]] = None,
    distill_data: Optional[Iterable[Any]] = None,
    distill_kwargs: Optional[dict] = None,
    forward_fn: Optional[Callable[[nn.Module, Any], Any]] = None,
    reps: int = 20,
    calib_rows: int = 2048,
    seed: int = 0,
    progress: bool = True,
    report_dir: Optional[str] = None,
) -> tuple[nn.Module, Report]:
    """Compresses a copy of ``model`` as far as the accuracy budget allows; returns ``(model, report)``.

    eval_fn(model) -> float: the user's metric (``higher_is_better``), run after every step.
    example_inputs: what latency is measured on, passed as ``model(x)`` / ``model(*x)`` / ``model(**x)``
        (or ``forward_fn(model, x)``); use the batch shape you serve.
    calib_data: optional iterable of inputs (same convention) for per-layer calibration and the proxy
        sensitivity; defaults to ``[example_inputs]``.
    max_drop: the budget, in metric units (0.01 = one accuracy point for a metric in [0, 1]).
    objective: ``"latency"`` or ``"size"``: what the returned model minimizes within the budget.
    target: stop once the speedup (latency) or size ratio (size) vs float reaches this; ``None``: try
        every step.
    steps: the list of :class:`Step` to run (default :func:`default_steps`).
    threads: the thread count latency is measured with (default: ``torch.get_num_threads()``).
    sensitivity: ``"metric"``, ``"proxy"`` or ``"auto"`` (metric when there are few layers).
    distill_data: batches ``x`` or ``(x, y)``: if given, the chosen model is distilled from the float
        one (:func:`slimnn.distill`, with ``distill_kwargs``) and kept if that helps.
    The input ``model`` is not modified; the returned model shares no tensors with it.
    """
    if objective not in ("latency", "size"):
        raise ValueError(f"objective must be 'latency' or 'size', got {objective!r}")
    if sensitivity not in ("auto", "metric", "proxy"):
        raise ValueError(f"sensitivity must be 'auto', 'metric' or 'proxy', got {sensitivity!r}")
    if not isinstance(max_drop, (int, float)) or max_drop < 0:
        raise ValueError(f"max_drop must be a non-negative number, got {max_drop!r}")
    if not callable(eval_fn):
        raise TypeError("eval_fn must be callable: eval_fn(model) -> float")

    t_start = time.perf_counter()
    _seed(seed)
    threads = int(threads or torch.get_num_threads())
    steps = default_steps() if steps is None else list(steps)
    calib = list(calib_data) if calib_data is not None else [example_inputs]
    was_training = model.training
    model.eval()
    work = _shared_copy(model)
    keep = filter_fn or (lambda m, n: True)
    layers = [n for n, m in model.named_modules() if type(m) is nn.Linear and n and keep(m, n)]
    ctx = _Ctx(model, work, eval_fn, 0.0, float(max_drop), higher_is_better)
    ctx.base = ctx.metric()
    report = Report(metric_name=metric_name, higher_is_better=higher_is_better, max_drop=max_drop,
                    objective=objective, threads=threads, machine=cpu_info())
    assignment: dict[str, Optional[nn.Module]] = {n: None for n in layers}
    sens_of: dict[str, float] = {}

    def snapshot(name: str, metric: float, seconds: float, note: str = "", measured: Optional[nn.Module] = None
                 ) -> StepResult:
        m = measured if measured is not None else work
        t_float, t_m = measure_latency([model, m], example_inputs, threads, reps, forward_fn)
        lat = layer_latencies(m, example_inputs, layers, threads, max(3, reps // 4), forward_fn)
        rows = []
        for n in layers:
            mod = m.get_submodule(n)
            rows.append(LayerRow(n, layer_format(mod), layer_kernel(mod), layer_bytes(mod), lat.get(n),
                                 sens_of.get(n)))
        b0, b = model_bytes(model), model_bytes(m)
        lb0, lb = linear_bytes(model), linear_bytes(m)
        if m is model or name == "float":
            t_m = t_float
        return StepResult(name, metric, 1e3 * t_m, b, speedup=t_float / t_m, size_ratio=b0 / max(b, 1),
                          linear_bytes=lb, linear_ratio=lb0 / max(lb, 1),
                          within_budget=ctx.ok(metric), layers=rows, note=note, seconds=seconds)

    results = [snapshot("float", ctx.base, 0.0)]
    assignments = {"float": dict(assignment)}
    mode = sensitivity
    if mode == "auto":
        n_choices = sum(len(s.choices) for s in steps)
        mode = "metric" if len(layers) * max(1, n_choices) <= 48 else "proxy"
    report.notes.append(f"sensitivity: {mode} ({'metric drop with only that layer compressed' if mode == 'metric' else 'relative output error of that layer on calibration inputs'})")

    inputs_cache: dict[str, Optional[Tensor]] = {}

    def layer_inputs(n: str) -> Optional[Tensor]:
        # Layer by layer: only the current layer's captured inputs are kept.
        if calib_data is None:
            return layer_inputs_example(n)
        if n not in inputs_cache:
            inputs_cache.clear()
            inputs_cache[n] = _capture_inputs(work, n, calib, calib_rows, forward_fn)
        return inputs_cache[n]

    def build(n: str, cfg: Any) -> nn.Module:
        lin = model.get_submodule(n)
        tech = for_config(type(cfg))
        cal = tech.calibrate
        if cal is not None:
            x = layer_inputs(n)
            if x is not None:
                return cal(lin, cfg, x).eval()
        return tech.convert(lin, cfg).eval()

    def faster_or_smaller(n: str, cand: nn.Module) -> tuple[bool, str]:
        cur = work.get_submodule(n)
        if objective == "size":
            a, b = layer_bytes(cur), layer_bytes(cand)
            return b < a, f"{b} vs {a} bytes"
        x = layer_inputs_example(n)
        if x is None:
            return True, "not reached by example inputs"
        t_cur, t_cand = measure_latency([cur, cand], x, threads, max(5, reps // 2), stat="min")
        return t_cand < 0.97 * t_cur, f"{1e3 * t_cand:.3f} vs {1e3 * t_cur:.3f} ms"

    example_cache: dict[str, Optional[Tensor]] = {}

    def layer_inputs_example(n: str) -> Optional[Tensor]:
        if n not in example_cache:
            example_cache.clear()
            example_cache[n] = _capture_inputs(work, n, [example_inputs], 1 << 30, forward_fn)
        return example_cache[n]

    def proxy_error(n: str, cand: nn.Module) -> float:
        x = layer_inputs(n)
        if x is None:
            return 0.0
        with torch.inference_mode():
            ref = model.get_submodule(n)(x)
            y = cand(x)
        return float((y - ref).pow(2).sum() / ref.pow(2).sum().clamp_min(1e-30))

    current = ctx.base
    for step in steps:
        t0 = time.perf_counter()
        if step.candidates == "all":
            cands = list(layers)
        else:
            cands = [n for n in layers if assignment[n] is not None]
        changed: dict[str, Any] = {}
        notes = []
        # One pass over the layers (layer by layer: one layer's captured inputs at a time) scores every
        # choice of the step; the budget search below then runs per choice, most aggressive first.
        scored_by_choice: list[list[tuple[float, str, nn.Module]]] = [[] for _ in step.choices]
        for n in progress_iter(cands, f"{step.name}: layers", progress, len(cands), leave=False):
            for ci, cfg in enumerate(step.choices):
                try:
                    cand = build(n, cfg)
                except (ValueError, TypeError, NotImplementedError) as e:  # e.g. a shape the format rejects
                    notes.append(f"{n}: {type(cfg).__name__} does not apply ({e})")
                    continue
                good, why = faster_or_smaller(n, cand)
                if not good:
                    notes.append(f"{n}: {layer_format(cand)} not {'faster' if objective == 'latency' else 'smaller'} ({why})")
                    continue
                if mode == "metric":
                    old = work.get_submodule(n)
                    work.set_submodule(n, cand)
                    s = ctx.drop(ctx.metric()) - ctx.drop(current)
                    work.set_submodule(n, old)
                else:
                    s = proxy_error(n, cand)
                scored_by_choice[ci].append((s, n, cand))
        for ci, cfg in enumerate(step.choices):
            scored = [t for t in scored_by_choice[ci] if t[1] not in changed]
            if not scored:
                continue
            scored.sort(key=lambda t: t[0])
            olds = {n: work.get_submodule(n) for _, n, _ in scored}

            def apply(k: int) -> float:
                for i, (_, n, cand) in enumerate(scored):
                    work.set_submodule(n, cand if i < k else olds[n])
                return ctx.metric()

            # Largest prefix (least sensitive first) that keeps the model within budget.
            lo, hi, best_m = 0, len(scored), current
            m_all = apply(hi)
            if ctx.ok(m_all):
                lo, best_m = hi, m_all
            else:
                hi -= 1
                while lo < hi:
                    mid = (lo + hi + 1) // 2
                    m_mid = apply(mid)
                    if ctx.ok(m_mid):
                        lo, best_m = mid, m_mid
                    else:
                        hi = mid - 1
            apply(lo)
            current = best_m if lo else current
            for i, (s, n, cand) in enumerate(scored):
                if i < lo:
                    changed[n] = cand
                    sens_of[n] = s
        if not changed:
            report.notes.append(f"step {step.name}: no layer could take its formats within the budget"
                                + (f" ({notes[0]}...)" if notes else ""))
            continue
        for n, cand in changed.items():
            assignment[n] = cand
        metric = ctx.metric()
        current = metric
        note = "; ".join(notes[:6]) + (f"; ... {len(notes) - 6} more" if len(notes) > 6 else "")
        res = snapshot(step.name, metric, time.perf_counter() - t0, note)
        results.append(res)
        assignments[step.name] = dict(assignment)
        if target is not None:
            reached = res.speedup if objective == "latency" else res.size_ratio
            if res.within_budget and reached >= target:
                report.notes.append(f"target {target} reached after step {step.name}")
                break

    ok = [r for r in results if r.within_budget]
    if objective == "latency":
        # By speedup: each step's latency ratio to the float model, measured interleaved in one run (absolute
        # times from different moments of a shared machine do not compare). Within 5% of the best is a
        # tie (noise), which the smaller model wins.
        best = max(r.speedup for r in ok)
        ok = [r for r in ok if r.speedup >= best / 1.05]
    chosen = min(ok, key=lambda r: (r.bytes, -r.metric if higher_is_better else r.metric))
    final = _materialize(model, assignments[chosen.name])

    if distill_data is not None and chosen.name != "float":
        from .distill import distill

        t0 = time.perf_counter()
        kw = dict(distill_kwargs or {})
        kw.setdefault("progress", progress)
        kw.setdefault("seed", seed)
        student = distill(model, copy.deepcopy(final), distill_data, forward_fn=forward_fn, **kw).eval()
        saved = ctx.work
        ctx.work = student
        m = ctx.metric()
        ctx.work = saved
        res = snapshot("distill", m, time.perf_counter() - t0, f"distilled from the float model ({chosen.name})",
                       measured=student)
        results.append(res)
        better = m > chosen.metric if higher_is_better else m < chosen.metric
        if res.within_budget and better:
            chosen, final = res, student

    report.steps = results
    report.chosen = chosen.name
    report.notes.append(f"{ctx.evals} evaluations of eval_fn; total {time.perf_counter() - t_start:.1f} s")
    if was_training:
        model.train()
    if report_dir:
        report.save(report_dir)
    return final.eval(), report


def _materialize(model: nn.Module, assignment: dict[str, Optional[nn.Module]]) -> nn.Module:
    """An independent copy of ``model`` with the assigned compressed layers swapped in."""
    out = _shared_copy(model)
    for n, mod in assignment.items():
        if mod is not None:
            out.set_submodule(n, mod)
    # Give the result its own float tensors (the shared copy still points at the caller's).
    return copy.deepcopy(out)
