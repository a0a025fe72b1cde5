"""Every qgemm kernel of slimnn.kernels(), forced one at a time, against slimnn.math.reference.

(a) integer dot products: exact; (b) activation quantization: bit-exact; (c) the whole op: within
tolerances.py, over adversarial shapes (M from 0, K and N around the 4-wide K steps, 16-wide panels and
group sizes), fp32 and bf16 inputs, with and without bias, strided inputs and leading batch dimensions.
An ISA this CPU lacks is a skip, never a pass.
"""

from __future__ import annotations

import functools
import itertools

import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import slimnn
from slimnn import _C, formats
from slimnn.math import reference

from helpers import (
    F32_MAX,
    SENTINEL_F32,
    SENTINEL_I32,
    SENTINEL_U8,
    entries,
    entry_id,
    kp_of,
    np_of,
    q8_linear,
    q8_layer,
    random_q,
    random_scales,
    reference_linear,
    skip_unless_available,
    special_rows,
)
from tolerances import CROSS_ISA_ULPS, assert_close, assert_exact, assert_ulps

M_LIST = [0, 1, 2, 3, 4, 5, 7, 16, 33]
K_LIST = [1, 3, 4, 5, 17, 64, 100, 255, 4093]
N_LIST = [1, 15, 16, 17, 33, 64, 65, 100]
GROUP_SIZES = [None, 4, 8, 32, 64, 128]

DYN = entries("q8_dynamic")
WO = entries("q8_weight_only")
MODE_OF = {"q8_dynamic": "dynamic", "q8_weight_only": "weight_only"}


def has_gemv_sibling(e: dict) -> bool:
    return any(o["kind"] == e["kind"] and o["isa"] == e["isa"] and o["gemv"] for o in slimnn.kernels())


def m_values(e: dict) -> list[int]:
    """The M values for which the selector, capped at e's ISA, picks e (AMX: from its crossover min_m)."""
    if e["gemv"]:
        return [1]
    return [m for m in M_LIST if not (m == 1 and has_gemv_sibling(e)) and m >= e["min_m"]]


