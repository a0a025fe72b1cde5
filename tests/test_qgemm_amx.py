"""The AMX-INT8 qgemm kernel, tested on every CPU through its emulated twin.

qgemm_q8_u8_32x64__amxemu is the same kernel source (csrc/kernels/qgemm/amx_q8.h) compiled over the portable
tile emulation (csrc/common/simd/x86_amx.h); it is test-only (never selected), so these tests force it by name:
(a) the emulation's tile instructions against a model of their documented semantics; (b) the kernel's integer
dot products, exact, on test_qgemm.py's adversarial shapes and around the 32-row / 32-column / 64-byte tile
edges; (c) the whole op (packing, M/N/K tails, groups, bias, fused activations, threads, row splits) against
the reference, and bit for bit against the avx512vnni kernel, whose epilogue arithmetic it repeats. On a CPU
with AMX the real kernel runs the same checks (and test_qgemm.py's per-kernel tests); without AMX those are
skips, never passes.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

import slimnn
from slimnn import _C, formats
from slimnn.math import reference

from helpers import SENTINEL_F32, SENTINEL_I32, kp_of, np_of, random_q, random_scales, reference_linear
from test_qgemm import GROUP_SIZES, K_LIST, M_LIST, N_LIST, layer, make_input, run_dot
from test_qgemm import test_dot_i32_largest_k_does_not_overflow as _largest_k_case
from tolerances import assert_close, assert_exact

EMU = "qgemm_q8_u8_32x64__amxemu"
AMX = "qgemm_q8_u8_32x64__amx"
VNNI = "qgemm_q8_u8_4x64__avx512vnni"
VNNI_GEMV = "qgemm_q8_u8_1x128__avx512vnni"

# test_qgemm.py's M list plus the AMX tile's edges: 16-row halves, 32-row calls, several row blocks.
AMX_M = sorted(set(M_LIST) | {15, 17, 31, 32, 48, 64, 65})
AMX_K = sorted(set(K_LIST) | {60, 63, 65, 128, 192, 196})  # around the 64-byte tile row
AMX_N = sorted(set(N_LIST) | {31, 32, 48, 96, 129})         # around the 32-column panel pair


def by_name() -> dict[str, dict]:
    return {e["name"]: e for e in slimnn.kernels()} | {e["name"]: e for e in _C.q8_emulated_kernels()}


def runnable(name: str) -> bool:
    e = by_name().get(name)
    return e is not None and e["available"]


def kernels_under_test() -> list[str]:
    """The emulated kernel always; the real one where built (a skip where the CPU lacks AMX)."""
    return [EMU] + ([AMX] if AMX in by_name() else [])


def skip_unless(name: str) -> None:
    if not runnable(name):
        e = by_name().get(name)
        pytest.skip(f"{name}: " + (f"this CPU lacks {e['isa']}" if e else "not built"))


def forced(name: str, x: torch.Tensor, blob: torch.Tensor, bias, n: int, nthreads: int = 2, act: int = 0,
           split: int = 0, ldy: int | None = None) -> torch.Tensor:
    x = x.contiguous()
    m, k = x.shape
    ldy = n if ldy is None else ldy
    y = torch.full((max(m, 1), ldy), SENTINEL_F32)
    _C.q8_linear_forced(name, x.data_ptr(), x.dtype == torch.bfloat16, m, k, blob.data_ptr(), blob.numel(),
                        0 if bias is None else bias.data_ptr(), y.data_ptr(), ldy, nthreads, act, split)
    if ldy > n and m:
        assert bool((y[:m, n:] == SENTINEL_F32).all()), f"{name} wrote past N"
    return y[:m, :n]


# --- (a) the emulated tile instructions ---------------------------------------------------------------------

def tile_op(op: int, a: np.ndarray, b: np.ndarray, c: np.ndarray, colsb_a: int, colsb_c: int) -> np.ndarray:
    """Runs one emulated instruction on copies; C's buffer is wider than colsb_c (sentinel bytes past it)."""
    a, b, c = a.copy(), b.copy(), c.copy()
    _C.amxemu_tile_op(op, c.shape[0], colsb_a, colsb_c, a.ctypes.data, a.strides[0], b.ctypes.data, b.strides[0],
                      c.ctypes.data, c.strides[0])
    return c


