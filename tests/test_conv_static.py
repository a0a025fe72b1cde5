"""quant="static" (calibrated activation grids, uint8 tensors between convs): kernels against references.

Every ISA path, forced one at a time, over the adversarial shapes of test_conv (1x1 images, channel tails,
strides, dilation, asymmetric padding, groups, empty batches): fp32 outputs against the float64 reference
(math.reference.conv2d_static_reference), the dense integer part exact, uint8 outputs byte-exact against the
requant reference applied to the same kernel's fp32 output, the elementwise helpers (requant, hard-swish)
bit-exact against their scalar formulas. Then the modules: calibration, which convs get linked (never across
a residual add or a squeeze-excitation multiply), linking changing no output bit, save/load, torch.compile
and torch.export, and the errors.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import slimnn
from slimnn import _C
from slimnn.math import reference as R
from slimnn.nn.conv import Conv2dInt8, _static_links
from slimnn.ops import conv as co

from test_conv import DENSE, DW, DW_ISA, GEMM_ISA, ISAS, make, need
from tolerances import assert_close, assert_exact

ACT_CODES = {None: 0, "relu": 1, "relu6": 5, "hardswish": 6}


def grid(x: torch.Tensor) -> tuple[float, int]:
    """A calibrated grid for x that clips a little at both ends (codes 0 and 255 occur)."""
    return R.static_range_params(float(x.min()) * 0.8, float(x.max()) * 0.8)


def static_run(case, x, q, scales, bias, act, in_q, out_q):
    n, c, h, w, oc, k, s, p, d, g = case
    if co.is_depthwise(c, oc, g):
        wf, bp = co.prepare_dw(q.reshape(c, k * k).contiguous(), scales, bias)
        return co.conv2d_dw_prepared(x, wf, bp, c, k, s, p, d, act, in_q, out_q)
    blob, gb = co.pack_conv_weight(q, scales, g)
    return co.conv2d_q8_static(x, blob, gb, oc, k, s, p, d, g, bias, act, in_q, out_q)


def static_magnitude(case, xr, q, scales, bias):
    """Sum of |terms| in output units over the dequantized input xr."""
    n, c, h, w, oc, k, s, p, d, g = case
    t, b, l, r = co.pads4(p)
    wf = (q.float() * scales.view(-1, 1, 1, 1)).abs().double()
    m = F.conv2d(F.pad(xr.abs().double(), (l, r, t, b)), wf, stride=s, dilation=d, groups=g)
    return m + bias.abs().double().view(1, -1, 1, 1)


@pytest.mark.parametrize("isa", ISAS)
def test_requant_bytes_exact(isa):
    need(isa)
    gen = torch.Generator().manual_seed(1)
    special = torch.tensor([0.0, -0.0, 0.5, 1.5, 2.5, -0.5, 1e30, -1e30, float("inf"), -float("inf"), float("nan"),
                            3.4e38, 127.5, 128.5, -128.5, 254.5, 255.5])
    for n in (0, 1, 7, 8, 15, 16, 17, 33, 70, 1000):
        x = torch.randn(n, generator=gen) * 100
        x[: min(n, special.numel())] = special[: min(n, special.numel())]
        for inv, zp, lo, hi in ((1.0, 0, 0, 255), (0.37, 128, 0, 255), (2.0, 17, 17, 40), (1.0, 255, 255, 255),
                                (1e-3, 3, 0, 3)):
            qk = torch.full((n,), 77, dtype=torch.uint8)
            ok = _C.conv_requant_u8(x.data_ptr(), n, inv, zp, lo, hi, qk.data_ptr(), DW_ISA[isa])
            ref = _requant_inv(x, inv, zp, lo, hi)
            assert_exact(qk, ref, f"{isa} n={n} inv={inv} zp={zp} [{lo}, {hi}]")
            assert ok == bool(torch.isfinite(x).all())


def _requant_inv(x, inv, zp, lo, hi):
    """requantize_u8's formula with the reciprocal given (the kernels' argument)."""
    v = x.float() * torch.tensor(inv, dtype=torch.float32)
    v = torch.where(v > lo - zp, v, torch.tensor(float(lo - zp)))
    v = torch.where(v < hi - zp, v, torch.tensor(float(hi - zp)))
    return (torch.round(v) + zp).to(torch.uint8)


def test_requant_reference_matches_inverse_form():
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(500, generator=gen) * 3
    for scale, zp in ((0.02, 0), (0.05, 100), (1.0, 255)):
        inv = float(torch.tensor(1.0) / torch.tensor(scale, dtype=torch.float32))
        assert_exact(R.requantize_u8(x, scale, zp), _requant_inv(x, inv, zp, 0, 255), f"{scale} {zp}")


@pytest.mark.parametrize("isa", ISAS)
def test_hardswish_bit_exact(isa):
    need(isa)
    gen = torch.Generator().manual_seed(3)
    for n in (0, 1, 7, 8, 16, 17, 100):
        x = torch.randn(n, generator=gen) * 5
        x[: min(n, 6)] = torch.tensor([float("nan"), -3.0, 3.0, -0.0, float("inf"), -float("inf")])[: min(n, 6)]
        y = x.clone()
        _C.conv_hardswish(y.data_ptr(), n, DW_ISA[isa])
        t = (x + 3.0)
        t = torch.where(t < 0.0, torch.zeros(()), t)
        t = torch.where(6.0 < t, torch.full((), 6.0), t)
        ref = x * t / 6.0  # torch's operation order: x * relu6(x + 3), then / 6
        assert torch.equal(torch.isnan(y), torch.isnan(ref))
        assert torch.equal(y.nan_to_num(), ref.nan_to_num()), f"{isa} n={n}"
    z = torch.linspace(-5, 5, 1001)
    y = z.clone()
    _C.conv_hardswish(y.data_ptr(), z.numel(), DW_ISA[isa])
    assert torch.allclose(y, F.hardswish(z), atol=1e-6)


@pytest.mark.parametrize("act", [None, "relu", "relu6", "hardswish"])
def test_act_qrange(act):
    for scale, zp in ((6 / 255, 0), (0.01, 10), (0.1, 200), (1.0, 0), (0.0235294, 0)):
        assert _C.conv_act_qrange(ACT_CODES[act], scale, zp) == R.conv_act_qrange(act, scale, zp)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("case", DENSE + DW, ids=str)
def test_static_conv_matches_reference(isa, case):
    """fp32 and uint8 inputs, fp32 and uint8 outputs, with a fused activation, on every path."""
    need(isa)
    x, q, scales, bias = make(case)
    n, c, h, w, oc, k, s, p, d, g = case
    dw = co.is_depthwise(c, oc, g)
    in_q = grid(x) if x.numel() else (0.05, 10)
    codes = R.requantize_u8(x, *in_q)
    # each activation on both input kinds would repeat the same code paths: these four cover fp32 / uint8
    # input x fp32 / uint8 output x none / clamp-folded / applied-before-requant epilogues
    for xin, act in ((x, None), (x, "hardswish"), (codes, "relu6"), (codes, None)):
        with slimnn.isa.forced(isa):
            y, name = static_run(case, xin, q, scales, bias, act, in_q, None)
        assert y.dtype == torch.float32 and y.is_contiguous(memory_format=torch.channels_last)
        expect = f"__{DW_ISA[isa]}" if dw else f"__{GEMM_ISA[isa]}"
        assert name.endswith(expect), name
        ref = R.conv2d_static_reference(xin, q, scales, bias, s, p, d, g, act, in_q)
        xr = (codes.double() - in_q[1]) * in_q[0] if not dw else x.double()
        kk = k * k * (c // g)
        if dw and xin.dtype == torch.uint8:  # dequantized in fp32 as q * s - zp * s: rounding relative to both
            xr = (codes.double() + in_q[1]) * in_q[0]
            kk *= 2
        assert_close(y, ref, k=kk, magnitude=static_magnitude(case, xr, q, scales, bias),
                     what=f"{isa} {case} {xin.dtype} {act}")
        # uint8 out: byte-exact against requant of the same kernel's fp32 output
        out_q = grid(y) if y.numel() and float(y.abs().max()) > 0 else (0.03, 7)
        with slimnn.isa.forced(isa):
            yq, _ = static_run(case, xin, q, scales, bias, act, in_q, out_q)
        assert yq.dtype == torch.uint8 and yq.shape == y.shape
        lo, hi = R.conv_act_qrange(act, *out_q)
        assert_exact(yq, R.requantize_u8(y, *out_q, lo, hi), f"{isa} {case} u8 out {act}")


@pytest.mark.parametrize("isa", ISAS)
def test_static_dense_integer_part_exact(isa):
    """Unit weight scales, no bias, in_scale 1: y is the int32 sum of (code - zp) * w itself."""
    need(isa)
    for case in DENSE:
        n, c, h, w, oc, k, s, p, d, g = case
        gen = torch.Generator().manual_seed(4)
        codes = torch.randint(0, 256, (n, c, h, w), generator=gen, dtype=torch.uint8)
        q = torch.randint(-127, 128, (oc, c // g, k, k), generator=gen, dtype=torch.int8)
        with slimnn.isa.forced(isa):
            y, _ = static_run(case, codes, q, torch.ones(oc), torch.zeros(oc), None, (1.0, 37), None)
        acc = R.conv2d_i32_reference(codes, 37, q, s, p, d, g)
        assert acc.abs().max() < 2**24 if acc.numel() else True
        assert_exact(y.double().round().to(torch.int64), acc, f"{isa} {case}")


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("case", DW, ids=str)
def test_prepared_depthwise_bit_identical_to_per_call_entry(isa, case):
    """The modules' depthwise path (weights prepared once) gives the per-call entry's bits."""
    need(isa)
    x, q, scales, bias = make(case)
    c, k = case[1], case[5]
    q2 = q.reshape(c, k * k).contiguous()
    with slimnn.isa.forced(isa):
        y0, _ = co.conv2d_dw(x, q2, scales, k, case[6], case[7], case[8], bias, "relu6")
        wf, bp = co.prepare_dw(q2, scales, bias)
        y1, _ = co.conv2d_dw_prepared(x, wf, bp, c, k, case[6], case[7], case[8], "relu6")
    assert torch.equal(y0.nan_to_num(), y1.nan_to_num())


def test_threads_bit_identical():
    case = (3, 32, 9, 9, 48, 3, 1, 1, 1, 1)
    x, q, scales, bias = make(case)
    in_q = grid(x)
    outs = []
    for t in (1, 2, 3):
        slimnn.set_num_threads(t)
        try:
            outs.append(static_run(case, x, q, scales, bias, "relu6", in_q, (0.02, 3))[0])
        finally:
            slimnn.set_num_threads(None)
    assert torch.equal(outs[0], outs[1]) and torch.equal(outs[0], outs[2])


def test_static_errors():
    case = (1, 8, 5, 5, 16, 3, 1, 1, 1, 1)
    x, q, scales, bias = make(case)
    blob, gb = co.pack_conv_weight(q, scales, 1)
    for bad in ((0.0, 0), (-1.0, 3), (float("nan"), 0), (1.0, 256), (1.0, -1), (1.0, 2.5), (1.0,), None):
        with pytest.raises(ValueError):
            co.conv2d_q8_static(x, blob, gb, 16, 3, 1, 1, 1, 1, bias, None, bad)
    xn = x.clone()
    xn[0, 0, 0, 0] = float("nan")
    y, _ = co.conv2d_q8_static(xn, blob, gb, 16, 3, 1, 1, 1, 1, bias, None, (0.05, 10))
    assert torch.isnan(y).all()  # the image's outputs: NaN, as the dynamic path
    with pytest.raises(ValueError, match="NaN"):
        co.conv2d_q8_static(xn, blob, gb, 16, 3, 1, 1, 1, 1, bias, None, (0.05, 10), (0.1, 0))
    with pytest.raises(ValueError, match="static"):
        Conv2dInt8(8, 16, 3, mode="weight_only", quant="static")
    m = Conv2dInt8(8, 16, 3, padding=1, quant="static")
    with pytest.raises(ValueError, match="not calibrated"):
        m(x)
    with pytest.raises(ValueError, match="uint8 input needs quant='static'"):
        Conv2dInt8(8, 16, 3, padding=1)(torch.zeros(1, 8, 5, 5, dtype=torch.uint8))


# --- modules ----------------------------------------------------------------------------------------------


class Block(nn.Module):
    """MBConv-like: expand 1x1 -> BN -> ReLU6 -> depthwise 3x3 -> BN -> ReLU6 -> project 1x1 -> BN, a residual
    add; an optional squeeze-excitation multiply between the depthwise conv and the projection."""

    def __init__(self, c: int, e: int, se: bool = False) -> None:
        super().__init__()
        self.expand, self.bn0 = nn.Conv2d(c, e, 1, bias=False), nn.BatchNorm2d(e)
        self.dw, self.bn1 = nn.Conv2d(e, e, 3, padding=1, groups=e, bias=False), nn.BatchNorm2d(e)
        self.project, self.bn2 = nn.Conv2d(e, c, 1, bias=False), nn.BatchNorm2d(c)
        self.act = nn.ReLU6()
        self.se = nn.Conv2d(e, e, 1) if se else None

    def forward(self, x):  # noqa: ANN001, ANN201
        y = self.act(self.bn1(self.dw(self.act(self.bn0(self.expand(x))))))
        if self.se is not None:
            y = y * torch.sigmoid(self.se(F.adaptive_avg_pool2d(y, 1)))
        return x + self.bn2(self.project(y))


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem, self.bn, self.act = nn.Conv2d(3, 16, 3, 2, 1, bias=False), nn.BatchNorm2d(16), nn.Hardswish()
        self.b1, self.b2 = Block(16, 48), Block(16, 40, se=True)
        self.head = nn.Linear(16, 10)

    def forward(self, x):  # noqa: ANN001, ANN201
        x = self.b2(self.b1(self.act(self.bn(self.stem(x)))))
        return self.head(x.mean(dim=(2, 3)))


def make_net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    net = Net()
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            with torch.no_grad():
                m.running_mean.uniform_(-0.3, 0.3)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.5)
    return net.eval()


def static_net():
    net = make_net()
    q = copy.deepcopy(net)
    slimnn.compress_(q, slimnn.Int8Config())
    gen = torch.Generator().manual_seed(9)
    calib = [torch.randn(4, 3, 20, 20, generator=gen) for _ in range(3)]
    report = slimnn.static_quantize_convs_(q, calib)
    return net, q, report


def test_calibration_links_only_provable_chains():
    net, q, report = static_net()
    convs = [n for n, m in q.named_modules() if isinstance(m, Conv2dInt8)]
    assert all(q.get_submodule(n).quant == "static" and q.get_submodule(n).in_q for n in convs)
    links = set(_static_links(q))
    # expand -> dw in both blocks; dw -> project only where no SE multiply sits between; never project -> (add)
    assert links == {("b1.expand", "b1.dw"), ("b1.dw", "b1.project"), ("b2.expand", "b2.dw")}
    for prod, cons in links:
        assert q.get_submodule(prod).out_q == q.get_submodule(cons).in_q
        assert "uint8 output" in report[prod]
    for n in ("stem", "b1.project", "b2.dw", "b2.project", "b2.se"):
        assert q.get_submodule(n).out_q is None


def test_uint8_links_are_the_consumers_own_codes():
    """Each link's uint8 tensor is exactly requant(producer's fp32 output) on the consumer's grid (the ReLU6
    folded into the clamp changes nothing), so a dense consumer gives the same bits whether it is handed the
    codes or the fp32 tensor (which it quantizes on the same grid itself)."""
    net, q, _ = static_net()
    x = torch.randn(3, 3, 21, 19, generator=torch.Generator().manual_seed(11))
    links = _static_links(q)  # before the hooks: a hook makes a link unprovable
    seen = {}
    hooks = [m.register_forward_pre_hook(lambda mod, a, n=n: seen.__setitem__(n, a[0]))
             for n, m in q.named_modules() if isinstance(m, Conv2dInt8)]
    with torch.no_grad():
        q(x)
    for h in hooks:
        h.remove()
    assert len(links) == 3
    with torch.no_grad():
        for prod, cons in links:
            p, c = q.get_submodule(prod), q.get_submodule(cons)
            y8 = p(seen[prod])
            keep, p.out_q = p.out_q, None
            yf = p(seen[prod])
            p.out_q = keep
            assert y8.dtype == torch.uint8 and yf.dtype == torch.float32
            assert_exact(y8, R.requantize_u8(yf, *c.in_q), f"{prod} -> {cons}")
            if not c.depthwise:  # a depthwise conv runs fp32 inputs unquantized: only codes are comparable
                assert torch.equal(c(y8), c(yf))
        yq, yf = q(x), net(x)
    assert F.cosine_similarity(yq, yf).min() > 0.99


def test_static_module_reference_forward():
    _, q, _ = static_net()
    m = q.b1.expand
    x = torch.randn(2, 16, 7, 9, generator=torch.Generator().manual_seed(12))
    y = m(x)
    assert y.dtype == torch.uint8
    ref = m.reference_forward(x)
    assert (y.int() - ref.int()).abs().max() <= 1  # float64 vs fp32 epilogue: at most one step at a tie
    m2 = q.b1.dw
    y2 = m2(y)
    assert y2.dtype == torch.uint8
    assert (y2.int() - m2.reference_forward(y).int()).abs().max() <= 1


def test_static_save_load_round_trip(tmp_path):
    _, q, _ = static_net()
    path = tmp_path / "static.safetensors"
    slimnn.save(q, str(path))
    back = slimnn.load(str(path), make_net())
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(13))
    with torch.no_grad():
        assert torch.equal(q(x), back(x))
    assert back.b1.expand.out_q == q.b1.expand.out_q and back.b2.project.in_q == q.b2.project.in_q


def test_static_compile_and_export():
    _, q, _ = static_net()
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(14))
    with torch.no_grad():
        want = q(x)
        got = torch.compile(q, fullgraph=True, dynamic=True)(x)
        # the convs are the same opaque calls; Inductor may fuse the float adds / mean / Linear differently
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
        ep = torch.export.export(q, (x,))
        assert torch.equal(ep.module()(x), want)


def test_static_uncalibrated_layers_stay_dynamic():
    net = make_net()
    net.unused = nn.Conv2d(3, 8, 1)  # never called by forward
    q = copy.deepcopy(net)
    slimnn.compress_(q, slimnn.Int8Config())
    with pytest.raises(ValueError, match="empty"):
        slimnn.static_quantize_convs_(copy.deepcopy(q), [])
    report = slimnn.static_quantize_convs_(q, [torch.randn(1, 3, 8, 8)])
    assert "stays dynamic" in report["unused"] and q.unused.quant == "per_image"
    assert q.stem.quant == "static"
    with pytest.raises(ValueError, match="partly static"):
        slimnn.static_quantize_convs_(q, [torch.randn(1, 3, 8, 8)])


def test_planned_calls_follow_module_changes():
    """After a checked call, same-shape calls skip the Python checks; changing a grid, the activation or the
    input's shape or layout goes through the checked path again."""
    _, q, _ = static_net()
    m = q.b1.expand
    x = torch.randn(1, 16, 6, 6, generator=torch.Generator().manual_seed(15)).contiguous(memory_format=torch.channels_last)
    y1, y2 = m(x), m(x)
    assert torch.equal(y1, y2) and y1.dtype == torch.uint8
    keep, m.out_q = m.out_q, None
    assert m(x).dtype == torch.float32
    m.out_q = keep
    m.activation = None
    assert torch.equal(m(x), m.reference_forward(x)) or (m(x).int() - m.reference_forward(x).int()).abs().max() <= 1
    m.activation = "relu6"
    assert torch.equal(m(x), y1)
    assert torch.equal(m(x.contiguous()), y1)  # channels-first: converted, same codes
    assert m(torch.randn(2, 16, 3, 5)).shape == (2, 48, 3, 5)
    with pytest.raises(ValueError):
        m(torch.randn(1, 15, 6, 6))


def test_conv1d_chain_static():
    torch.manual_seed(3)
    net = nn.Sequential(nn.Conv1d(8, 24, 3, padding=1), nn.ReLU6(), nn.Conv1d(24, 24, 5, padding=2, groups=24),
                        nn.ReLU(), nn.Conv1d(24, 6, 1)).eval()
    q = copy.deepcopy(net)
    slimnn.compress_(q, slimnn.Int8Config())
    gen = torch.Generator().manual_seed(4)
    slimnn.static_quantize_convs_(q, [torch.randn(2, 8, 40, generator=gen) for _ in range(2)])
    assert q[0].out_q == q[2].in_q and q[2].out_q == q[4].in_q and q[4].out_q is None
    x = torch.randn(3, 8, 37, generator=gen)
    with torch.no_grad():
        y, ref = q(x), net(x)
    assert y.dtype == torch.float32 and y.shape == ref.shape
    assert F.cosine_similarity(y.flatten(1), ref.flatten(1)).min() > 0.99
    assert q[0](x).dtype == torch.uint8
