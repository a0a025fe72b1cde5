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
