"""The AMX-INT8 W4A8 (q4gemm) kernel, tested on every CPU through its emulated twin.

qgemm_q4_u8_32x64__amxemu is the same kernel source (csrc/kernels/q4gemm/amx_q4.h: nibbles unpacked into
64-byte VNNI tile rows in L1, tdpbusd per group, the VNNI kernel's fp32 epilogue) compiled over the portable
tile emulation (csrc/common/simd/x86_amx.h); it is test-only (never selected), so these tests force it by
name: (a) the exact per-group integers E_g on adversarial M / K / N / group sizes and zero-point modes;
(b) the whole op (M, K and N tails, groups 32 / 64 / 128 / 96 / per channel, symmetric, integer and float
zero points, fp32 / fp16 / bf16 scales, bias, threads) against the float64 reference within the shared
tolerances, and bit for bit against the avx512vnni kernel, whose arithmetic it repeats in the same order.
On a CPU with AMX the real kernel runs the same checks; without AMX those are skips, never passes.
The q4 op has no fused activation epilogue (the q8 driver's act codes are not part of q4_linear), so there
is none to test here.
"""

from __future__ import annotations

import itertools

import pytest
import torch

import slimnn
from slimnn import _C
from slimnn.formats import pack_q4, q4_info
from slimnn.math import reference
from slimnn.math.quantize import dequantize_int4, quantize_int4

from helpers import EmulatedTwin
from tolerances import assert_close, assert_exact

EMU = "qgemm_q4_u8_32x64__amxemu"
AMX = "qgemm_q4_u8_32x64__amx"
VNNI = "qgemm_q4_u8_8x32__avx512vnni"
VNNI_GEMV = "qgemm_q4_u8_1x128__avx512vnni"
SENTINEL = 12345.0

# Tile edges: 16-row halves, 32-row calls, several row blocks.
AMX_M = [0, 1, 15, 16, 17, 31, 32, 33, 65]
# group size, K: tails inside a 64-K (or 32-K) piece, a short last group, K below one piece.
GROUP_K = [
    (None, 8), (None, 60), (None, 64), (None, 72), (None, 200), (None, 520),
    (32, 32), (32, 40), (32, 100), (32, 264),
    (64, 64), (64, 72), (64, 136), (64, 200),
    (128, 128), (128, 136), (128, 300),
    (96, 200),  # a group that is not a whole number of 64-K pieces: 32-K steps
]
AMX_N = [1, 15, 16, 17, 31, 32, 33, 48, 65, 97]
SCALE_DTYPES = (torch.float16, torch.bfloat16, torch.float32)
ZERO_MODES = ("sym", "int", "float")


TWIN = EmulatedTwin(EMU, AMX, lambda: [*_C.q4_kernels(), *_C.q4_emulated_kernels()])
by_name, runnable, skip_unless = TWIN.by_name, TWIN.runnable, TWIN.skip_unless