@pytest.mark.parametrize("signed_a", [False, True])
def test_emulated_int8_dot_products(signed_a):
    """tdpbusd / tdpbssd: C[m][n] += sum_k,i A[m][4k+i] * B[k][4n+i] in wrapping int32; exactly rows x colsb_c
    bytes of C are written (the sentinel columns past it stay)."""
    rng = np.random.default_rng(1)
    for rows, colsb_a, colsb_c in [(1, 4, 4), (16, 64, 64), (3, 20, 12), (16, 64, 4), (7, 60, 64), (2, 64, 32)]:
        kk, nn = colsb_a // 4, colsb_c // 4
        a = rng.integers(0, 256, (rows, 64 + 8), dtype=np.uint8)
        a[0, :colsb_a] = 128 if signed_a else 255  # the extremes: -128 (signed) or 255 (unsigned)
        b = rng.integers(-128, 128, (kk, 64 + 4), dtype=np.int8)
        b[:, :colsb_c] = np.where(np.arange(colsb_c) % 3 == 0, -128, b[:, :colsb_c])
        c = np.full((rows, 16 + 2), SENTINEL_I32, dtype=np.int32)
        c[:, : nn] = rng.integers(-(2**31), 2**31, (rows, nn), dtype=np.int64).astype(np.int32)
        got = tile_op(1 if signed_a else 0, a, b.view(np.uint8), c, colsb_a, colsb_c)
        av = (a[:, :colsb_a].view(np.int8) if signed_a else a[:, :colsb_a]).astype(np.int64).reshape(rows, kk, 4)
        bv = b[:, :colsb_c].astype(np.int64).reshape(kk, nn, 4)
        want = c[:, :nn].astype(np.int64) + np.einsum("mki,kni->mn", av, bv)
        want = ((want + 2**31) % 2**32 - 2**31).astype(np.int32)  # int32 wrap-around
        np.testing.assert_array_equal(got[:, :nn], want)
        np.testing.assert_array_equal(got[:, nn:], c[:, nn:])  # untouched past colsb_c


def bf16_bits(x: np.ndarray) -> np.ndarray:
    return (torch.from_numpy(x.astype(np.float32)).to(torch.bfloat16).view(torch.int16).numpy()).view(np.uint16)


def bf16_value(bits: np.ndarray) -> np.ndarray:
    v = (bits.astype(np.uint32) << 16).view(np.float32)
    return np.where(np.abs(v) < np.finfo(np.float32).tiny, np.copysign(np.float32(0), v), v)  # DAZ


def ftz(v: np.ndarray) -> np.ndarray:
    return np.where(np.abs(v) < np.finfo(np.float32).tiny, np.copysign(np.float32(0), v), v).astype(np.float32)


def test_emulated_bf16_dot_products():
    """tdpbf16ps as x86_amx.h documents it: per k, C += a0*b0 then C += a1*b1, each product exact, each sum
    rounded to nearest even in fp32, bf16 denormal inputs read as zero, denormal results flushed to zero."""
    rng = np.random.default_rng(2)
    tiny = np.finfo(np.float32).tiny
    for rows, colsb_a, colsb_c in [(1, 4, 4), (16, 64, 64), (5, 12, 40)]:
        kk, nn = colsb_a // 4, colsb_c // 4
        a = bf16_bits(rng.standard_normal((rows, 2 * kk)) * 3)
        b = bf16_bits(rng.standard_normal((kk, 2 * nn)) * 3)
        a[0, 0] = 0x0001       # a bf16 denormal: read as zero
        b[0, 1] = 0x8003       # a negative denormal
        a[-1, -1] = bf16_bits(np.array([2e-20]))[0]  # products under FLT_MIN: flushed
        b[-1, :] = bf16_bits(np.full(2 * nn, 3e-20))
        c = rng.standard_normal((rows, nn + 2)).astype(np.float32)
        c[0, 0] = tiny * 0.5   # a denormal accumulator in memory (not flushed on load; flushed by the sum)
        got = tile_op(2, a, b, c.copy(), colsb_a, colsb_c)
        want = c[:, :nn].copy()
        av, bv = bf16_value(a), bf16_value(b)
        for k in range(kk):
            for i in range(2):
                prod = ftz(av[:, 2 * k + i][:, None] * bv[k, i::2][None, :nn])
                want = ftz(want + prod)
        np.testing.assert_array_equal(got[:, :nn].view(np.uint32), want.view(np.uint32))
        np.testing.assert_array_equal(got[:, nn:], c[:, nn:])