def make_input(m: int, k: int, seed: int, dtype=torch.float32) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(m, k, generator=g) * 2.0
    if m and k:
        x[:, 0] *= 30.0  # an outlier feature, as in transformer activations
        x[m // 2] *= 1e-3  # a row of small values next to rows of large ones
        if m > 3:
            x[3] = 0.0  # an all-zero row
    return x.to(dtype)


# helpers.q8_layer, cached across kernels (same case, same data)
layer = functools.lru_cache(maxsize=None)(q8_layer)


@functools.lru_cache(maxsize=4096)
def expected(mode: str, m: int, k: int, n: int, group_size, seed: int, with_bias: bool, bf16: bool):
    q, scales, bias, _ = layer(n, k, group_size, seed, with_bias)
    x = make_input(m, k, seed, torch.bfloat16 if bf16 else torch.float32)
    return reference_linear(mode, x.float(), q, scales, group_size, bias)


def check_op(e: dict, m: int, k: int, n: int, group_size, seed: int, with_bias: bool, bf16: bool,
             row_pad: int = 0) -> None:
    """One op call under e's ISA against the reference. row_pad > 0: x is a view whose rows sit in a wider
    buffer with NaN in the gap (read in place; a read past K shows up as NaN)."""
    mode = MODE_OF[e["kind"]]
    q, scales, bias, blob = layer(n, k, group_size, seed, with_bias)
    dt = torch.bfloat16 if bf16 else torch.float32
    x = make_input(m, k, seed, dt)
    if row_pad:
        wide = torch.full((m, k + row_pad), float("nan"), dtype=dt)
        wide[:, :k] = x
        x = wide[:, :k]
    y, name = q8_linear(x, blob, bias, mode, n)
    assert name == e["name"], f"selector took {name} for M={m} under {e['isa']}, expected {e['name']}"
    assert y.dtype == dt and y.shape == (m, n)
    want, mag = expected(mode, m, k, n, group_size, seed, with_bias, bf16)
    assert_close(y, want, k=k, magnitude=mag, out_dtype=dt,
                 what=f"{e['name']} M={m} K={k} N={n} gs={group_size} bias={with_bias} {dt}")


# --- (a) integer dot products ---------------------------------------------------------------------------

def run_dot(e: dict, a: torch.Tensor, blob: torch.Tensor, lda: int) -> torch.Tensor:
    info = formats.q8_info(blob)
    m = a.shape[0]
    out = torch.full((m, info.np), SENTINEL_I32, dtype=torch.int32)
    _C.q8_dot_i32(e["name"], a.data_ptr(), m, lda, blob.data_ptr(), blob.numel(), out.data_ptr())
    return out


@pytest.mark.parametrize("k", K_LIST)
@pytest.mark.parametrize("e", DYN, ids=entry_id)
def test_dot_i32_exact(e, k):
    skip_unless_available(e)
    g = torch.Generator().manual_seed(k)
    kp = kp_of(k)
    for i, n in enumerate(N_LIST):
        m = M_LIST[i % len(M_LIST)] if i else 33
        q = random_q(n, k, g)
        scales = random_scales(1, n, g)
        blob = formats.pack_q8(q, scales)
        lda = kp + (8 if i % 2 else 0)  # a strided activation buffer every other case
        a = torch.randint(0, 256, (m, lda), generator=g, dtype=torch.int16).to(torch.uint8)
        if m:
            a[0, :k] = 255  # with the -128 columns: the largest products
        out = run_dot(e, a, blob, lda)
        want = reference.dot_u8_s8(a[:, :k], q)
        assert_exact(out[:, :n], want.to(torch.int32), f"{e['name']} dot M={m} K={k} N={n}")
        # padded columns have zero weights (and padded K rows: whatever `a` holds there meets zeros)
        assert_exact(out[:, n:], torch.zeros(m, np_of(n) - n, dtype=torch.int32), "padding columns")


@pytest.mark.parametrize("e", DYN, ids=entry_id)
def test_dot_i32_largest_k_does_not_overflow(e):
    """K at the format's limit with all-extreme operands: |dot| = 65536 * 255 * 128 fits int32 exactly."""
    skip_unless_available(e)
    k, n, m = 65536, 17, 2
    q = torch.full((n, k), -128, dtype=torch.int8)
    q[1] = 127
    q[2, ::2] = 127
    blob = formats.pack_q8(q, torch.ones(1, n))
    a = torch.full((m, k), 255, dtype=torch.uint8)
    out = run_dot(e, a, blob, k)
    want = reference.dot_u8_s8(a, q)
    assert want.min().item() == -65536 * 255 * 128
    assert_exact(out[:, :n], want.to(torch.int32), "max-K dot")


def test_dot_i32_rejects_bad_calls():
    e = DYN[-1]
    q = torch.ones(3, 8, dtype=torch.int8)
    blob = formats.pack_q8(q, torch.ones(1, 3))
    a = torch.zeros(2, 8, dtype=torch.uint8)
    out = torch.zeros(2, 16, dtype=torch.int32)
    with pytest.raises(ValueError, match="lda"):
        _C.q8_dot_i32(e["name"], a.data_ptr(), 2, 4, blob.data_ptr(), blob.numel(), out.data_ptr())
    with pytest.raises(ValueError, match="unknown kernel"):
        _C.q8_dot_i32("no_such_kernel", a.data_ptr(), 2, 8, blob.data_ptr(), blob.numel(), out.data_ptr())
    with pytest.raises(ValueError, match="no integer dot"):
        _C.q8_dot_i32(WO[-1]["name"], a.data_ptr(), 2, 8, blob.data_ptr(), blob.numel(), out.data_ptr())
    with pytest.raises(ValueError):
        _C.q8_dot_i32(e["name"], a.data_ptr(), 2, 8, blob.data_ptr(), blob.numel() - 64, out.data_ptr())


# --- (b) activation quantization ------------------------------------------------------------------------

def run_quantize(e: dict, x: torch.Tensor):
    m, k = x.shape
    kp = kp_of(k)
    x = x.contiguous()
    q = torch.full((m, kp), SENTINEL_U8, dtype=torch.uint8)
    scale = torch.full((m,), SENTINEL_F32)
    zp = torch.full((m,), SENTINEL_I32, dtype=torch.int32)
    finite = _C.quantize_rows_u8(e["name"], x.data_ptr(), m, k, kp, q.data_ptr(), scale.data_ptr(), zp.data_ptr())
    return q, scale, zp, torch.tensor(finite, dtype=torch.bool)


@pytest.mark.parametrize("k", [1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 33, 64, 100, 255, 4093])
@pytest.mark.parametrize("e", DYN, ids=entry_id)
def test_quantize_rows_bit_exact(e, k):
    skip_unless_available(e)
    g = torch.Generator().manual_seed(k)
    rows = special_rows(k, g)
    # Extremes placed in the vector body and in the scalar/masked tail of the row.
    for pos in {0, k // 2, k - 1}:
        r = torch.randn(k, generator=g)
        r[pos] = F32_MAX
        rows.append(r)
        r = torch.randn(k, generator=g) * 1e-3
        r[pos] = -F32_MAX
        rows.append(r)
    x = torch.stack(rows)
    q, scale, zp, finite = run_quantize(e, x)
    rq, rscale, rzp, rfinite = reference.quantize_rows_u8(x)
    assert_exact(finite, rfinite, "finite flags")
    assert bool(finite.all())
    assert_exact(q[:, :k], rq, f"{e['name']} q K={k}")
    assert_exact(q[:, k:], torch.zeros(x.shape[0], kp_of(k) - k, dtype=torch.uint8), "q padding")
    assert_exact(scale, rscale, "scales")
    assert_exact(zp, rzp, "zero points")


@pytest.mark.parametrize("e", DYN, ids=entry_id)
def test_quantize_rows_nonfinite_flagged(e):
    skip_unless_available(e)
    for k in (1, 5, 8, 17, 64):
        x = torch.randn(2 * k + 2, k)
        # one bad value at every position, alternating NaN / +inf / -inf, in rows 1..k; row 0 and the
        # last row stay finite
        for i in range(k):
            x[1 + i, i] = (float("nan"), float("inf"), float("-inf"))[i % 3]
        x[k + 1 :] = torch.randn(k + 1, k)
        x[k + 1, 0] = float("nan")
        x[k + 2, :] = float("inf")
        q, scale, zp, finite = run_quantize(e, x)
        _, rscale, rzp, rfinite = reference.quantize_rows_u8(x)
        assert_exact(finite, rfinite, f"finite flags K={k}")
        ok = rfinite
        assert_exact(scale[ok], rscale[ok], "scales of finite rows")
        assert_exact(zp[ok], rzp[ok], "zero points of finite rows")


# --- (c) the op, per kernel -------------------------------------------------------------------------------

@pytest.mark.parametrize("group_size", GROUP_SIZES, ids=lambda g: f"gs{g}")
@pytest.mark.parametrize("e", DYN + WO, ids=entry_id)
def test_op_matches_reference(e, group_size):
    """K x N adversarial pairs, each with an M, dtype and bias cycled over their lists (the largest K with
    a few N only: its float64 reference dominates the run time)."""
    skip_unless_available(e)
    ms = m_values(e)
    pairs = [(k, n) for k, n in itertools.product(K_LIST, N_LIST) if k < 4000 or n in (1, 17, 65)]
    with slimnn.isa.forced(e["isa"]):
        for i, (k, n) in enumerate(pairs):
            m = ms[i % len(ms)]
            check_op(e, m, k, n, group_size, seed=k * 131 + n, with_bias=bool(i % 2), bf16=(i % 3 == 0))


@pytest.mark.parametrize("e", DYN + WO, ids=entry_id)
def test_op_every_m(e):
    skip_unless_available(e)
    with slimnn.isa.forced(e["isa"]):
        for m in m_values(e):
            for group_size in (None, 32):
                check_op(e, m, 100, 65, group_size, seed=7, with_bias=True, bf16=False)
                check_op(e, m, 17, 33, group_size, seed=8, with_bias=False, bf16=True)


@pytest.mark.parametrize("e", DYN + WO, ids=entry_id)
def test_op_strided_and_batched_inputs(e):
    """Strided rows (read in place), non-contiguous views, leading batch dims: bit-identical to the same
    values passed contiguous."""
    skip_unless_available(e)
    mode = MODE_OF[e["kind"]]
    k, n = 64, 33
    q, scales, bias, blob = layer(n, k, None, 11, True)
    with slimnn.isa.forced(e["isa"]):
        for m in [mm for mm in m_values(e) if mm in (1, 5, 7)]:
            base = make_input(m, k, 3)
            want, _ = q8_linear(base, blob, bias, mode, n)
            # rows inside a wider buffer whose gap holds NaN: a kernel that reads past K would return NaN
            wide = torch.full((m, k + 13), float("nan"))
            wide[:, :k] = base
            got, name = q8_linear(wide[:, :k], blob, bias, mode, n)
            assert name == e["name"]
            assert_exact(got, want, f"{e['name']} strided rows M={m}")
            # column-major (stride(-1) != 1): copied first
            got, _ = q8_linear(base.t().contiguous().t(), blob, bias, mode, n)
            assert_exact(got, want, "column-major input")
            # every other row of a bigger tensor
            every_other = torch.full((2 * m, k), float("nan"))
            every_other[::2] = base
            got, _ = q8_linear(every_other[::2], blob, bias, mode, n)
            assert_exact(got, want, "row-strided view")
            # bf16 strided
            got, _ = q8_linear(wide.to(torch.bfloat16)[:, :k], blob, bias, mode, n)
            want16, _ = q8_linear(base.to(torch.bfloat16), blob, bias, mode, n)
            assert_exact(got, want16, "bf16 strided")
        # leading batch dimensions, contiguous and permuted
        x = make_input(2 * 3 * 5, k, 4).view(2, 3, 5, k)
        flat, _ = q8_linear(x.reshape(-1, k), blob, bias, mode, n)
        got, _ = q8_linear(x, blob, bias, mode, n)
        assert got.shape == (2, 3, 5, n)
        assert_exact(got.reshape(-1, n), flat, "batched")
        xp = x.permute(1, 0, 2, 3)  # (3, 2, 5, k), not viewable as rows
        got, _ = q8_linear(xp, blob, bias, mode, n)
        assert_exact(got, flat.view(2, 3, 5, n).permute(1, 0, 2, 3), "permuted batch dims")
        # a 1-D input is one row
        got, _ = q8_linear(x[0, 0, 0], blob, bias, mode, n)
        assert got.shape == (n,)
        assert_exact(got, flat[0], "1-D input")


@pytest.mark.parametrize("e", DYN + WO, ids=entry_id)
def test_op_direct_sentinels(e):
    """_C.q8_linear writes exactly N columns of every row (ldy > N: the gap keeps its sentinel) and reads
    exactly K values of every row (ldx > K: the gap holds NaN). M = 0 writes nothing."""
    skip_unless_available(e)
    mode = MODE_OF[e["kind"]]
    with slimnn.isa.forced(e["isa"]):
        for m in [mm for mm in m_values(e) if mm in (0, 1, 3, 33)]:
            for k, n, gs in [(5, 17, None), (64, 33, 16), (100, 1, 32), (255, 65, None)]:
                q, scales, bias, blob = layer(n, k, gs, 5, True)
                ldx, ldy = k + 7, n + 9
                xbuf = torch.full((max(m, 1), ldx), float("nan"))
                xbuf[:m, :k] = make_input(m, k, 9)
                y = torch.full((max(m, 1), ldy), SENTINEL_F32)
                name = _C.q8_linear(
                    e["kind"], xbuf.data_ptr(), False, m, ldx, blob.data_ptr(), blob.numel(), bias.data_ptr(),
                    y.data_ptr(), ldy, slimnn.get_num_threads())
                assert name == e["name"]
                if m == 0:
                    assert bool((y == SENTINEL_F32).all())
                    continue
                assert bool((y[:, n:] == SENTINEL_F32).all()), "wrote past N"
                want, mag = reference_linear(mode, xbuf[:m, :k], q, scales, gs, bias)
                assert_close(y[:m, :n], want, k=k, magnitude=mag, what=f"{e['name']} direct K={k} N={n}")


def test_op_direct_rejects_bad_strides():
    q, scales, bias, blob = layer(17, 64, None, 1, False)
    x = torch.zeros(2, 64)
    y = torch.zeros(2, 17)
    with pytest.raises(ValueError, match="strides"):
        _C.q8_linear("q8_dynamic", x.data_ptr(), False, 2, 63, blob.data_ptr(), blob.numel(), 0, y.data_ptr(), 17, 1)
    with pytest.raises(ValueError, match="strides"):
        _C.q8_linear("q8_dynamic", x.data_ptr(), False, 2, 64, blob.data_ptr(), blob.numel(), 0, y.data_ptr(), 16, 1)
    with pytest.raises(ValueError, match="unknown kernel kind"):
        _C.q8_linear("q4", x.data_ptr(), False, 2, 64, blob.data_ptr(), blob.numel(), 0, y.data_ptr(), 17, 1)


@pytest.mark.parametrize("e", DYN + WO, ids=entry_id)
def test_op_nonfinite_activations(e):
    """Dynamic: a row with NaN/Inf gives a NaN row, other rows exact as without it. Weight-only: NaN
    propagates through the float math (and only into its own row)."""
    skip_unless_available(e)
    mode = MODE_OF[e["kind"]]
    k, n = 37, 20
    q, scales, bias, blob = layer(n, k, 8, 2, True)
    with slimnn.isa.forced(e["isa"]):
        ms = [m for m in m_values(e) if m in (1, 5)]
        for m in ms:
            x = make_input(m, k, 1)
            clean, _ = q8_linear(x, blob, bias, mode, n)
            for bad in (float("nan"), float("inf"), float("-inf")):
                xb = x.clone()
                xb[m - 1, k // 2] = bad
                y, _ = q8_linear(xb, blob, bias, mode, n)
                if bad != bad:
                    assert bool(torch.isnan(y[m - 1]).all()), (mode, bad)
                else:  # both modes: +-inf (NaN where the column's weight is 0), like float; tests/test_nonfinite.py
                    assert not bool(torch.isfinite(y[m - 1]).any()), (mode, bad)
                if m > 1:
                    assert_exact(y[: m - 1], clean[: m - 1], "rows without the bad value")


# --- consistency across kernels ---------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["dynamic", "weight_only"])
def test_rows_do_not_depend_on_the_batch(mode):
    """Every kernel computes a row the same way whatever the tile it lands in: y(X)[i] == y(X[i:i+1]) bit
    for bit. For weight-only AVX-512 this compares the GEMV kernel (M = 1) with the 4x16 kernel."""
    for isa in slimnn.isa.available():
        with slimnn.isa.forced(isa):
            for k, n, gs in [(100, 65, None), (64, 33, 16), (17, 16, 4)]:
                q, scales, bias, blob = layer(n, k, gs, 3, True)
                x = make_input(7, k, 3)
                y, _ = q8_linear(x, blob, bias, mode, n)
                for i in range(7):
                    yi, _ = q8_linear(x[i : i + 1], blob, bias, mode, n)
                    assert_exact(yi[0], y[i], f"{isa} {mode} row {i}")


@pytest.mark.parametrize("group_size", [None, 32])
@pytest.mark.parametrize("mode", ["dynamic", "weight_only"])
def test_isas_agree(mode, group_size):
    """Across ISAs the integer parts are identical (test_dot_i32_exact, test_quantize_rows_bit_exact), but
    the float epilogues are not the same operations: portable rounds (exact * scale) * a_scale + bias in
    three steps, AVX2 fuses the last multiply-add, AVX-512 VNNI computes fma(exact, scale * a_scale, bias).
    So dynamic per-channel results are NOT bit-identical across ISAs: measured up to 5 ulps of the result
    where the bias cancels most of it; asserted within CROSS_ISA_ULPS ulps plus one eps of the terms'
    magnitude. Grouped and weight-only sums also differ in summation order: tolerances.py bounds."""
    isas = [i for i in slimnn.isa.available() if any(e["isa"] == i and MODE_OF[e["kind"]] == mode for e in entries())]
    if len(isas) < 2:
        pytest.skip("only one ISA with kernels for this mode")
    k, n = 255, 65
    q, scales, bias, blob = layer(n, k, group_size, 4, True)
    x = make_input(9, k, 4)
    outs = {}
    for isa in isas:
        with slimnn.isa.forced(isa):
            outs[isa], _ = q8_linear(x, blob, bias, mode, n)
    want, mag = reference_linear(mode, x, q, scales, group_size, bias)
    base = outs[isas[0]]
    for isa in isas[1:]:
        if mode == "dynamic" and group_size is None:
            assert_ulps(outs[isa], base, CROSS_ISA_ULPS, f"{isa} vs {isas[0]}",
                        floor=mag * 2.0**-23)
        else:
            assert_close(outs[isa], base, k=k, magnitude=mag, what=f"{isa} vs {isas[0]}")


# --- hypothesis: shapes from 0, tails around tiles and groups ---------------------------------------------

@st.composite
def cases(draw):
    e = draw(st.sampled_from(DYN + WO))
    k = draw(st.one_of(st.integers(1, 70), st.sampled_from([127, 128, 129, 255, 256, 257, 511, 1023])))
    n = draw(st.one_of(st.integers(1, 70), st.sampled_from([127, 128, 129, 255, 256, 257])))
    m = draw(st.integers(0, 40))
    gs = draw(st.one_of(st.none(), st.integers(1, 64).map(lambda v: 4 * v)))
    pad = draw(st.sampled_from([0, 0, 1, 3, 16]))
    return e, m, k, n, gs, draw(st.booleans()), draw(st.booleans()), draw(st.integers(0, 2**16)), pad


@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_op_property(case):
    e, m, k, n, gs, with_bias, bf16, seed, pad = case
    assume(e["available"])
    if e["gemv"]:
        m = 1
    elif m == 1 and has_gemv_sibling(e):
        m = 2
    m = max(m, e["min_m"])
    with slimnn.isa.forced(e["isa"]):
        check_op(e, m, k, n, gs, seed, with_bias, bf16, row_pad=pad)


@settings(max_examples=40, deadline=None, derandomize=True)
@given(
    st.sampled_from(DYN),
    st.integers(1, 300),
    st.floats(min_value=-40, max_value=38).map(lambda p: 10.0**p),
    st.integers(0, 2**16),
)
def test_quantize_property(e, k, magnitude, seed):
    assume(e["available"])
    g = torch.Generator().manual_seed(seed)
    x = (torch.randn(3, k, generator=g, dtype=torch.float64) * magnitude).clamp(-F32_MAX, F32_MAX).float()
    q, scale, zp, finite = run_quantize(e, x)
    rq, rscale, rzp, _ = reference.quantize_rows_u8(x)
    assert_exact(q[:, :k], rq, "q")
    assert_exact(scale, rscale, "scale")
    assert_exact(zp, rzp, "zp")


@settings(max_examples=30, deadline=None, derandomize=True)
@given(st.sampled_from(DYN), st.integers(1, 40), st.integers(1, 600), st.integers(1, 80), st.integers(0, 2**16))
def test_dot_property(e, m, k, n, seed):
    assume(e["available"])
    g = torch.Generator().manual_seed(seed)
    q = random_q(n, k, g)
    blob = formats.pack_q8(q, random_scales(1, n, g))
    a = torch.randint(0, 256, (m, kp_of(k)), generator=g, dtype=torch.int16).to(torch.uint8)
    out = run_dot(e, a, blob, kp_of(k))
    assert_exact(out[:, :n], reference.dot_u8_s8(a[:, :k], q).to(torch.int32), "dot")
