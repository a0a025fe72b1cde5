"""Compression reports: per step and per layer (format, kernel path, bytes, latency, metric), as a printed
table, Markdown, JSON and a PNG plot of the size / latency / metric trade-off with its Pareto front.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from typing import Any, Optional

# Words for the metric keys slimnn's own callers use, for table headers and axis labels.
METRIC_WORDS = {
    "cos_mean": "mean cosine similarity to float32",
    "cosine": "mean cosine similarity to float32",
    "accuracy": "accuracy",
}


def metric_words(name: str) -> str:
    return METRIC_WORDS.get(name, name)


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _num(v: Any, fmt: str, suffix: str = "") -> str:
    """``v`` formatted, or ``n/a`` where there is no figure (None, NaN, infinite)."""
    return f"{v:{fmt}}{suffix}" if _finite(v) else "n/a"


def strict_json(obj: Any) -> Any:
    """``obj`` with every NaN / infinity replaced by None, so that ``json.dumps(allow_nan=False)`` holds:
    bare ``NaN`` is not JSON and strict parsers reject it."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: strict_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [strict_json(v) for v in obj]
    return obj


def isa_words(info: dict[str, Any]) -> str:
    """Which CPU features slimnn's kernels use on this machine, in words (AVX-512 VNNI, AMX, ...), so that
    figures from different machines are not compared blindly."""
    names = {"avx2": "AVX2", "avx512": "AVX-512", "avx512vnni": "AVX-512 VNNI", "avx512vbmi2": "AVX-512 VBMI2",
             "avxvnni": "AVX-VNNI", "amx": "AMX", "amx_bf16": "AMX-BF16", "portable": "portable C++"}
    avail = [n for n in info.get("isa_available", []) if n != "portable"]
    used = ", ".join(names.get(n, n) for n in avail) or "portable C++ only (no SIMD path)"
    vnni = any("vnni" in n for n in avail)
    amx = "amx" in avail
    if not amx:
        try:
            with open("/proc/cpuinfo") as f:
                has = " amx_tile" in f.read()
        except OSError:
            has = False
        amx_txt = ("AMX on the CPU but not in use (the OS refused the tile state, or a ceiling such as SLIMNN_ISA or "
                   "slimnn.isa.force excludes it)" if has else "no AMX on this CPU")
    else:
        amx_txt = "AMX in use"
    return (f"{used} (int8 dot products: {'VNNI' if vnni else 'no VNNI, slower int8 path'}; {amx_txt}; "
            f"best path: {info.get('isa_best', '?')})")


@dataclasses.dataclass
class LayerRow:
    """One compressible layer after a step."""

    name: str
    format: str  # "float32", "q8 dynamic", "q8 weight_only g32", ...
    kernel: str  # the kernel path its last call took ("torch" for float layers)
    bytes: int
    latency_ms: Optional[float] = None  # median time of this layer inside the model's forward
    sensitivity: Optional[float] = None  # metric drop when only this layer takes the step's format
    note: str = ""


@dataclasses.dataclass
class StepResult:
    """The whole model after one pipeline step, measured on this machine."""

    name: str
    metric: float
    latency_ms: float
    bytes: int
    speedup: float = 1.0  # float model latency / this latency, measured interleaved in one run
    size_ratio: float = 1.0  # float model bytes / these bytes
    linear_bytes: int = 0  # bytes of the Linear layers alone (float or compressed)
    linear_ratio: float = 1.0  # float Linear bytes / these Linear bytes
    within_budget: bool = True  # meaningful only where the report has a budget (Report.max_drop)
    layers: list[LayerRow] = dataclasses.field(default_factory=list)
    note: str = ""
    seconds: float = 0.0  # wall time the step took
    extra: dict[str, float] = dataclasses.field(default_factory=dict)  # more metrics, shown as columns


def _fmt(v: object) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return _num(v, ".4f")
    return str(v)


