"""The weight-only panel GEMM (csrc/kernels/wogemm): every q8/q4 panel kernel of slimnn.kernels(), forced one
at a time (ISA cap + the crossover lowered to 1 row), against slimnn.math.reference over adversarial shapes:
M from 0, K around the 4/8-wide K steps and the cache-derived K block, N around the 16-wide panels and the
32-wide micro-panels, group sizes, bias, bf16 inputs, AWQ column factors (q4), fused activations (q8), rows in
a wider buffer (the kernels must read exactly K values per row), a sentinel-filled wider output (no write
past N). Results are bit-identical across thread counts. An ISA this CPU lacks is a skip, never a pass.
"""

from __future__ import annotations

import itertools

import pytest
import torch

import slimnn
from slimnn import _C, formats
from slimnn.math import reference
from slimnn.math.quantize import dequantize_int4, quantize_int4
from slimnn.ops.q4 import q4_linear_with_kernel
from slimnn.ops.q8 import apply_activation, q8_linear_with_kernel

from helpers import q8_layer, reference_linear
from tolerances import assert_close

# The fp32 panel kernels (the AMX-BF16 ones round to bf16 and are opt-in: tests/test_wogemm_amx.py).
PANEL = [e for e in slimnn.kernels()
         if e["kind"] in ("q8_weight_only_panel", "q4_weight_only_panel") and e["isa"] != "amx_bf16"]
M_LIST = [0, 1, 2, 5, 13, 14, 15, 16, 29, 33]
KN = [(1, 1), (3, 17), (4, 16), (5, 15), (17, 33), (100, 65), (255, 31), (300, 100), (600, 47), (1100, 33)]
SENTINEL = -1.2345e29


@pytest.fixture
def panel_always():
    """Every weight-only call takes the panel path (the crossover lowered to 1 row); restored after."""
    _C.wo_panel_min_rows(1)
    try:
        yield
    finally:
        _C.wo_panel_min_rows(0)


def _skip_unless(e):
    if not e["available"]:
        pytest.skip(f"{e['name']}: this CPU lacks {e['isa']}")


