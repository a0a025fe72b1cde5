"""Import paths of the flat layout before the package had layers, kept for one release (until 0.3).

``import slimnn.quantize`` / ``from slimnn.sparse_ops import ...`` / ``slimnn.reference`` keep working and
give the module at its new home, with a ``DeprecationWarning`` naming it. ``slimnn.isa`` and ``slimnn.prune``
stay public names of the package itself (no warning).
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings
from types import ModuleType
from typing import Optional

OLD_TO_NEW = {
    "isa": "runtime.isa",
    "info": "runtime.info",
    "_threads": "runtime.threads",
    "quantize": "math.quantize",
    "reference": "math.reference",
    "calibration": "math.calibration",
    "calibrate": "math.gptq",
    "prune": "math.prune",
    "lowrank": "math.lowrank",
    "int4_calibration": "techniques.int4",
    "sparse_formats": "formats.sparse",
    "sparse_ops": "ops.sparse",
    "attention_ops": "ops.attn",
    "sparse_io": "techniques.sparse",
    "fuse": "techniques.fusion",
    "pipeline": "recipes.pipeline",
    "distill": "recipes.distill",
    "mixed": "recipes.mixed",
    "report": "recipes.report",
    "cli": "app.cli",
    "demo": "app.demo",
    "tasks": "app.tasks",
}
"""Old module name (under ``slimnn.``) -> its module today."""

_SILENT = {"isa", "prune"}


def _warn(pkg: str, old: str) -> None:
    if old not in _SILENT:
        warnings.warn(f"{pkg}.{old} moved to {pkg}.{OLD_TO_NEW[old]}; the old path goes away in slimnn 0.3",
                      DeprecationWarning, stacklevel=3)


class _AliasLoader(importlib.abc.Loader):
    def __init__(self, target: str) -> None:
        self.target = target

    def create_module(self, spec):  # noqa: ANN001
        return importlib.import_module(self.target)

    def exec_module(self, module: ModuleType) -> None:
        pass


class _AliasFinder(importlib.abc.MetaPathFinder):
    def __init__(self, pkg: str) -> None:
        self.pkg = pkg

    def find_spec(self, fullname: str, path, target=None):  # noqa: ANN001
        head, _, old = fullname.rpartition(".")
        if head != self.pkg or old not in OLD_TO_NEW:
            return None
        _warn(self.pkg, old)
        new = f"{self.pkg}.{OLD_TO_NEW[old]}"
        return importlib.util.spec_from_loader(fullname, _AliasLoader(new))


def install(pkg: str) -> None:
    """Lets ``import <pkg>.<old name>`` find the moved module (idempotent)."""
    if not any(isinstance(f, _AliasFinder) and f.pkg == pkg for f in sys.meta_path):
        sys.meta_path.append(_AliasFinder(pkg))


def attribute(pkg: str, name: str) -> Optional[ModuleType]:
    """``<pkg>.<old name>`` as an attribute: the moved module."""
    if name not in OLD_TO_NEW:
        raise AttributeError(f"module {pkg!r} has no attribute {name!r}")
    _warn(pkg, name)
    return importlib.import_module(f"{pkg}.{OLD_TO_NEW[name]}")
