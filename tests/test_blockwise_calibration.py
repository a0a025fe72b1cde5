"""Block-by-block sequential calibration (slimnn.math.blockwise): the same quantized model as one partial
full-model pass per Linear, in O(L) block passes; and the fall-backs to the full-model path."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import slimnn
from slimnn.math import blockwise
from slimnn.techniques.int4 import quantize_model_int4_


def _llama(layers: int = 3, cache: bool = True):
    transformers = pytest.importorskip("transformers")
    cfg = transformers.LlamaConfig(vocab_size=61, hidden_size=64, intermediate_size=96, num_hidden_layers=layers,
                                   num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                                   use_cache=cache, tie_word_embeddings=False)
    torch.manual_seed(0)
    return transformers.LlamaForCausalLM(cfg).eval()


def _calib():
    g = torch.Generator().manual_seed(1)
    return [torch.randint(0, 61, (2, 12), generator=g) for _ in range(3)]


def _targets(model):
    return [(f, m) for f, m in model.named_modules() if isinstance(m, nn.Linear)]


class _Report:
    def __init__(self) -> None:
        self.converted = {}


def _quantize(model, method: str, blockwise_on: bool, **kw):
    cfg = slimnn.Int4Config(method=method, calib_data=_calib(), group_size=32, progress=False, **kw)
    rep = _Report()
    quantize_model_int4_(model, _targets(model), cfg, rep, blockwise=blockwise_on)
    return rep


def _codes(model):
    return {f: m.state_dict() for f, m in model.named_modules() if type(m).__name__ == "Int4Linear"}


@pytest.mark.parametrize("method", ["gptq", "awq"])
def test_blockwise_equals_full_model_path(method):
    base = _llama()
    a, b = copy.deepcopy(base), copy.deepcopy(base)
    ra = _quantize(a, method, True)
    rb = _quantize(b, method, False)
    assert ra.converted.keys() == rb.converted.keys() == {f for f, _ in _targets(base)}
    ca, cb = _codes(a), _codes(b)
    assert ca.keys() == cb.keys() and len(ca) == len(_targets(base))
    for f in ca:
        for k, t in ca[f].items():
            u = cb[f][k]
            if t.is_floating_point():
                torch.testing.assert_close(t, u, rtol=1e-5, atol=1e-6, msg=f"{f}.{k}")
            else:
                # the Hessians agree to float rounding; a code may then flip at a rounding tie
                assert (t != u).float().mean() < 0.01, f"{f}.{k}"
    ids = _calib()[0]
    with torch.no_grad():
        torch.testing.assert_close(a(ids).logits, b(ids).logits, rtol=0.02, atol=0.02)


def test_blocks_are_replayed_not_the_model():
    """Structural cost: the model's first block runs a bounded number of times per batch (catching, the check,
    then the per-stage replays of block 0), not once per Linear of the model."""
    model = _llama(layers=4)
    linears = len(_targets(model))
    calls = {"model": 0, "block0": 0}
    model.register_forward_pre_hook(lambda m, a: calls.__setitem__("model", calls["model"] + 1))
    model.model.layers[0].register_forward_pre_hook(lambda m, a: calls.__setitem__("block0", calls["block0"] + 1))
    cfg = slimnn.Int4Config(method="gptq", calib_data=_calib(), group_size=32, progress=False)
    quantize_model_int4_(model, _targets(model), cfg, _Report())
    # lm_head (after the stack) takes one pass per batch; catching 3 + the replay check 1
    assert calls["model"] <= 3 + 1 + 1 + 3
    assert calls["model"] < linears * 3


def test_stack_found_and_stages():
    model = _llama()
    name, stack = blockwise.find_block_stack(model, [f for f, _ in _targets(model)])
    assert name == "model.layers" and len(stack) == 3
    replay = blockwise._Replay(stack[0], blockwise._catch_inputs(model, stack[0], _calib()))
    rem = [(f, m) for f, m in stack[0].named_modules() if isinstance(m, nn.Linear)]
    stages = []
    while rem:
        st = blockwise._stage(replay, rem)
        stages.append([f for f, _ in st])
        rem = [(f, m) for f, m in rem if f not in stages[-1]]
    assert stages == [["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"], ["self_attn.o_proj"],
                      ["mlp.gate_proj", "mlp.up_proj"], ["mlp.down_proj"]]


class _Between(nn.Module):
    """A stack whose blocks are not chained directly (a scale between them): the replay check must refuse it."""

    def __init__(self) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(nn.Sequential(nn.Linear(32, 32), nn.ReLU()) for _ in range(3))
        self.head = nn.Linear(32, 5)

    def forward(self, x):
        for b in self.blocks:
            x = b(x) * 0.5
        return self.head(x)


class _Chained(_Between):
    def forward(self, x):
        for b in self.blocks:
            x = b(x)
        return self.head(x)


@pytest.mark.parametrize("cls,expect_blockwise", [(_Between, 0), (_Chained, 3)])
def test_replay_check_and_fallback(cls, expect_blockwise):
    torch.manual_seed(0)
    model = cls().eval()
    data = [torch.randn(4, 32) for _ in range(2)]
    seen = []

    def q(fqn, mod, st):
        seen.append((fqn, st.n_rows))
        return copy.deepcopy(mod)

    n = blockwise.sequential_quantize_(model, _targets(model), data, q, capture={"gram": True}, desc="t",
                                       progress=False)
    assert n == expect_blockwise
    assert [f for f, _ in seen] == [f for f, _ in _targets(cls())]
    assert all(r == 8 for _, r in seen)


def test_uncalled_layer_raises():
    class Skip(_Chained):
        def __init__(self):
            super().__init__()
            self.blocks[1].append(nn.Linear(32, 32))  # forward below calls only b[0] and b[1]: never called

        def forward(self, x):
            for b in self.blocks:
                x = b[1](b[0](x))
            return self.head(x)

    model = Skip().eval()
    with pytest.raises(ValueError, match="never called"):
        blockwise.sequential_quantize_(model, _targets(model), [torch.randn(2, 32)], lambda f, m, s: m,
                                       capture={"gram": True}, desc="t", progress=False)
