"""autocompress, distill and the report, on a real task: an MLP trained on scikit-learn's digits."""

import copy
import json

import pytest
import torch
from torch import nn

import slimnn
from slimnn.recipes import pipeline
from slimnn.app import tasks
from slimnn.nn import Int4Linear, Int8Linear, LowRankLinear

COMPRESSED = (Int8Linear, Int4Linear, LowRankLinear)

pytest.importorskip("sklearn")


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny matrices: one thread is fastest on a shared 2-core machine; restored afterwards."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def task():
    old = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: one thread trains fastest on a shared 2-core machine
    try:
        return tasks.digits_task(hidden=256, epochs=12)
    finally:
        torch.set_num_threads(old)


def _linears(model):
    return {n: m for n, m in model.named_modules() if isinstance(m, (nn.Linear, *COMPRESSED))}


def test_task_is_a_real_classifier(task):
    assert task.x_test.shape == (360, 64)
    assert task.accuracy(task.model) > 0.93


def test_autocompress_within_budget_smaller_and_reported(task, tmp_path):
    before = {k: v.clone() for k, v in task.model.state_dict().items()}
    model, report = slimnn.autocompress(
        task.model, task.eval_fn, task.x_test[:256], max_drop=0.01, threads=1, reps=5, progress=False,
        metric_name="accuracy", report_dir=str(tmp_path), seed=0, objective="size",
    )
    base = report.steps[0]
    chosen = next(s for s in report.steps if s.name == report.chosen)
    assert base.name == "float" and report.chosen != "float"
    acc = task.accuracy(model)
    assert acc == pytest.approx(chosen.metric)
    assert acc >= task.accuracy(task.model) - 0.01
    assert pipeline.model_bytes(model) < pipeline.model_bytes(task.model)
    assert chosen.bytes == pipeline.model_bytes(model) and chosen.size_ratio > 3
    assert any(isinstance(m, COMPRESSED) for m in model.modules())
    # The input model is untouched and shares no tensor with the result.
    assert all(type(m) is nn.Linear for m in _linears(task.model).values())
    for k, v in task.model.state_dict().items():
        assert torch.equal(v, before[k])
    ours = {t.data_ptr() for t in list(model.parameters()) + list(model.buffers())}
    assert not ours & {t.data_ptr() for t in task.model.parameters()}
    # Per-layer rows: format, kernel, bytes, latency.
    rows = {r.name: r for r in chosen.layers}
    assert set(rows) == {"0", "2", "4"}
    assert all(r.format.startswith(("int8", "int4", "lowrank")) for r in rows.values())
    for r in rows.values():
        assert r.bytes > 0 and r.latency_ms is not None and r.latency_ms > 0
        assert r.kernel
    # Files: Markdown, JSON, PNG.
    md = (tmp_path / "report.md").read_text()
    assert "| float |" in md and "accuracy" in md and "| 2 |" in md
    data = json.loads((tmp_path / "report.json").read_text())
    assert data["chosen"] == report.chosen and len(data["steps"]) == len(report.steps)
    assert (tmp_path / "tradeoff.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert set(report.pareto_front("bytes")) <= {s.name for s in report.steps}


def _outlier_model():
    """Layer 0 reads one input feature 100x larger than the others (its weights 10x smaller): per-row
    dynamic activation quantization loses the other features there (cosine 0.998); weight-only int8
    keeps them (0.9997)."""
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 32)).eval()
    with torch.no_grad():
        m[0].weight[:, 0] /= 10.0
    x = torch.randn(128, 64)
    x[:, 0] *= 100.0
    with torch.inference_mode():
        ref = m(x)

    @torch.inference_mode()
    def cosine(model):  # the metric: mean cosine similarity to the float model's outputs on x
        return float(torch.nn.functional.cosine_similarity(model(x), ref, dim=1).mean())

    return m, x, cosine


def test_mixed_per_layer_choice_follows_sensitivity():
    m, x, cosine = _outlier_model()
    out, report = slimnn.autocompress(m, cosine, x, max_drop=0.001, objective="size", threads=1, reps=3,
                                      progress=False, sensitivity="metric")
    assert cosine(out) >= 1 - 0.001
    assert isinstance(out[0], Int8Linear) and out[0].config.mode == "weight_only"
    assert isinstance(out[2], Int8Linear) and out[2].config.mode == "dynamic"
    assert isinstance(out[4], Int8Linear) and out[4].config.mode == "dynamic"
    rows = {r.name: r for r in report._step(report.chosen).layers}
    assert rows["0"].format == "int8 weight_only" and rows["2"].format == "int8 dynamic"


def test_layers_too_sensitive_stay_float_and_proxy_mode():
    m, x, cosine = _outlier_model()
    steps = [pipeline.Step("int8-dyn", [slimnn.Int8Config(mode="dynamic")])]
    out, report = slimnn.autocompress(m, cosine, x, calib_data=[x], max_drop=0.001, objective="size", steps=steps,
                                      threads=1, reps=3, progress=False, sensitivity="proxy")
    assert type(out[0]) is nn.Linear  # no format for it within budget: kept in float
    assert isinstance(out[2], Int8Linear)
    assert cosine(out) >= 1 - 0.001
    assert "proxy" in " ".join(report.notes)


