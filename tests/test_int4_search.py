"""Int4 scale search (Int4Config(scale_search=True)): per group never a larger squared error than the
min/max rule, codes consistent with the stored scales, and the module runs on it exactly like RTN."""

from __future__ import annotations

import dataclasses

import pytest
import torch

import slimnn
from slimnn.math.quantize import dequantize_int4, group_view, int4_codes, int4_params, int4_params_search, quantize_int4


def _group_err(w, codes, scales, zeros, gs):
    d = dequantize_int4(codes, scales, zeros, gs) - w
    dg, _ = group_view(d, gs)
    return dg.square().sum(-1)


@pytest.mark.parametrize("sym", [True, False])
@pytest.mark.parametrize("gs", [32, 64, None])
@pytest.mark.parametrize("k", [64, 96, 100])
def test_search_never_worse_per_group(sym, gs, k):
    g = torch.Generator().manual_seed(k + (gs or 0))
    w = torch.randn(24, k, generator=g) * torch.rand(24, 1, generator=g) * 3
    w[0] = 0.0  # an all-zero row
    w[1, :5] = 50.0  # an outlier
    base = quantize_int4(w, gs, sym)
    srch = quantize_int4(w, gs, sym, search=True)
    e0, e1 = _group_err(w, *base, gs), _group_err(w, *srch, gs)
    assert bool((e1 <= e0 * (1 + 1e-6) + 1e-12).all())
    assert float(e1.sum()) < float(e0.sum())


@pytest.mark.parametrize("sym", [True, False])
def test_codes_match_stored_scales(sym):
    w = torch.randn(16, 128, generator=torch.Generator().manual_seed(3))
    wg, _ = group_view(w, 64)
    s, z = int4_params_search(wg, sym, torch.float16)
    assert s.dtype == torch.float16 and (z is None) == sym
    assert bool(torch.isfinite(s.float()).all()) and bool((s.float() != 0).all())
    codes, scales, zeros = quantize_int4(w, 64, sym, search=True)
    assert torch.equal(codes, int4_codes(wg, s, z).reshape(16, 128))
    # the min/max scales are one of the candidates: the search can only move away from them to gain
    s0, _ = int4_params(wg, sym, torch.float16)
    assert s0.shape == s.shape


@pytest.mark.parametrize("mode", ["dynamic", "weight_only"])
def test_module_with_search_matches_its_reference(mode):
    torch.manual_seed(0)
    lin = torch.nn.Linear(96, 40)
    cfg = slimnn.Int4Config(group_size=32, symmetric=True, scale_search=True, importance="none", mode=mode)
    mod = slimnn.nn.Int4Linear.from_linear(lin, cfg)
    ref = slimnn.nn.Int4Linear.from_linear(lin, dataclasses.replace(cfg, kernel="reference"))
    x = torch.randn(5, 96)
    torch.testing.assert_close(mod(x), ref(x), rtol=1e-4, atol=1e-4)
    codes, scales, zeros = quantize_int4(lin.weight, 32, True, search=True)
    torch.testing.assert_close(mod.dequantized_weight(), dequantize_int4(codes, scales, zeros, 32))


def test_config_validates_and_round_trips():
    with pytest.raises(ValueError, match="scale_search"):
        slimnn.Int4Config(scale_search=1)
    cfg = slimnn.Int4Config(scale_search=True)
    assert slimnn.configs.config_from_json(cfg.to_json()) == cfg