@dataclasses.dataclass
class Report:
    """What a compression run measured. ``steps[0]`` is the float baseline; ``chosen`` names the step
    whose model was returned."""

    steps: list[StepResult] = dataclasses.field(default_factory=list)
    chosen: str = ""
    metric_name: str = "metric"
    higher_is_better: bool = True
    max_drop: Optional[float] = None
    objective: str = "latency"
    threads: int = 1
    machine: dict[str, Any] = dataclasses.field(default_factory=dict)
    notes: list[str] = dataclasses.field(default_factory=list)
    # Further measurements beside the steps (e.g. the demo's vision row): title -> {"markdown": str, "data": {...}}
    sections: dict[str, dict] = dataclasses.field(default_factory=dict)

    # ------------------------------------------------------------------ text
    def has_budget(self) -> bool:
        return self.max_drop is not None and bool(self.steps) and _finite(self.steps[0].metric)

    def budget_limit(self) -> Optional[float]:
        """The metric a step must reach (at least, or at most when lower is better), or None: no budget."""
        if not self.has_budget():
            return None
        base = self.steps[0].metric
        return base - self.max_drop if self.higher_is_better else base + self.max_drop

    def apply_budget(self) -> None:
        """Sets each step's ``within_budget`` from ``max_drop`` and the baseline (``steps[0]``)."""
        lim = self.budget_limit()
        for s in self.steps:
            s.within_budget = True if lim is None else (
                _finite(s.metric) and (s.metric >= lim if self.higher_is_better else s.metric <= lim))

    def budget_text(self) -> str:
        """One sentence on the budget, or "" where there is none."""
        lim = self.budget_limit()
        if lim is None:
            return ""
        op = ">=" if self.higher_is_better else "<="
        return (f"budget: {metric_words(self.metric_name)} {op} {lim:.4f} "
                f"(a drop of at most {self.max_drop:g} from {self.steps[0].name})")

    def steps_table(self) -> str:
        """Markdown table of the steps; a column appears only where some step has a figure for it (no
        metric column for a run that measured none, no budget column without a budget)."""
        extras = []
        for s in self.steps:
            extras += [k for k in s.extra if k not in extras]
        has_metric = any(_finite(s.metric) for s in self.steps)
        has_latency = any(_finite(s.latency_ms) and s.latency_ms > 0 for s in self.steps)
        budget = self.has_budget()
        cols = ["step"]
        cols += [metric_words(self.metric_name)] if has_metric else []
        cols += ["latency ms", "speedup"] if has_latency else []
        cols += ["Linear MB", "Linear ratio", "total MB", "total ratio"]
        cols += ["in budget"] if budget else []
        cols += extras
        lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        for s in self.steps:
            mark = " (chosen)" if s.name == self.chosen else ""
            cells = [s.name + mark]
            if has_metric:
                cells.append(_num(s.metric, ".4f"))
            if has_latency:
                lat_ok = _finite(s.latency_ms) and s.latency_ms > 0
                cells += [_num(s.latency_ms, ".2f") if lat_ok else "n/a",
                          _num(s.speedup, ".2f", "x") if lat_ok else "n/a"]
            lb_ok, b_ok = s.linear_bytes > 0, s.bytes > 0
            cells += [_num(s.linear_bytes / 2**20, ".2f") if lb_ok else "n/a",
                      _num(s.linear_ratio, ".2f", "x") if lb_ok else "n/a",
                      _num(s.bytes / 2**20, ".2f") if b_ok else "n/a",
                      _num(s.size_ratio, ".2f", "x") if b_ok else "n/a"]
            if budget:
                cells.append("yes" if s.within_budget else "**no**")
            cells += [_fmt(s.extra.get(k)) for k in extras]
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines)

    def layers_table(self, step: Optional[str] = None) -> str:
        """Markdown table of one step's layers; the latency, sensitivity and note columns only where some
        layer has a figure for them."""
        s = self._step(step)
        has_lat = any(r.latency_ms is not None for r in s.layers)
        has_sen = any(r.sensitivity is not None for r in s.layers)
        has_note = any(r.note for r in s.layers)
        cols = ["layer", "format", "kernel", "KB"] + (["latency ms"] if has_lat else []) + \
            (["sensitivity"] if has_sen else []) + (["note"] if has_note else [])
        lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        for r in s.layers:
            cells = [r.name, r.format, r.kernel, f"{r.bytes / 1024:.1f}"]
            if has_lat:
                cells.append("" if r.latency_ms is None else _num(r.latency_ms, ".3f"))
            if has_sen:
                cells.append("" if r.sensitivity is None else _num(r.sensitivity, "+.4f"))
            if has_note:
                cells.append(r.note)
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines)

    def _step(self, name: Optional[str]) -> StepResult:
        name = name or self.chosen or self.steps[-1].name
        for s in self.steps:
            if s.name == name:
                return s
        raise KeyError(f"no step named {name!r}; steps: {[s.name for s in self.steps]}")

    def to_markdown(self) -> str:
        m = self.machine
        head = (f"Machine: {m.get('brand', '?')}, {self.threads} thread(s), torch {m.get('torch_version', '?')}.")
        if m.get("isa_available"):
            head += f" Kernels use {isa_words(m)}."
        head += f" Objective: {self.objective}."
        if self.budget_text():
            head += f" {self.budget_text()[0].upper()}{self.budget_text()[1:]}."
        if self.chosen:
            head += f" Chosen: **{self.chosen}**."
        out = ["# slimnn compression report", "", head, "", "## Steps", "", self.steps_table()]
        if self.steps:
            out += ["", f"## Layers ({self._step(None).name})", "", self.layers_table()]
        for title, sec in self.sections.items():
            out += ["", f"## {title}", "", str(sec.get("markdown", ""))]
        if self.notes:
            out += ["", "## Notes", ""] + [f"- {n}" for n in self.notes]
        return "\n".join(out) + "\n"

    def __str__(self) -> str:
        return self.to_markdown()

    def to_dict(self) -> dict:
        """Plain data; figures that were not measured (NaN) are None, and without a budget each step's
        ``within_budget`` is None."""
        d = strict_json(dataclasses.asdict(self))
        if not self.has_budget():
            for st in d["steps"]:
                st["within_budget"] = None
        return d

    def to_json(self) -> str:
        """Strict JSON (no bare NaN or Infinity: those become null)."""
        return json.dumps(self.to_dict(), indent=1, sort_keys=True, allow_nan=False, default=str)

    # ------------------------------------------------------------------ plot
    def pareto_front(self, x: str = "bytes") -> list[str]:
        """Names of the steps no other step beats on both ``x`` (lower is better) and the metric."""
        sign = 1.0 if self.higher_is_better else -1.0
        pts = [(getattr(s, x), sign * s.metric, s.name) for s in self.steps
               if _finite(getattr(s, x)) and getattr(s, x) > 0 and _finite(s.metric)]
        front = []
        for a in pts:
            dominated = any(
                (b[0] <= a[0] and b[1] >= a[1]) and (b[0] < a[0] or b[1] > a[1]) for b in pts
            )
            if not dominated:
                front.append(a[2])
        return front

    def plot(self, path: str) -> str:
        """Writes :meth:`figure` as a PNG at ``path``; returns ``path``."""
        fig = self.figure()
        import matplotlib.pyplot as plt

        fig.savefig(path, dpi=110)
        plt.close(fig)
        return path

    def figure(self) -> Any:
        """A matplotlib Figure: the metric against size (the Linear layers' bytes, the part slimnn compresses, when
        the steps have them; else the whole model) and against latency, with the Pareto fronts dashed.

        Each step has one colour and marker in both panels, named in the legend (no labels beside the points:
        near-identical points would print over each other); the chosen step is ringed; with a budget, the
        budget is a dotted line and steps outside it are drawn hollow. Raises ImportError naming the extra to
        install when matplotlib is missing."""
        try:
            import matplotlib
        except ImportError:
            raise ImportError("the report's plot needs matplotlib: pip install 'slimnn[report]' "
                              "(or 'slimnn[demo]' for the demo)") from None

        matplotlib.use("Agg", force=True)
        import matplotlib.pyplot as plt
        from matplotlib.lines import Line2D

        steps = [s for s in self.steps if _finite(s.metric)]
        use_linear = any(s.linear_bytes > 0 for s in steps)
        size_key = "linear_bytes" if use_linear else "bytes"
        size_label = ("Linear-layer weights, MB (the part slimnn compresses; whole-model size in report.md)"
                      if use_linear else "whole model, MB (every parameter and buffer)")
        metric = metric_words(self.metric_name)
        budget = self.has_budget()
        markers = "osD^vP*Xhp<>"
        colors = [plt.get_cmap("tab10")(i % 10) for i in range(len(steps))]
        style = {s.name: (colors[i], markers[i % len(markers)]) for i, s in enumerate(steps)}

        # The points that matter most sit near the best metric, squeezed flat when one step is far off:
        # a second row zooms into them (the budget line and a margin included).
        vals = sorted(s.metric for s in steps)
        best = vals[-1] if self.higher_is_better else vals[0]
        span = (vals[-1] - vals[0]) if vals else 0.0
        near = [v for v in vals if abs(v - best) <= 0.1 * span] if span > 0 else []
        lim = self.budget_limit()
        zoom = None
        if span > 0 and len(near) >= 2:
            pts = near + ([lim] if lim is not None and abs(lim - best) <= 0.1 * span else [])
            lo, hi = min(pts), max(pts)
            pad = max(0.08 * (hi - lo), 1e-4)
            zoom = (lo - pad, hi + pad)
        rows = 2 if zoom else 1
        fig, grid = plt.subplots(rows, 2, figsize=(12, 4.3 * rows + 1.6), squeeze=False)
        lat_label = "latency of one batch, ms"
        panels = [(grid[0][0], size_key, size_label, None), (grid[0][1], "latency_ms", lat_label, None)]
        if zoom:
            panels += [(grid[1][0], size_key, size_label, zoom), (grid[1][1], "latency_ms", lat_label, zoom)]
        for ax, key, label, ylim in panels:
            scale = 1 / 2**20 if key != "latency_ms" else 1.0
            shown = [s for s in steps if _finite(getattr(s, key)) and getattr(s, key) > 0]
            if ylim:
                shown = [s for s in shown if ylim[0] <= s.metric <= ylim[1]]
            xs = [getattr(s, key) * scale for s in shown]
            xr = (max(xs) - min(xs)) if xs else 0.0
            yr = ((ylim[1] - ylim[0]) if ylim else span) or 1.0
            for i, s in enumerate(shown):
                color, marker = style[s.name]
                xv = xs[i]
                hollow = budget and not s.within_budget
                # A point on top of an earlier one is drawn smaller, so that both stay visible.
                under = sum(abs(xs[j] - xv) <= 0.02 * xr and abs(shown[j].metric - s.metric) <= 0.02 * yr
                            for j in range(i))
                ax.scatter([xv], [s.metric], s=110 * 0.45**under, marker=marker, zorder=3 + 0.01 * i, gid=s.name,
                           facecolors="none" if hollow else [color], edgecolors=[color], linewidths=1.6)
                if s.name == self.chosen:
                    ax.scatter([xv], [s.metric], s=330, marker="o", facecolors="none", edgecolors="black",
                               linewidths=1.3, zorder=5, gid="chosen ring")
            front = [s for s in shown if s.name in set(self.pareto_front(key))]
            front.sort(key=lambda s: getattr(s, key))
            if len(front) > 1:
                ax.plot([getattr(s, key) * scale for s in front], [s.metric for s in front], "--", color="gray",
                        zorder=2)
            if budget:
                ax.axhline(lim, color="tab:red", lw=1.0, ls=":", zorder=1)
            if ylim:
                ax.set_ylim(*ylim)
                ax.set_title(f"zoom: {metric} from {ylim[0]:.4f} to {ylim[1]:.4f}", fontsize=9)
            else:
                missing = [s.name for s in steps if s not in shown]
                if missing:
                    ax.text(0.01, 0.01, "not measured here: " + ", ".join(missing), transform=ax.transAxes,
                            fontsize=7, color="dimgray", va="bottom")
            ax.set_xlabel(label, fontsize=9)
            ax.set_ylabel(metric if len(metric) < 30 else metric.replace(" to ", "\nto "), fontsize=9)
            ax.grid(alpha=0.3)
        handles = [Line2D([], [], ls="none", marker=style[s.name][1], color=style[s.name][0], markersize=8,
                          label=s.name) for s in steps]
        if self.chosen and self.chosen in style:
            handles.append(Line2D([], [], ls="none", marker="o", markersize=15, markerfacecolor="none",
                                  markeredgecolor="black", label=f"ringed: the chosen model, {self.chosen}"))
        handles.append(Line2D([], [], ls="--", color="gray", label="Pareto front"))
        if budget:
            handles.append(Line2D([], [], ls=":", color="tab:red", label=self.budget_text()))
            handles.append(Line2D([], [], ls="none", marker="o", markerfacecolor="none", markeredgecolor="gray",
                                  markersize=8, label="hollow marker: outside the budget"))
        ncol = 3
        fig.legend(handles=handles, loc="lower center", ncol=ncol, fontsize=8, frameon=False)
        legend_rows = -(-len(handles) // ncol)
        fig.suptitle(f"slimnn: {metric} against size and latency ({self.threads} thread(s); higher is "
                     f"{'better' if self.higher_is_better else 'worse'})", fontsize=11)
        fig.tight_layout(rect=(0, (0.19 * legend_rows + 0.12) / (4.3 * rows + 1.6), 1, 0.97))
        return fig

    def save(self, directory: str, plot: bool = True) -> dict[str, str]:
        """Writes ``report.md``, ``report.json`` and (``plot``) ``tradeoff.png`` into ``directory``."""
        os.makedirs(directory, exist_ok=True)
        paths = {"markdown": os.path.join(directory, "report.md"), "json": os.path.join(directory, "report.json")}
        with open(paths["markdown"], "w") as f:
            f.write(self.to_markdown())
        with open(paths["json"], "w") as f:
            f.write(self.to_json())
        if plot:
            paths["plot"] = self.plot(os.path.join(directory, "tradeoff.png"))
        return paths
