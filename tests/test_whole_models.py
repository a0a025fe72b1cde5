"""Whole models through compress_: CNNs (convs, BatchNorm folding, fused activations), tied Llama embeddings,
GPT-2's Conv1D, and the report of every byte left in float."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import slimnn
from slimnn.nn.conv import Conv2dInt8, FoldedBatchNorm, FusedConvActivation
from slimnn.nn.embedding import QuantEmbedding

from tolerances import assert_exact

transformers = pytest.importorskip("transformers")


def _cnn() -> nn.Module:
    torch.manual_seed(0)
    m = nn.Sequential(
        nn.Conv2d(3, 16, 3, 2, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU6(),
        nn.Conv2d(16, 16, 3, 1, 1, groups=16, bias=False), nn.BatchNorm2d(16), nn.Hardswish(),
        nn.Conv2d(16, 32, 1, bias=False), nn.BatchNorm2d(32),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10),
    )
    g = torch.Generator().manual_seed(1)
    for mod in m.modules():
        if isinstance(mod, nn.BatchNorm2d):
            mod.running_mean.copy_(torch.randn(mod.num_features, generator=g) * 0.2)
            mod.running_var.copy_(torch.rand(mod.num_features, generator=g) + 0.5)
    return m.eval()


def test_cnn_compress_fold_fuse_save_load(tmp_path):
    m = _cnn()
    x = torch.randn(4, 3, 20, 20)
    ref = m(x).detach()
    report = slimnn.compress_(m, slimnn.Int8Config(), filter_fn=lambda mod, fqn: True)
    assert [type(m[i]) for i in (0, 3, 6)] == [Conv2dInt8] * 3
    assert all(isinstance(m[i], FoldedBatchNorm) for i in (1, 4, 7))
    assert isinstance(m[2], FusedConvActivation) and m[0].activation == "relu6" and m[3].activation == "hardswish"
    assert report.prepared == {"0": "BatchNorm 1 folded in", "3": "BatchNorm 4 folded in", "6": "BatchNorm 7 folded in"}
    assert report.float_modules == {}
    y = m(x)
    assert F.cosine_similarity(y.flatten(), ref.flatten(), 0) > 0.999
    path = tmp_path / "cnn.safetensors"
    slimnn.save(m, path)
    with torch.device("meta"):
        skeleton = _cnn_skeleton()
    loaded = slimnn.load(path, skeleton)
    assert_exact(loaded(x), y)


def _cnn_skeleton() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, 2, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU6(),
        nn.Conv2d(16, 16, 3, 1, 1, groups=16, bias=False), nn.BatchNorm2d(16), nn.Hardswish(),
        nn.Conv2d(16, 32, 1, bias=False), nn.BatchNorm2d(32),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10),
    )


def test_filter_keeps_convs_float_and_reports_them():
    m = _cnn()
    report = slimnn.compress_(m, slimnn.Int8Config(), filter_fn=lambda mod, fqn: not isinstance(mod, nn.Conv2d))
    assert report.skipped["0"] == "rejected by filter_fn"
    assert report.float_modules["0"] == (16 * 3 * 9 * 4, "rejected by filter_fn")
    assert report.float_modules["1"][1].startswith("normalization layer")
    assert "left in float" in str(report) and "of the float bytes compressed" in str(report)


def _llama(vocab=512, hidden=64, layers=2, inter=128, heads=4, kv=2):
    cfg = transformers.LlamaConfig(vocab_size=vocab, hidden_size=hidden, intermediate_size=inter,
                                   num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=kv,
                                   tie_word_embeddings=True)
    torch.manual_seed(0)
    return transformers.LlamaForCausalLM(cfg).eval(), cfg


@pytest.mark.parametrize("config", [slimnn.Int8Config(), slimnn.Int4Config(group_size=32)], ids=["int8", "int4"])
def test_tied_llama_compressed_once(config):
    m, cfg = _llama()
    ids = torch.randint(0, cfg.vocab_size, (2, 9))
    with torch.no_grad():
        ref = m(ids).logits
    assert m.lm_head.weight is m.model.embed_tokens.weight
    report = slimnn.compress_(m, config, filter_fn=lambda mod, fqn: True)
    emb = m.model.embed_tokens
    assert isinstance(emb, QuantEmbedding) and emb.packed is m.lm_head.packed and emb.tied_to == "lm_head"
    assert "tied to lm_head" in report.converted["model.embed_tokens"]
    assert all(why.startswith("normalization") for _, why in report.float_modules.values())
    with torch.no_grad():
        y = m(ids).logits
    assert F.cosine_similarity(y.flatten(), ref.flatten(), 0) > (0.999 if isinstance(config, slimnn.Int8Config) else 0.98)


def test_tied_llama_tie_survives_save_load(tmp_path):
    m, cfg = _llama()
    slimnn.compress_(m, slimnn.Int8Config(), filter_fn=lambda mod, fqn: True)
    ids = torch.randint(0, cfg.vocab_size, (1, 7))
    with torch.no_grad():
        y = m(ids).logits
    path = tmp_path / "llama.safetensors"
    slimnn.save(m, path)
    man = slimnn.io.manifest(path)
    assert man["modules"]["model.embed_tokens"]["meta"]["tied_to"] == "lm_head"
    assert not any(k.startswith("model.embed_tokens.") for k in man["tensors"])  # stored once, in the head
    with torch.device("meta"):
        skeleton = transformers.LlamaForCausalLM(cfg)
    loaded = slimnn.load(path, skeleton)
    assert loaded.model.embed_tokens.packed is loaded.lm_head.packed
    with torch.no_grad():
        assert_exact(loaded(ids).logits, y)


def test_untied_embedding_saved_with_its_rows(tmp_path):
    emb = nn.Sequential(nn.Embedding(100, 32), nn.Linear(32, 8))
    slimnn.compress_(emb, slimnn.Int8Config(), filter_fn=lambda mod, fqn: True)
    assert isinstance(emb[0], QuantEmbedding) and emb[0].tied_to is None
    ids = torch.randint(0, 100, (3, 5))
    y = emb(ids)
    slimnn.save(emb, tmp_path / "e.safetensors")
    with torch.device("meta"):
        skeleton = nn.Sequential(nn.Embedding(100, 32), nn.Linear(32, 8))
    assert_exact(slimnn.load(tmp_path / "e.safetensors", skeleton)(ids), y)


def test_gpt2_every_conv1d_converted():
    cfg = transformers.GPT2Config(n_layer=2, n_embd=64, n_head=4, vocab_size=300, n_positions=32,
                                  bos_token_id=0, eos_token_id=0)
    torch.manual_seed(0)
    m = transformers.GPT2LMHeadModel(cfg).eval()
    ids = torch.randint(0, 300, (2, 10))
    with torch.no_grad():
        ref = m(ids).logits
    report = slimnn.compress_(m, slimnn.Int8Config(), filter_fn=lambda mod, fqn: True)
    left = [n for n, mod in m.named_modules() if type(mod).__name__ == "Conv1D"]
    assert left == []
    assert sum(v.startswith("Int8Linear") for v in report.converted.values()) == 4 * 2 + 1
    assert m.transformer.wte.packed is m.lm_head.packed
    with torch.no_grad():
        assert F.cosine_similarity(m(ids).logits.flatten(), ref.flatten(), 0) > 0.999


@pytest.mark.parametrize("embeddings", [False, True])
def test_gpt2_loads_into_its_conv1d_skeleton(tmp_path, embeddings):
    # the CLI tells users to load a compressed GPT-2 file into GPT2LMHeadModel built on the meta device: that
    # skeleton has Conv1D modules where the file holds the compressed Linears compress_ made of them
    cfg = transformers.GPT2Config(n_layer=2, n_embd=64, n_head=4, vocab_size=300, n_positions=32,
                                  bos_token_id=0, eos_token_id=0)
    torch.manual_seed(0)
    m = transformers.GPT2LMHeadModel(cfg).eval()
    slimnn.compress_(m, slimnn.Int8Config(), filter_fn=(lambda mod, fqn: True) if embeddings else None)
    ids = torch.randint(0, 300, (2, 10))
    with torch.no_grad():
        y = m(ids).logits
    slimnn.save(m, tmp_path / "gpt2.safetensors")
    with torch.device("meta"):
        skeleton = transformers.GPT2LMHeadModel(cfg)
    loaded = slimnn.load(tmp_path / "gpt2.safetensors", skeleton)
    assert [n for n, mod in loaded.named_modules() if type(mod).__name__ == "Conv1D"] == []
    with torch.no_grad():
        assert_exact(loaded(ids).logits, y)
    # a Conv1D of another width is refused by name
    with torch.device("meta"):
        wrong = transformers.GPT2LMHeadModel(transformers.GPT2Config(n_layer=2, n_embd=64, n_head=4, n_inner=128,
                                                                      vocab_size=300, n_positions=32))
    with pytest.raises(slimnn.io.LoadError, match="mlp.c_fc.*out_features"):
        slimnn.load(tmp_path / "gpt2.safetensors", wrong)


@pytest.mark.slow
def test_smollm2_shapes_size_targets():
    """SmolLM2-135M's shapes (random weights): int8 <= 0.30x and int4 <= 0.20x of the fp32 bytes, tie kept."""
    for config, limit in ((slimnn.Int8Config(), 0.30), (slimnn.Int4Config(group_size=32), 0.20)):
        m, cfg = _llama(vocab=49152, hidden=576, layers=30, inter=1536, heads=9, kv=3)
        report = slimnn.compress_(m, config, filter_fn=lambda mod, fqn: True)
        assert report.bytes_after <= limit * report.bytes_before, report.summary()
        assert m.model.embed_tokens.packed is m.lm_head.packed
