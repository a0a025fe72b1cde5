"""The C++ decode step (csrc/kernels/decode, ``Decoder(native=True)``, the default): the same logits as the
Python step, bit for bit, wherever both call the same kernels in the same order (every projection kind, biases,
GQA / MQA, fused and separate groups, both embeddings, 1 and 2 threads); the same greedy tokens everywhere;
the Python step for what it does not run (said in repr); bad plans and inputs raise ValueError."""

import copy

import pytest
import torch

import slimnn
from slimnn import _C
from slimnn.integrations.decode import Decoder, _Norm, _silu_block, _torch_lanes

from test_decode import CONFIGS as DECODE_CONFIGS

transformers = pytest.importorskip("transformers")

VOCAB = 120


def _tiny(arch="llama", seed=0, **kw):
    torch.manual_seed(seed)
    common = dict(vocab_size=VOCAB, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, max_position_embeddings=128)
    common.update(kw)
    if arch == "llama":
        return transformers.LlamaForCausalLM(transformers.LlamaConfig(tie_word_embeddings=True, **common)).eval()
    if arch == "qwen2":
        return transformers.Qwen2ForCausalLM(transformers.Qwen2Config(tie_word_embeddings=False, **common)).eval()
    return transformers.MistralForCausalLM(transformers.MistralConfig(**common)).eval()


# test_decode's compressed configs (its "fp32" entry is the uncompressed model) plus int4 weight-only
CONFIGS = {name: make for name, make in DECODE_CONFIGS.items() if make is not None}
CONFIGS["int4 weight-only"] = lambda: slimnn.Int4Config(group_size=32, mode="weight_only", head_int8=False,
                                                         progress=False)


def _compressed(model, name, embeddings=True):
    m = copy.deepcopy(model)
    if name != "fp32":
        slimnn.compress_(m, CONFIGS[name](), filter_fn=lambda mod, fqn: embeddings or "embed" not in fqn)
    return slimnn.fast_attention_(m)


def _steps(dec, ids, n):
    """Prefill, then n greedy steps; the logits of every step (copies) and the tokens."""
    logits = dec.prefill(ids)
    out, toks = [], []
    for _ in range(n):
        tok = int(torch.argmax(logits, -1))
        toks.append(tok)
        logits = dec.step(tok)
        out.append(logits.clone())
    return out, toks


def _same_bits(a, b):
    return all(torch.equal(x.view(torch.int32), y.view(torch.int32)) for x, y in zip(a, b))


# ReLU: the act kernel and torch compute it exactly, so even int4's unfused activation gives the same bits.
@pytest.mark.parametrize("name", list(CONFIGS))
@pytest.mark.parametrize("act", ["relu", "silu"])
def test_native_step_bitwise_equals_python_step(name, act):
    model = _compressed(_tiny(hidden_act=act), name)
    ids = torch.randint(0, VOCAB, (1, 5), generator=torch.Generator().manual_seed(2))
    nat, py = Decoder(model, max_len=32), Decoder(model, max_len=32, native=False)
    assert nat.native and not py.native and "native=False" in repr(py) and "native (C++" in repr(nat)
    a, ta = _steps(nat, ids, 12)
    b, tb = _steps(py, ids, 12)
    assert ta == tb
    # SiLU: an Int8Linear gate carries it in its epilogue (the act kernel on both sides); an int4 model's
    # nn.SiLU is torch's in the Python step and torch's formula (torch_silu kernels) here
    assert _same_bits(a, b)


@pytest.mark.parametrize("arch", ["qwen2", "mistral"])
@pytest.mark.parametrize("kv", [1, 4])
def test_native_architectures_heads_bitwise(arch, kv):
    model = _compressed(_tiny(arch, seed=1, num_key_value_heads=kv), "int8")
    ids = torch.randint(0, VOCAB, (1, 7), generator=torch.Generator().manual_seed(kv))
    a, _ = _steps(Decoder(model, max_len=30), ids, 10)
    b, _ = _steps(Decoder(model, max_len=30, native=False), ids, 10)
    assert _same_bits(a, b)


