"""Conv kernels (csrc/kernels/conv): every ISA path against the torch reference over adversarial shapes.

The reference (slimnn.math.reference.conv2d_reference) is itself checked against float conv; the dyn path's
integer accumulations are checked exactly (unit weight scales make y / a_scale the integer sum); quantized
bytes and im2col rows are exact; thread counts give bit-identical results.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import slimnn
from slimnn import _C
from slimnn.math import reference as R
from slimnn.ops import conv as co

from tolerances import assert_close, assert_exact

ISAS = ["portable", "avx2", "avx512", "avx512vnni"]
# The qgemm path each forced ceiling takes (the best q8 dyn/wo kernel at or below it) and the depthwise one.
GEMM_ISA = {"portable": "portable", "avx2": "avx2", "avx512": "avx512", "avx512vnni": "avx512vnni"}
DW_ISA = {"portable": "portable", "avx2": "avx2", "avx512": "avx512", "avx512vnni": "avx512"}


def need(isa: str) -> None:
    if isa not in slimnn.isa.available():
        pytest.skip(f"{isa} is not available on this CPU")  # a skip, never a pass


# (n, c, h, w, oc, k, stride, pad, dilation, groups): dense and pointwise, tails around 4 (K), 16 (N panels)
# and the micro-kernels' row counts, 1x1 images, windows larger than the image, grouped convs.
DENSE = [
    (1, 16, 8, 8, 32, 1, 1, 0, 1, 1),     # pointwise, direct rows
    (2, 3, 9, 7, 17, 3, 2, 1, 1, 1),      # stem-like, K = 27 (padded to 28)
    (1, 5, 1, 1, 1, 1, 1, 0, 1, 1),       # 1x1 image, one output channel, K = 5
    (3, 24, 1, 1, 48, 1, 1, 0, 1, 1),     # batch of 1x1 images (an SE block)
    (3, 24, 1, 1, 33, 3, 1, 1, 1, 1),     # 3x3 over a 1x1 image: only the centre tap is inside
    (2, 8, 9, 7, 12, 3, 1, 2, 2, 4),      # groups 4, dilation 2
    (1, 6, 5, 5, 9, 2, 3, 0, 1, 3),       # even kernel, stride 3, groups 3
    (2, 7, 4, 6, 20, 5, 1, 3, 1, 1),      # kernel larger than the image, heavy padding
    (1, 64, 14, 14, 80, 1, 2, 0, 1, 1),   # strided 1x1 (gathered, not direct)
    (1, 18, 3, 3, 16, 1, 1, 0, 1, 1),     # pointwise with C % 4 != 0 (gathered)
    (4, 32, 6, 6, 130, 3, 1, 1, 1, 1),    # N tail past 128 columns
    (0, 8, 5, 5, 16, 3, 1, 1, 1, 1),      # empty batch
    (1, 2, 1, 40, 3, 3, 1, 1, 1, 1),      # Conv1d-shaped (H = 1)
    (2, 3, 11, 11, 32, 3, 2, (0, 1, 0, 1), 1, 1),  # TF "same" padding, asymmetric
]
# Depthwise: groups == c == oc.
DW = [
    (2, 32, 9, 7, 32, 3, 1, 1, 1, 32),
    (2, 40, 11, 13, 40, 5, 2, 2, 1, 40),
    (2, 20, 11, 13, 20, 4, 3, 2, 2, 20),   # general path: even k, stride 3, dilation 2
    (1, 17, 6, 6, 17, 3, 2, 0, 1, 17),     # channel tail, no padding
    (1, 3, 1, 1, 3, 3, 1, 1, 1, 3),        # 1x1 image
    (1, 65, 5, 4, 65, 5, 1, 2, 1, 65),     # 4-vector block + vector + scalar tail
    (3, 96, 7, 7, 96, 3, 1, 1, 1, 96),
    (1, 8, 2, 2, 8, 7, 1, 3, 1, 8),        # window larger than the image
    (1, 16, 9, 9, 16, 3, 1, 4, 3, 16),     # dilation 3
    (1, 24, 12, 12, 24, 1, 2, 0, 1, 24),   # 1x1 depthwise
    (2, 48, 6, 21, 48, 3, 1, 1, 1, 48),    # stride 1, rows of 8-pixel blocks plus a remainder
    (1, 33, 7, 20, 33, 5, 1, 2, 1, 33),    # the same for 5x5, channel tail
    (1, 16, 9, 20, 16, 3, (2, 1), 1, 1, 16),  # vertical stride 2, horizontal 1: still the blocked path
    (1, 32, 9, 9, 32, 3, 2, (0, 1, 0, 1), 1, 32),  # TF "same" padding: bottom/right only (EfficientNet-Lite)
    (1, 48, 8, 8, 48, 5, 2, (1, 2, 1, 2), 1, 48),
]


def make(case, seed=0):
    n, c, h, w, oc, k, s, p, d, g = case
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c, h, w, generator=gen) * 2 + 0.3
    q = torch.randint(-127, 128, (oc, c // g, k, k), generator=gen, dtype=torch.int8)
    scales = torch.rand(oc, generator=gen) * 0.01 + 0.001
    bias = torch.randn(oc, generator=gen)
    return x, q, scales, bias


def run(case, x, q, scales, bias, mode="dynamic", act=None, quant="per_image"):
    n, c, h, w, oc, k, s, p, d, g = case
    if co.is_depthwise(c, oc, g):
        return co.conv2d_dw(x, q.reshape(c, k * k).contiguous(), scales, k, s, p, d, bias, act)
    blob, gb = co.pack_conv_weight(q, scales, g)
    return co.conv2d_q8(x, blob, gb, oc, k, s, p, d, g, bias, act, mode, quant)


def magnitude(case, x, q, scales, bias, mode, quant="per_image"):
    """Sum of |terms| the kernel adds (in output units), for the tolerance."""
    n, c, h, w, oc, k, s, p, d, g = case
    t, b, l, r = co.pads4(p)
    kw = dict(stride=s, dilation=d, groups=g)
    wf = (q.float() * scales.view(-1, 1, 1, 1)).abs().double()
    if mode == "weight_only" or co.is_depthwise(c, oc, g):
        m = F.conv2d(F.pad(x.abs().double(), (l, r, t, b)), wf, **kw)
    elif quant == "per_pixel":  # |qa - zp| * a_scale <= |x| + a_scale: bounded by the field's absmax, twice
        m = 2 * F.conv2d(F.pad(x.abs().double(), (l, r, t, b)), wf, **kw) + F.conv2d(
            F.pad(torch.ones_like(x).double(), (l, r, t, b)), wf, **kw) * x.abs().amax(dim=(1, 2, 3), keepdim=True).double() / 127
    else:
        blocks = [x] if quant == "per_tensor" else list(x.split(1))
        outs = []
        for blk in blocks:
            qa, sc, zp, _ = R.quantize_activation_u8(blk)
            outs.append(F.conv2d(F.pad((qa.double() - zp).abs(), (l, r, t, b)), q.double().abs(), **kw)
                        * sc * scales.double().view(1, -1, 1, 1))
        m = torch.cat(outs) if len(outs) > 1 else outs[0]
    return m + bias.abs().double().view(1, -1, 1, 1)


def test_reference_tracks_float_conv():
    """The reference itself: int8 weights and uint8 activations stay close to the float conv (SQNR)."""
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(2, 32, 12, 12, generator=gen)
    w = torch.randn(48, 32, 3, 3, generator=gen) * 0.1
    b = torch.randn(48, generator=gen)
    absmax = w.abs().amax(dim=(1, 2, 3))
    scales = absmax / 127
    q = torch.round(w / scales.view(-1, 1, 1, 1)).clamp(-127, 127).to(torch.int8)
    ref = F.conv2d(x, w, b, padding=1)
    for mode in co.MODES:
        y = R.conv2d_reference(x, q, scales, b, 1, 1, 1, 1, None, mode)
        sqnr = 10 * math.log10(ref.pow(2).mean() / (y - ref).pow(2).mean())
        assert sqnr > 30, f"{mode}: SQNR {sqnr:.1f} dB"
    # weight-only with exactly representable weights is the float conv itself
    y = R.conv2d_reference(x, q, torch.ones(48), b, 1, 1, 1, 1, None, "weight_only")
    torch.testing.assert_close(y, F.conv2d(x, q.float(), b, padding=1), rtol=1e-5, atol=1e-3)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("case", DENSE, ids=str)
@pytest.mark.parametrize("mode,quant", [("dynamic", "per_image"), ("dynamic", "per_pixel"), ("weight_only", "per_image")])
def test_dense_matches_reference(isa, case, mode, quant):
    need(isa)
    x, q, scales, bias = make(case)
    with slimnn.isa.forced(isa):
        y, name = run(case, x, q, scales, bias, mode, quant=quant)
    assert name.endswith("__" + (GEMM_ISA if mode == "dynamic" else DW_ISA)[isa]), name  # no VNNI wo kernel
    assert y.is_contiguous(memory_format=torch.channels_last)
    ref = R.conv2d_reference(x, q, scales, bias, *case[6:8], case[8], case[9], None, mode, quant)
    kk = case[5] ** 2 * case[1] // case[9]
    assert_close(y, ref, k=kk, magnitude=magnitude(case, x, q, scales, bias, mode, quant),
                 what=f"{isa} {mode} {quant} {case}")


def unit_scale_runs(isa, quant):
    """(case, x, q, y) for every non-empty DENSE case: the dyn path with unit weight scales and no bias, so
    y / a_scale is the integer sum; x has rows of very different ranges (one scale per image fits them badly)."""
    for case in DENSE:
        if case[0] == 0:
            continue
        x, q, _, _ = make(case, seed=1)
        x[:, :, ::2] *= 8
        with slimnn.isa.forced(isa):
            y, _ = run(case, x, q, torch.ones(case[4]), None, "dynamic", quant=quant)
        yield case, x, q, y


@pytest.mark.parametrize("isa", ISAS)
def test_per_pixel_integer_accumulation_exact(isa):
    """quant="per_pixel": unit weight scales, no bias: y / (each pixel's a_scale) is its exact int32 sum, and
    the scale is the one of that pixel's receptive field (padding taps 0.0)."""
    need(isa)
    for case, x, q, y in unit_scale_runs(isa, "per_pixel"):
        n, c, h, w, oc, k, s, p, d, g = case
        t, b, l, r = co.pads4(p)
        acc, a_scale, ok = R.conv2d_per_pixel_i32(x, q, (l, r, t, b), (s, s), (d, d), g)
        assert ok.all() and acc.abs().max() < 2**24
        a = a_scale.double().repeat_interleave(oc // g, dim=3)
        got = (y.permute(0, 2, 3, 1).double() / a).round().to(torch.int64)
        assert_exact(got, acc, f"{isa} per_pixel {case}")


def test_per_pixel_non_finite_is_local():
    """A NaN reaches only the outputs of the pixels whose receptive field holds it (per pixel)."""
    case = (2, 8, 6, 6, 16, 3, 1, 1, 1, 1)
    x, q, scales, bias = make(case)
    x[1, 2, 3, 3] = float("nan")
    y, _ = run(case, x, q, scales, bias, "dynamic", quant="per_pixel")
    bad = torch.zeros(2, 6, 6, dtype=torch.bool)
    bad[1, 2:5, 2:5] = True
    assert torch.isnan(y.permute(0, 2, 3, 1)[bad]).all()
    assert torch.isfinite(y.permute(0, 2, 3, 1)[~bad]).all()
    pw = (1, 8, 3, 3, 16, 1, 1, 0, 1, 1)
    x, q, scales, bias = make(pw)
    x[0, 5, 1, 2] = float("inf")
    y, _ = run(pw, x, q, scales, bias, "dynamic", quant="per_pixel")
    assert torch.isnan(y[0, :, 1, 2]).all() and torch.isfinite(y).sum() == 16 * 8


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("case", DW, ids=str)
def test_depthwise_matches_reference(isa, case):
    need(isa)
    x, q, scales, bias = make(case)
    with slimnn.isa.forced(isa):
        y, name = run(case, x, q, scales, bias)
    k = case[5]
    fast = {3: "3x3", 5: "5x5"}.get(k) if case[8] == 1 else None
    assert name == f"conv_dw_f32_{fast or 'general'}__{DW_ISA[isa]}", name
    ref = R.conv2d_reference(x, q, scales, bias, case[6], case[7], case[8], case[9])
    assert_close(y, ref, k=k * k, magnitude=magnitude(case, x, q, scales, bias, "weight_only"), what=f"{isa} {case}")


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("quant", ["per_image", "per_tensor"])
def test_integer_accumulation_exact(isa, quant):
    """Unit weight scales and no bias: y / a_scale is the int32 sum itself, which must be exact."""
    need(isa)
    for case, x, q, y in unit_scale_runs(isa, quant):
        n, c, h, w, oc, k, s, p, d, g = case
        blocks = [x] if quant == "per_tensor" else list(x.split(1))
        start = 0
        for blk in blocks:
            qa, sc, zp, _ = R.quantize_activation_u8(blk)
            acc = R.conv2d_i32_reference(qa, zp, q, s, p, d, g)
            assert acc.abs().max() < 2**24  # float32 holds the sums exactly
            got = (y[start:start + blk.shape[0]].double() / sc).round().to(torch.int64)
            assert_exact(got, acc, f"{isa} {quant} {case}")
            start += blk.shape[0]


@pytest.mark.parametrize("isa", ISAS)
def test_quantized_bytes_exact(isa):
    need(isa)
    gen = torch.Generator().manual_seed(5)
    for count in (1, 7, 16, 33, 1000):
        x = torch.randn(count, generator=gen) * 3 - 0.5
        x[0] = 0.5 * (x[0] // 0.5)  # a value on the .5 grid: ties to even somewhere
        q_ref, sc_ref, zp_ref, ok = R.quantize_activation_u8(x)
        with slimnn.isa.forced(isa):
            ok2, sc, zp = _C.conv_quant_params(x.data_ptr(), count)
            q = torch.empty(count, dtype=torch.uint8)
            name = _C.conv_quantize_u8(x.data_ptr(), count, float(torch.tensor(1.0) / torch.tensor(sc)), zp, q.data_ptr())
        assert name.endswith("__" + DW_ISA[isa])
        assert ok2 and ok and sc == sc_ref and zp == zp_ref
        assert_exact(q, q_ref, f"{isa} bytes, count {count}")
    bad = torch.tensor([1.0, float("inf"), 2.0])
    with slimnn.isa.forced(isa):
        assert not _C.conv_quant_params(bad.data_ptr(), 3)[0]


def test_im2col_rows_exact():
    gen = torch.Generator().manual_seed(6)
    for case in DENSE:
        n, c, h, w, oc, k, s, p, d, g = case
        if n == 0:
            continue
        qa = torch.randint(0, 256, (n, c, h, w), generator=gen, dtype=torch.uint8)
        zp = 77
        qn = qa.contiguous(memory_format=torch.channels_last)
        pt, pb, pl, pr = co.pads4(p)
        dims = [n, h, w, c, oc, k, k, s, s, pt, pb, pl, pr, d, d, g]
        oh, ow = co.out_size(h, w, (k, k), (s, s), p, (d, d))
        cg, kk = c // g, k * k * (c // g)
        kp = -(-kk // 4) * 4
        for img in range(n):
            for grp in range(g):
                centred = F.pad(qa[img:img + 1, grp * cg:(grp + 1) * cg].double() - zp, (pl, pr, pt, pb))
                cols = F.unfold(centred, k, d, 0, s)  # (1, cg*k*k, L), padding read as zp
                want = (cols.view(cg, k * k, -1).permute(2, 1, 0).reshape(-1, kk) + zp).to(torch.uint8)
                out = torch.full((oh * ow, kp), 0xA5, dtype=torch.uint8)  # sentinel
                _C.conv_im2col_u8(qn.data_ptr(), qn.numel(), dims, img, grp, zp, 0, oh * ow, kp, out.data_ptr(), out.numel())
                assert_exact(out[:, :kk], want, f"im2col {case} img {img} group {grp}")
                assert (out[:, kk:] == 0).all()


@pytest.mark.parametrize("act", ["relu", "relu6", "silu", "hardswish", "gelu", "gelu_tanh"])
def test_fused_activation(act):
    for case in (DENSE[1], DW[0], DW[2]):
        x, q, scales, bias = make(case)
        y, _ = run(case, x, q, scales, bias, "dynamic", act)
        pre = R.conv2d_reference(x, q, scales, bias, case[6], case[7], case[8], case[9], None, "dynamic")
        want = R.conv_activation(pre.double(), act).float()
        mag = magnitude(case, x, q, scales, bias, "dynamic") * 2 + pre.abs().double()
        assert_close(y, want, k=case[5] ** 2 * case[1] // case[9], magnitude=mag, what=f"{act} {case}")


@pytest.mark.parametrize("case", [DENSE[1], DENSE[5], DENSE[10], DW[0], DW[6]], ids=str)
@pytest.mark.parametrize("quant", ["per_image", "per_pixel"])
def test_threads_bit_identical(case, quant):
    x, q, scales, bias = make(case)
    outs = []
    for t in (1, 2, 3):
        slimnn.set_num_threads(t)
        outs.append(run(case, x, q, scales, bias, quant=quant)[0])
    for o in outs[1:]:
        assert_exact(o, outs[0], f"threads {case} {quant}")


def test_channels_first_input_same_result():
    case = DENSE[1]
    x, q, scales, bias = make(case)
    y1, _ = run(case, x.contiguous(), q, scales, bias)
    y2, _ = run(case, x.contiguous(memory_format=torch.channels_last), q, scales, bias)
    assert_exact(y1, y2)


def test_non_finite_image():
    case = (3, 8, 5, 5, 16, 3, 1, 1, 1, 1)
    x, q, scales, bias = make(case)
    x[1, 2, 3, 3] = float("nan")
    y, _ = run(case, x, q, scales, bias, "dynamic", quant="per_image")
    assert torch.isnan(y[1]).all() and torch.isfinite(y[0]).all() and torch.isfinite(y[2]).all()
    y, _ = run(case, x, q, scales, bias, "dynamic", quant="per_tensor")
    assert torch.isnan(y).all()


def test_bad_inputs_raise_value_error():
    case = DENSE[1]
    x, q, scales, bias = make(case)
    blob, gb = co.pack_conv_weight(q, scales, 1)
    with pytest.raises(ValueError, match="input must be"):
        co.conv2d_q8(x[0], blob, gb, 17, 3, 2, 1)
    with pytest.raises(ValueError, match="packed weights of group 0 are 17 x 27, the conv needs 17 x 18"):
        co.conv2d_q8(x[:, :2], blob, gb, 17, 3, 2, 1)
    with pytest.raises(ValueError, match="does not fit"):
        co.conv2d_q8(x[:, :, :1, :1], blob, gb, 17, 3, 1, 0)
    with pytest.raises(ValueError, match="packed weights"):
        co.conv2d_q8(x, blob[:-64], gb, 17, 3, 2, 1)
    with pytest.raises(ValueError, match="packed weights of group"):
        co.conv2d_q8(x, blob, gb, 18, 3, 2, 1)
    with pytest.raises(ValueError, match="activation"):
        co.conv2d_q8(x, blob, gb, 17, 3, 2, 1, activation="tanh")
    with pytest.raises(ValueError, match="groups"):
        co.pack_conv_weight(q, scales, 2)
    with pytest.raises(ValueError, match="stride"):
        co.conv2d_q8(x, blob, gb, 17, 3, 0, 1)


# --- modules ------------------------------------------------------------------------------------------------

from torch import nn  # noqa: E402

from slimnn.nn.conv import Conv1dInt8, Conv2dInt8, conv_padding, fold_batchnorm_, fuse_conv_activations_  # noqa: E402


def sqnr_db(y, ref):
    return 10 * math.log10(ref.double().pow(2).mean() / (y.double() - ref.double()).pow(2).mean())


@pytest.mark.parametrize("mode", co.MODES)
@pytest.mark.parametrize("spec", [
    dict(c=16, oc=24, k=1),
    dict(c=8, oc=12, k=3, stride=2, padding=1),
    dict(c=12, oc=12, k=3, padding=1, groups=12),
    dict(c=12, oc=18, k=3, padding=2, dilation=2, groups=3),
    dict(c=10, oc=10, k=5, padding=2, groups=10, bias=False),
    dict(c=6, oc=9, k=3, padding="same"),
], ids=str)
def test_conv2d_module_matches_reference_and_float(spec, mode):
    torch.manual_seed(0)
    spec = dict(spec)
    c, oc, k = spec.pop("c"), spec.pop("oc"), spec.pop("k")
    conv = nn.Conv2d(c, oc, k, **spec).eval()
    x = torch.randn(3, c, 11, 9)
    q = Conv2dInt8.from_conv(conv, mode=mode)
    y = q(x)
    assert y.shape == conv(x).shape
    torch.testing.assert_close(y, q.reference_forward(x), rtol=1e-5, atol=1e-5)
    assert sqnr_db(y, conv(x).detach()) > 30
    # each weight within one step of its channel (the sum-keeping rounding moves a few by up to one step)
    step = q.int8_weight()[1].view(-1, 1, 1, 1)
    assert bool(((q.dequantized_weight() - conv.weight.detach()).abs() < step).all())


@pytest.mark.parametrize("spec", [dict(c=16, oc=16, k=3, groups=16), dict(c=12, oc=12, k=5, groups=12),
                                  dict(c=3, oc=8, k=3), dict(c=6, oc=10, k=1)], ids=str)
def test_conv2d_weights_keep_each_filter_sum(spec):
    """A BN-folded filter with a large DC gain sees a locally constant input (ReLU6 saturated at 6): the int8
    output's error is then x * (sum of the weight errors), which from_conv's rounding keeps within half a
    step per input channel (per row for a 1x1), against plain float conv."""
    torch.manual_seed(3)
    c, oc, k, g = spec["c"], spec["oc"], spec["k"], spec.get("groups", 1)
    conv = nn.Conv2d(c, oc, k, groups=g).eval()
    with torch.no_grad():
        conv.weight.add_(0.3 * torch.randn(oc, 1, 1, 1).sign())  # a DC component dominates each filter
        conv.bias.copy_(-6.0 * conv.weight.sum(dim=(1, 2, 3)))  # ... cancelled by the bias on a constant 6
    q = Conv2dInt8.from_conv(conv, mode="weight_only")
    wq, s = q.int8_weight()
    err = (wq.double() * s.double().view(-1, 1, 1, 1) - conv.weight.detach().double()).sum(dim=(2, 3))  # (oc, c/g)
    assert bool((err.abs() <= 0.5 * s.double().view(-1, 1) * (1 + 1e-5)).all()) if k > 1 else \
        bool((err.sum(1).abs() <= 0.5 * s.double() * (1 + 1e-5)).all())
    x = torch.full((2, c, k + 4, k + 4), 6.0)
    y, ref = q(x).double(), conv(x).detach().double()
    bound = 6.0 * 0.5 * s.double() * (c // g if k > 1 else 1) + 1e-4
    assert bool(((y - ref).abs() <= bound.view(1, -1, 1, 1)).all())
    torch.testing.assert_close(q(x), q.reference_forward(x).float(), rtol=1e-5, atol=1e-5)


def test_conv1d_module():
    torch.manual_seed(1)
    for kw in (dict(kernel_size=3, padding=1), dict(kernel_size=4, stride=2), dict(kernel_size=3, groups=8, padding=1),
               dict(kernel_size=1)):
        conv = nn.Conv1d(8, 16 if kw.get("groups", 1) == 1 else 8, **kw).eval()
        x = torch.randn(2, 8, 30)
        q = Conv1dInt8.from_conv(conv)
        y = q(x)
        assert y.shape == conv(x).shape
        assert sqnr_db(y, conv(x).detach()) > 30
        torch.testing.assert_close(y, q.reference_forward(x), rtol=1e-5, atol=1e-5)
    with pytest.raises(TypeError, match="Conv1d"):
        Conv1dInt8.from_conv(nn.Conv2d(2, 2, 1))


def test_conv_module_state_dict_round_trip():
    torch.manual_seed(2)
    for conv in (nn.Conv2d(8, 16, 3, padding=1, groups=2), nn.Conv2d(8, 8, 3, groups=8)):
        q = Conv2dInt8.from_conv(conv)
        fresh = Conv2dInt8(8, conv.out_channels, 3, padding=conv.padding, groups=conv.groups)
        fresh.load_state_dict(q.state_dict())
        x = torch.randn(1, 8, 6, 6)
        assert_exact(fresh(x), q(x))
    q = Conv2dInt8.from_conv(nn.Conv2d(8, 16, 3))
    sd = q.state_dict()
    sd["packed"] = sd["packed"].clone()
    sd["packed"][100] ^= 0x7F  # a weight byte: the column sums no longer match
    with pytest.raises(RuntimeError, match="packed"):
        Conv2dInt8(8, 16, 3).load_state_dict(sd)


def test_unsupported_convs_are_refused():
    with pytest.raises(ValueError, match="padding_mode"):
        Conv2dInt8.from_conv(nn.Conv2d(2, 2, 3, padding=1, padding_mode="reflect"))

    class Odd(nn.Conv2d):
        def forward(self, x):  # noqa: ANN001, ANN201
            return super().forward(x) * 2

    assert conv_padding(Odd(2, 2, 3)) is None


class _StaticSame(nn.Conv2d):
    """The EfficientNet ports' TF-"same" conv: a ZeroPad2d child, then F.conv2d with padding 0."""

    def __init__(self, c, oc, k, stride=1, groups=1):  # noqa: ANN001
        super().__init__(c, oc, k, stride, 0, groups=groups, bias=False)
        pad = max(k - stride, 0)
        self.static_padding = nn.ZeroPad2d((pad // 2, pad - pad // 2, pad // 2, pad - pad // 2))

    def forward(self, x):  # noqa: ANN001, ANN201
        x = self.static_padding(x)
        return F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)


class _Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.expand = nn.Conv2d(8, 24, 1, bias=False)
        self.bn0 = nn.BatchNorm2d(24)
        self.dw = _StaticSame(24, 24, 3, stride=2, groups=24)
        self.bn1 = nn.BatchNorm2d(24)
        self.act = nn.ReLU6()  # called twice, like EfficientNet-Lite's _swish
        self.project = nn.Conv2d(24, 8, 1)
        self.bn2 = nn.BatchNorm2d(8)

    def forward(self, x, rate=None):  # noqa: ANN001, ANN201
        x = self.act(self.bn0(self.expand(x)))
        x = self.act(self.bn1(self.dw(x)))
        x = self.bn2(self.project(x))
        if rate:  # control flow on a defaulted argument: traced at its default
            x = x * (1 - rate)
        return x


def _randomize_bn(model):  # noqa: ANN001
    g = torch.Generator().manual_seed(4)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.3)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.2)


def test_fold_batchnorm_and_fuse_activations():
    torch.manual_seed(5)
    model = nn.Sequential(_Block(), _Block()).eval()
    _randomize_bn(model)
    x = torch.randn(2, 8, 17, 17)
    ref = model(x).detach()
    folded = fold_batchnorm_(model)
    assert len(folded) == 6 and all(isinstance(m, nn.Identity) for n, m in model.named_modules() if "bn" in n)
    torch.testing.assert_close(model(x), ref, rtol=1e-4, atol=1e-4)
    assert conv_padding(model[0].dw) == (0, 1, 0, 1)  # TF-"same" for k=3, stride 2
    for blk in model:
        for name in ("expand", "dw", "project"):
            setattr(blk, name, Conv2dInt8.from_conv(getattr(blk, name)))
    fused = fuse_conv_activations_(model)
    assert sorted(fused) == ["0.dw", "0.expand", "1.dw", "1.expand"], fused
    assert model[0].expand.activation == "relu6" and model[0].project.activation is None
    y = model(x)
    assert sqnr_db(y, ref) > 25


def test_training_batchnorm_is_not_folded():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)).train()
    assert fold_batchnorm_(model) == {}


def _e_relu(mu, sd, a=0.0):  # noqa: ANN001, ANN202
    """E[max(z - a, 0)], z ~ N(mu, sd^2), closed form."""
    t = (mu - a) / sd
    return (mu - a) * 0.5 * torch.erfc(-t / math.sqrt(2)) + sd * torch.exp(-0.5 * t * t) / math.sqrt(2 * math.pi)


def test_fold_batchnorm_records_the_consumer_input_mean():
    """fold_batchnorm_ gives the conv after conv -> bn -> act the expected value of its input channels,
    E[act(z)] for z ~ N(beta, gamma^2), checked against the closed form for ReLU6 (E[relu(z)] - E[relu(z - 6)])."""
    from slimnn.nn.conv import INPUT_MEAN

    model = nn.Sequential(_Block()).eval()
    _randomize_bn(model)
    with torch.no_grad():
        model[0].bn0.bias.copy_(torch.linspace(-3.0, 9.0, 24))  # well below 0, inside, and above 6
    bn0, bn1 = model[0].bn0, model[0].bn1
    want = {"dw": (bn0.bias.detach().double(), bn0.weight.detach().double().abs()),
            "project": (bn1.bias.detach().double(), bn1.weight.detach().double().abs())}
    fold_batchnorm_(model)
    assert INPUT_MEAN not in model[0].expand.__dict__  # its input is not a folded BN's output
    for name, (mu, sd) in want.items():
        got = getattr(model[0], name).__dict__[INPUT_MEAN]
        torch.testing.assert_close(got, _e_relu(mu, sd) - _e_relu(mu, sd, 6.0), rtol=0, atol=1e-5)  # the quadrature


@pytest.mark.parametrize("groups,k", [(1, 1), (2, 3), (6, 3)])
def test_conv2d_bias_correction_against_float_math(groups, k):
    """With an input mean recorded, from_conv moves the rounding error's expected output into the bias:
    b' = b - sum_{c, taps} (q * s - w)[o, c] * E[x_c]; then on inputs with exactly that mean at every tap (no padding) the
    int8 output's mean error per channel is 0 up to float rounding, where nearest rounding alone leaves it."""
    from slimnn.nn.conv import INPUT_MEAN

    torch.manual_seed(6)
    c, oc = 6, 6 if groups == 6 else 4
    conv = nn.Conv2d(c, oc, k, groups=groups).eval()
    # constant over each image, so every tap of every output pixel sees the same channel means
    x = (torch.rand(8, c, 1, 1) * torch.tensor([0.1, 6.0, 3.0, 0.5, 6.0, 1.0]).view(1, -1, 1, 1)).expand(8, c, 9, 9)
    plain = Conv2dInt8.from_conv(conv, mode="weight_only")
    conv.__dict__[INPUT_MEAN] = x.double().mean(dim=(0, 2, 3))
    q = Conv2dInt8.from_conv(conv, mode="weight_only")
    assert_exact(q.int8_weight()[0], plain.int8_weight()[0])  # only the bias moves
    err = q.dequantized_weight().double() - conv.weight.detach().double()
    cg, og = c // groups, oc // groups
    want = conv.bias.detach().double().clone()
    for o in range(oc):
        g = o // og
        for ci in range(cg):
            want[o] -= err[o, ci].sum() * conv.__dict__[INPUT_MEAN][g * cg + ci]
    torch.testing.assert_close(q.bias.double(), want, rtol=0, atol=1e-6)
    ref = conv(x).detach().double()
    drift = (q(x).double() - ref).mean(dim=(0, 2, 3)).abs()
    drift0 = (plain(x).double() - ref).mean(dim=(0, 2, 3)).abs()
    assert float(drift.max()) < 2e-5 < float(drift0.max())


@pytest.mark.parametrize("isa", ISAS)
def test_fused_relu6_keeps_nan(isa):
    """ReLU6 is fused into the depthwise kernels' stores and vectorized on the dense path: a NaN input stays
    NaN (as in torch's F.relu6) on every ISA, values clamp to [0, 6] elsewhere."""
    need(isa)
    for case in (DW[0], DW[2], DW[3], (1, 24, 3, 3, 40, 1, 1, 0, 1, 1)):
        x, q, scales, bias = make(case)
        x = x * 10
        x[0, 1, 1, 1] = float("nan")
        with slimnn.isa.forced(isa):
            y, _ = run(case, x, q, scales, bias, "weight_only", "relu6")
        pre = R.conv2d_reference(x, q, scales, bias, *case[6:8], case[8], case[9], None, "weight_only")
        assert torch.equal(torch.isnan(y), torch.isnan(pre)) and torch.isnan(y).any(), f"{isa} {case}"
        ok = ~torch.isnan(y)
        assert float(y[ok].min()) >= 0.0 and float(y[ok].max()) <= 6.0
        assert (y[ok] == 6.0).any() and (y[ok] == 0.0).any()


def test_python_out_size_matches_kernel():
    """The ops compute the output size in Python (no call per conv): the kernels' formula, every case."""
    for n in range(0, 9):
        for k in range(1, 6):
            for s in range(1, 4):
                for pads in range(0, 5):
                    for d in range(1, 4):
                        assert co._out_len(n, k, s, pads, d) == _C.conv_out_size(n, k, s, pads, d), (n, k, s, pads, d)
