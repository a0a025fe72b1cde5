"""Run a function once a given module has been imported, without importing it ourselves.

slimnn registers things with libraries it must not import at ``import slimnn`` (transformers' quantizer
registry costs seconds; torch's Inductor lowering table is only needed once something is compiled):
:func:`when_imported` calls ``fn(module)`` right away if the module is already in ``sys.modules``, else
right after the module's own code has run, the first time anything imports it. The hook is a
``sys.meta_path`` finder that only wraps the loader of the watched names; a callback that raises is
reported as a warning and never breaks the user's import.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
import threading
import warnings
from types import ModuleType
from typing import Any, Callable

_lock = threading.RLock()
_pending: dict[str, list[Callable[[ModuleType], None]]] = {}


def _run(name: str, module: ModuleType, callbacks: list) -> None:
    for fn in callbacks:
        try:
            fn(module)
        except Exception as e:  # noqa: BLE001  (a hook must not break an unrelated import)
            warnings.warn(f"slimnn: setting up the {name} integration failed: {type(e).__name__}: {e}",
                          RuntimeWarning, stacklevel=2)


class _Loader(importlib.abc.Loader):
    def __init__(self, inner: Any, name: str) -> None:
        self._inner, self._name = inner, name

    def create_module(self, spec):  # noqa: ANN001, ANN201
        return self._inner.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self._inner.exec_module(module)
        with _lock:
            callbacks = _pending.pop(self._name, [])
        _run(self._name, module, callbacks)

    def __getattr__(self, attr: str) -> Any:  # get_source, get_filename, ... of the real loader
        return getattr(self._inner, attr)


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path, target=None):  # noqa: ANN001, ANN201
        if fullname not in _pending:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        if spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        spec.loader = _Loader(spec.loader, fullname)
        return spec


_finder = _Finder()


def when_imported(name: str, fn: Callable[[ModuleType], None]) -> None:
    """Calls ``fn(module)`` once module ``name`` is imported (now, if it already is)."""
    with _lock:
        module = sys.modules.get(name)
        if module is None:
            _pending.setdefault(name, []).append(fn)
            if _finder not in sys.meta_path:
                sys.meta_path.insert(0, _finder)
            return
    _run(name, module, [fn])