def test_zero_budget_and_bad_arguments(task):
    with pytest.raises(ValueError, match="objective"):
        slimnn.autocompress(task.model, task.eval_fn, task.x_test, objective="speed")
    with pytest.raises(ValueError, match="max_drop"):
        slimnn.autocompress(task.model, task.eval_fn, task.x_test, max_drop=-1)
    with pytest.raises(TypeError):
        pipeline.Step("x", [object()])

    def never(model):  # a metric any compression breaks: the float model comes back
        return 1.0 if all(type(mm) is nn.Linear for mm in _linears(model).values()) else 0.0

    out, report = slimnn.autocompress(task.model, never, task.x_test[:64], max_drop=0.0, threads=1, reps=2,
                                      progress=False)
    assert report.chosen == "float"
    assert all(type(mm) is nn.Linear for mm in _linears(out).values())


def test_reproducible_with_seed(task):
    kw = dict(max_drop=0.01, threads=1, reps=2, progress=False, objective="size", seed=3)
    a, ra = slimnn.autocompress(task.model, task.eval_fn, task.x_test[:64], **kw)
    b, rb = slimnn.autocompress(task.model, task.eval_fn, task.x_test[:64], **kw)
    assert [s.metric for s in ra.steps] == [s.metric for s in rb.steps]
    x = task.x_test
    with torch.inference_mode():
        assert torch.equal(a(x), b(x))


# ---------------------------------------------------------------- distillation

def test_distill_recovers_accuracy_after_aggressive_pruning(task):
    base = task.accuracy(task.model)
    student = tasks.magnitude_prune_(copy.deepcopy(task.model), 0.92)
    zeros = {n: (m.weight == 0).clone() for n, m in student.named_modules() if isinstance(m, nn.Linear)}
    pruned = task.accuracy(student)
    assert pruned < base - 0.1  # aggressive: a large loss
    history = []
    slimnn.distill(task.model, student, task.batches(64), epochs=6, lr=2e-3, progress=False, history=history)
    recovered = task.accuracy(student)
    # Most of the loss comes back (measured: 0.7 -> 0.97 with the 512-wide model) ...
    assert recovered - pruned >= 0.7 * (base - pruned), (base, pruned, recovered)
    # ... and the sparsity pattern is exactly the one pruning made.
    for n, m in student.named_modules():
        if isinstance(m, nn.Linear):
            assert torch.equal(m.weight == 0, zeros[n])
    assert history[-1] < history[0]


def test_distill_int8_student_stays_int8(task):
    student = copy.deepcopy(task.model)
    slimnn.compress_(student, slimnn.Int8Config(group_size=32))
    blob_before = student[2].packed.clone()
    slimnn.distill(task.model, student, task.batches(128), epochs=1, lr=1e-3, alpha=1.0, progress=False)
    assert all(isinstance(student[i], Int8Linear) for i in (0, 2, 4))
    assert student[2].config.group_size == 32
    assert not torch.equal(student[2].packed, blob_before)  # re-quantized from the trained weights
    assert task.accuracy(student) >= task.accuracy(task.model) - 0.03


def test_distill_smaller_architecture_with_feature_matching(task):
    torch.manual_seed(0)
    small = tasks.mlp(64, 48, 10, layers=2)
    before = task.accuracy(small.eval())
    slimnn.distill(task.model, small, task.batches(64), epochs=8, lr=3e-3, progress=False,
                   features=[("1", "1")], feature_weight=0.1)
    assert task.accuracy(small) > max(0.85, before + 0.5)


def test_distill_rejects_bad_arguments(task):
    with pytest.raises(ValueError, match="loss"):
        slimnn.distill(task.model, copy.deepcopy(task.model), task.batches(), loss="hinge")
    with pytest.raises(ValueError, match="alpha"):
        slimnn.distill(task.model, copy.deepcopy(task.model), task.batches(), alpha=2.0)


@pytest.mark.slow
def test_autocompress_with_distill_step(task, tmp_path):
    model, report = slimnn.autocompress(
        task.model, task.eval_fn, task.x_test[:256], max_drop=0.01, threads=1, reps=3, progress=False,
        distill_data=task.batches(64), distill_kwargs={"epochs": 1},
    )
    assert report.steps[-1].name == "distill"
    assert task.accuracy(model) >= task.accuracy(task.model) - 0.01


def test_a_format_that_rejects_a_layer_leaves_it_alone():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 8)).eval()
    x = torch.randn(32, 64)
    with torch.no_grad():  # a NaN weight: the int8 quantizer refuses this layer with a ValueError
        m[2].weight[0, 0] = float("nan")
    out, report = slimnn.autocompress(m, lambda mod: 1.0, x, max_drop=0.01, objective="size", threads=1,
                                      reps=2, progress=False)
    assert isinstance(out[0], COMPRESSED) and type(out[2]) is nn.Linear
    assert "does not apply" in report._step("int8").note
