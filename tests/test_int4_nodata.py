"""int4 without data: the importance-weighted scale search (Int4Config.importance) and the int8 size budget
(Int4Config.int8_fraction), against closed forms and brute force."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import slimnn
from slimnn.math.quantize import group_view, int4_importance, quantize_int4
from slimnn.nn import Int4Linear, Int8Linear
from slimnn.techniques.int4 import int4_sensitivity, int8_budget_layers
from test_int4_float_zero import _plain_w, _w


def test_importance_closed_forms_and_validation():
    wg = torch.tensor([[[3.0, -4.0, 0.0, 1.0]]])
    ms = (9 + 16 + 0 + 1) / 4
    torch.testing.assert_close(int4_importance(wg, "rms_abs"), ms ** 0.5 + wg.abs())
    torch.testing.assert_close(int4_importance(wg, "square"), wg.square() + 1e-6 * ms)
    assert bool((int4_importance(wg, "none") == 1).all())
    with pytest.raises(ValueError, match="importance"):
        int4_importance(wg, "hessian")
    with pytest.raises(ValueError, match="importance"):
        slimnn.Int4Config(importance="abs")


@pytest.mark.parametrize("float_zeros", [True, False])
@pytest.mark.parametrize("kind", ["rms_abs", "square"])
def test_weighted_search_never_worse_in_its_own_metric(float_zeros, kind):
    """Per group, the weighted search's weighted error is at most the min/max rule's (a candidate of the search),
    and at most the unweighted search's: both computed here with plain torch from the returned codes."""
    w = _w(40, 136, seed=11)  # short last group at g=32
    gs = 32
    res = {name: quantize_int4(w, gs, False, torch.float16, search=s, float_zeros=float_zeros, importance=i)
           for name, s, i in (("minmax", False, "none"), ("plain", True, "none"), ("weighted", True, kind))}
    k = w.shape[1]
    wp = torch.nn.functional.pad(w, (0, -k % gs))
    imp = int4_importance(group_view(wp, gs)[0], kind)
    imp[:, -1, k % gs:] = 0  # the padding does not count
    err = {}
    for name, (c, s, z) in res.items():
        zz = z if z is not None else torch.full_like(s, 8)
        e, _ = group_view((_plain_w(c, s, zz, gs) - w).square(), gs)
        err[name] = (e * imp).sum(-1)
    assert bool((err["weighted"] <= err["minmax"] * (1 + 1e-5) + 1e-12).all())
    assert float(err["weighted"].sum()) <= float(err["plain"].sum()) * (1 + 1e-6)
    assert float(err["weighted"].sum()) < float(err["plain"].sum())  # it does weigh something


def _net(widths, seed=0):
    torch.manual_seed(seed)
    layers = [nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:])]
    with torch.no_grad():  # different int4 errors: heavy tails in some layers
        for i, lin in enumerate(layers):
            if i % 3 == 1:
                lin.weight.copy_(torch.distributions.StudentT(2.0).sample(lin.weight.shape) * 0.05)
    return nn.Sequential(*layers)


@pytest.mark.parametrize("frac", [0.0, 0.3, 1.0])
def test_int8_budget_matches_brute_force_greedy(frac):
    net = _net([64, 96, 64, 128, 32, 64, 96, 32, 64, 48])
    cfg = slimnn.Int4Config(group_size=32, symmetric=False, float_zeros=True, scale_search=False,
                            int8_fraction=frac, progress=False)
    targets = [(str(i), m) for i, m in enumerate(net)]
    n = len(targets)
    # brute force: score each layer by its own relative error, written out here
    scores = []
    for i, (fqn, lin) in enumerate(targets):
        c, s, z = quantize_int4(lin.weight.detach(), 32, False, torch.float16, float_zeros=True)
        w = lin.weight.detach()
        rel = float((_plain_w(c, s, z, 32) - w).square().sum() / w.square().sum())
        assert rel == pytest.approx(int4_sensitivity(lin, cfg), rel=1e-5)
        scores.append((rel * (2 if i < n / 8 or i >= n - n / 8 else 1), fqn, w.numel()))
    budget = frac * sum(x[2] for x in scores)
    want, used = set(), 0
    for sc, fqn, size in sorted(scores, key=lambda x: -x[0]):
        if used + size <= budget:
            want.add(fqn)
            used += size
    assert int8_budget_layers(targets, cfg) == want
    x = torch.randn(5, 64)
    with torch.no_grad():
        ref = net(x)
    slimnn.compress_(net, cfg)
    got = {str(i) for i, m in enumerate(net) if isinstance(m, Int8Linear)}
    assert got == want
    assert all(isinstance(m, Int4Linear) for i, m in enumerate(net) if str(i) not in want)
    assert (len(want) == n) == (frac == 1.0) and (len(want) == 0) == (frac == 0.0)
    with torch.no_grad():
        y = net(x)
    assert bool(torch.isfinite(y).all()) and float((y - ref).norm() / ref.norm()) < 0.2


def test_int8_fraction_validation():
    for bad in (-0.1, 1.5, True, "0.1"):
        with pytest.raises(ValueError, match="int8_fraction"):
            slimnn.Int4Config(int8_fraction=bad)


def _lp(w, c, s, z, gs, p):
    e, _ = group_view((_plain_w(c, s, z, gs) - w).abs().pow(p), gs)
    return e.sum(-1)


