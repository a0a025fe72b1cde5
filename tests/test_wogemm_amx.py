"""The AMX-BF16 weight-only panels (csrc/kernels/wogemm/amx_bf16.h), tested on every CPU through their twins.

qgemm_q8_f32_32x32__amxemu / qgemm_q4_f32_32x32__amxemu are the same kernel source compiled over the portable
tile emulation (csrc/common/simd/x86_amx.h); they are test-only (never selected), so these tests force them by
name. The kernel rounds every dequantized weight and every activation to bf16 (nearest even) and sums the
exact products in fp32 (tdpbf16ps), so it is checked (a) against a float64 model of exactly that, with a
tight tolerance of fp32 summation error only, which a kernel that skipped or misplaced the rounding fails,
and (b) against the fp32 path (slimnn.math.reference) within the bf16 bound, the accuracy users get.
Adversarial shapes: M 0, 1, 16, 17, 33 (16-row tile halves, 32-row blocks), K odd and around the 32-value
tdpbf16ps step and the driver's K blocks, N around the 16-column panels and 32-column pairs; int8 with group
sizes, int4 symmetric / asymmetric with group sizes and scale dtypes, bias, bf16 inputs, fused activations,
threads 1-3 bit-identical. On a CPU with amx_bf16 the real kernels run the same checks; here they skip.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

import slimnn
from slimnn import _C, formats
from slimnn.math.quantize import dequantize_int4, quantize_int4

from helpers import q8_layer

EMU = {"q8": "qgemm_q8_f32_32x32__amxemu", "q4": "qgemm_q4_f32_32x32__amxemu"}
REAL = {"q8": "qgemm_q8_f32_32x32__amx_bf16", "q4": "qgemm_q4_f32_32x32__amx_bf16"}
SENTINEL = -1.2345e29
M_LIST = [0, 1, 16, 17, 33]
# K: odd, below / at / past one 32-value step, several steps, and past the driver's K block (K=300: 3 blocks
# of ~104, which are not multiples of 32: each block pads its own tail). N: panel and panel-pair tails.
KN = [(1, 1), (7, 15), (31, 16), (32, 17), (33, 33), (65, 47), (100, 64), (300, 31)]
BF16_EPS = 2.0**-8  # bf16 keeps 8 significand bits: |round(v) - v| <= 2^-8 |v| (nearest even)


def table() -> dict[str, dict]:
    rows = list(slimnn.kernels()) + list(_C.q8_emulated_kernels()) + list(_C.q4_emulated_kernels())
    return {e["name"]: e for e in rows}


def kernels_under_test(fmt: str) -> list[str]:
    return [EMU[fmt], REAL[fmt]]


def skip_unless(name: str) -> None:
    e = table().get(name)
    if e is None:
        pytest.skip(f"{name}: not built (no AMX in this build)")
    if not e["available"]:
        pytest.skip(f"{name}: this CPU lacks {e['isa']}")


def run(fmt: str, name: str, x: torch.Tensor, blob: torch.Tensor, bias, n: int, nthreads: int = 2,
        act: int = 0) -> torch.Tensor:
    m, k = x.shape
    ldy = n + 3  # sentinel columns past N: nothing may be written there
    y = torch.full((max(m, 1), ldy), SENTINEL)
    bp = 0 if bias is None else bias.data_ptr()
    if fmt == "q8":
        _C.q8_linear_forced(name, x.data_ptr(), x.dtype == torch.bfloat16, m, x.stride(0), blob.data_ptr(),
                            blob.numel(), bp, y.data_ptr(), ldy, nthreads, act, 0)
    else:
        assert act == 0
        _C.q4_linear_forced(name, x.data_ptr(), x.dtype == torch.bfloat16, m, x.stride(0), 0, blob.data_ptr(),
                            blob.numel(), bp, y.data_ptr(), ldy, nthreads)
    if m:
        assert bool((y[:m, n:] == SENTINEL).all()), f"{name} wrote past N"
    return y[:m, :n]


def bf16_round(t: torch.Tensor) -> np.ndarray:
    """Nearest-even bf16, bf16 denormals read as zero (the emulated tdpbf16ps's DAZ), as float64."""
    v = t.float().to(torch.bfloat16).float().numpy().astype(np.float64)
    return np.where(np.abs(v) < np.finfo(np.float32).tiny, 0.0, v)


def make_x(m: int, k: int, seed: int, dtype=torch.float32) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(m, k, generator=g) * 2.0
    if m and k:
        x[:, 0] *= 30.0  # an outlier feature
        x[m // 2] *= 1e-3  # a row of small values beside large ones
    return x.to(dtype)


def q8_case(n: int, k: int, gs, seed: int, with_bias: bool):
    q, scales, bias, blob = q8_layer(n, k, gs, seed, with_bias)
    g = np.arange(k) // (gs if gs else max(k, 1))
    w = q.double().numpy() * scales.double().numpy()[g, :].T  # q * s: exact in fp32, so in float64 too
    return w, bias, blob


def q4_case(n: int, k: int, gs, sym: bool, sdt, seed: int, with_bias: bool):
    g = torch.Generator().manual_seed(seed)
    wf = torch.randn(n, k, generator=g) / max(k, 1) ** 0.5
    codes, scales, zeros = quantize_int4(wf, gs, sym, sdt)
    blob = formats.pack_q4(codes, scales, zeros, gs)
    w = dequantize_int4(codes, scales, zeros, gs).double().numpy()
    bias = torch.randn(n, generator=g) if with_bias else None
    return w, bias, blob


def check(y: torch.Tensor, x: torch.Tensor, w: np.ndarray, bias, what: str) -> None:
    """(a) tight against the bf16 model; (b) within the bf16 bound of the fp32 product."""
    k = x.shape[1]
    xb, wb = bf16_round(x), bf16_round(torch.from_numpy(w).float())
    b = np.zeros(w.shape[0]) if bias is None else bias.double().numpy()
    got = y.double().numpy()
    model = xb @ wb.T + b
    mag = np.abs(xb) @ np.abs(wb).T + np.abs(b)
    # fp32 sums of exact products: at most (K + 2) roundings of 2^-24 of the running magnitude (a loose
    # worst case, still ~100x below what one unrounded operand would add at these K).
    tight = (k + 2) * 2.0**-24 * mag + 1e-37
    err = np.abs(got - model)
    assert np.all(err <= tight), f"{what}: vs bf16 model max err/mag {np.max(err / np.maximum(mag, 1e-37)):.3g}"
    exact = x.double().numpy() @ w.T + b
    mag32 = np.abs(x.double().numpy()) @ np.abs(w).T + np.abs(b)
    bound = (2 * BF16_EPS + BF16_EPS**2) * mag32 + tight * 2
    assert np.all(np.abs(got - exact) <= bound), f"{what}: outside the bf16 bound of the fp32 product"


@pytest.mark.parametrize("name", kernels_under_test("q8"))
def test_q8_against_bf16_model_and_fp32(name):
    skip_unless(name)
    gss = itertools.cycle([None, 4, 32, 128, 8])
    for (k, n), seed in zip(KN, itertools.count(1)):
        gs = next(gss)
        gs = gs if gs is None or gs <= k else None
        for m in M_LIST:
            with_bias, bf16 = (m + k) % 2 == 0, m == 17
            w, bias, blob = q8_case(n, k, gs, seed, with_bias)
            x = make_x(m, k, seed + m, torch.bfloat16 if bf16 else torch.float32)
            y = run("q8", name, x, blob, bias, n)
            check(y, x, w, bias, f"{name} M={m} K={k} N={n} gs={gs} bias={with_bias} {x.dtype}")


@pytest.mark.parametrize("name", kernels_under_test("q4"))
def test_q4_against_bf16_model_and_fp32(name):
    skip_unless(name)
    cases = itertools.cycle([(True, 32, torch.float16), (False, 64, torch.float32), (False, None, torch.bfloat16),
                             (True, 32, torch.float32), (False, 128, torch.float16)])
    for (k, n), seed in zip(KN, itertools.count(1)):
        sym, gs, sdt = next(cases)
        gs = gs if gs is None or gs <= k else None
        for m in M_LIST:
            with_bias = (m + k) % 2 == 1
            w, bias, blob = q4_case(n, k, gs, sym, sdt, seed, with_bias)
            x = make_x(m, k, seed + m)
            y = run("q4", name, x, blob, bias, n)
            check(y, x, w, bias, f"{name} M={m} K={k} N={n} gs={gs} sym={sym} {sdt} bias={with_bias}")


@pytest.mark.parametrize("fmt", ["q8", "q4"])
def test_threads_bit_identical(fmt):
    """1, 2 and 3 threads split columns (and rows when N is narrow) differently: the same bits."""
    name = EMU[fmt]
    for m, k, n in [(33, 100, 200), (40, 65, 17)]:
        w, bias, blob = q8_case(n, k, 32, 5, True) if fmt == "q8" else q4_case(n, k, 32, False, torch.float16, 5, True)
        x = make_x(m, k, 9)
        ys = [run(fmt, name, x, blob, bias, n, nthreads=t) for t in (1, 2, 3)]
        for y in ys[1:]:
            assert torch.equal(y, ys[0])
        check(ys[0], x, w, bias, f"{name} threads M={m}")


def test_fused_activation_equals_activation_after():
    """The fused epilogue is the fp32 path's: act(y) with the selected activation kernel, bit for bit."""
    w, bias, blob = q8_case(47, 65, None, 3, True)
    x = make_x(33, 65, 4)
    plain = run("q8", EMU["q8"], x, blob, bias, 47)
    for act in (1, 2, 3, 4):  # relu, gelu, gelu_tanh, silu (kernels/act/act.h)
        fused = run("q8", EMU["q8"], x, blob, bias, 47, act=act)
        want = plain.contiguous().clone()
        _C.act_apply(_C.select_act(), act, want.data_ptr(), want.numel())
        assert torch.equal(fused, want), act


def test_nan_row_stays_in_its_row():
    w, bias, blob = q8_case(33, 40, None, 6, False)
    x = make_x(20, 40, 7)
    x[5, 3] = float("nan")
    y = run("q8", EMU["q8"], x, blob, bias, 33)
    assert bool(torch.isnan(y[5]).all())
    assert bool(torch.isfinite(y[torch.arange(20) != 5]).all())


def test_selection_is_opt_in():
    """Off by default (the fp32 panels stay the path); opting in changes the choice only on a CPU with
    amx_bf16, from the given M, and a forced ISA below amx_bf16 turns it off again."""
    assert _C.wo_amx_bf16_min_rows() == (int(os.environ["SLIMNN_WO_AMX_BF16"])
                                         if os.environ.get("SLIMNN_WO_AMX_BF16", "").isdigit() else 0)
    before = {(kind, m): _C.select_kernel(kind, m) if kind.startswith("q8") else _C.q4_select_kernel(kind, m)
              for kind in ("q8_weight_only", "q4_weight_only") for m in (1, 8, 64, 300)}
    has = "amx_bf16" in slimnn.isa.available()
    old = _C.wo_amx_bf16_min_rows()
    try:
        assert _C.wo_amx_bf16_min_rows(8) == 8
        for (kind, m), was in before.items():
            now = _C.select_kernel(kind, m) if kind.startswith("q8") else _C.q4_select_kernel(kind, m)
            if has and m >= 8:
                assert now.endswith("__amx_bf16"), (kind, m, now)
            else:
                assert now == was, (kind, m, now)
        with slimnn.isa.forced("amx"):
            assert not _C.select_kernel("q8_weight_only", 300).endswith("__amx_bf16")
        row = table()[REAL["q8"]] if REAL["q8"] in table() else None
        if row is not None:
            assert row["min_m"] == 8 and row["isa"] == "amx_bf16"
        assert _C.wo_amx_bf16_min_rows(0) == 0
        if row is not None:
            assert table()[REAL["q8"]]["min_m"] == -1  # off: never chosen
    finally:
        _C.wo_amx_bf16_min_rows(old)


def test_environment_switch():
    """SLIMNN_WO_AMX_BF16=<rows> opts in at start-up (one child process: importing torch costs seconds)."""
    code = "from slimnn import _C; print(_C.wo_amx_bf16_min_rows())"
    env = dict(os.environ, SLIMNN_WO_AMX_BF16="64")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "64", (out.stdout, out.stderr)


def test_reported_in_cpu_info():
    info = slimnn.cpu_info()
    assert ("amx_bf16" in info["isa_detected"]) <= ("amx" in info["isa_detected"])
    names = set(info["amx"]["emulated_kernels"])
    assert EMU["q8"] in names
