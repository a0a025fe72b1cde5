"""capture_inputs: the one hook-and-stop capture under capture_linear_inputs, capture_patch_grams and the
pipeline's row capture (stop_early, ending the run from the callback, hook removal, bad inputs)."""

import pytest
import torch
from torch import nn

from slimnn.math.calibration import capture_inputs


class _Twice(nn.Module):
    """Calls `a` twice per forward, then `b`; counts forwards that ran to the end."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(4, 4), nn.Linear(4, 3)
        self.finished = 0

    def forward(self, x):
        y = self.b(self.a(self.a(x)))
        self.finished += 1
        return y


def _batches(n):
    g = torch.Generator().manual_seed(0)
    return [torch.randn(2, 4, generator=g) for _ in range(n)]


def test_every_call_seen_without_stop_early_and_hooks_removed():
    m, data, seen = _Twice(), _batches(3), []
    capture_inputs(m, [("a", m.a), ("b", m.b)], data, lambda name, x: seen.append((name, x.clone())))
    assert [n for n, _ in seen] == ["a", "a", "b"] * 3 and m.finished == 3
    assert torch.equal(seen[0][1], data[0]) and torch.equal(seen[1][1], m.a(data[0]).detach())
    assert not m.a._forward_pre_hooks and not m.b._forward_pre_hooks
    assert not any(x.requires_grad for _, x in seen)


def test_stop_early_ends_each_pass_once_every_module_ran():
    m, seen = _Twice(), []
    capture_inputs(m, [("a", m.a)], _batches(3), lambda name, x: seen.append(name), stop_early=True)
    assert seen == ["a"] * 3 and m.finished == 0  # first call of a per batch, the rest of the pass skipped


def test_on_input_true_ends_the_whole_run():
    m, seen = _Twice(), []
    capture_inputs(m, [("a", m.a)], _batches(5), lambda name, x: seen.append(name) or len(seen) == 3)
    assert seen == ["a"] * 3 and m.finished == 1  # batch 0 ran to the end; batch 1 stopped at its 1st call


def test_keyword_input_and_non_tensor_input():
    m = nn.Linear(4, 2)
    got = []
    capture_inputs(m, [("l", m)], [{"input": torch.ones(1, 4)}], lambda name, x: got.append(x.shape))
    assert got == [torch.Size([1, 4])]
    with pytest.raises(TypeError, match="l was called without a tensor input"):
        capture_inputs(m, [("l", m)], [{"input": [1.0, 2.0, 3.0, 4.0]}], lambda name, x: None)
    assert not m._forward_pre_hooks
