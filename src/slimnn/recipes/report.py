"""Compression reports: per step and per layer (format, kernel path, bytes, latency, metric), as a printed
table, Markdown, JSON and a PNG plot of the size / latency / metric trade-off with its Pareto front.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Optional


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
    within_budget: bool = True
    layers: list[LayerRow] = dataclasses.field(default_factory=list)
    note: str = ""
    seconds: float = 0.0  # wall time the step took
    extra: dict[str, float] = dataclasses.field(default_factory=dict)  # more metrics, shown as columns


def _fmt(v: object) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.4f}"
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

    # ------------------------------------------------------------------ text
    def steps_table(self) -> str:
        extras = []
        for s in self.steps:
            extras += [k for k in s.extra if k not in extras]
        head = (f"| step | {self.metric_name} | latency ms | speedup | Linear MB | Linear ratio | total MB | "
                f"total ratio | in budget |" + "".join(f" {k} |" for k in extras))
        lines = [head, "|" + "---|" * (9 + len(extras))]
        for s in self.steps:
            mark = " (chosen)" if s.name == self.chosen else ""
            ex = "".join(f" {_fmt(s.extra.get(k))} |" for k in extras)
            lines.append(
                f"| {s.name}{mark} | {s.metric:.4f} | {s.latency_ms:.2f} | {s.speedup:.2f}x | "
                f"{s.linear_bytes / 2**20:.2f} | {s.linear_ratio:.2f}x | {s.bytes / 2**20:.2f} | "
                f"{s.size_ratio:.2f}x | {'yes' if s.within_budget else 'no'} |{ex}"
            )
        return "\n".join(lines)

    def layers_table(self, step: Optional[str] = None) -> str:
        s = self._step(step)
        lines = [
            "| layer | format | kernel | KB | latency ms | sensitivity | note |",
            "|" + "---|" * 7,
        ]
        for r in s.layers:
            lat = "" if r.latency_ms is None else f"{r.latency_ms:.3f}"
            sen = "" if r.sensitivity is None else f"{r.sensitivity:+.4f}"
            lines.append(f"| {r.name} | {r.format} | {r.kernel} | {r.bytes / 1024:.1f} | {lat} | {sen} | {r.note} |")
        return "\n".join(lines)

    def _step(self, name: Optional[str]) -> StepResult:
        name = name or self.chosen or self.steps[-1].name
        for s in self.steps:
            if s.name == name:
                return s
        raise KeyError(f"no step named {name!r}; steps: {[s.name for s in self.steps]}")

    def to_markdown(self) -> str:
        m = self.machine
        out = [
            "# slimnn compression report",
            "",
            f"Machine: {m.get('brand', '?')} ({m.get('isa_best', '?')}), {self.threads} thread(s), "
            f"torch {m.get('torch_version', '?')}. Objective: {self.objective}; budget: "
            f"{self.metric_name} drop <= {self.max_drop}. Chosen: **{self.chosen}**.",
            "",
            "## Steps",
            "",
            self.steps_table(),
        ]
        if self.steps:
            out += ["", f"## Layers ({self._step(None).name})", "", self.layers_table()]
        if self.notes:
            out += ["", "## Notes", ""] + [f"- {n}" for n in self.notes]
        return "\n".join(out) + "\n"

    def __str__(self) -> str:
        return self.to_markdown()

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1, sort_keys=True)

    # ------------------------------------------------------------------ plot
    def pareto_front(self, x: str = "bytes") -> list[str]:
        """Names of the steps no other step beats on both ``x`` (lower is better) and the metric."""
        sign = 1.0 if self.higher_is_better else -1.0
        pts = [(getattr(s, x), sign * s.metric, s.name) for s in self.steps if getattr(s, x) > 0]
        front = []
        for a in pts:
            dominated = any(
                (b[0] <= a[0] and b[1] >= a[1]) and (b[0] < a[0] or b[1] > a[1]) for b in pts
            )
            if not dominated:
                front.append(a[2])
        return front

    def plot(self, path: str) -> str:
        """Writes a PNG: metric vs size and metric vs latency, Pareto fronts drawn as lines."""
        import matplotlib

        matplotlib.use("Agg", force=True)
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
        for ax, key, label in ((axes[0], "bytes", "size (MB)"), (axes[1], "latency_ms", "latency (ms)")):
            scale = 1 / 2**20 if key == "bytes" else 1.0
            shown = [s for s in self.steps if getattr(s, key) > 0]  # size 0: not measured (a foreign peer)
            for i, s in enumerate(shown):
                xv = getattr(s, key) * scale
                color = "tab:green" if s.within_budget else "tab:red"
                ax.scatter([xv], [s.metric], color=color, s=60 if s.name == self.chosen else 30,
                           edgecolors="black" if s.name == self.chosen else "none", zorder=3)
                ax.annotate(s.name, (xv, s.metric), textcoords="offset points", xytext=(4, 4 - 10 * (i % 3)),
                            fontsize=8)
            names = {s.name for s in shown}
            front = [s for s in shown if s.name in set(self.pareto_front(key)) & names]
            front.sort(key=lambda s: getattr(s, key))
            ax.plot([getattr(s, key) * scale for s in front], [s.metric for s in front], "--", color="gray",
                    label="Pareto front", zorder=2)
            if self.max_drop is not None and self.steps:
                base = self.steps[0].metric
                lim = base - self.max_drop if self.higher_is_better else base + self.max_drop
                ax.axhline(lim, color="tab:red", lw=0.8, ls=":", label="budget")
            ax.set_xlabel(label)
            ax.set_ylabel(self.metric_name)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
        fig.suptitle(f"slimnn: {self.metric_name} vs size and latency ({self.threads} thread(s))")
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        return path

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
