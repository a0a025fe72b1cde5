"""The technique registry: every technique registers all its pieces in one place, the gaps are pinned here
(a new gap, or one closed, is a deliberate change of this list), and the old flat import paths still work."""

from __future__ import annotations

import importlib
import warnings

import pytest
import torch

import slimnn
from slimnn import techniques
from slimnn._compat import OLD_TO_NEW

# Pieces a technique still lacks (slimnn.techniques.gaps()). Shrink this list as they are built.
KNOWN_GAPS = {
    # distillation trains Linear shadows only
    "int8": ["trainable Conv2dInt8", "trainable Conv1dInt8", "trainable QuantEmbedding"],
    "int4": ["trainable Int4Linear", "trainable QuantEmbedding"],
    "sparse": ["trainable SparseLinear"],
    "lowrank": ["trainable LowRankLinear"],
}


def test_gaps_are_the_known_ones():
    assert techniques.gaps() == KNOWN_GAPS


@pytest.mark.parametrize("name", sorted(techniques.techniques()))
def test_every_technique_is_complete_where_it_claims(name):
    t = techniques.techniques()[name]
    assert techniques.for_config(t.config) is t
    assert t.modules and t.summary and t.cli_config is not None
    cfg = t.cli_config(None)
    assert isinstance(cfg, t.config)
    for fmt in t.save_formats:
        assert techniques.save_formats()[fmt.name] is fmt
        assert techniques.save_format_for(fmt.cls) is fmt
    for tr in t.trainable:
        assert techniques.trainable_for(tr.cls) is tr


@pytest.mark.parametrize("name", sorted(techniques.techniques()))
def test_every_technique_converts_a_linear(name):
    t = techniques.techniques()[name]
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 48), torch.nn.ReLU(), torch.nn.Linear(48, 32)).eval()
    x = torch.randn(3, 64)
    ref = model(x)
    cfg = t.cli_config(None)
    if t.convert_batch is None and t.convert_model is None:
        new = t.convert(model[0], cfg)
        assert isinstance(new, t.modules)
    report = slimnn.compress_(model, cfg, fuse=False)
    assert report.converted, report
    for fqn in report.converted:
        assert isinstance(model.get_submodule(fqn), t.modules)
    assert model(x).shape == ref.shape


def test_default_autocompress_steps_come_from_the_registry():
    from slimnn.recipes.pipeline import default_steps

    names = [s.name for s in default_steps()]
    assert names[0] == "int8"
    assert set(names) <= set(techniques.techniques())


def test_register_rejects_non_technique():
    with pytest.raises(TypeError, match="Technique"):
        techniques.register(object())


@pytest.mark.parametrize("old", sorted(OLD_TO_NEW))
def test_old_import_paths_still_import(old):
    new = importlib.import_module(f"slimnn.{OLD_TO_NEW[old]}")
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        mod = importlib.import_module(f"slimnn.{old}")
        attr = getattr(slimnn, old)
    assert mod is new
    if callable(attr) and not isinstance(attr, type(new)):  # a public function of that name (slimnn.distill)
        assert attr.__module__ == new.__name__
    else:
        assert attr is new
    assert new.__spec__.name == new.__name__ == f"slimnn.{OLD_TO_NEW[old]}"  # the alias leaves the module's own spec
    if old not in ("isa", "prune", "distill"):  # distill: pinned in sys.modules, so no import, no warning
        assert any(issubclass(x.category, DeprecationWarning) and OLD_TO_NEW[old] in str(x.message) for x in w)