@pytest.mark.parametrize("search", [False, True])
def test_hqq_never_worse_than_its_start_in_lp(search):
    """HQQ keeps the scales and moves only the zero points; per group its l_p error (p = 0.7), written out here
    from the returned codes, is at most that of the zero points it started from, and lower in total."""
    from slimnn.math.quantize import int4_params_float_zero, int4_params_hqq

    w = _w(48, 128, seed=5)
    w[3, 7] = 9.0  # an outlier: where an l_p fit moves away from least squares
    gs = 32
    c0, s0, z0 = quantize_int4(w, gs, False, torch.float16, search=search, float_zeros=True)
    c1, s1, z1 = quantize_int4(w, gs, False, torch.float16, search=search, float_zeros=True, hqq=True)
    assert torch.equal(s0, s1)
    assert z1.dtype == torch.float16
    e0, e1 = _lp(w, c0, s0, z0, gs, 0.7), _lp(w, c1, s1, z1, gs, 0.7)
    assert bool((e1 <= e0 * (1 + 1e-5) + 1e-9).all())
    assert float(e1.sum()) < float(e0.sum())
    wg, _ = group_view(w, gs)
    s2, z2 = int4_params_hqq(wg, torch.float16, iters=0)  # no rounds: the min/max start unchanged
    s3, z3 = int4_params_float_zero(wg, torch.float16, search=False)
    assert torch.equal(s2, s3) and torch.equal(z2, z3)


def test_hqq_validation():
    from slimnn.math.quantize import int4_params_hqq

    wg = torch.randn(4, 2, 32)
    for kw in ({"iters": -1}, {"p": 0.0}, {"p": 3.0}, {"beta": 0.0}, {"kappa": 0.5}):
        with pytest.raises(ValueError, match="int4_params_hqq"):
            int4_params_hqq(wg, **kw)
    with pytest.raises(ValueError, match="float_zeros"):
        quantize_int4(torch.randn(4, 32), 32, False, hqq=True)


@pytest.mark.parametrize("sensitivity", ["weight_error", "output_error"])
@pytest.mark.parametrize("bits", [5.0, 5.6, 8.5])
def test_bits_budget_matches_brute_force_ratio_greedy(sensitivity, bits):
    """bits_budget keeps at int8 the layers of highest score per extra bit while the average stays within the
    budget; scores written out here (relative weight error with edge doubling, or tr(dW H dW^T) / tr(W H W^T)
    with H = X^T X of each layer's float inputs on the calibration batches)."""
    net = _net([64, 96, 64, 128, 32, 64, 96, 32, 64, 48])
    calib = [torch.randn(7, 64, generator=torch.Generator().manual_seed(i)) for i in range(3)]
    cfg = slimnn.Int4Config(group_size=32, scale_search=False, bits_budget=bits, sensitivity=sensitivity,
                            calib_data=calib if sensitivity == "output_error" else None, progress=False)
    targets = [(str(i), m) for i, m in enumerate(net)]
    n = len(targets)
    xs, h = torch.cat(calib), []
    with torch.no_grad():
        for lin in net:
            h.append(xs.t() @ xs)
            xs = lin(xs)
    rows = []
    for i, (fqn, lin) in enumerate(targets):
        w = lin.weight.detach()
        c, s, z = quantize_int4(w, 32, False, torch.float16, float_zeros=True)
        d = _plain_w(c, s, z, 32) - w
        if sensitivity == "weight_error":
            score = float(d.square().sum() / w.square().sum()) * (2 if i < n / 8 or i >= n - n / 8 else 1)
        else:
            score = float(torch.trace(d @ h[i] @ d.t()) / torch.trace(w @ h[i] @ w.t()))
        k = w.shape[1]
        rows.append((score, fqn, w.numel(), w.numel() * (8 + 32 / k - (4 + 32 / 32))))
    room = (bits - 5.0) * sum(r[2] for r in rows)
    want, used = set(), 0.0
    for score, fqn, _size, extra in sorted(rows, key=lambda r: -r[0] / r[3]):
        if used + extra <= room:
            want.add(fqn)
            used += extra
    assert int8_budget_layers(targets, cfg, net) == want
    assert (len(want) == 0) == (bits == 5.0) and (len(want) == n) == (bits == 8.5)
    slimnn.compress_(net, cfg)
    assert {str(i) for i, m in enumerate(net) if isinstance(m, Int8Linear)} == want


def test_bits_budget_validation():
    for bad in (3.9, 17, True, "5"):
        with pytest.raises(ValueError, match="bits_budget"):
            slimnn.Int4Config(bits_budget=bad)
    with pytest.raises(ValueError, match="not both"):
        slimnn.Int4Config(bits_budget=5.5, int8_fraction=0.1)
    with pytest.raises(ValueError, match="sensitivity"):
        slimnn.Int4Config(sensitivity="hessian")
    with pytest.raises(ValueError, match="calib_data"):
        slimnn.compress_(nn.Sequential(nn.Linear(32, 8)), slimnn.Int4Config(bits_budget=5.5,
                                                                           sensitivity="output_error"))
    cfg = slimnn.Int4Config(bits_budget=5.5, sensitivity="output_error", calib_data=[torch.randn(2, 4)])
    back = slimnn.configs.config_from_json(cfg.to_json())
    assert back.bits_budget == 5.5 and back.sensitivity == "output_error" and back.calib_data is None
