"""Instruction-set paths: what this CPU offers, and forcing a lower path for tests and bug reports.

The ISA words, lowest to highest: ``portable``, ``avx2``, ``avxvnni``, ``avx512``, ``avx512vnni``,
``amx`` (AMX-TILE + AMX-INT8), ``amx_bf16`` (+ AMX-BF16), then on aarch64 ``neon``, ``dotprod`` (SDOT/UDOT), ``i8mm`` (SMMLA/USMMLA). The environment variable ``SLIMNN_ISA`` (read once, at import of the extension) and
:func:`force` set a ceiling; both can only lower the choice, never enable what the CPU lacks. An unknown
word in ``SLIMNN_ISA`` makes ``import slimnn`` raise ``ValueError``.
"""

from __future__ import annotations

import contextlib
import os
from typing import Iterator

from .. import _C

NAMES: tuple[str, ...] = tuple(_C.isa_names())


def _check_env() -> None:
    # The extension ignores a word it does not know; a typo must not silently run the best path instead.
    env = os.environ.get("SLIMNN_ISA", "")
    if env and env not in NAMES:
        raise ValueError(f"SLIMNN_ISA={env!r} is not an ISA; expected one of {', '.join(NAMES)} (or unset)")


_check_env()


def _mask_names(mask: int) -> list[str]:
    return [n for i, n in enumerate(NAMES) if mask & (1 << i)]


def detected() -> list[str]:
    """ISAs the CPU and the OS support (CPUID + XGETBV, AMX permission), whether built or not."""
    return _mask_names(_C.detected_isa_mask())


def built() -> list[str]:
    """ISAs this build has kernels for."""
    return _mask_names(_C.built_isa_mask())


def available() -> list[str]:
    """ISAs kernels are chosen from now: detected, built and under the forced ceiling."""
    return _mask_names(_C.current_isa_mask())


def best() -> str:
    """The highest ISA kernels are chosen from now."""
    return available()[-1]


def force(name: str | None) -> None:
    """Caps kernel selection at ISA ``name`` (one of :data:`NAMES`); ``None`` lifts the cap.

    The cap applies to calls made after this returns, from every thread.
    """
    if name is None:
        _C.force_isa("")
        return
    if name not in NAMES:
        raise ValueError(f"unknown ISA {name!r}; expected one of {', '.join(NAMES)}")
    _C.force_isa(name)


@contextlib.contextmanager
def forced(name: str | None) -> Iterator[None]:
    """Context manager form of :func:`force`; restores the environment's ceiling on exit."""
    force(name)
    try:
        yield
    finally:
        force(None)