def test_emulated_tile_op_rejects_bad_shapes():
    a = np.zeros((16, 64), dtype=np.uint8)
    c = np.zeros((16, 16), dtype=np.int32)
    for op, rows, ca, cc in [(3, 1, 4, 4), (0, 0, 4, 4), (0, 17, 4, 4), (0, 1, 68, 4), (0, 1, 6, 4), (0, 1, 4, 2)]:
        with pytest.raises(ValueError, match="amxemu_tile_op"):
            _C.amxemu_tile_op(op, rows, ca, cc, a.ctypes.data, 64, a.ctypes.data, 64, c.ctypes.data, 64)


# --- (b) integer dot products ---------------------------------------------------------------------------

@pytest.mark.parametrize("name", kernels_under_test())
def test_dot_i32_exact(name):
    skip_unless(name)
    g = torch.Generator().manual_seed(5)
    cases = list(itertools.product(AMX_K, AMX_N))
    for i, (k, n) in enumerate(cases):
        m = AMX_M[i % len(AMX_M)]
        q = random_q(n, k, g)
        blob = formats.pack_q8(q, random_scales(1, n, g))
        lda = kp_of(k) + (8 if i % 2 else 0)
        a = torch.randint(0, 256, (m, lda), generator=g, dtype=torch.int16).to(torch.uint8)
        if m:
            a[0, :k] = 255
        out = run_dot({"name": name}, a, blob, lda)
        assert_exact(out[:, :n], reference.dot_u8_s8(a[:, :k], q).to(torch.int32), f"{name} dot M={m} K={k} N={n}")
        assert_exact(out[:, n:], torch.zeros(m, np_of(n) - n, dtype=torch.int32), "padding columns")


def test_dot_i32_largest_k_emulated():
    """test_qgemm.py's K = 65536 all-extreme case on the emulated kernel (the real one runs it there)."""
    _largest_k_case(by_name()[EMU])


# --- (c) the op -------------------------------------------------------------------------------------------

def check(name: str, m: int, k: int, n: int, gs, seed: int, with_bias: bool, bf16: bool, nthreads: int = 2):
    q, scales, bias, blob = layer(n, k, gs, seed, with_bias)
    x = make_input(m, k, seed, torch.bfloat16 if bf16 else torch.float32)
    y = forced(name, x, blob, bias, n, nthreads=nthreads, ldy=n + 3)
    want, mag = reference_linear("dynamic", x.float(), q, scales, gs, bias)
    assert_close(y, want, k=k, magnitude=mag, what=f"{name} M={m} K={k} N={n} gs={gs} bias={with_bias}")
    if runnable(VNNI):
        # the same epilogue arithmetic as the avx512vnni kernels (amx_q8.h): the same bits
        vnni = forced(VNNI_GEMV if m == 1 else VNNI, x, blob, bias, n, nthreads=1)
        assert_exact(y, vnni, f"{name} vs avx512vnni M={m} K={k} N={n} gs={gs}")
    return y


