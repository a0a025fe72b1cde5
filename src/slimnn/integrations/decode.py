"""Token-by-token greedy decoding of a (slimnn-compressed) Llama-architecture causal LM, without transformers'
per-token Python: ``slimnn.Decoder`` and ``slimnn.generate``.

    import slimnn
    slimnn.compress_(model, slimnn.Int8Config())            # or Int4Config(), or leave it float
    out = slimnn.generate(model, input_ids, max_new_tokens=64)   # == model.generate(..., do_sample=False)

What one decode step does (docs/decode.md):
  - the projections that read the same input run as one kernel call: q/k/v, and gate/up. Their blobs are
    unpacked and repacked as one (rows concatenated: per-output-row int8 scales and int4 groups along K make
    this exact), and the fused call is checked once, when the Decoder is built, to give the very bits of the
    separate calls (else the layers stay separate, each writing its slice of one output buffer);
  - the kernels are called through the bound C++ entry with preallocated outputs (no per-call checks: the
    Decoder checked every blob and buffer once);
  - a static KV cache, written in place; attention of the one query against it by slimnn's attention kernel
    (``ops.attention``'s binding, reading the cache through strides; grouped-query attention native);
  - RoPE from precomputed cos/sin tables (the model's own rotary module evaluated once for every position,
    so the angles are its bits), applied to q and k in one pass; RMSNorm in transformers' float32 ops.
The prompt (prefill) runs through the model's own forward pass, its keys and values then copied into the
static cache: prefill speed and results are the model's.

Greedy output equals transformers' ``generate(do_sample=False)`` on the same model token for token when the
model runs slimnn's attention (``slimnn.fast_attention_(model)``: the same attention kernel then serves both);
with torch's SDPA in the model, attention rounds differently, so near-ties can pick different tokens.

Supported: ``LlamaForCausalLM``, ``MistralForCausalLM`` (no sliding window shorter than the sequence),
``Qwen2ForCausalLM`` (q/k/v biases), batch 1, float32 hidden states; Linear layers float, ``Int8Linear`` or
``Int4Linear`` (any mix). Anything else: ValueError naming what is not supported.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

import torch
from torch import Tensor, nn

from .. import _C
from ..formats.packed import pack_q4, pack_q8, unpack_q4, unpack_q8
from ..nn.base import bare_linear
from ..nn.fused import FusedActivation
from ..nn.int4 import Int4Linear
from ..nn.embedding import QuantEmbedding
from ..nn.int8 import Int8Linear
from ..ops.q8 import activation_code
from ..runtime.threads import get_num_threads
from ..techniques.fusion import activation_of

SUPPORTED = {"LlamaForCausalLM": "llama", "MistralForCausalLM": "mistral", "Qwen2ForCausalLM": "qwen2"}
_Q8_KIND = {"dynamic": "q8_dynamic", "weight_only": "q8_weight_only"}
_Q4_KIND = {"dynamic": "q4_dynamic", "weight_only": "q4_weight_only"}
_F32 = torch.float32


# ---- fusing the layers that read one input ----------------------------------------------------------------

def _same(a: Optional[Tensor], b: Optional[Tensor]) -> bool:
    return (a is None and b is None) or (a is not None and b is not None and torch.equal(a, b))


def _cat_bias(mods: Sequence[nn.Module]) -> Optional[Tensor]:
    bs = [m.bias for m in mods]
    if all(b is None for b in bs):
        return None
    return torch.cat([torch.zeros(m.out_features) if b is None else b.detach().float() for m, b in zip(mods, bs)])


def fuse_rows(mods: Sequence[nn.Module]) -> Optional[nn.Module]:
    """One Int8Linear / Int4Linear computing ``torch.cat([m(x) for m in mods], -1)`` (no fused activation),
    built by concatenating the blobs' output rows; None when the layers cannot share one blob (different
    types, modes, group sizes, zero modes, scale dtypes, AWQ input factors, or not slimnn layers)."""
    t = type(mods[0])
    if t not in (Int8Linear, Int4Linear) or any(type(m) is not t for m in mods):
        return None
    k = mods[0].in_features
    if any(m.in_features != k or m.config.mode != mods[0].config.mode for m in mods):
        return None
    n = sum(m.out_features for m in mods)
    if t is Int8Linear:
        parts = [unpack_q8(m.packed) for m in mods]
        if any(p[2] != parts[0][2] for p in parts):
            return None
        mod = bare_linear(Int8Linear, mods[0].config, k, n)
        mod.activation = None
        mod.register_buffer("packed", pack_q8(torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts], 1),
                                              parts[0][2]))
    else:
        if any(not _same(m.in_mul, mods[0].in_mul) for m in mods):
            return None
        parts = [unpack_q4(m.packed) for m in mods]
        z0 = parts[0][2]
        if any(p[3] != parts[0][3] or p[1].dtype != parts[0][1].dtype or (p[2] is None) != (z0 is None)
               or (z0 is not None and p[2].dtype != z0.dtype) for p in parts):
            return None
        zeros = None if z0 is None else torch.cat([p[2] for p in parts], 1)
        mod = Int4Linear.from_quantized(torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts], 1), zeros,
                                        parts[0][3], None, mods[0].in_mul, mods[0].config)
    mod.register_buffer("bias", _cat_bias(mods))
    mod.last_kernel = None
    return mod


class _Call:
    """y[:, col0:col0+n] (a row of ``y``'s storage) = x W^T + b (with an Int8Linear's fused activation) for one
    layer, through the bound kernel when the layer is an Int8Linear / Int4Linear, else through the module (its
    output copied in). x: a float32 (1, K) contiguous row. The call holds the bias / input factors it points
    at, so they outlive it even if the module's buffers are replaced (the Decoder reads the model as built)."""

    def __init__(self, mod: nn.Module, y: Tensor, col0: int) -> None:
        self.mod, self.y, self.col0 = mod, y, col0
        self.n, self.k = mod.out_features, mod.in_features
        self.view = y[:, col0:col0 + self.n]
        self.ptr = y.data_ptr() + 4 * col0
        self.ldy = y.shape[1]
        t = type(mod)
        self.bias = getattr(mod, "bias", None)
        self.bias_ptr = 0 if self.bias is None else self.bias.data_ptr()
        if t is Int8Linear and mod.config.kernel != "reference":
            self.kind = _Q8_KIND[mod.config.mode]
            self.act = mod._act_code
            self.packed = mod.packed
            self.run = self._q8
        elif t is Int4Linear and mod.config.kernel != "reference":
            self.kind = _Q4_KIND[mod.config.mode]
            self.in_mul = mod.in_mul
            self.in_mul_ptr = 0 if mod.in_mul is None else mod.in_mul.data_ptr()
            self.packed = mod.packed
            self.run = self._q4
        else:
            self.run = self._module

    def _q8(self, x: Tensor, nt: int) -> None:
        p = self.packed
        _C.q8_linear(self.kind, x.data_ptr(), False, 1, self.k, p.data_ptr(), p.numel(), self.bias_ptr, self.ptr,
                     self.ldy, nt, self.act)

    def _q4(self, x: Tensor, nt: int) -> None:
        p = self.packed
        _C.q4_linear(self.kind, x.data_ptr(), False, 1, self.k, self.in_mul_ptr, p.data_ptr(), p.numel(),
                     self.bias_ptr, self.ptr, self.ldy, nt)

    def _module(self, x: Tensor, nt: int) -> None:
        self.view.copy_(self.mod(x).reshape(1, self.n))


