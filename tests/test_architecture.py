"""The package's structure (docs/architecture.md), checked by parsing its imports: no import cycles, no
imports of another module's private names, at most 12 top-level modules, and every layer importing only
the layers below it."""

from __future__ import annotations

import ast
import pathlib

import slimnn

PKG = pathlib.Path(slimnn.__file__).parent
MAX_TOP_LEVEL = 12

# Layer -> the layers (and leaf modules) it may import, besides itself. Lowest first.
ALLOWED = {
    "_version": set(),
    "configs": set(),
    "_C": set(),
    "runtime": {"_C"},
    "math": {"configs", "_C"},
    "formats": {"configs", "_C"},
    "ops": {"configs", "_C", "runtime", "math", "formats"},
    "nn": {"configs", "_C", "runtime", "math", "formats", "ops"},
    "techniques": {"configs", "_C", "runtime", "math", "formats", "ops", "nn"},
    "api": {"configs", "techniques"},
    "io": {"configs", "_version", "formats", "nn", "techniques"},
    "integrations": {"configs", "_C", "runtime", "math", "formats", "ops", "nn", "techniques", "api", "io"},
    "recipes": {"configs", "_C", "runtime", "math", "formats", "ops", "nn", "techniques", "api", "io"},
    "app": {"*"},
    "_compat": set(),
    "__init__": {"*"},
    "__main__": {"*"},
}


def _modules() -> dict[str, pathlib.Path]:
    out = {}
    for f in PKG.rglob("*.py"):
        rel = f.relative_to(PKG).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(["slimnn", *parts])] = f
    return out


MODULES = _modules()


def _resolve(mod: str, is_pkg: bool, level: int, name: str) -> str:
    base = mod.split(".") if is_pkg else mod.split(".")[:-1]
    if level > 1:
        base = base[: len(base) - (level - 1)]
    return ".".join(base + ([name] if name else []))


def _imports(mod: str, path: pathlib.Path) -> list[tuple[str, list[str]]]:
    """(imported module, [names taken from it]) for every import statement, at any depth."""
    tree = ast.parse(path.read_text())
    is_pkg = path.name == "__init__.py"
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] == "slimnn":
                    out.append((a.name, []))
        elif isinstance(node, ast.ImportFrom):
            src = _resolve(mod, is_pkg, node.level, node.module or "") if node.level else (node.module or "")
            if src.split(".")[0] != "slimnn":
                continue
            names = [a.name for a in node.names]
            subs = [n for n in names if f"{src}.{n}" in MODULES or f"{src}.{n}" == "slimnn._C"]
            for n in subs:
                out.append((f"{src}.{n}", []))
            rest = [n for n in names if n not in subs]
            if rest or not subs:
                out.append((src, rest))
    return out


def _edges() -> dict[str, set[str]]:
    g: dict[str, set[str]] = {m: set() for m in MODULES}
    for mod, path in MODULES.items():
        for target, _ in _imports(mod, path):
            if target in MODULES and target != mod:
                g[mod].add(target)
    return g


def test_no_import_cycles():
    g = _edges()
    # The implicit edge from a submodule to its parent package's __init__ is not counted (every import of
    # slimnn.x.y runs slimnn/__init__.py); explicit imports of a package are.
    index, low, stack, on, sccs, counter = {}, {}, [], set(), [], [0]

    def strong(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in g[v]:
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                sccs.append(sorted(comp))

    for v in g:
        if v not in index:
            strong(v)
    assert sccs == [], f"import cycles: {sccs}"


def test_no_imports_of_private_names():
    bad = []
    for mod, path in MODULES.items():
        for target, names in _imports(mod, path):
            for n in names:
                if n.startswith("_") and not n.startswith("__") and n != "_C":
                    bad.append(f"{mod} imports {n} from {target}")
        # attribute access to a private name of an imported slimnn module (e.g. api._HANDLERS)
        tree = ast.parse(path.read_text())
        bound = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                bound |= {(a.asname or a.name).split(".")[0] for a in node.names if a.name.startswith("slimnn")}
            elif isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith("slimnn")):
                bound |= {a.asname or a.name for a in node.names}
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
                root = node.value
                while isinstance(root, ast.Attribute):
                    root = root.value
                if isinstance(root, ast.Name) and root.id in bound and node.attr != "_C":
                    bad.append(f"{mod} uses {ast.unparse(node)}")
    assert bad == [], "\n".join(bad)


def test_top_level_modules():
    top = sorted(p.name for p in PKG.glob("*.py"))
    assert len(top) <= MAX_TOP_LEVEL, top


def _layer(mod: str) -> str:
    parts = mod.split(".")
    return "__init__" if len(parts) == 1 else parts[1]


def test_layers_import_only_below():
    bad = []
    for mod, targets in _edges().items():
        src = _layer(mod)
        allowed = ALLOWED[src]
        for t in targets:
            dst = _layer(t)
            if dst != src and "*" not in allowed and dst not in allowed:
                bad.append(f"{mod} ({src}) imports {t} ({dst})")
    assert bad == [], "\n".join(sorted(bad))


def test_every_module_has_a_layer():
    assert {_layer(m) for m in MODULES} <= set(ALLOWED)
