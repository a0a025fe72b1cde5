"""slimnn.math.reference, checked against plain float math (numpy scalars, float64), before any kernel is.

The kernels are tested against slimnn.math.reference; this file is what makes that reference trustworthy.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from slimnn.math import quantize
from slimnn.math import reference

from helpers import F32_MAX, F32_TINY, dequant, random_q, special_rows
from tolerances import assert_exact

f32 = np.float32


def np_quantize_row(row: np.ndarray):
    """The documented formula, one float32 scalar operation at a time (numpy rounds each to float32)."""
    row = row.astype(np.float32)
    if not np.all(np.isfinite(row)):
        return None
    mn = min(f32(0.0), row.min()) if row.size else f32(0.0)
    mx = max(f32(0.0), row.max()) if row.size else f32(0.0)
    scale = f32(mx / f32(255.0)) - f32(mn / f32(255.0))
    if not scale >= f32(F32_TINY):
        scale = f32(1.0)
    inv = f32(f32(1.0) / scale)
    zp = int(min(max(np.rint(f32(-mn * inv)), 0.0), 255.0))
    q = np.array([min(max(int(np.rint(f32(v * inv))) + zp, 0), 255) for v in row], dtype=np.uint8)
    return q, f32(scale), zp


@pytest.mark.parametrize("k", [1, 3, 4, 5, 17, 64, 255])
def test_quantize_rows_u8_matches_scalar_float_math(k):
    g = torch.Generator().manual_seed(k)
    x = torch.stack(special_rows(k, g))
    q, scale, zp, finite = reference.quantize_rows_u8(x)
    assert q.dtype == torch.uint8 and scale.dtype == torch.float32 and zp.dtype == torch.int32
    assert bool(finite.all())
    for i in range(x.shape[0]):
        want_q, want_s, want_zp = np_quantize_row(x[i].numpy())
        assert_exact(q[i], torch.from_numpy(want_q), f"q row {i}")
        assert scale[i].item() == float(want_s), (i, scale[i].item(), want_s)
        assert zp[i].item() == want_zp, (i, zp[i].item(), want_zp)


def test_quantize_rows_u8_specific_values():
    x = torch.tensor([[0.0, 0.0, 0.0], [-1.0, 0.0, 1.0], [F32_MAX, -F32_MAX, 0.0], [1e-40, -1e-40, 0.0]])
    q, scale, zp, finite = reference.quantize_rows_u8(x)
    # all-zero row: scale 1, zero point 0, everything 0
    assert scale[0].item() == 1.0 and zp[0].item() == 0 and q[0].tolist() == [0, 0, 0]
    # [-1, 1]: scale 1/255 + 1/255; 1/scale rounds just below 127.5, so the zero point is 127 and 1.0
    # lands on 254 (the code is asymmetric by one step at most)
    assert scale[1].item() == float(f32(1.0) / f32(255.0) + f32(1.0) / f32(255.0))
    assert float(f32(1.0) / scale[1].numpy()) < 127.5
    assert zp[1].item() == 127 and q[1].tolist() == [0, 127, 254]
    # +-FLT_MAX: no overflow to infinity in the scale
    assert math.isfinite(scale[2].item()) and q[2, 0].item() == 255 and q[2, 1].item() == 0
    # subnormal row: scale falls back to 1 and everything lands on the zero point
    assert scale[3].item() == 1.0 and zp[3].item() == 0 and q[3].tolist() == [0, 0, 0]
    assert bool(finite.all())


@pytest.mark.parametrize("k", [1, 5, 64])
def test_quantize_rows_u8_error_bound(k):
    """Dequantized values are within 1.5 steps of the input (half a step of rounding for x and for the
    zero point, and a clamp of at most one step at the ends), for rows of any magnitude."""
    g = torch.Generator().manual_seed(100 + k)
    for row in special_rows(k, g):
        x = row.unsqueeze(0)
        q, scale, zp, _ = reference.quantize_rows_u8(x)
        s = scale.double()
        deq = (q.double() - zp.double()) * s
        if s.item() == 1.0 and x.abs().max().item() < 255 * F32_TINY:
            assert bool((q == 0).all())
            continue
        err = (deq - x.double()).abs().max().item()
        assert err <= 1.5 * s.item() * (1 + 1e-6), (k, err, s.item())
        assert 0 <= zp.item() <= 255


def test_quantize_rows_u8_nonfinite_rows_are_flagged():
    x = torch.randn(6, 9)
    x[1, 3] = float("nan")
    x[2, 0] = float("inf")
    x[3, 8] = float("-inf")
    x[4, :] = float("nan")
    q, scale, zp, finite = reference.quantize_rows_u8(x)
    assert finite.tolist() == [True, False, False, False, False, True]
    # Flagged rows do not disturb the others.
    q2, scale2, zp2, _ = reference.quantize_rows_u8(x[[0, 5]])
    assert_exact(q[[0, 5]], q2)
    assert_exact(scale[[0, 5]], scale2)


def test_quantize_rows_u8_empty_shapes():
    for m, k in [(0, 5), (3, 0), (0, 0)]:
        q, scale, zp, finite = reference.quantize_rows_u8(torch.zeros(m, k))
        assert q.shape == (m, k) and scale.shape == (m,) and zp.shape == (m,) and finite.shape == (m,)
        assert bool(finite.all())


def test_dot_u8_s8_is_exact_integer_math():
    g = torch.Generator().manual_seed(3)
    for m, k, n in [(1, 1, 1), (3, 4096, 5), (2, 65536, 2)]:
        a = torch.randint(0, 256, (m, k), generator=g, dtype=torch.int16).to(torch.uint8)
        a[:, : k // 2] = 255
        q = random_q(n, k, g)
        q[:, : k // 2] = -128  # the largest magnitude a dot product can reach
        got = reference.dot_u8_s8(a, q)
        want = a.numpy().astype(np.int64) @ q.numpy().astype(np.int64).T
        assert got.dtype == torch.int64
        assert np.array_equal(got.numpy(), want)
    # The K limit of the format keeps every dot product inside int32 (the kernels' accumulator).
    assert 65536 * 255 * 128 < 2**31


@pytest.mark.parametrize("group_size", [None, 4, 8, 32])
@pytest.mark.parametrize("k", [1, 5, 17, 64, 100])
def test_quantize_int8_symmetric_matches_float_math(k, group_size):
    g = torch.Generator().manual_seed(k)
    n = 7
    w = torch.randn(n, k, generator=g) * torch.logspace(-3, 3, n).unsqueeze(1)
    w[2] = 0.0  # an all-zero channel
    w[3, 0] = 1e-30
    q, scales = quantize.quantize_int8_symmetric(w, group_size)
    gs = k if group_size is None else group_size
    ng = -(-k // gs)
    assert q.shape == (n, k) and q.dtype == torch.int8 and scales.shape == (ng, n)
    assert int(q.min()) >= -127 and int(q.max()) <= 127
    wn = w.numpy().astype(np.float32)
    for j in range(n):
        for gi in range(ng):
            seg = wn[j, gi * gs : (gi + 1) * gs]
            amax = np.abs(seg).max()
            s = f32(amax / f32(127.0)) if amax > 0 else f32(1.0)
            assert scales[gi, j].item() == float(s), (j, gi)
            want = np.clip(np.rint(seg / s), -127, 127).astype(np.int8)
            assert np.array_equal(q[j, gi * gs : (gi + 1) * gs].numpy(), want), (j, gi)
            # the round trip is within half a step
            deq = dequant(q, scales, group_size)[j, gi * gs : (gi + 1) * gs].numpy()
            assert np.all(np.abs(deq - seg.astype(np.float64)) <= 0.5 * float(s) * (1 + 1e-6) + 1e-45)
    assert bool((q[2] == 0).all()) and bool((scales[:, 2] == 1.0).all())


def _best_sum_bounded_rounding(r: np.ndarray) -> float:
    """Brute force over every floor/ceil choice of the float64 values r: the least squared rounding error
    among the choices whose sum is within 1/2 of sum(r) (what quantize_int8_sum_preserving promises)."""
    lo = np.floor(r)
    best = math.inf
    for bits in range(1 << r.size):
        q = lo + np.array([(bits >> i) & 1 for i in range(r.size)], dtype=np.float64)
        q = np.where(r == lo, lo, q)  # an integer value has one rounding
        if abs(q.sum() - r.sum()) <= 0.5 + 1e-9:
            best = min(best, float(((q - r) ** 2).sum()))
    return best


@pytest.mark.parametrize("seg,k", [(None, 1), (None, 7), (9, 9), (9, 27), (25, 50), (4, 12), (None, 200)])
def test_quantize_int8_sum_preserving_matches_float_math(seg, k):
    g = torch.Generator().manual_seed(k)
    n = 9
    w = torch.randn(n, k, generator=g) * torch.logspace(-3, 3, n).unsqueeze(1)
    w[1] = 0.0  # an all-zero channel
    w[2] = 0.37  # a constant channel: every weight is the absmax, rounds exactly
    w[3, 0] = 1e-30
    w[4] = (w[4].abs() + 1.0)  # all positive: the nearest roundings' errors pile up in one sum
    q, scales = quantize.quantize_int8_sum_preserving(w, seg)
    q0, s0 = quantize.quantize_int8_symmetric(w)
    assert q.shape == (n, k) and q.dtype == torch.int8 and scales.shape == (1, n)
    assert_exact(scales, s0)  # the same scales as round-to-nearest
    assert int(q.min()) >= -127 and int(q.max()) <= 127
    segl = k if seg is None else seg
    wn = w.numpy().astype(np.float64)
    for j in range(n):
        s = float(scales[0, j])
        r = (w[j].to(torch.float32) / scales[0, j]).numpy().astype(np.float64)  # w / s as the quantizer rounds it
        qj = q[j].numpy().astype(np.float64)
        assert np.all(np.abs(qj - r) < 1.0)  # each weight within one step
        for a in range(0, k, segl):
            rs, qs = r[a:a + segl], qj[a:a + segl]
            assert abs(qs.sum() - rs.sum()) <= 0.5 + 1e-9, (j, a)  # the segment keeps its sum
            assert abs((qs * s).sum() - wn[j, a:a + segl].sum()) <= 0.5 * s * (1 + 1e-5) + 1e-30
            if segl <= 12:  # the least squared error under that bound
                assert ((qs - rs) ** 2).sum() <= _best_sum_bounded_rounding(rs) + 1e-9, (j, a)
        # a row already within the bound is round-to-nearest, unchanged
        near = q0[j].numpy().astype(np.float64)
        if all(abs(near[a:a + segl].sum() - r[a:a + segl].sum()) <= 0.5 - 1e-6 for a in range(0, k, segl)):
            assert np.array_equal(qj, near), j
    assert bool((q[1] == 0).all()) and bool((q[2] == 127).all())
    with pytest.raises(ValueError, match="segment"):
        quantize.quantize_int8_sum_preserving(torch.ones(2, 10), 4)
    with pytest.raises(ValueError, match="NaN or infinite"):
        quantize.quantize_int8_sum_preserving(torch.tensor([[1.0, float("nan")]]))


def test_quantize_int8_symmetric_rejects_bad_weights():
    with pytest.raises(ValueError, match="NaN or infinite"):
        quantize.quantize_int8_symmetric(torch.tensor([[1.0, float("nan")]]))
    with pytest.raises(ValueError, match="NaN or infinite"):
        quantize.quantize_int8_symmetric(torch.tensor([[1.0, float("inf")]]))
    with pytest.raises(ValueError, match="2-D"):
        quantize.quantize_int8_symmetric(torch.ones(3))
    with pytest.raises(TypeError, match="floating-point"):
        quantize.quantize_int8_symmetric(torch.ones(3, 3, dtype=torch.int32))
    with pytest.raises(ValueError, match="non-zero"):
        quantize.quantize_int8_symmetric(torch.ones(0, 3))


def float64_dynamic(x, q, scales, group_size, bias):
    """Dynamic int8 linear written as float64 math on dequantized operands: ((a - zp) * a_scale) @ W^T + b."""
    a, a_scale, zp, finite = reference.quantize_rows_u8(x)
    xa = (a.double() - zp.double().unsqueeze(1)) * a_scale.double().unsqueeze(1)
    y = xa @ dequant(q, scales, group_size).t()
    if bias is not None:
        y = y + bias.double()
    y[~finite] = float("nan")
    return y, xa.abs() @ dequant(q, scales, group_size).abs().t() + (0 if bias is None else bias.double().abs())


@pytest.mark.parametrize("group_size", [None, 4, 32, 64])
@pytest.mark.parametrize("m,k,n", [(1, 1, 1), (3, 5, 17), (5, 64, 16), (4, 100, 33), (2, 255, 7)])
@pytest.mark.parametrize("with_bias", [False, True])
def test_q8_linear_references_match_float64_math(m, k, n, group_size, with_bias):
    g = torch.Generator().manual_seed(m * 1000 + k)
    q = random_q(n, k, g)
    ng = 1 if group_size is None else -(-k // group_size)
    scales = torch.rand(ng, n, generator=g) * 0.1 + 1e-3
    bias = torch.randn(n, generator=g) if with_bias else None
    x = torch.randn(m, k, generator=g) * 3
    x[0, 0] = 40.0  # an outlier feature
    if m > 2:
        x[2] = 0.0

    y = reference.q8_linear_dynamic(x, q, scales, group_size, bias)
    want, mag = float64_dynamic(x, q, scales, group_size, bias)
    assert y.dtype == torch.float32 and y.shape == (m, n)
    # float32 rounding of the result, plus float64 summation-order noise
    assert bool(((y.double() - want).abs() <= 2**-24 * want.abs() + 1e-12 * mag).all())

    y = reference.q8_linear_weight_only(x, q, scales, group_size, bias)
    w = dequant(q, scales, group_size)
    want = x.double() @ w.t() + (0 if bias is None else bias.double())
    mag = x.double().abs() @ w.abs().t()
    assert y.dtype == torch.float32
    # plus the float32 rounding of each dequantized weight (the reference multiplies float32 W)
    assert bool(((y.double() - want).abs() <= 2**-24 * want.abs() + 2**-24 * mag).all())


def test_q8_linear_dynamic_reference_is_close_to_float():
    """Activation quantization costs about 8 bits: the dynamic result tracks x @ W^T closely."""
    g = torch.Generator().manual_seed(5)
    q = random_q(32, 256, g, extremes=False)
    scales = torch.rand(1, 32, generator=g) * 0.01 + 1e-3
    x = torch.randn(8, 256, generator=g)
    y = reference.q8_linear_dynamic(x, q, scales, None).double()
    exact = x.double() @ dequant(q, scales, None).t()
    sqnr = 10 * math.log10(float((exact**2).sum() / ((y - exact) ** 2).sum()))
    assert sqnr > 35, sqnr


def test_q8_linear_references_nonfinite_activations():
    g = torch.Generator().manual_seed(6)
    q = random_q(5, 8, g)
    scales = torch.rand(1, 5, generator=g) + 0.1
    x = torch.randn(3, 8, generator=g)
    x[1, 2] = float("nan")
    y = reference.q8_linear_dynamic(x, q, scales, None)
    assert bool(torch.isnan(y[1]).all()) and bool(torch.isfinite(y[[0, 2]]).all())
    y = reference.q8_linear_weight_only(x, q, scales, None)
    assert bool(torch.isnan(y[1]).all()) and bool(torch.isfinite(y[[0, 2]]).all())