def test_native_separate_groups_and_float_embedding_bitwise():
    model = _tiny(hidden_act="relu")
    slimnn.compress_(model, slimnn.Int8Config(), filter_fn=lambda mod, fqn: fqn.endswith("q_proj"))
    slimnn.compress_(model, slimnn.Int4Config(group_size=32, head_int8=False, progress=False),
                     filter_fn=lambda mod, fqn: "embed" not in fqn and not isinstance(mod, slimnn.nn.Int8Linear))
    slimnn.fast_attention_(model)
    nat = Decoder(model, max_len=30)
    assert nat.native and nat._native_embed and all(ly.qkv.fused is None for ly in nat.layers)
    ids = torch.randint(0, VOCAB, (1, 4), generator=torch.Generator().manual_seed(5))
    a, ta = _steps(nat, ids, 10)
    b, tb = _steps(Decoder(model, max_len=30, native=False), ids, 10)
    assert ta == tb and _same_bits(a, b)


def test_native_thread_counts_give_the_same_bits():
    model = _compressed(_tiny(), "int4 default")
    ids = torch.randint(0, VOCAB, (1, 6), generator=torch.Generator().manual_seed(7))
    old = slimnn.get_num_threads()
    try:
        slimnn.set_num_threads(1)
        a, _ = _steps(Decoder(model, max_len=30), ids, 8)
        slimnn.set_num_threads(2)
        b, _ = _steps(Decoder(model, max_len=30), ids, 8)
    finally:
        slimnn.set_num_threads(old)
    assert _same_bits(a, b)


def test_native_fp32_layers_same_tokens():
    # fp32 Linear layers run the lowrank family's fp32 GEMV here and torch's linear in the Python step:
    # the same math, summed in another order
    model = slimnn.fast_attention_(_tiny())
    ids = torch.randint(0, VOCAB, (1, 5), generator=torch.Generator().manual_seed(11))
    nat = Decoder(model, max_len=30)
    assert nat.native
    a, ta = _steps(nat, ids, 12)
    b, tb = _steps(Decoder(model, max_len=30, native=False), ids, 12)
    assert ta == tb
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y, rtol=1e-4, atol=1e-4)


def test_generate_native_equals_python_and_transformers():
    model = _compressed(_tiny(), "int8")
    ids = torch.randint(0, VOCAB, (1, 3), generator=torch.Generator().manual_seed(4))
    with torch.inference_mode():
        want = model.generate(ids, max_new_tokens=20, min_new_tokens=20, do_sample=False, eos_token_id=None,
                              pad_token_id=0)
    assert torch.equal(Decoder(model, max_len=30).generate(ids, 20, eos_token_id=None), want)
    assert torch.equal(Decoder(model, max_len=30, native=False).generate(ids, 20, eos_token_id=None), want)
    # the step count stops at the cache: the last step that fits, then ValueError
    dec = Decoder(model, max_len=4)
    dec.prefill(ids)
    dec.step(1)
    with pytest.raises(ValueError, match="cache is full"):
        dec.step(1)


class _Scaled(torch.nn.Module):
    """A projection the C++ step has no kernel for."""

    def __init__(self, lin):
        super().__init__()
        self.lin, self.in_features, self.out_features = lin, lin.in_features, lin.out_features

    def forward(self, x):
        return self.lin(x) * 1.0


def test_unsupported_layer_falls_back_to_python_step():
    model = _compressed(_tiny(), "int8")
    attn = model.model.layers[1].self_attn
    attn.o_proj = _Scaled(torch.nn.Linear(attn.o_proj.in_features, attn.o_proj.out_features, bias=False))
    dec = Decoder(model, max_len=30)
    assert not dec.native and "o of layer 1" in dec.native_reason and "_Scaled" in repr(dec)
    ids = torch.randint(0, VOCAB, (1, 3), generator=torch.Generator().manual_seed(4))
    assert dec.generate(ids, 5, eos_token_id=None).shape == (1, 8)