def weights(n: int, k: int, gs, zero_mode: str, sdt=torch.float16, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(n, k, generator=g) * torch.exp(0.5 * torch.randn(n, 1, generator=g))
    codes, scales, zeros = quantize_int4(w, gs, zero_mode == "sym", sdt, float_zeros=zero_mode == "float")
    return codes, scales, zeros, pack_q4(codes, scales, zeros, gs)


def forced(name: str, x: torch.Tensor, blob: torch.Tensor, bias, n: int, nthreads: int = 2) -> torch.Tensor:
    x = x.contiguous()
    m, k = x.shape
    ldy = n + 3
    y = torch.full((max(m, 1), ldy), SENTINEL)
    _C.q4_linear_forced(name, x.data_ptr(), x.dtype == torch.bfloat16, m, k, 0, blob.data_ptr(), blob.numel(),
                        0 if bias is None else bias.data_ptr(), y.data_ptr(), ldy, nthreads)
    if m:
        assert bool((y[:m, n:] == SENTINEL).all()), f"{name} wrote past N"
    return y[:m, :n]


def group_dots(name: str, a: torch.Tensor, blob: torch.Tensor, lda: int) -> torch.Tensor:
    info = q4_info(blob)
    m = a.shape[0]
    out = torch.full((max(m, 1), info.n_groups, info.np), -7, dtype=torch.int32)
    _C.q4_dot_i32(name, a.data_ptr(), m, lda, blob.data_ptr(), blob.numel(), out.data_ptr())
    return out[:m]


# --- (a) the exact per-group integers ----------------------------------------------------------------------

@pytest.mark.parametrize("name", TWIN.under_test())
def test_group_integers_exact(name):
    skip_unless(name)
    g = torch.Generator().manual_seed(5)
    for i, ((gs, k), n) in enumerate(itertools.product(GROUP_K, AMX_N[::2])):
        m = AMX_M[i % len(AMX_M)]
        zero_mode = ("sym", "int")[i % 2]
        codes, _, zeros, blob = weights(n, k, gs, zero_mode, seed=i)
        info = q4_info(blob)
        lda = info.kp + (8 if i % 3 == 0 else 0)
        a = torch.randint(0, 256, (m, lda), generator=g, dtype=torch.int16).to(torch.uint8)
        a[:, k:info.kp] = 0  # the kernels' contract: zeros from k to kp (bytes past kp are never read)
        if m:
            a[0, :k] = 255
        out = group_dots(name, a, blob, lda)
        want = reference.q4_group_dots(a[:, :k], codes, zeros, gs).to(torch.int32)
        assert_exact(out[:, :, :n], want, f"{name} E_g M={m} K={k} N={n} gs={gs} {zero_mode}")


@pytest.mark.parametrize("name", TWIN.under_test())
def test_group_integers_extremes(name):
    """Activations 0 / 255, codes 0 / 15, zero points at both ends, per channel and grouped, K = 4096."""
    skip_unless(name)
    k, n = 4096, 48
    codes = torch.randint(0, 2, (n, k), dtype=torch.uint8) * 15
    a = (torch.randint(0, 2, (33, k)) * 255).to(torch.uint8)
    for gs in (None, 64):
        ng = 1 if gs is None else k // gs
        zeros = torch.tensor([0, 15] * (n // 2), dtype=torch.uint8).repeat(ng, 1)
        blob = pack_q4(codes, torch.ones(ng, n, dtype=torch.float16), zeros, gs)
        out = group_dots(name, a, blob, k)
        assert_exact(out, reference.q4_group_dots(a, codes, zeros, gs).to(torch.int32), f"{name} extremes gs={gs}")


# --- (b) the op --------------------------------------------------------------------------------------------

def magnitude(x, codes, scales, zeros, gs, bias):
    """The sum of absolute terms: dynamic quantization adds the activation zero point (<= max |x|) per row."""
    wd = dequantize_int4(codes, scales, zeros, gs).double()
    xa = x.double().abs() + x.double().abs().amax(dim=1, keepdim=True)
    mag = xa @ wd.abs().t()
    return mag + (0 if bias is None else bias.double().abs())


def check(name, m, k, n, gs, zero_mode, sdt, seed, with_bias, bf16=False, nthreads=2):
    codes, scales, zeros, blob = weights(n, k, gs, zero_mode, sdt, seed)
    g = torch.Generator().manual_seed(seed + 1)
    x = torch.randn(m, k, generator=g) * 2
    if bf16:
        x = x.to(torch.bfloat16)
    bias = torch.randn(n, generator=g) if with_bias else None
    y = forced(name, x, blob, bias, n, nthreads)
    what = f"{name} M={m} K={k} N={n} gs={gs} {zero_mode} {sdt} bias={with_bias}"
    if m:
        want = reference.q4_linear_dynamic(x.float(), codes, scales, zeros, gs, bias)
        assert_close(y, want, k=k, magnitude=magnitude(x.float(), codes, scales, zeros, gs, bias), what=what)
    if runnable(VNNI):
        # the same integer sums and the same fp32 operations in the same order: the same bits
        vnni = forced(VNNI_GEMV if m == 1 else VNNI, x, blob, bias, n, nthreads=1)
        assert_exact(y, vnni, f"{what} vs avx512vnni")


@pytest.mark.parametrize("zero_mode", ZERO_MODES)
@pytest.mark.parametrize("name", TWIN.under_test())
def test_op_matches_reference_and_vnni(name, zero_mode):
    skip_unless(name)
    for i, ((gs, k), n) in enumerate(itertools.product(GROUP_K, AMX_N[1::2])):
        check(name, AMX_M[i % len(AMX_M)], k, n, gs, zero_mode, SCALE_DTYPES[i % 3], seed=i, with_bias=bool(i % 2),
              bf16=(i % 5 == 0))


@pytest.mark.parametrize("name", TWIN.under_test())
def test_op_every_m(name):
    skip_unless(name)
    for m in AMX_M:
        check(name, m, 136, 65, 64, "int", torch.float16, seed=7, with_bias=True)
        check(name, m, 100, 33, None, "sym", torch.bfloat16, seed=8, with_bias=False)
        check(name, m, 96, 17, 32, "float", torch.float32, seed=9, with_bias=True)


@pytest.mark.parametrize("name", TWIN.under_test())
def test_threads_are_bit_identical(name):
    """Column blocks and row blocks at 1, 2 and 3 threads give the same bits."""
    skip_unless(name)
    for m, k, n, gs, zero_mode in [(70, 136, 200, 64, "int"), (33, 72, 97, None, "sym"), (100, 96, 48, 32, "float")]:
        codes, scales, zeros, blob = weights(n, k, gs, zero_mode, seed=3)
        x = torch.randn(m, k, generator=torch.Generator().manual_seed(4))
        bias = torch.randn(n)
        base = forced(name, x, blob, bias, n, nthreads=1)
        for nthreads in (2, 3):
            assert_exact(forced(name, x, blob, bias, n, nthreads=nthreads), base, f"{name} M={m} threads={nthreads}")


@pytest.mark.parametrize("name", TWIN.under_test())
def test_nonfinite_rows(name):
    """A row holding NaN / inf comes out NaN, the others unchanged."""
    skip_unless(name)
    m, k, n = 20, 72, 20
    codes, scales, zeros, blob = weights(n, k, 32, "int", seed=2)
    x = torch.randn(m, k, generator=torch.Generator().manual_seed(1))
    clean = forced(name, x, blob, None, n)
    for bad in (float("nan"), float("inf")):
        xb = x.clone()
        xb[17, k // 2] = bad
        y = forced(name, xb, blob, None, n)
        assert bool(y[17].isnan().all())
        keep = torch.arange(m) != 17
        assert_exact(y[keep], clean[keep], "rows without the bad value")


def test_dispatch_and_listing():
    """The emulation is never selected; the real kernel is listed with its crossover and chosen from it on
    where the CPU has AMX; cpu_info lists it beside the q8 AMX kernel."""
    assert EMU not in {e["name"] for e in _C.q4_kernels()}
    picked = {_C.q4_select_kernel(mode, m) for mode in ("q4_dynamic", "q4_weight_only") for m in (0, 1, 4, 16, 32, 1000)}
    assert EMU not in picked
    assert [(e["name"], e["emulated"], e["available"], e["isa"]) for e in _C.q4_emulated_kernels()] == [
        (EMU, True, True, "portable"),
        ("qgemm_q4_f32_32x32__amxemu", True, True, "portable"),  # the AMX-BF16 weight-only twin (test_wogemm_amx)
    ]
    with pytest.raises(ValueError, match="unknown q4 kernel"):
        forced("qgemm_q4_u8_32x64__nope", torch.zeros(2, 8), weights(3, 8, None, "sym")[3], None, 3)
    amx = by_name().get(AMX)
    if amx is None:
        pytest.skip(f"{AMX}: not built")
    min_m = amx["min_m"]
    assert min_m >= 2
    assert AMX in slimnn.cpu_info()["amx"]["kernels"]
    assert slimnn.cpu_info()["amx"]["kernels"][AMX]["min_m"] == min_m
    if not amx["available"]:
        with pytest.raises(ValueError, match="needs amx, which this CPU lacks"):
            forced(AMX, torch.zeros(2, 8), weights(3, 8, None, "sym")[3], None, 3)
        pytest.skip(f"{AMX}: this CPU lacks amx (dispatch to it not testable)")
    assert _C.q4_select_kernel("q4_dynamic", min_m) == AMX
    assert _C.q4_select_kernel("q4_dynamic", min_m - 1) != AMX
