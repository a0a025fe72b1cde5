"""The one place test tolerances live (STYLE.md 6.4; ruy's ``Agree``, YNNPACK's ``tolerance.h``).

- Integers, packed bytes and results promised bit-identical: exact (``assert_exact``).
- Floats: bounded in max and in mean by ``eps(dtype) * sqrt(K)`` times a *magnitude*, the sum of the
  absolute values of the terms the kernel adds up (e.g. ``|x| @ |W|^T + |bias|``). Scaling by the terms
  rather than by the result keeps cancellation from demanding impossible relative accuracy, and a real bug
  (a wrong column, group, scale or bias) is off by about the result itself, far above these bounds.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor

EPS = {
    torch.float32: torch.finfo(torch.float32).eps,  # 2^-23
    torch.bfloat16: torch.finfo(torch.bfloat16).eps,  # 2^-7
    torch.float16: torch.finfo(torch.float16).eps,  # 2^-10
    torch.float64: torch.finfo(torch.float64).eps,
}

# Worst element and average element, in units of eps * sqrt(K) * magnitude. Calibrated on the adversarial
# shape lists of test_qgemm.py: worst element 1.02 (K = 1, where the few roundings of the epilogue are all
# there is), worst mean 0.21 over outputs of 32+ elements. The mean is checked from MEAN_MIN_COUNT elements.
MEAN_MIN_COUNT = 32
MAX_FACTOR = 4.0
MEAN_FACTOR = 0.5

# Different ISAs round the per-channel dynamic epilogue differently (see test_qgemm.py); they agree to a
# few float32 ulps of the result.
CROSS_ISA_ULPS = 4


def unit(k: int, dtype: torch.dtype = torch.float32) -> float:
    """eps(dtype) * sqrt(K): the relative error of a float sum of K terms, on average."""
    return EPS[dtype] * math.sqrt(max(int(k), 1))


def _same_nan(actual: Tensor, expected: Tensor, what: str) -> None:
    an, en = torch.isnan(actual), torch.isnan(expected)
    if not torch.equal(an, en):
        idx = (an != en).nonzero()[0].tolist()
        raise AssertionError(f"{what}: NaN positions differ, first at {idx} (actual {actual[tuple(idx)]}, "
                             f"expected {expected[tuple(idx)]})")


def assert_exact(actual: Tensor, expected: Tensor, what: str = "values") -> None:
    """Equal shapes and equal values; floats compared bit for bit (NaN equals NaN, -0 differs from +0)."""
    assert tuple(actual.shape) == tuple(expected.shape), f"{what}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    if actual.is_floating_point() or expected.is_floating_point():
        assert actual.dtype == expected.dtype, f"{what}: dtype {actual.dtype} != {expected.dtype}"
        ints = {torch.float32: torch.int32, torch.float64: torch.int64, torch.bfloat16: torch.int16,
                torch.float16: torch.int16}[actual.dtype]
        a, e = actual.contiguous().view(ints), expected.contiguous().view(ints)
    else:
        a, e = actual.to(torch.int64), expected.to(torch.int64)
    if not torch.equal(a, e):
        diff = (a != e).nonzero()
        idx = tuple(diff[0].tolist())
        raise AssertionError(f"{what}: {diff.shape[0]} of {a.numel()} differ, first at {idx}: "
                             f"{actual[idx].item()!r} != {expected[idx].item()!r}")


def assert_close(
    actual: Tensor,
    expected: Tensor,
    *,
    k: int,
    magnitude: Tensor,
    out_dtype: torch.dtype = torch.float32,
    what: str = "values",
    max_factor: float = MAX_FACTOR,
    mean_factor: float = MEAN_FACTOR,
) -> None:
    """|actual - expected| <= max_factor * eps * sqrt(K) * magnitude everywhere, and its mean over the
    elements <= mean_factor * eps * sqrt(K) * magnitude. NaN must sit at the same places in both.

    ``out_dtype`` below float32 (bfloat16 outputs) adds the final rounding: half an ulp of |expected|.
    """
    assert tuple(actual.shape) == tuple(expected.shape), f"{what}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    a = actual.detach().to(torch.float64)
    e = expected.detach().to(torch.float64)
    _same_nan(a, e, what)
    ok = ~torch.isnan(e)
    if not bool(ok.any()):
        return
    a, e = a[ok], e[ok]
    mag = torch.broadcast_to(magnitude.detach().to(torch.float64), ok.shape)[ok]
    err = (a - e).abs()
    u = unit(k)
    rounding = 0.0 if out_dtype in (torch.float32, torch.float64) else EPS[out_dtype] / 2
    # The floor keeps an all-zero magnitude (zero weights, zero input) from demanding exactly zero error
    # from values that are tiny but not zero.
    allowed = u * mag + rounding * e.abs() + torch.finfo(torch.float32).tiny
    ratio = (err - rounding * e.abs()).clamp_min(0) / (u * mag + torch.finfo(torch.float32).tiny)
    bad = err > max_factor * allowed
    if bool(bad.any()):
        i = int(bad.nonzero()[0])
        raise AssertionError(
            f"{what}: {int(bad.sum())} of {err.numel()} elements beyond {max_factor} x eps*sqrt(K={k}) x magnitude; "
            f"first: actual {a[i].item()!r}, expected {e[i].item()!r}, error {err[i].item():.3e}, "
            f"allowed {max_factor * allowed[i].item():.3e}"
        )
    mean = float(ratio.mean())
    assert ratio.numel() < MEAN_MIN_COUNT or mean <= mean_factor, f"{what}: mean error {mean:.3f} x eps*sqrt(K={k}) x magnitude > {mean_factor}"


def assert_ulps(actual: Tensor, expected: Tensor, ulps: int, what: str = "values",
                floor: Optional[Tensor] = None) -> None:
    """Float32 results within ``ulps`` units in the last place of each other (NaN at the same places).

    ``floor``: an absolute allowance per element, for results that cancel to near zero.
    """
    a, e = actual.to(torch.float32), expected.to(torch.float32)
    _same_nan(a, e, what)
    ok = ~torch.isnan(e)
    a64, e64 = a[ok].to(torch.float64), e[ok].to(torch.float64)
    spacing = torch.maximum(a64.abs(), e64.abs()) * 2.0**-23 + torch.finfo(torch.float32).tiny
    allowed = ulps * spacing
    if floor is not None:
        allowed = allowed + torch.broadcast_to(floor.to(torch.float64), ok.shape)[ok]
    err = (a64 - e64).abs()
    bad = err > allowed
    if bool(bad.any()):
        i = int(bad.nonzero()[0])
        raise AssertionError(f"{what}: {int(bad.sum())} elements differ by more than {ulps} ulp; first "
                             f"{a64[i].item()!r} vs {e64[i].item()!r}")