@pytest.mark.parametrize("group_size", GROUP_SIZES, ids=lambda g: f"gs{g}")
@pytest.mark.parametrize("name", kernels_under_test())
def test_op_matches_reference(name, group_size):
    skip_unless(name)
    pairs = [(k, n) for k, n in itertools.product(AMX_K, AMX_N) if k < 4000 or n in (1, 17, 65)]
    for i, (k, n) in enumerate(pairs):
        check(name, AMX_M[i % len(AMX_M)], k, n, group_size, seed=k * 131 + n, with_bias=bool(i % 2),
              bf16=(i % 3 == 0))


@pytest.mark.parametrize("name", kernels_under_test())
def test_op_every_m(name):
    skip_unless(name)
    for m in AMX_M:
        check(name, m, 100, 65, None, seed=7, with_bias=True, bf16=False)
        check(name, m, 196, 33, 32, seed=8, with_bias=False, bf16=True)


@pytest.mark.parametrize("name", kernels_under_test())
def test_threads_and_splits_are_bit_identical(name):
    """Column blocks, row blocks and the row split (each task quantizes its rows) give the same bits at
    1, 2 and 3 threads."""
    skip_unless(name)
    for m, k, n, gs in [(70, 130, 200, None), (33, 64, 97, 64), (100, 260, 48, None)]:
        q, scales, bias, blob = layer(n, k, gs, 9, True)
        x = make_input(m, k, 9)
        base = forced(name, x, blob, bias, n, nthreads=1, split=1)
        for nthreads, split in itertools.product((1, 2, 3), (0, 1, 2)):
            got = forced(name, x, blob, bias, n, nthreads=nthreads, split=split)
            assert_exact(got, base, f"{name} M={m} threads={nthreads} split={split}")


@pytest.mark.parametrize("name", kernels_under_test())
def test_fused_activations(name):
    """The driver's fused epilogue after the AMX block: the same bits as applying the activation kernel to
    the plain output afterwards."""
    skip_unless(name)
    m, k, n = 37, 100, 65
    q, scales, bias, blob = layer(n, k, None, 4, True)
    x = make_input(m, k, 4)
    plain = forced(name, x, blob, bias, n)
    act_kernel = _C.select_act()
    for code in (1, 2, 3, 4):
        got = forced(name, x, blob, bias, n, act=code)
        want = plain.clone()
        _C.act_apply(act_kernel, code, want.data_ptr(), want.numel())
        assert_exact(got, want, f"{name} activation {code}")


@pytest.mark.parametrize("name", kernels_under_test())
def test_nonfinite_rows(name):
    """A row holding NaN / inf is computed in float by the driver (NaN / non-finite), the others unchanged."""
    skip_unless(name)
    m, k, n = 20, 37, 20
    q, scales, bias, blob = layer(n, k, 8, 2, True)
    x = make_input(m, k, 1)
    clean = forced(name, x, blob, bias, n)
    for bad in (float("nan"), float("inf")):
        xb = x.clone()
        xb[17, k // 2] = bad
        y = forced(name, xb, blob, bias, n)
        assert not bool(torch.isfinite(y[17]).any())
        keep = torch.arange(m) != 17
        assert_exact(y[keep], clean[keep], "rows without the bad value")


def test_emulated_kernel_is_never_selected():
    """Automatic dispatch never returns the emulation: it is not in kernels.inc's table at all."""
    assert EMU not in {e["name"] for e in slimnn.kernels()}
    for mode in ("q8_dynamic", "q8_weight_only"):
        for m in (0, 1, 4, 16, 32, 1000):
            assert _C.select_kernel(mode, m) != EMU
    (e,) = [e for e in _C.q8_emulated_kernels() if e["kind"] == "q8_dynamic"]  # (+ the bf16 weight-only twin)
    assert e["name"] == EMU and e["emulated"] and e["available"] and e["isa"] == "portable"
    with pytest.raises(ValueError, match="unknown kernel"):
        forced("qgemm_q8_u8_32x64__nope", torch.zeros(2, 8), formats.pack_q8(torch.ones(3, 8, dtype=torch.int8),
                                                                                  torch.ones(1, 3)), None, 3)