def _x(m, k, seed, dtype=torch.float32, row_pad=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(m, k, generator=g) * 2.0
    if m and k:
        x[:, 0] *= 30.0  # an outlier feature
        x[m // 2] *= 1e-3
    x = x.to(dtype)
    if row_pad:  # rows in a wider buffer with NaN in the gap: a read past K shows up as NaN
        wide = torch.full((m, k + row_pad), float("nan"), dtype=dtype)
        wide[:, :k] = x
        x = wide[:, :k]
    return x


@pytest.mark.parametrize("e", [e for e in PANEL if e["kind"] == "q8_weight_only_panel"], ids=lambda e: e["name"])
def test_q8_panel_matches_reference(e, panel_always):
    _skip_unless(e)
    gss = itertools.cycle([None, 4, 32, 8, 128])
    for (k, n), seed in zip(KN, itertools.count()):
        gs = next(gss)
        gs = gs if gs is None or gs <= k else None
        for m in M_LIST:
            with_bias, bf16, pad = (m + k) % 2 == 0, m % 3 == 1, 3 if m % 4 == 2 else 0
            q, scales, bias, blob = q8_layer(n, k, gs, seed, with_bias)
            x = _x(m, k, seed, torch.bfloat16 if bf16 else torch.float32, pad)
            with slimnn.isa.forced(e["isa"]):
                y, name = q8_linear_with_kernel(x, blob, bias, "weight_only", n)
            assert m == 0 or name == e["name"], (name, m)
            want, mag = reference_linear("weight_only", x.float(), q, scales, gs, bias)
            assert_close(y, want, k=k, magnitude=mag, out_dtype=x.dtype,
                         what=f"{e['name']} M={m} K={k} N={n} gs={gs} bias={with_bias} {x.dtype}")


@pytest.mark.parametrize("e", [e for e in PANEL if e["kind"] == "q8_weight_only_panel"], ids=lambda e: e["name"])
@pytest.mark.parametrize("act", ["relu", "gelu", "silu"])
def test_q8_panel_fused_activation(e, act, panel_always):
    _skip_unless(e)
    for m, k, n in [(1, 5, 17), (16, 300, 65), (29, 600, 33)]:
        q, scales, bias, blob = q8_layer(n, k, 32, 7, True)
        x = _x(m, k, 3)
        with slimnn.isa.forced(e["isa"]):
            y, name = q8_linear_with_kernel(x, blob, bias, "weight_only", n, act)
        assert name == e["name"]
        want, mag = reference_linear("weight_only", x, q, scales, 32, bias)
        assert_close(y, apply_activation(want, act), k=k, magnitude=mag, what=f"{e['name']} {act} M={m}")


def _q4_case(n, k, gs, sym, sdt, seed):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(n, k, generator=g) * torch.exp(0.5 * torch.randn(n, 1, generator=g))
    codes, scales, zeros = quantize_int4(w, gs, sym, sdt)
    return codes, scales, zeros, formats.pack_q4(codes, scales, zeros, gs)


@pytest.mark.parametrize("e", [e for e in PANEL if e["kind"] == "q4_weight_only_panel"], ids=lambda e: e["name"])
def test_q4_panel_matches_reference(e, panel_always):
    _skip_unless(e)
    cases = zip(KN, itertools.cycle([None, 32, 64, 128]), itertools.cycle([True, False]),
                itertools.cycle([torch.float16, torch.float32, torch.bfloat16]), itertools.count())
    for (k, n), gs, sym, sdt, seed in cases:
        codes, scales, zeros, blob = _q4_case(n, k, gs, sym, sdt, seed)
        wd = dequantize_int4(codes, scales, zeros, gs).to(torch.float64)
        g = torch.Generator().manual_seed(seed)
        bias = torch.randn(n, generator=g) if seed % 2 else None
        in_mul = torch.rand(k, generator=g) + 0.5 if seed % 3 == 1 else None
        for m in M_LIST:
            bf16, pad = m % 3 == 1, 3 if m % 4 == 2 else 0
            x = _x(m, k, seed, torch.bfloat16 if bf16 else torch.float32, pad)
            with slimnn.isa.forced(e["isa"]):
                y, name = q4_linear_with_kernel(x, blob, bias, in_mul, "weight_only", n)
            assert m == 0 or name == e["name"], (name, m)
            xf = x.float() if in_mul is None else x.float() * in_mul
            want = reference.q4_linear_weight_only(x.float(), codes, scales, zeros, gs, bias, in_mul)
            mag = xf.to(torch.float64).abs() @ wd.abs().t()
            if bias is not None:
                mag = mag + bias.to(torch.float64).abs()
            assert_close(y, want, k=k, magnitude=mag, out_dtype=x.dtype,
                         what=f"{e['name']} M={m} K={k} N={n} gs={gs} sym={sym} {sdt} {x.dtype}")


@pytest.mark.parametrize("fmt", ["q8", "q4"])
def test_panel_no_write_past_n_and_threads_bit_identical(fmt, panel_always):
    """A wider, sentinel-filled output keeps its padding; 1 and 2 threads give the same bits (the split
    changes blocks, never the order of any element's sum)."""
    m, k, n = 37, 700, 200
    if fmt == "q8":
        _, _, bias, blob = q8_layer(n, k, 64, 11, True)
    else:
        _, _, _, blob = _q4_case(n, k, 64, False, torch.float16, 11)
        bias = torch.randn(n)
    x = _x(m, k, 5)
    outs = []
    for threads in (1, 2):
        y = torch.full((m, n + 5), SENTINEL)
        if fmt == "q8":
            name = _C.q8_linear("q8_weight_only", x.data_ptr(), False, m, k, blob.data_ptr(), blob.numel(),
                                bias.data_ptr(), y.data_ptr(), n + 5, threads)
        else:
            name = _C.q4_linear("q4_weight_only", x.data_ptr(), False, m, k, 0, blob.data_ptr(), blob.numel(),
                                bias.data_ptr(), y.data_ptr(), n + 5, threads)
        assert "_f32_" in name and name in {e["name"] for e in PANEL}
        assert bool((y[:, n:] == SENTINEL).all()), "wrote past the last column"
        outs.append(y[:, :n].clone())
    assert torch.equal(outs[0], outs[1])


def test_crossover_selects_panel_from_the_measured_rows():
    q8_rows, q4_rows = _C.wo_panel_min_rows()
    assert q8_rows >= 2 and q4_rows >= 2
    panel_names = {e["name"] for e in PANEL}
    for kind, rows in (("q8_weight_only", q8_rows), ("q4_weight_only", q4_rows)):
        select = _C.select_kernel if kind.startswith("q8") else _C.q4_select_kernel
        assert select(kind, rows - 1) not in panel_names
        assert select(kind, rows) in panel_names and select(kind, 4 * rows) in panel_names
    assert _C.wo_panel_min_rows(5) == (5, 5)
    assert _C.wo_panel_min_rows(0) == (q8_rows, q4_rows)


def test_cache_sizes_are_reported():
    c = _C.cache_sizes()
    assert c["source"] in ("cpuid", "sysconf", "default")
    assert 4096 <= c["l1d"] <= c["l2"]
