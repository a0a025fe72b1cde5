"""src/slimnn/_C.pyi against the built extension: the same public names, and for every function the same
parameters (names, order, which have defaults and what they are). Hand stubs drift; this keeps ours honest.
A submodule of _C is described in the stub by a class of the same name holding its functions."""

from __future__ import annotations

import ast
import inspect
import re
import types
from pathlib import Path

from slimnn import _C

STUB = Path(__file__).resolve().parents[1] / "src" / "slimnn" / "_C.pyi"


def _split_params(text: str) -> list[str]:
    parts, depth, cur = [], 0, ""
    for ch in text:
        depth += ch in "[("
        depth -= ch in "])"
        if ch == "," and depth == 0:
            parts.append(cur.strip())
            cur = ""
        else:
            cur += ch
    if cur.strip():
        parts.append(cur.strip())
    return parts


def built_params(fn) -> list[tuple[str, str | None]]:
    """(name, default text or None) per parameter, from pybind11's signature line."""
    m = re.match(rf"{re.escape(fn.__name__)}\((.*)\) ->", (fn.__doc__ or "").split("\n")[0])
    assert m, f"_C.{fn.__name__}: no pybind11 signature in its docstring"
    out = []
    for p in _split_params(m.group(1)):
        name, _, rest = p.partition(":")
        default = rest.split("=", 1)[1].strip() if "=" in rest else None
        out.append((name.strip(), default))
    return out


def stub_params(node: ast.FunctionDef) -> list[tuple[str, str | None]]:
    args = node.args.args
    defaults = [None] * (len(args) - len(node.args.defaults)) + [ast.unparse(d) for d in node.args.defaults]
    return [(a.arg, d) for a, d in zip(args, defaults)]


def stub_scope(body: list[ast.stmt]) -> dict[str, ast.AST]:
    names: dict[str, ast.AST] = {}
    for node in body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names[node.name] = node
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names[node.target.id] = node
    return names


def public(mod) -> dict[str, object]:
    return {n: getattr(mod, n) for n in dir(mod) if not n.startswith("_")}


def compare(mod, body: list[ast.stmt], where: str) -> list[str]:
    problems = []
    built, stub = public(mod), stub_scope(body)
    for n in sorted(built.keys() - stub.keys()):
        problems.append(f"{where}{n}: in the module, missing from _C.pyi")
    for n in sorted(stub.keys() - built.keys()):
        problems.append(f"{where}{n}: in _C.pyi, not in the module")
    for n in sorted(built.keys() & stub.keys()):
        obj, node = built[n], stub[n]
        if isinstance(obj, types.ModuleType):
            if not isinstance(node, ast.ClassDef):
                problems.append(f"{where}{n}: a submodule; the stub needs a class {n}")
            else:
                problems += compare(obj, node.body, f"{where}{n}.")
        elif callable(obj) and not inspect.isclass(obj):
            if not isinstance(node, ast.FunctionDef):
                problems.append(f"{where}{n}: a function in the module, not in _C.pyi")
            elif built_params(obj) != stub_params(node):
                problems.append(f"{where}{n}: parameters {built_params(obj)} in the module, {stub_params(node)} in _C.pyi")
    return problems


def test_stub_matches_the_built_module():
    tree = ast.parse(STUB.read_text())
    problems = compare(_C, tree.body, "_C.")
    assert not problems, "\n".join(problems)


def test_stub_check_catches_drift():
    # The comparison itself: a stub missing a function, with a renamed parameter or a changed default fails.
    tree = ast.parse(STUB.read_text())
    body = [n for n in tree.body if not (isinstance(n, ast.FunctionDef) and n.name == "q8_header")]
    assert any("q8_header" in p for p in compare(_C, body, "_C."))
    fn = ast.parse("def attention_exp(x: int, y: int, count: int, kernel: str = '') -> str: ...").body[0]
    assert stub_params(fn) != built_params(_C.attention_exp)
    fn = ast.parse("def attention_exp(x: int, y: int, n: int, kernel: str = 'x') -> str: ...").body[0]
    assert stub_params(fn) != built_params(_C.attention_exp)


def test_signature_parser_reads_pybind():
    assert built_params(_C.kernels) == []
    assert built_params(_C.attention_exp) == [("x", None), ("y", None), ("n", None), ("kernel", "''")]
    assert built_params(_C.attention_f32)[0] == ("sizes", None)  # a Sequence[...] type holds a comma
    assert built_params(_C.lowrank_f32_linear)[-1] == ("nnz", "0")