class _Group:
    """The layers ``mods`` that read one input, writing one (1, sum of N) float32 buffer: one fused kernel
    call when :func:`fuse_rows` can merge them and the fused call gives the separate calls' bits (checked
    here on random inputs), else one call per layer into its slice. Only the first layer may have a fused
    epilogue activation (an Int8Linear gate_proj's SiLU): a fused group then applies it to its columns after
    the call with the activation kernel the epilogues use (``_C.act_apply``), checked likewise."""

    def __init__(self, mods: Sequence[nn.Module], fuse: bool = True) -> None:
        self.n = sum(m.out_features for m in mods)
        self.k = mods[0].in_features
        self.y = torch.zeros(1, self.n)
        self.views, c0 = [], 0
        for m in mods:
            self.views.append(self.y[:, c0:c0 + m.out_features])
            c0 += m.out_features
        acts = [getattr(m, "_act_code", 0) if type(m) is Int8Linear else 0 for m in mods]
        self.fused: Optional[nn.Module] = None
        self.post_act: tuple[int, int] = (0, 0)   # (code, columns) applied in place after a fused call
        separate = self._separate(mods)
        if fuse and len(mods) > 1 and all(a == 0 for a in acts[1:]):
            f = fuse_rows(mods)
            if f is not None:
                call = _Call(f, self.y, 0)
                post = (acts[0], mods[0].out_features) if acts[0] else (0, 0)
                if self._agrees(separate, call, post):
                    self.fused, self.calls, self.post_act = f, [call], post
                    self._act_kernel = _act_kernel()
                    return
        self.calls = separate

    def _separate(self, mods: Sequence[nn.Module]) -> list:
        calls, c0 = [], 0
        for m in mods:
            calls.append(_Call(m, self.y, c0))
            c0 += m.out_features
        return calls

    def _agrees(self, separate: list, call: _Call, post: tuple[int, int]) -> bool:
        g = torch.Generator().manual_seed(0)
        for scale in (1.0, 1e-3, 30.0):
            x = torch.randn(1, self.k, generator=g) * scale
            for c in separate:
                c.run(x, 1)
            want = self.y.clone()
            self.y.zero_()
            call.run(x, 1)
            if post[0]:
                _C.act_apply(_act_kernel(), post[0], self.y.data_ptr(), post[1])
            if not torch.equal(want.view(torch.int32), self.y.view(torch.int32)):
                return False
        return True

    def __call__(self, x: Tensor, nt: int) -> Tensor:
        for c in self.calls:
            c.run(x, nt)
        if self.post_act[0]:
            _C.act_apply(self._act_kernel, self.post_act[0], self.y.data_ptr(), self.post_act[1])
        return self.y


