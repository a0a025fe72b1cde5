"""GPTQ with fixed group parameters (``gptq_quantize(params=...)``): the data-free searched scales and
(float) zero points of ``quantize_int4``, with GPTQ's error compensation on top."""

from __future__ import annotations

import pytest
import torch

from slimnn.math.gptq import gptq_quantize
from slimnn.math.quantize import dequantize_int4, group_view, int4_codes, quantize_int4


def _adversarial(n: int, k: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(n, k, generator=g)
    w[0] = 0.0                    # a zero row
    w[1, :32] = 0.37              # a constant group
    w[2, 5] = 40.0                # an extreme value
    w[3] *= 1e-4                  # a tiny row
    return w


def _params(w, gs, fz):
    _, s, z = quantize_int4(w, gs, False, torch.float16, search=True, float_zeros=fz, importance="rms_abs")
    return s, z


@pytest.mark.parametrize("fz", [True, False])
@pytest.mark.parametrize("k,gs", [(70, 32), (96, 32), (64, 64), (33, 32)])
def test_diagonal_hessian_is_round_to_nearest_with_those_params(fz, k, gs):
    # H diagonal: no column's error can be spread to another, so GPTQ must be plain rounding with the params
    w = _adversarial(12, k, k)
    s, z = _params(w, gs, fz)
    h = torch.diag(torch.rand(k, generator=torch.Generator().manual_seed(1)) + 0.5)
    codes, s2, z2 = gptq_quantize(w, h, gs, False, torch.float16, act_order=True, params=(s, z))
    assert torch.equal(s2, s) and torch.equal(z2, z) and z2.dtype == z.dtype
    wg, g = group_view(w, gs)
    ref = int4_codes(wg, s.t(), z.t()).reshape(12, g * gs)[:, :k]
    assert torch.equal(codes, ref)


@pytest.mark.parametrize("fz", [True, False])
def test_correlated_inputs_output_error_below_rtn(fz):
    gen = torch.Generator().manual_seed(3)
    n, k, gs = 48, 160, 32
    w = torch.randn(n, k, generator=gen)
    mix = torch.randn(k, k, generator=gen) * 0.3 + torch.eye(k)
    x = torch.randn(2048, k, generator=gen) @ mix
    x[:, 7] *= 20.0  # an outlier input channel
    h = 2.0 / x.shape[0] * x.t() @ x
    s, z = _params(w, gs, fz)
    codes, s2, z2 = gptq_quantize(w, h, gs, False, torch.float16, act_order=True, params=(s, z))
    wg, g = group_view(w, gs)
    rtn = dequantize_int4(int4_codes(wg, s.t(), z.t()).reshape(n, g * gs)[:, :k], s, z, gs)
    gq = dequantize_int4(codes, s2, z2, gs)

    def out_err(d):
        return float(((x @ (d - w).t()) ** 2).sum())
    assert out_err(gq) < 0.7 * out_err(rtn)


def test_params_validation():
    w = torch.randn(8, 64)
    h = torch.eye(64)
    s, z = _params(w, 32, True)
    with pytest.raises(ValueError, match="n_groups x N"):
        gptq_quantize(w, h, 32, False, act_order=True, params=(s[:1], z[:1]))
    with pytest.raises(ValueError, match="act_order"):
        gptq_quantize(w, h, 32, False, act_order=False, params=(s, z))
    with pytest.raises(ValueError, match="symmetric"):
        gptq_quantize(w, h, 32, True, act_order=True, params=(s, z))


@pytest.mark.parametrize("imp", ["rms_abs", "square"])
@pytest.mark.parametrize("fz", [True, False])
def test_importance_on_all_zero_groups_stays_finite(imp, fz):
    # an all-zero group weighs every element 0 under these importances: it must fall back to plain weights
    w = _adversarial(6, 70, 5)
    w[4, 32:64] = 0.0  # a zero group inside a row
    c, s, z = quantize_int4(w, 32, False, torch.float16, search=True, float_zeros=fz, importance=imp)
    assert bool(torch.isfinite(s.float()).all()) and bool(torch.isfinite(z.float()).all())
    d = dequantize_int4(c, s, z, 32)
    assert float(d[0].abs().max()) == 0.0 and float(d[4, 32:64].abs().max()) == 0.0


def test_compress_gptq_on_float_zero_search_groups():
    import slimnn
    from slimnn.formats import unpack_q4

    gen = torch.Generator().manual_seed(7)
    model = torch.nn.Sequential(torch.nn.Linear(72, 40), torch.nn.ReLU(), torch.nn.Linear(40, 24))
    data = [torch.randn(16, 72, generator=gen) @ (torch.eye(72) + 0.2 * torch.randn(72, 72, generator=gen))
            for _ in range(4)]
    x = torch.cat(data)
    with torch.no_grad():
        ref = model(x)
    import copy
    rtn, gq = copy.deepcopy(model), copy.deepcopy(model)
    kw = dict(group_size=32, symmetric=False, float_zeros=True, scale_search=True, importance="rms_abs",
              mode="weight_only", progress=False)
    slimnn.compress_(rtn, slimnn.Int4Config(**kw))
    slimnn.compress_(gq, slimnn.Int4Config(method="gptq", calib_data=data, **kw))
    _, _, zeros, _ = unpack_q4(gq[0].packed)
    assert zeros is not None and zeros.is_floating_point()
    with torch.no_grad():
        e_rtn = float((rtn(x) - ref).square().sum())
        e_gq = float((gq(x) - ref).square().sum())
    assert e_gq < e_rtn


def test_old_config_json_loads_as_written():
    # a file written before float zero points / the search existed has none of those fields: it meant integer
    # zero points and the min/max rule, whatever today's defaults are
    import json

    import slimnn
    from slimnn.configs import config_from_json

    d = json.loads(slimnn.Int4Config(symmetric=False).to_json())
    for name in ("float_zeros", "scale_search", "importance", "int8_fraction", "head_int8"):
        d.pop(name)
    cfg = config_from_json(json.dumps(d))
    assert cfg.symmetric is False and cfg.float_zeros is False and cfg.scale_search is False
    assert cfg.importance == "none" and cfg.head_int8 is False
    new = slimnn.Int4Config()
    assert config_from_json(new.to_json()) == new and new.float_zeros and new.group_size == 32
