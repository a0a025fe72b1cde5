"""The pipeline on a small real task: scikit-learn's digits, an MLP trained in torch.

1. ``slimnn.autocompress`` with a 1% accuracy budget, objective latency, on this machine: prints the
   report (per step and per layer) and the wall time, writes report.md / report.json / tradeoff.png.
2. Distillation after aggressive magnitude pruning: accuracy of the float model, of the pruned model
   and of the pruned model after ``slimnn.distill`` from the float one (sparsity pattern kept).

    PYTHONPATH=src python bench/pipeline_digits.py --threads 2 --out /tmp/digits-report
"""

from __future__ import annotations

import argparse
import copy
import time

import torch
from torch import nn

import slimnn
from slimnn.app import tasks


def magnitude_prune(model: nn.Module, sparsity: float) -> nn.Module:
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Linear):
                k = int(m.weight.numel() * sparsity)
                thr = m.weight.abs().flatten().kthvalue(k).values
                m.weight[m.weight.abs() <= thr] = 0
    return model


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--hidden", type=int, default=512)
    p.add_argument("--batch", type=int, default=256, help="rows per latency batch")
    p.add_argument("--out", default="digits-report")
    args = p.parse_args()

    torch.set_num_threads(1)  # training tiny matrices: one thread is fastest
    t0 = time.perf_counter()
    task = tasks.digits_task(hidden=args.hidden)
    print(f"trained 64-{args.hidden}-{args.hidden}-10 MLP on digits in {time.perf_counter() - t0:.1f} s; "
          f"test accuracy {task.accuracy(task.model):.4f}")

    t0 = time.perf_counter()
    model, report = slimnn.autocompress(
        task.model, task.eval_fn, task.x_test[: args.batch], max_drop=0.01, objective="latency",
        threads=args.threads, metric_name="accuracy", progress=False, report_dir=args.out,
    )
    took = time.perf_counter() - t0
    print(report.steps_table())
    print()
    print(report.layers_table())
    chosen = next(s for s in report.steps if s.name == report.chosen)
    print(f"\nautocompress: {took:.1f} s; chosen {report.chosen}: accuracy {chosen.metric:.4f} "
          f"(float {report.steps[0].metric:.4f}), {chosen.size_ratio:.2f}x smaller, {chosen.speedup:.2f}x faster "
          f"({args.threads} threads, batch {args.batch}); report in {args.out}/")

    print("\ndistillation after magnitude pruning (sparsity kept):")
    print(f"{'sparsity':>8} {'float':>7} {'pruned':>7} {'distilled':>9} {'recovered':>9} {'seconds':>7}")
    base = task.accuracy(task.model)
    for sp in (0.9, 0.95):
        student = magnitude_prune(copy.deepcopy(task.model), sp)
        pruned = task.accuracy(student)
        t0 = time.perf_counter()
        slimnn.distill(task.model, student, task.batches(64), epochs=6, lr=2e-3, progress=False)
        dist = task.accuracy(student)
        rec = (dist - pruned) / max(base - pruned, 1e-9)
        print(f"{sp:8.2f} {base:7.4f} {pruned:7.4f} {dist:9.4f} {100 * rec:8.0f}% {time.perf_counter() - t0:7.1f}")


if __name__ == "__main__":
    main()
