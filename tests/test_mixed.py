"""slimnn.mixed_int4_: int4 with the most sensitive layers kept in int8 under a size ratio."""

import copy

import pytest
import torch

import slimnn
from slimnn.nn import Int4Linear, Int8Linear

from helpers import make_mlp_model

# the int4 default before issue 15 (g64 symmetric min/max): the size this test's budget was written for
_G64_SYM = dict(group_size=64, symmetric=True, scale_search=False, importance="none", progress=False)


def _model_and_data():
    model = make_mlp_model(64, 256, 3, seed=3)
    g = torch.Generator().manual_seed(1)
    data = [torch.randn(16, 64, generator=g) for _ in range(4)]
    return model, data


def _rel_err(a, b):
    return float((a - b).square().sum() / b.square().sum())


def test_mixed_keeps_sensitive_layers_and_the_ratio():
    model, data = _model_and_data()
    # make one layer much more sensitive to 4-bit rounding: a few huge input channels (outliers)
    sensitive = "1.down"
    with torch.no_grad():
        model.get_submodule(sensitive).weight[:, :4] *= 40
    with torch.no_grad():
        ref = torch.cat([model(x) for x in data])
    q = copy.deepcopy(model)
    rep = slimnn.mixed_int4_(q, data, min_ratio=5.0, int4_config=slimnn.Int4Config(**_G64_SYM))
    names = [n for n, m in model.named_modules() if type(m) is torch.nn.Linear]
    assert set(rep.choice) == set(names)
    assert rep.choice[sensitive] == "int8"
    assert max(rep.sensitivity, key=rep.sensitivity.get) == sensitive
    for n in names:
        cls = Int8Linear if rep.choice[n] == "int8" else Int4Linear
        assert type(q.get_submodule(n)) is cls
    assert rep.ratio >= 5.0
    assert rep.compressed_bytes == sum(q.get_submodule(n).storage_bytes() for n in names)
    assert "int8" in rep.summary()
    # mixed is closer to the float model than all-int4 (RTN, same settings)
    all4 = copy.deepcopy(model)
    slimnn.compress_(all4, slimnn.Int4Config(**_G64_SYM))
    with torch.inference_mode():
        out_mixed = torch.cat([q(x) for x in data])
        out_all4 = torch.cat([all4(x) for x in data])
    assert _rel_err(out_mixed, ref) < _rel_err(out_all4, ref)


def test_mixed_gptq_default_and_strict_ratio_means_all_int4():
    model, data = _model_and_data()
    q = copy.deepcopy(model)
    # all-int4 (group 64, fp16 scales, biases) is 6.23x smaller here: 6.2 leaves no room for int8 layers
    rep = slimnn.mixed_int4_(q, data, min_ratio=6.2)
    assert set(rep.choice.values()) == {"int4"}
    assert rep.ratio >= 6.2
    with torch.inference_mode():
        assert _rel_err(torch.cat([q(x) for x in data]), torch.cat([model(x) for x in data])) < 0.05
    assert all(type(m) is not torch.nn.Linear for m in q.modules())


def test_mixed_bad_input():
    model, data = _model_and_data()
    with pytest.raises(ValueError, match="calib_data is empty"):
        slimnn.mixed_int4_(copy.deepcopy(model), [])
    with pytest.raises(ValueError, match="min_ratio"):
        slimnn.mixed_int4_(copy.deepcopy(model), data, min_ratio=0)
    with pytest.raises(ValueError, match="short of min_ratio"):
        slimnn.mixed_int4_(copy.deepcopy(model), data, min_ratio=50.0)
    with pytest.raises(ValueError, match="no nn.Linear"):
        slimnn.mixed_int4_(copy.deepcopy(model), data, filter_fn=lambda m, n: False)
    untouched = copy.deepcopy(model)
    with pytest.raises(ValueError):
        slimnn.mixed_int4_(untouched, data, min_ratio=50.0)
    assert all(type(m) is not Int4Linear for m in untouched.modules())  # a refusal leaves the model as it was