def _act_kernel() -> str:
    """The activation kernel the GEMM epilogues use on this CPU: the best available one."""
    return next(k["name"] for k in _C.act_kernels() if k["available"])


# ---- the model --------------------------------------------------------------------------------------------

class _Norm:
    """transformers' LlamaRMSNorm in its own float32 ops: w * (x * rsqrt(mean(x^2) + eps))."""

    def __init__(self, mod: nn.Module) -> None:
        w = getattr(mod, "weight", None)
        eps = getattr(mod, "variance_epsilon", getattr(mod, "eps", None))
        if not isinstance(w, Tensor) or w.dtype != _F32 or eps is None:
            raise ValueError(f"Decoder: {type(mod).__name__} is not an RMSNorm with a float32 weight")
        self.w, self.eps = w.detach(), float(eps)

    def __call__(self, x: Tensor) -> Tensor:
        return self.w * (x * torch.rsqrt((x * x).mean(-1, keepdim=True) + self.eps))  # x * x: pow(x, 2)'s bits


class _Layer:
    def __init__(self, layer: nn.Module, heads: int, kv: int, hd: int, fuse: bool) -> None:
        a, f = layer.self_attn, layer.mlp
        self.n1, self.n2 = _Norm(layer.input_layernorm), _Norm(layer.post_attention_layernorm)
        self.qkv = _Group([a.q_proj, a.k_proj, a.v_proj], fuse)
        self.o = _Group([a.o_proj], False)
        self.gu = _Group([f.gate_proj, f.up_proj], fuse)
        self.down = _Group([f.down_proj], False)
        if isinstance(f.act_fn, FusedActivation):  # the activation runs in gate_proj's epilogue
            self.act_fn: Optional[Callable[[Tensor], Tensor]] = None
        else:
            self.act_fn = f.act_fn
        nq, nk = heads * hd, kv * hd
        self.qk = self.qkv.y[:, :nq + nk].view(heads + kv, 2, hd // 2)  # q and k heads, halves for rotate_half
        self.kv_new = self.qkv.y[:, nq:].view(2, kv, hd)  # this position's (rotated) keys, then its values
        self.q_ptr = self.qkv.y.data_ptr()
        self.gate, self.up = self.gu.views
        self.attn_out = torch.zeros(1, nq)
        self.scaling = float(a.scaling)
        self.mlp_in = torch.zeros(1, f.down_proj.in_features)


class Decoder:
    """Greedy token-by-token decoding of ``model`` (see the module docstring) with a static KV cache.

    ``max_len``: tokens the cache holds (prompt + new); default the model's ``max_position_embeddings``,
    capped at 4096. ``fuse=False`` keeps every projection its own kernel call (for comparison).
    Raises ValueError for a model it does not support. The Decoder reads the model's weights as they were
    when it was built (fused copies of q/k/v and gate/up among them): build a new one after changing the
    model. One Decoder serves one sequence at a time (its buffers are shared between calls).
    """

    def __init__(self, model: nn.Module, max_len: Optional[int] = None, fuse: bool = True,
                 native: bool = True) -> None:
        arch = type(model).__name__
        if arch not in SUPPORTED:
            raise ValueError(f"Decoder supports {sorted(SUPPORTED)}; got {arch}")
        cfg = model.config
        inner = model.model
        self.model, self.config = model, cfg
        heads, kv = int(cfg.num_attention_heads), int(cfg.num_key_value_heads)
        hd = int(getattr(cfg, "head_dim", None) or cfg.hidden_size // heads)
        if hd % 2:
            raise ValueError(f"Decoder: head_dim {hd} is odd (rotary embedding needs pairs)")
        if getattr(cfg, "hidden_act", "silu") not in ("silu", "gelu", "gelu_pytorch_tanh", "relu"):
            raise ValueError(f"Decoder: hidden_act {cfg.hidden_act!r} not supported")
        win, types = getattr(cfg, "sliding_window", None), getattr(cfg, "layer_types", None)
        windowed = (any(t != "full_attention" for t in types) if types is not None
                    else bool(getattr(cfg, "use_sliding_window", True)))
        self.window: Optional[int] = int(win) if win and windowed else None
        cap = int(getattr(cfg, "max_position_embeddings", 4096) or 4096)
        self.max_len = int(max_len) if max_len is not None else min(cap, 4096)
        if self.max_len < 1:
            raise ValueError(f"Decoder: max_len must be >= 1, got {max_len}")
        for p in model.parameters():
            if p.is_floating_point() and p.dtype != _F32:
                raise ValueError(f"Decoder: float32 models only (found a {p.dtype} parameter)")
            if p.device.type != "cpu":
                raise ValueError(f"Decoder: the model must be on the CPU (found {p.device})")
        self.heads, self.kv, self.hd = heads, kv, hd
        self.layers = [_Layer(layer, heads, kv, hd, fuse) for layer in inner.layers]
        self.norm = _Norm(inner.norm)
        self.head = _Group([model.lm_head], False)
        self.embed = inner.embed_tokens
        self.vocab = self.head.n
        # RoPE tables: the model's rotary module at every position (its bits, attention scaling included),
        # sin's first half negated: rotate_half(x) * sin == flip_halves(x) * sin_signed.
        with torch.inference_mode(False), torch.no_grad():
            pos = torch.arange(self.max_len).unsqueeze(0)
            cos, sin = inner.rotary_emb(torch.zeros(1, dtype=_F32), pos)
        cos, sin = cos[0].to(_F32), sin[0].to(_F32)
        if cos.shape != (self.max_len, hd):
            raise ValueError(f"Decoder: rotary tables of shape {tuple(cos.shape)}, expected ({self.max_len}, {hd})")
        h2 = hd // 2
        self.cos = cos.reshape(self.max_len, 1, 2, h2).contiguous()
        self.sin = torch.cat([-sin[:, :h2], sin[:, h2:]], 1).reshape(self.max_len, 1, 2, h2).contiguous()
        # The KV cache: per layer, the keys then the values, each kv head's positions contiguous
        # ([L, 2, kv, max_len, hd]): attention streams one head's keys (then values) as one run of memory, which
        # the hardware prefetchers follow (a position-major cache put 1.5 KB between a head's rows).
        self.cache = torch.zeros(len(self.layers), 2, kv, self.max_len, hd)
        for ly, c in zip(self.layers, self.cache):
            ly.cache = c
            ly.k_ptr = c.data_ptr()
            ly.v_ptr = ly.k_ptr + 4 * kv * self.max_len * hd
        self.length = 0  # tokens in the cache
        # Attention of the one new position: the query heads that share kv head j are query rows of one
        # [batch 1, kv heads, groups, hd] problem (transformers' repeat_kv maps query head h to kv head
        # h // groups), so the kernel reads each kv head's keys once for its group.
        g = heads // kv
        n_qkv = self.layers[0].qkv.n if self.layers else 0
        self._attn_sizes = [1, kv, kv, g, 0, hd, hd]
        self._q_st = [n_qkv, g * hd, hd]
        self._cache_st = [2 * kv * self.max_len * hd, self.max_len * hd, hd]
        self._o_st = [heads * hd, g * hd, hd]
        self._ids = torch.zeros(1, 1, dtype=torch.long)
        self._plan: Any = None
        self.native_reason: Optional[str] = "native=False" if not native else None
        if native:
            self._plan, self.native_reason = _native_plan(self)

    @property
    def native(self) -> bool:
        """True when :meth:`step` runs the C++ decode step (one call per token); else the Python step
        (``native_reason`` says why)."""
        return self._plan is not None

    def __repr__(self) -> str:
        step = "native (C++, one call per token)" if self.native else f"python ({self.native_reason})"
        return (f"Decoder({type(self.model).__name__}, layers={len(self.layers)}, max_len={self.max_len}, "
                f"fused_groups={self.fused_groups()}, step={step})")

    # -- state --
    def reset(self) -> None:
        self.length = 0

    def fused_groups(self) -> int:
        """How many projection groups (q/k/v, gate/up) run as one fused kernel call."""
        return sum((ly.qkv.fused is not None) + (ly.gu.fused is not None) for ly in self.layers)

    def prefill(self, input_ids: Tensor) -> Tensor:
        """Runs the prompt (1 x T, T >= 1) through the model's own forward pass into the cache (which it
        replaces); returns the last position's logits (1 x vocab)."""
        ids = _check_ids(input_ids, self.vocab)
        t = ids.shape[1]
        if t == 0:
            raise ValueError("Decoder.prefill: the prompt holds no token (at least one is needed)")
        if t > self.max_len:
            raise ValueError(f"Decoder.prefill: prompt of {t} tokens, the cache holds {self.max_len}")
        if self.window and t > self.window:
            raise ValueError(f"Decoder: sequences longer than the sliding window ({self.window}) not supported")
        from transformers import DynamicCache

        with torch.inference_mode():
            cache = DynamicCache(config=self.config)
            out = self.model(ids, past_key_values=cache, use_cache=True, logits_to_keep=1)
            for c, layer in zip(self.cache, cache.layers):
                c[0, :, :t].copy_(layer.keys[0])
                c[1, :, :t].copy_(layer.values[0])
        self.length = t
        return out.logits[:, -1].to(_F32)

    def step(self, token: int) -> Tensor:
        """Appends ``token`` at the next position; returns the next position's logits (1 x vocab, a buffer
        the next call overwrites)."""
        pos = self._check_step(token)
        nt = get_num_threads()
        if self._plan is not None:
            self._native_step(token, pos, False, nt)
            return self.head.y
        return self._python_step(token, pos, nt)

    def _check_step(self, token: Any) -> int:
        pos = self.length
        if pos >= self.max_len:
            raise ValueError(f"Decoder.step: the cache is full ({self.max_len} tokens)")
        if self.window and pos + 1 > self.window:
            raise ValueError(f"Decoder: sequences longer than the sliding window ({self.window}) not supported")
        if isinstance(token, bool) or not isinstance(token, int) or not 0 <= token < self.vocab:
            raise ValueError(f"Decoder.step: token must be an int in [0, {self.vocab}), got {token!r}")
        return pos

    def _native_step(self, token: int, pos: int, argmax: bool, nt: int) -> int:
        """The C++ step (kernels/decode): the whole forward of one position, the GIL released once."""
        if not self._native_embed:
            with torch.inference_mode():
                self._ids.fill_(token)
                self._h.copy_(self.embed(self._ids).reshape(1, -1))
        out = self._plan.step(token, pos, argmax, nt)
        self.length = pos + 1
        return out

    def _python_step(self, token: int, pos: int, nt: int) -> Tensor:
        with torch.inference_mode():
            self._ids.fill_(token)
            h = self.embed(self._ids).reshape(1, -1).to(_F32)
            cos, sin = self.cos[pos], self.sin[pos]
            sizes, qst, cst, ost = self._attn_sizes, self._q_st, self._cache_st, self._o_st
            sizes[4] = pos + 1
            attn = _C.attention_f32
            for ly in self.layers:
                ly.qkv(ly.n1(h), nt)
                qk = ly.qk
                torch.add(qk * cos, qk.flip(1) * sin, out=qk)  # (x * cos) + (rotate_half(x) * sin), q and k heads
                ly.cache[:, :, pos].copy_(ly.kv_new)
                attn(sizes, ly.q_ptr, qst, ly.k_ptr, cst, ly.v_ptr, cst, ly.attn_out.data_ptr(), ost, 0, 0, [0, 0, 0],
                     False, ly.scaling, nt, "")
                h = h + ly.o(ly.attn_out, nt)
                ly.gu(ly.n2(h), nt)
                if ly.act_fn is None:
                    torch.mul(ly.gate, ly.up, out=ly.mlp_in)
                else:
                    torch.mul(ly.act_fn(ly.gate), ly.up, out=ly.mlp_in)
                h = h + ly.down(ly.mlp_in, nt)
            logits = self.head(self.norm(h), nt)
        self.length = pos + 1
        return logits

    def generate(self, input_ids: Tensor, max_new_tokens: int, eos_token_id: Any = "model") -> Tensor:
        """Greedy decoding: ``input_ids`` (1 x T) followed by up to ``max_new_tokens`` tokens (stopping after
        an ``eos_token_id``: an int, a list of ints, None for never, or "model" for the model's generation
        config), as a 1 x (T + new) int64 tensor."""
        ids = _check_ids(input_ids, self.vocab)
        if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 0:
            raise ValueError(f"max_new_tokens must be an int >= 0, got {max_new_tokens!r}")
        if ids.shape[1] + max_new_tokens > self.max_len:
            raise ValueError(f"Decoder: {ids.shape[1]} + {max_new_tokens} tokens exceed the cache ({self.max_len})")
        stop = _eos_set(self.model, eos_token_id)
        if max_new_tokens == 0:
            return ids.clone()
        logits = self.prefill(ids)
        out = ids[0].tolist()
        tok = int(torch.argmax(logits, -1))
        for n in range(max_new_tokens):
            out.append(tok)
            if tok in stop or n == max_new_tokens - 1:
                break
            if self._plan is not None:  # the greedy argmax in the same C++ call
                tok = self._native_step(tok, self._check_step(tok), True, get_num_threads())
            else:
                tok = int(torch.argmax(self.step(tok), -1))
        return torch.tensor([out], dtype=torch.long)


def _torch_lanes(norm: _Norm, n: int) -> Optional[int]:
    """The vector width (floats) of torch's CPU sum kernel, found by matching its RMSNorm bits on random rows
    (8 on x86-64 builds of torch 2.13, AVX-512 machines included: its sum kernel is dispatched at AVX2);
    None when no width reproduces them (the C++ norm then rounds on its own, 8)."""
    g = torch.Generator().manual_seed(1)
    xs = [torch.randn(1, n, generator=g) * s for s in (1.0, 1e-3, 40.0)]
    out = torch.empty(1, n)
    w = norm.w.contiguous()
    for lanes in (8, 16, 4, 1):
        ok = True
        for x in xs:
            _C.torch_order_rms_norm(x.data_ptr(), w.data_ptr(), norm.eps, n, lanes, out.data_ptr())
            if not torch.equal(out.view(torch.int32), norm(x).view(torch.int32)):
                ok = False
                break
        if ok:
            return lanes
    return None


def _silu_block(n: int) -> Optional[int]:
    """The floats per vector step of torch's elementwise loop for which the C++ torch-order SiLU gives
    ``torch.nn.functional.silu``'s bits on rows of ``n`` (32 on AVX-512, 16 on AVX2: two vectors); None if
    none does (the C++ step then uses the act kernel's SiLU: the same function, rounded differently)."""
    g = torch.Generator().manual_seed(2)
    xs = [torch.randn(1, n, generator=g) * s for s in (0.5, 4.0, 60.0)]
    for block in (32, 16, 8, 0):
        ok = True
        for x in xs:
            y = x.clone()
            _C.torch_silu(y.data_ptr(), n, block)
            if not torch.equal(y.view(torch.int32), torch.nn.functional.silu(x).view(torch.int32)):
                ok = False
                break
        if ok:
            return block
    return None


def _mlp_act(ly: _Layer, silu_block: Optional[int]) -> Optional[tuple[int, bool]]:
    """(act-kernel code applied to the gate, 0 for none or already applied; whether it is torch's SiLU
    instead), or None if the activation has no kernel here."""
    if ly.act_fn is None:
        return 0, False
    name = activation_of(ly.act_fn) if isinstance(ly.act_fn, nn.Module) else None
    if name is None:
        return None
    if name == "silu" and silu_block is not None:  # nn.SiLU or transformers' SiLUActivation: F.silu either way
        return 0, True
    return activation_code(name), False


def _native_plan(dec: "Decoder") -> tuple[Any, Optional[str]]:
    """The C++ step of ``dec`` (``_C.DecodePlan`` over the Decoder's own buffers, tables and blobs), or None
    and the reason it cannot run natively (the Python step then serves)."""
    if not dec.layers:
        return None, "a model with no layers"
    hidden = dec.layers[0].n1.w.numel()
    inter = dec.layers[0].mlp_in.shape[1]
    silu_block = _silu_block(inter)
    for i, ly in enumerate(dec.layers):
        if ly.mlp_in.shape[1] != inter or ly.o.n != hidden or ly.down.n != hidden:
            return None, f"layer {i} has other widths than layer 0"
        if _mlp_act(ly, silu_block) is None:
            return None, f"layer {i}: activation {type(ly.act_fn).__name__} has no slimnn kernel"
    lanes = _torch_lanes(dec.norm, hidden) or 8
    dec._h, dec._xn = torch.zeros(1, hidden), torch.zeros(1, hidden)
    dec._attn, dec._mlp = torch.zeros(1, dec.heads * dec.hd), torch.zeros(1, inter)
    dec._norm_w = [n.w.contiguous() for ly in dec.layers for n in (ly.n1, ly.n2)] + [dec.norm.w.contiguous()]
    plan = _C.DecodePlan(hidden, dec.heads, dec.kv, dec.hd, inter, dec.vocab, dec.max_len, len(dec.layers), lanes,
                         silu_block or 0, dec.cos.data_ptr(), dec.sin.data_ptr(), dec._h.data_ptr(), dec._xn.data_ptr(),
                         dec._attn.data_ptr(), dec._mlp.data_ptr())

    def add(layer: int, slot: str, grp: _Group) -> Optional[str]:
        plan.set_group(layer, slot, grp.y.data_ptr(), grp.n, grp.k, grp.post_act[0], grp.post_act[1])
        for c in grp.calls:
            if c.run == c._q8:
                plan.add_q8(layer, slot, c.kind, c.packed.data_ptr(), c.packed.numel(), c.bias_ptr, c.col0, c.act)
            elif c.run == c._q4:
                plan.add_q4(layer, slot, c.kind, c.packed.data_ptr(), c.packed.numel(), c.bias_ptr, c.in_mul_ptr,
                            c.col0)
            elif type(c.mod) is nn.Linear and c.mod.weight.dtype == _F32 and c.mod.weight.is_contiguous() and (
                    c.bias is None or c.bias.is_contiguous()):
                plan.add_f32(layer, slot, c.mod.weight.data_ptr(), c.n, c.k, c.bias_ptr, c.col0)
            else:
                return f"{slot} of layer {layer}: {type(c.mod).__name__} has no native kernel"
        return None

    for i, ly in enumerate(dec.layers):
        w1, w2 = dec._norm_w[2 * i], dec._norm_w[2 * i + 1]
        code, torch_silu = _mlp_act(ly, silu_block)
        plan.set_layer(i, w1.data_ptr(), ly.n1.eps, w2.data_ptr(), ly.n2.eps, ly.cache.data_ptr(), ly.scaling,
                       code, torch_silu)
        for slot in ("qkv", "o", "gu", "down"):
            why = add(i, slot, getattr(ly, slot))
            if why:
                return None, why
    why = add(-1, "head", dec.head)
    if why:
        return None, why
    plan.set_final_norm(dec._norm_w[-1].data_ptr(), dec.norm.eps)
    emb = dec.embed
    dec._native_embed = True
    if type(emb) is nn.Embedding and emb.weight.dtype == _F32 and emb.weight.is_contiguous() and \
            tuple(emb.weight.shape) == (dec.vocab, hidden):
        plan.set_embedding("f32", emb.weight.data_ptr(), emb.weight.numel() * 4)
    elif type(emb) is QuantEmbedding and emb.in_mul is None and (emb.num_embeddings, emb.embedding_dim) == (
            dec.vocab, hidden):
        plan.set_embedding(emb.fmt, emb.packed.data_ptr(), emb.packed.numel())
    else:  # the module's own lookup, then the C++ step from the hidden row
        dec._native_embed = False
        plan.set_embedding("none")
    plan.finalize()
    return plan, None


def _check_ids(input_ids: Any, vocab: int) -> Tensor:
    if not isinstance(input_ids, Tensor):
        raise ValueError(f"input_ids must be a torch.Tensor, got {type(input_ids).__name__}")
    if input_ids.dim() == 1:
        input_ids = input_ids.unsqueeze(0)
    if input_ids.dim() != 2 or input_ids.shape[0] != 1:
        raise ValueError(f"input_ids must be 1 x T (batch 1), got shape {tuple(input_ids.shape)}")
    if input_ids.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8, torch.int8):
        raise ValueError(f"input_ids must hold integers, got {input_ids.dtype}")
    ids = input_ids.to(torch.long).cpu()
    if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= vocab):
        raise ValueError(f"input_ids must lie in [0, {vocab})")
    return ids


def _eos_set(model: nn.Module, eos: Any) -> set:
    if isinstance(eos, str) and eos == "model":
        gc = getattr(model, "generation_config", None)
        eos = None if gc is None else gc.eos_token_id
    if eos is None:
        return set()
    items = [eos] if isinstance(eos, int) else list(eos) if isinstance(eos, (list, tuple)) else None
    if items is None or any(isinstance(e, bool) or not isinstance(e, int) for e in items):
        raise ValueError(f"eos_token_id must be an int, a list of ints, None or 'model', got {eos!r}")
    return set(items)


def generate(model: nn.Module, input_ids: Tensor, max_new_tokens: int, eos_token_id: Any = "model",
             fuse: bool = True) -> Tensor:
    """Greedy decoding of ``model`` through a :class:`Decoder` sized for this call (see there)."""
    ids = _check_ids(input_ids, int(getattr(model.config, "vocab_size", 1 << 62)))
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be an int >= 0, got {max_new_tokens!r}")
    return Decoder(model, max_len=max(1, ids.shape[1] + max_new_tokens), fuse=fuse).generate(
        ids, max_new_tokens, eos_token_id)
