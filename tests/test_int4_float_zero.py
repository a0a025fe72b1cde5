"""int4 with float zero points (q4 zero mode 2, w = s (q - z) with z a float): the data-free quantizer against
plain torch error computations, the format (exact round trip, validation, older blobs unchanged), every kernel
path against plain float math and the reference over adversarial shapes, the layer (save/load, state_dict,
the torch.library op and its gradient, ONNX refusal), and vocabulary heads kept int8 by default."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import slimnn
from slimnn import _C
from slimnn.formats import pack_q4, q4_info, unpack_q4
from slimnn.math import reference
from slimnn.math.quantize import (
    dequantize_int4, group_view, int4_params_float_zero, int4_params_search, quantize_int4,
)
from slimnn.nn import Int4Linear, Int8Linear
from test_int4 import _raw_linear as _call  # sentinel-filled output, checks nothing past N is written

ISAS = ("portable", "avx2", "avx512", "avx512vnni")
# (m, k, n, group_size): M = 0 and 1, odd K and N, a K tail shorter than the group, one group per channel.
SHAPES = [(0, 40, 17, 32), (1, 8, 1, None), (1, 40, 17, 32), (3, 100, 33, 64), (5, 200, 15, None),
          (2, 72, 47, 64), (17, 520, 31, 256), (9, 96, 130, 32)]


def _w(n, k, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, k, generator=g) * torch.exp(0.5 * torch.randn(n, 1, generator=g)) + 0.3 * torch.randn(
        n, 1, generator=g)  # groups off centre: where a float minimum pays


def _plain_w(codes, scales, zeros, gs):
    """W = s (q - z) group by group, written out with plain torch indexing (no slimnn helper)."""
    n, k = codes.shape
    g = torch.arange(k) // (k if gs is None else gs)
    s = scales.float().t()[:, g]  # (N, K)
    z = zeros.float().t()[:, g]
    return s * (codes.float() - z)


def _sq_err(w, wd, gs):
    e, _ = group_view((wd - w).square(), gs)
    return e.sum(-1)  # (N, G); padding of a short last group is 0 - 0


# --- the quantizer -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("gs", [32, 64, None])
@pytest.mark.parametrize("sdt", [torch.float16, torch.bfloat16, torch.float32])
def test_search_never_worse_than_minmax_and_beats_integer_zero(gs, sdt):
    w = _w(48, 136, seed=3)  # 136 = 4 * 32 + 8: a short last group at g=32 and 64
    c0, s0, z0 = quantize_int4(w, gs, False, sdt, float_zeros=True)
    c1, s1, z1 = quantize_int4(w, gs, False, sdt, search=True, float_zeros=True)
    assert z0.dtype == sdt and z1.dtype == sdt and c1.dtype == torch.uint8 and int(c1.max()) <= 15
    e0 = _sq_err(w, _plain_w(c0, s0, z0, gs), gs)
    e1 = _sq_err(w, _plain_w(c1, s1, z1, gs), gs)
    assert bool((e1 <= e0 * (1 + 1e-6) + 1e-12).all())  # group by group
    ci, si, zi = quantize_int4(w, gs, False, sdt, search=True)  # integer zero points, searched
    ei = _sq_err(w, _plain_w(ci, si, zi, gs), gs)
    assert float(e1.sum()) < 0.95 * float(ei.sum())
    # dequantize_int4 agrees with the plain formula
    torch.testing.assert_close(dequantize_int4(c1, s1, z1, gs), _plain_w(c1, s1, z1, gs), rtol=0, atol=1e-6)


def test_minmax_rule_bound_and_constant_groups():
    w = _w(16, 64, seed=5)
    c, s, z = quantize_int4(w, 32, False, torch.float32, float_zeros=True)
    wd = _plain_w(c, s, z, 32)
    step = s.t().repeat_interleave(32, dim=1)
    assert bool(((wd - w).abs() <= step * (0.5 + 1e-4)).all())
    wc = torch.full((3, 64), 0.37)
    wc[1] = 0.0
    wc[2] = -2.5
    for search in (False, True):
        c, s, z = quantize_int4(wc, 32, False, torch.float16, search=search, float_zeros=True)
        torch.testing.assert_close(_plain_w(c, s, z, 32), wc, rtol=2e-3, atol=1e-6)


def test_recovers_a_q4_1_grid_nearly_exactly():
    """Weights w = d q + m (fp16 d and m, q in 0..15: llama.cpp's Q4_1) come back to within fp16 rounding of
    the zero point, far below one step: the min/max rule already does, the search must not lose it."""
    g = torch.Generator().manual_seed(7)
    n, k = 32, 128
    d = (torch.rand(n, k // 32, generator=g) * 0.02 + 0.001).half().float()
    m = (-8 * d * (0.6 + 0.8 * torch.rand(n, k // 32, generator=g))).half().float()
    q = torch.randint(0, 16, (n, k), generator=g).float()
    q[:, ::32], q[:, 1::32] = 0, 15  # every group spans the grid
    w = d.repeat_interleave(32, 1) * q + m.repeat_interleave(32, 1)
    for search in (False, True):
        c, s, z = quantize_int4(w, 32, False, torch.float16, search=search, float_zeros=True)
        err = (_plain_w(c, s, z, 32) - w).abs() / d.repeat_interleave(32, 1)
        assert float(err.max()) < 0.02, float(err.max())
    ci, si, zi = quantize_int4(w, 32, False, torch.float16, search=True)  # integer zeros cannot
    assert float(((_plain_w(ci, si, zi, 32) - w).abs() / d.repeat_interleave(32, 1)).max()) > 0.1


def test_weights_exclude_elements_and_shape_checks():
    w = _w(8, 32, seed=9)
    wg, _ = group_view(w, 32)
    wt = torch.ones(32)
    wt[20:] = 0
    s, z = int4_params_float_zero(wg, torch.float32, weight=wt)
    s2, z2 = int4_params_float_zero(wg[..., :20].contiguous(), torch.float32)
    torch.testing.assert_close(s, s2)
    torch.testing.assert_close(z, z2)
    with pytest.raises(ValueError, match="symmetric=False"):
        quantize_int4(w, 32, True, float_zeros=True)
    with pytest.raises(ValueError, match="float_zeros"):
        slimnn.Int4Config(float_zeros=True, symmetric=True)
    assert slimnn.Int4Config().float_zeros and not slimnn.Int4Config(symmetric=True).float_zeros  # auto
    assert not slimnn.Int4Config(symmetric=False).float_zeros  # an explicit choice keeps integer zero points
    assert not slimnn.Int4Config(method="awq").float_zeros and not slimnn.Int4Config(method="awq").symmetric
    assert slimnn.Int4Config(symmetric=False, float_zeros=True) == slimnn.Int4Config()  # resolved, so equal
    with pytest.raises(ValueError, match="awq"):
        slimnn.Int4Config(float_zeros=True, symmetric=False, method="awq")
    with pytest.raises(ValueError, match="act_order"):
        slimnn.Int4Config(float_zeros=True, symmetric=False, method="gptq", gptq_act_order=False)
    assert int4_params_search is not None  # the integer-zero search stays available


# --- the format ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("sdt", [torch.float16, torch.bfloat16, torch.float32])
@pytest.mark.parametrize("gs", [32, None])
def test_pack_unpack_exact_and_validation(sdt, gs):
    c, s, z = quantize_int4(_w(33, 100), gs, False, sdt, search=True, float_zeros=True)
    blob = pack_q4(c, s, z, gs)
    info = q4_info(blob, full_check=True)
    assert info.float_zeros and not info.symmetric and info.scale_dtype == sdt
    c2, s2, z2, gs2 = unpack_q4(blob)
    assert gs2 == gs and torch.equal(c2, c) and torch.equal(s2, s) and torch.equal(z2, z) and z2.dtype == sdt
    with pytest.raises(ValueError, match="zeros must be"):
        pack_q4(c, s, z.float() if sdt != torch.float32 else z.half(), gs)
    bad = z.clone()
    bad[0, 0] = float("inf")
    with pytest.raises(ValueError, match="non-finite zero point"):
        pack_q4(c, s, bad, gs)
    # an unknown zero mode (a newer writer) is refused by name; the mode byte sits at header offset 104 + 9
    blob3 = blob.clone()
    assert int(blob3[113]) == 2
    blob3[113] = 3
    with pytest.raises(ValueError, match="unknown zero-point mode 3"):
        q4_info(blob3)


def test_offsets_are_derived_at_pack_time_and_checked():
    """Mode 2 blobs carry the fp32 offsets s (8 - z) the driver adds (derived once by pack_q4, not per call);
    a blob whose offsets disagree with its scales and zero points is refused by the full check."""
    n, k, gs = 33, 100, 32
    c, s, z = quantize_int4(_w(n, k), gs, False, torch.float16, search=True, float_zeros=True)
    blob = pack_q4(c, s, z, gs)
    off_z = int.from_bytes(bytes(blob[104:112].tolist()), "little")
    ng, np_ = -(-104 // gs), 48  # K = 100 padded to 104: 4 groups; N = 33 padded to 48
    off_o = -(-(off_z + ng * np_ * 2) // 64) * 64
    o = blob[off_o:off_o + ng * np_ * 4].view(torch.float32).view(np_ // 16, ng, 16)
    want = (s.float() * (8.0 - z.float())).t().reshape(n, ng)  # [N][g]
    got = o.permute(0, 2, 1).reshape(np_, ng)[:n]
    assert torch.equal(got, want) and not bool(o.permute(0, 2, 1).reshape(np_, ng)[n:].any())
    bad = blob.clone()
    bad[off_o:off_o + 4] = torch.tensor([1.5], dtype=torch.float32).view(torch.uint8)
    with pytest.raises(ValueError, match="offsets do not match"):
        q4_info(bad, full_check=True)


def test_integer_and_symmetric_blobs_unchanged():
    """Zero modes 0 and 1 keep their layout: same size formula, mode byte, and the same bytes as a blob whose
    float zero points equal the integer ones but for the zero section and the mode byte."""
    c, s, z = quantize_int4(_w(20, 72), 32, False, torch.float16)
    bi = pack_q4(c, s, z, 32)
    bs = pack_q4(*quantize_int4(_w(20, 72), 32, True, torch.float16), 32)
    assert int(bi[113]) == 1 and int(bs[113]) == 0
    assert bi.numel() == _C.q4_blob_bytes(20, 72, 32, 1, 1) and bs.numel() == _C.q4_blob_bytes(20, 72, 32, 1, 0)
    bf = pack_q4(c, s, z.to(torch.float16), 32)  # the same weights with float zero points
    torch.testing.assert_close(dequantize_int4(*unpack_q4(bf)), dequantize_int4(*unpack_q4(bi)), rtol=0, atol=0)
    assert not q4_info(bi).float_zeros and not q4_info(bs).float_zeros


# --- kernels ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("m,k,n,gs", SHAPES)
def test_kernels_against_plain_float_math(isa, m, k, n, gs):
    if isa not in slimnn.isa.detected():
        pytest.skip(f"this CPU lacks {isa}")
    c, s, z = quantize_int4(_w(n, k), gs, False, torch.float16, search=True, float_zeros=True)
    blob = pack_q4(c, s, z, gs)
    g = torch.Generator().manual_seed(2)
    x = torch.randn(m, k, generator=g)
    in_mul = torch.rand(k, generator=g) + 0.5
    wd = _plain_w(c, s, z, gs).double()
    with slimnn.isa.forced(isa):
        for kind in ("q4_weight_only", "q4_dynamic"):
            for im in (None, in_mul):
                xx = x if im is None else x * im
                plain = (xx.double() @ wd.t()).float()
                y, name = _call(kind, x, blob, n, im, threads=2)
                assert y.shape == (m, n)
                if m == 0:
                    continue
                scale = float(plain.abs().max()) + 1e-30
                if kind == "q4_weight_only":
                    assert float((y - plain).abs().max()) / scale < 1e-5, name
                else:
                    ref = reference.q4_linear_dynamic(x, c, s, z, gs, None, im)
                    assert float((y - ref).abs().max()) / scale < 1e-5, name
                    # W4A8 against float math: the activations' 8-bit rounding only
                    assert float((y - plain).abs().max()) / scale < 0.03, name


# The VNNI GEMV adds the offset term in registers (s (8 - z) from the streamed zeros); the 8-row kernel of the
# same ISA leaves it to the driver's pass. Both sum the groups in the same order: the same bits.
FUSED_GEMV, DRIVER_PASS = "qgemm_q4_u8_1x128__avx512vnni", "qgemm_q4_u8_8x32__avx512vnni"


def _forced(name, x, blob, n, threads):
    m, k = x.shape
    y = torch.full((m, n), float("inf"))
    _C.q4_linear_forced(name, x.data_ptr(), False, m, k, 0, blob.data_ptr(), blob.numel(), 0, y.data_ptr(), n, threads)
    return y


@pytest.mark.parametrize("sdt", [torch.float16, torch.bfloat16, torch.float32])
@pytest.mark.parametrize("m,k,n,gs", [(1, 40, 17, 32), (1, 72, 47, 64), (2, 100, 33, 64), (1, 520, 31, 256),
                                      (5, 96, 130, 32), (1, 600, 200, 32), (1, 8, 1, None), (3, 200, 37, None)])
def test_fused_gemv_offset_term_gives_the_driver_pass_bits(sdt, m, k, n, gs):
    if "avx512vnni" not in slimnn.isa.detected():
        pytest.skip("this CPU lacks avx512vnni")
    c, s, z = quantize_int4(_w(n, k, seed=k), gs, False, sdt, float_zeros=True)
    blob = pack_q4(c, s, z, gs)
    x = torch.randn(m, k, generator=torch.Generator().manual_seed(n))
    want = _forced(DRIVER_PASS, x, blob, n, 1)
    for threads in (1, 2):
        assert torch.equal(_forced(FUSED_GEMV, x, blob, n, threads), want)
        assert torch.equal(_forced(DRIVER_PASS, x, blob, n, threads), want)
    ref = reference.q4_linear_dynamic(x, c, s, z, gs, None, None)
    assert float((want - ref).abs().max()) <= 1e-5 * (float(ref.abs().max()) + 1e-30)
    x[0, k // 2] = float("nan")
    y = _forced(FUSED_GEMV, x, blob, n, 2)
    assert bool(torch.isnan(y[0]).all()) and torch.equal(y[1:], want[1:])


@pytest.mark.parametrize("sdt", [torch.float16, torch.bfloat16, torch.float32])
@pytest.mark.parametrize("m,k,n,gs", [(1, 40, 17, 32), (2, 100, 33, 64), (3, 520, 31, 256), (5, 96, 130, 32),
                                      (1, 600, 200, 32), (1, 8, 1, None), (3, 200, 37, None)])
def test_avx2_kernel_adds_the_offset_term_itself(sdt, m, k, n, gs):
    """The AVX2 kernel adds the float-zero term in registers (both of its rows), as the VNNI GEMV does: against
    the reference and the portable kernel (which leaves it to the driver's pass), at 1 and 2 threads; a NaN row
    stays NaN alone. (Built before and after the fusion, the two gave the same bits on 2,160 cases.)"""
    if "avx2" not in slimnn.isa.detected():
        pytest.skip("this CPU lacks avx2")
    c, s, z = quantize_int4(_w(n, k, seed=k + 1), gs, False, sdt, float_zeros=True)
    blob = pack_q4(c, s, z, gs)
    x = torch.randn(m, k, generator=torch.Generator().manual_seed(n + 1)) * 2
    ref = reference.q4_linear_dynamic(x, c, s, z, gs, None, None)
    portable = _forced("qgemm_q4_u8_1x16__portable", x, blob, n, 1)
    tol = 1e-5 * (float(ref.abs().max()) + 1e-30)
    for threads in (1, 2):
        y = _forced("qgemm_q4_u8_2x16__avx2", x, blob, n, threads)
        assert float((y - ref).abs().max()) <= tol and float((y - portable).abs().max()) <= tol
    x[0, k // 2] = float("nan")
    y = _forced("qgemm_q4_u8_2x16__avx2", x, blob, n, 2)
    assert bool(torch.isnan(y[0]).all()) and torch.allclose(y[1:], portable[1:], rtol=0, atol=tol)


def test_nan_rows_and_threads():
    c, s, z = quantize_int4(_w(40, 96), 32, False, torch.float16, float_zeros=True)
    blob = pack_q4(c, s, z, 32)
    x = torch.randn(6, 96)
    x[2, 5] = float("nan")
    y1, _ = _call("q4_dynamic", x, blob, 40, threads=1)
    y2, _ = _call("q4_dynamic", x, blob, 40, threads=2)
    assert bool(torch.isnan(y1[2]).all())
    torch.testing.assert_close(y1, y2, rtol=0, atol=0, equal_nan=True)  # more threads, same sums
    assert bool(torch.isfinite(y1[[0, 1, 3, 4, 5]]).all())


# --- the layer -------------------------------------------------------------------------------------------------


def _layer(mode="dynamic"):
    lin = nn.Linear(100, 33)
    cfg = slimnn.Int4Config(group_size=32, symmetric=False, float_zeros=True, scale_search=True, mode=mode)
    return lin, Int4Linear.from_linear(lin, cfg)


@pytest.mark.parametrize("mode", ["dynamic", "weight_only"])
def test_layer_matches_reference_and_repr(mode):
    lin, q = _layer(mode)
    assert "float-zero" in repr(q) and q.config.float_zeros
    x = torch.randn(2, 3, 100)
    ref = slimnn.Int4Config(group_size=32, symmetric=False, float_zeros=True, kernel="reference", mode=mode)
    qr = Int4Linear.from_quantized(*unpack_q4(q.packed)[:3], 32, lin.bias, None, ref)
    torch.testing.assert_close(q(x), qr(x), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(q(x), lin(x), rtol=0.1, atol=0.15)


def test_save_load_and_state_dict(tmp_path):
    lin, q = _layer()
    model = nn.Sequential(q)
    slimnn.save(model, tmp_path / "m.slimnn")
    back = slimnn.load(tmp_path / "m.slimnn")
    assert torch.equal(back[0].packed, q.packed) and back[0].config.float_zeros
    fresh = Int4Linear(100, 33, config=slimnn.Int4Config(group_size=32))  # symmetric template
    fresh.load_state_dict(q.state_dict())
    assert fresh.config.float_zeros and not fresh.config.symmetric and torch.equal(fresh.packed, q.packed)
    x = torch.randn(4, 100)
    assert torch.equal(fresh(x), q(x))


def test_op_path_and_gradient():
    lin, q = _layer()
    x = torch.randn(5, 100, requires_grad=True)
    y = q(x)  # requires grad: the torch.library op
    y.sum().backward()
    wd = q.dequantized_weight()
    torch.testing.assert_close(x.grad, torch.ones(5, 33) @ wd, rtol=1e-5, atol=1e-5)
    with torch.no_grad():
        torch.testing.assert_close(y.detach(), q(x.detach()), rtol=0, atol=0)
    y2 = torch.ops.slimnn.q4_linear(x.detach(), q.packed, q.bias, None, "dynamic", 33)
    torch.testing.assert_close(y2, y.detach(), rtol=0, atol=0)


def test_onnx_export_refuses_by_name(tmp_path):
    pytest.importorskip("onnx")
    _, q = _layer()
    with pytest.raises(ValueError, match="no ONNX export"):
        slimnn.export_onnx(nn.Sequential(q), (torch.randn(1, 100),), str(tmp_path / "m.onnx"))


def test_embedding_gather_reads_float_zeros():
    c, s, z = quantize_int4(_w(50, 72), 32, False, torch.float16, float_zeros=True)
    blob = pack_q4(c, s, z, 32)
    ids = torch.tensor([0, 49, 7, 7], dtype=torch.int64)
    out = torch.empty(4, 72)
    bad = _C.embed_gather("q4", blob.data_ptr(), blob.numel(), ids.data_ptr(), 4, out.data_ptr(), out.numel(), 1)
    assert bad == -1
    torch.testing.assert_close(out, _plain_w(c, s, z, 32)[ids], rtol=0, atol=1e-6)


# --- vocabulary heads int8 by default ------------------------------------------------------------------------


class _TinyLM(nn.Module):
    def __init__(self, tied=True):
        super().__init__()
        self.embed = nn.Embedding(16384, 32)
        self.up = nn.Linear(32, 128)  # 4x wider: a projection, not a head
        self.head = nn.Linear(32, 16384, bias=False)
        if tied:
            self.head.weight = self.embed.weight

    def forward(self, ids):
        return self.head(torch.relu(self.up(self.embed(ids)))[..., :32])


@pytest.mark.parametrize("tied", [True, False])
def test_vocab_head_int8_by_default(tied):
    m = _TinyLM(tied)
    slimnn.compress_(m, slimnn.Int4Config(group_size=32), filter_fn=lambda mod, fqn: True)
    assert isinstance(m.head, Int8Linear) and isinstance(m.up, Int4Linear)
    assert m.embed.fmt == "q8"
    m2 = _TinyLM(tied)
    slimnn.compress_(m2, slimnn.Int4Config(group_size=32, head_int8=False), filter_fn=lambda mod, fqn: True)
    assert isinstance(m2.head, Int4Linear) and m2.embed.fmt == "q4"
