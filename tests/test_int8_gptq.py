"""Int8Config(method="gptq"): GPTQ int8 rounding of convs and Linears with calibration data.

The patch rows that feed each conv's Hessian are checked against F.conv2d / F.conv1d (so the Hessian is that
of the conv's real inputs, in the weight's layout); gptq_quantize_int8 against round to nearest (H = I gives
it exactly) and against its own objective; compress_ end to end, save/load, and the errors.
"""

from __future__ import annotations

import copy
import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import slimnn
from slimnn.math.gptq import gptq_quantize_int8
from slimnn.math.quantize import quantize_int8_symmetric
from slimnn.nn.conv import Conv1dInt8, Conv2dInt8, conv_patch_fn
from slimnn.nn.int8 import Int8Linear

from test_conv import _Block, _randomize_bn, _StaticSame


@pytest.mark.parametrize("conv", [
    nn.Conv2d(6, 5, 1), nn.Conv2d(6, 4, 1, groups=2), nn.Conv2d(3, 7, 3, stride=2, padding=1),
    nn.Conv2d(4, 6, 3, padding=2, dilation=2), nn.Conv2d(5, 5, 5, padding=2, groups=5),
    nn.Conv2d(6, 4, 3, stride=(2, 1), padding=(0, 1), groups=2), _StaticSame(6, 6, 3, stride=2, groups=6),
    nn.Conv1d(4, 6, 3, stride=2, padding=1), nn.Conv2d(3, 2, 3, padding="same"),
], ids=lambda c: repr(c))
def test_conv_patches_are_the_rows_the_conv_multiplies(conv):
    torch.manual_seed(0)
    x = torch.randn(2, conv.in_channels, *((9,) if isinstance(conv, nn.Conv1d) else (9, 7)))
    with torch.no_grad():
        y = conv(x) - (0 if conv.bias is None else conv.bias.view(-1, *[1] * (x.dim() - 2)))
    p = conv_patch_fn(conv)(x)  # (G, rows, T)
    g = conv.groups
    w = conv.weight.detach().reshape(g, conv.out_channels // g, -1)
    got = torch.bmm(p, w.transpose(1, 2))  # (G, rows, oc/G)
    want = y.reshape(y.shape[0], g, conv.out_channels // g, -1).permute(1, 0, 3, 2).reshape(g, -1, conv.out_channels // g)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_gptq_int8_identity_hessian_is_round_to_nearest():
    torch.manual_seed(1)
    w = torch.randn(9, 37) * torch.logspace(-3, 1, 9).unsqueeze(1)
    w[3] = 0.0  # an all-zero row gets scale 1
    q, s = gptq_quantize_int8(w, torch.eye(37), damp=1e-6)
    q0, s0 = quantize_int8_symmetric(w, None)
    assert torch.equal(q, q0)
    torch.testing.assert_close(s, s0.reshape(-1))


def test_gptq_int8_lowers_its_objective_and_batches_like_single_problems():
    torch.manual_seed(2)
    g, n, t = 3, 8, 21
    x = torch.randn(g, 400, t) @ torch.randn(g, t, t)  # correlated inputs: GPTQ has something to exploit
    x[1, :, 4] = 0.0  # an input that never fires
    h = 2 * torch.bmm(x.transpose(1, 2), x) / 400
    w = torch.randn(g, n, t)
    q, s = gptq_quantize_int8(w, h, block_size=8)  # several lazy batches
    assert q.dtype == torch.int8 and int(q.min()) >= -127 and int(q.max()) <= 127
    assert torch.all(q[1, :, 4] == 0)
    for i in range(g):
        qi, si = gptq_quantize_int8(w[i], h[i])
        assert torch.equal(qi, q[i]) and torch.equal(si, s[i])

        def err(qq, ss):  # noqa: ANN001, ANN202
            d = qq.double() * ss.double().unsqueeze(1) - w[i].double()
            d[:, 4] = 0.0 if i == 1 else d[:, 4]  # the dead input contributes nothing either way
            return float(torch.einsum("nt,tu,nu->", d, h[i].double(), d))
        q0, s0 = quantize_int8_symmetric(w[i], None)
        assert err(q[i], s[i]) < 0.8 * err(q0, s0.reshape(-1))


def test_gptq_int8_bad_input():
    with pytest.raises(ValueError, match="hessian must be"):
        gptq_quantize_int8(torch.randn(4, 5), torch.eye(4))
    with pytest.raises(ValueError, match="NaN"):
        gptq_quantize_int8(torch.full((2, 3), float("nan")), torch.eye(3))
    with pytest.raises(ValueError, match="NaN"):
        gptq_quantize_int8(torch.randn(2, 3), torch.full((3, 3), float("inf")))


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(8)
        self.act = nn.ReLU6()
        self.blocks = nn.Sequential(_Block(), _Block())
        self.head = nn.Linear(8, 5)

    def forward(self, x):  # noqa: ANN001, ANN201
        x = self.blocks(self.act(self.bn(self.stem(x))))
        return self.head(x.mean((2, 3)))


def _smooth(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return F.interpolate(torch.randn(n, 3, 6, 6, generator=g), size=(24, 24), mode="bilinear", align_corners=False)


@pytest.mark.parametrize("mode", ["dynamic", "weight_only"])
def test_compress_gptq_converts_every_layer_and_round_trips(mode, tmp_path):
    torch.manual_seed(3)
    model = _Net().eval()
    _randomize_bn(model)
    calib = [_smooth(4, s) for s in range(4)]
    x = _smooth(6, 99)
    with torch.no_grad():
        ref = model(x)
    q = copy.deepcopy(model)
    rep = slimnn.compress_(q, slimnn.Int8Config(mode=mode, method="gptq", calib_data=calib))
    convs = [m for m in q.modules() if isinstance(m, Conv2dInt8)]
    assert len(convs) == 7 and isinstance(q.head, Int8Linear)
    assert len(rep.converted) == 8 and all(v.endswith("GPTQ") for v in rep.converted.values())
    assert len(rep.prepared) == 7  # every BatchNorm folded first
    assert q.stem.activation == "relu6" and rep.fused  # activations still fused into the kernels
    assert sorted(rep.fused) == sorted(slimnn.compress_(copy.deepcopy(model), slimnn.Int8Config(mode=mode)).fused)
    with torch.no_grad():
        y = q(x)
    assert F.cosine_similarity(y.flatten(), ref.flatten(), dim=0) > 0.999
    path = tmp_path / "gptq.slimnn"
    slimnn.save(q, path)
    with torch.device("meta"):
        skeleton = _Net()
    back = slimnn.load(path, model=skeleton)
    with torch.no_grad():
        assert torch.equal(back(x), y)
    assert json.loads(back.head.config.to_json())["method"] == "gptq"


def test_gptq_conv1d_and_shared_layer():
    torch.manual_seed(4)
    conv = nn.Conv1d(4, 6, 3, padding=1)
    model = nn.Sequential(conv, nn.ReLU(), nn.Conv1d(6, 6, 1), nn.ReLU())
    model.add_module("again", model[2])  # the same conv under a second name: converted once
    model = nn.Sequential(*[model[i] for i in range(3)]).eval()
    calib = [torch.randn(3, 4, 20) for _ in range(2)]
    q = copy.deepcopy(model)
    rep = slimnn.compress_(q, slimnn.Int8Config(method="gptq", calib_data=calib))
    assert isinstance(q[0], Conv1dInt8) and isinstance(q[2], Conv1dInt8) and len(rep.converted) == 2
    x = torch.randn(2, 4, 20)
    with torch.no_grad():
        assert F.cosine_similarity(q(x).flatten(), model(x).flatten(), dim=0) > 0.999


def test_gptq_config_errors_and_json():
    with pytest.raises(ValueError, match="method must be one of"):
        slimnn.Int8Config(method="adaround")
    with pytest.raises(ValueError, match="group_size must be None"):
        slimnn.Int8Config(method="gptq", group_size=32)
    with pytest.raises(ValueError, match="calib_data must be None or an iterable"):
        slimnn.Int8Config(method="gptq", calib_data="text")
    with pytest.raises(ValueError, match="gptq_damp"):
        slimnn.Int8Config(method="gptq", gptq_damp=0.0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(4, 2)).eval()
    with pytest.raises(ValueError, match="needs calibration data"):
        slimnn.compress_(copy.deepcopy(model), slimnn.Int8Config(method="gptq"))
    with pytest.raises(ValueError, match="calib_data is empty"):
        slimnn.compress_(copy.deepcopy(model), slimnn.Int8Config(method="gptq", calib_data=[]))
    with pytest.raises(ValueError, match="never called"):
        slimnn.compress_(_Skips().eval(), slimnn.Int8Config(method="gptq", calib_data=[torch.randn(2, 3)]))
    # round to nearest writes the same config JSON as before `method` existed (older slimnn reads the files)
    assert json.loads(slimnn.Int8Config().to_json()) == {
        "group_size": None, "kernel": "auto", "mode": "dynamic", "type": "Int8Config", "version": 1}


class _Skips(nn.Module):  # holds a Linear its forward never calls
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(3, 3), nn.Linear(3, 3)

    def forward(self, x):  # noqa: ANN001, ANN201
        return self.a(x)


def test_gptq_keeps_a_tied_head_round_to_nearest():
    class Tied(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.emb = nn.Embedding(11, 8)
            self.mid = nn.Linear(8, 8)
            self.head = nn.Linear(8, 11, bias=False)
            self.head.weight = self.emb.weight

        def forward(self, ids):  # noqa: ANN001, ANN201
            return self.head(torch.relu(self.mid(self.emb(ids))))

    torch.manual_seed(5)
    model = Tied().eval()
    rtn = slimnn.nn.int8.Int8Linear.from_linear(model.head)
    rep = slimnn.compress_(model, slimnn.Int8Config(method="gptq", calib_data=[torch.randint(0, 11, (2, 6))]))
    assert "round to nearest" in rep.converted["head"] and rep.converted["mid"].endswith("GPTQ")
    assert torch.equal(model.head.packed, rtn.packed)