@pytest.mark.parametrize("n", [1, 5, 8, 17, 64, 100, 576, 1000, 4099])
def test_rms_norm_has_torch_bits(n):
    torch.manual_seed(n)
    mod = transformers.models.llama.modeling_llama.LlamaRMSNorm(n, eps=1e-5)
    with torch.no_grad():
        mod.weight.normal_()
    norm = _Norm(mod)
    lanes = _torch_lanes(norm, n)
    assert lanes is not None  # this torch build's sum order is reproduced
    for scale in (1e-4, 1.0, 1e3):
        x = torch.randn(1, n) * scale
        out = torch.empty(1, n)
        _C.torch_order_rms_norm(x.data_ptr(), norm.w.data_ptr(), norm.eps, n, lanes, out.data_ptr())
        assert torch.equal(out.view(torch.int32), norm(x).view(torch.int32))


@pytest.mark.parametrize("kernel", [k["name"] for k in _C.torch_silu_kernels()])
def test_torch_silu_kernels_have_torch_bits(kernel):
    if not next(k for k in _C.torch_silu_kernels() if k["name"] == kernel)["available"]:
        pytest.skip(f"{kernel}: this CPU lacks its ISA")
    block = _silu_block(96)
    assert block is not None  # this torch build's SiLU is reproduced
    g = torch.Generator().manual_seed(3)
    special = torch.tensor([0.0, -0.0, 1e-40, -1e-40, 88.0, -88.0, 100.5, -100.5, 104.5, -104.5, 200.0, -200.0,
                            3e38, -3e38, float("inf"), float("-inf"), float("nan")])
    for n in (1, 7, 16, 31, 32, 33, 100, 1536, 1537):
        x = torch.randn(n, generator=g) * torch.exp(torch.randn(n, generator=g) * 2)
        x[: min(n, special.numel())] = special[: min(n, special.numel())]
        y = x.clone()
        _C.torch_silu(y.data_ptr(), n, block, kernel)
        want = torch.nn.functional.silu(x)
        assert torch.equal(torch.isnan(y), torch.isnan(want))
        keep = ~torch.isnan(want)
        assert torch.equal(y[keep].view(torch.int32), want[keep].view(torch.int32)), n


def test_plan_refuses_bad_inputs():
    model = _compressed(_tiny(), "int8")
    dec = Decoder(model, max_len=16)
    plan = dec._plan
    for pos, tok in ((-1, 0), (16, 0), (0, VOCAB), (0, -1)):
        with pytest.raises(ValueError, match="DecodePlan"):
            plan.step(tok, pos, True, 1)
    with pytest.raises(ValueError, match="nthreads"):
        plan.step(0, 0, True, 0)
    with pytest.raises(ValueError, match="unknown slot"):
        plan.set_group(0, "mlp", dec._h.data_ptr(), 1, 1)
    with pytest.raises(ValueError, match="out of range"):
        plan.set_group(7, "qkv", dec._h.data_ptr(), 1, 1)
    with pytest.raises(ValueError, match="null pointer"):
        plan.set_group(0, "o", 0, 64, 64)
    # a group whose size disagrees with the model: refused by finalize, and step refuses until then
    ly = dec.layers[0]
    plan.set_group(0, "o", ly.o.y.data_ptr(), ly.o.n, ly.o.k + 1)
    with pytest.raises(ValueError, match="before finalize"):
        plan.step(0, 0, True, 1)
    with pytest.raises(ValueError, match="layer 0 o is"):
        plan.finalize()
    blob = ly.o.calls[0].packed
    with pytest.raises(ValueError):
        plan.add_q8(0, "o", "q8_dynamic", blob.data_ptr(), 10, 0, 0, 0)  # truncated blob: header check
    with pytest.raises(ValueError, match="q8_dynamic"):
        plan.add_q8(0, "o", "q9", blob.data_ptr(), blob.numel(), 0, 0, 0)
    with pytest.raises(ValueError, match="multiple"):
        _C.DecodePlan(64, 3, 2, 16, 96, VOCAB, 16, 2, 8, 32, *([dec._h.data_ptr()] * 6))
    with pytest.raises(ValueError, match="torch_lanes"):
        _C.DecodePlan(64, 4, 2, 16, 96, VOCAB, 16, 2, 3, 32, *([dec._h.data_ptr()] * 6))
    with pytest.raises(ValueError, match="exclusive"):
        plan.set_layer(0, dec._h.data_ptr(), 1e-5, dec._h.data_ptr(), 1e-5, dec._h.data_ptr(), 1.0, 4, True)
