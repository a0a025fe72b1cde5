"""Perplexity of int4 recipes on SmolLM2-135M, on its Q4_1 grid and off it (``--off-grid``), fast: each recipe's
weights are quantized and dequantized in place (the canonical form of ``slimnn.math.quantize``, the same codes,
scales and zero points the Int4Linear blobs hold) and the float model is scored, so no kernel runs and the
activations stay float (the W4A8 kernels add their activation rounding on top: ``slimnn llm`` measures that).
Heads (lm_head, the embedding) are int8 per channel, as ``Int4Config(head_int8=True)`` does. llama.cpp's own
quantizers (Q4_0, Q4_1, Q4_K_S, Q4_K_M, from a float32 GGUF of the same, possibly rotated, weights) are scored
on the same tokens when ``llama-cpp-python`` imports.

    PYTHONPATH=src python3 bench/tables/llm_int4_ppl.py [--off-grid] [--only NAME ...] [--llama-cpp] [--synthetic]

``--synthetic``: the GPTQ rows calibrate on uniformly random token ids (no data). Budget rows choose their int8
tensors with ``Int4Config(bits_budget=...)``'s own selection (output-error rows rank on random token ids).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import torch

from slimnn.app import llm
from slimnn.math.quantize import (
    dequantize_int4,
    dequantize_int8,
    quantize_int4,
    quantize_int8_symmetric,
)


def _int4(gs, sym, fz, search, imp="none", hqq=False):
    def q(w):
        c, s, z = quantize_int4(w, gs, sym, torch.float16, search=search, float_zeros=fz, importance=imp, hqq=hqq)
        bits = 4 + (16 + (0 if sym else (16 if fz else 4))) / gs
        return dequantize_int4(c, s, z, gs), bits
    return q


def _gptq(gs, fz, imp="rms_abs"):
    """GPTQ (act order) with the group parameters of the data-free float-zero (or integer-zero) search."""
    from slimnn.math.gptq import gptq_quantize

    def q(w, h):
        _, s, z = quantize_int4(w, gs, False, torch.float16, search=True, float_zeros=fz, importance=imp)
        c, s, z = gptq_quantize(w, h, gs, False, torch.float16, act_order=True, params=(s, z))
        return dequantize_int4(c, s, z, gs), 4 + (32 if fz else 20) / gs
    q.needs_hessian = True
    return q


def _int8(w):
    q, s = quantize_int8_symmetric(w)
    return dequantize_int8(q, s), 8 + 32 / w.shape[1]


def _kinds(kinds, blocks):
    """A rule: int8 for Linears whose name holds one of ``kinds`` in the given blocks (None: all)."""
    def rule(fqn, i, n):
        return any(k in fqn for k in kinds) and (blocks is None or i in blocks(n))
    return rule


EDGE = lambda n: set(range(2)) | set(range(n - 2, n))


class Budget:
    """A rule chosen per run by ``Int4Config(bits_budget=bits, sensitivity=...)``'s own selection
    (``techniques.int4.int8_budget_layers``): int8 for the tensors of highest score per extra bit while the
    block Linears average at most ``bits`` bits per weight (int4 g32 float zero = 5.0, int8 per channel =
    8 + 32/K). ``werr``: ``sensitivity="weight_error"``; ``synth``: ``"output_error"`` on random token ids."""

    def __init__(self, bits, proxy):
        self.bits, self.proxy = bits, proxy

    def rule(self, model, lins, orig, ctx):
        from slimnn import Int4Config
        from slimnn.techniques.int4 import int8_budget_layers

        for f, m in lins:
            m.weight.data = orig[f]
        cal = llm.random_token_batches(model.config.vocab_size, 8, ctx, seed=1) if self.proxy == "synth" else None
        cfg = Int4Config(bits_budget=self.bits, calib_data=cal, progress=False,
                         sensitivity="output_error" if self.proxy == "synth" else "weight_error")
        keep = int8_budget_layers(lins, cfg, model)
        return lambda fqn, i, n: fqn in keep


RECIPES = {
    "int4 default (g64 sym RTN)": (_int4(64, True, False, False), None),
    "g32 sym RTN": (_int4(32, True, False, False), None),
    "g32 sym search": (_int4(32, True, False, True), None),
    "g32 asym search": (_int4(32, False, False, True), None),
    "g32 fz min/max": (_int4(32, False, True, False), None),
    "g32 fz search": (_int4(32, False, True, True), None),
    "g32 fz search rms_abs": (_int4(32, False, True, True, "rms_abs"), None),
    "g32 fz search square": (_int4(32, False, True, True, "square"), None),
    "g32 fz min/max + HQQ": (_int4(32, False, True, False, hqq=True), None),
    "g32 fz search + HQQ": (_int4(32, False, True, True, hqq=True), None),
    "g64 fz search": (_int4(64, False, True, True), None),
    "g64 fz search rms_abs": (_int4(64, False, True, True, "rms_abs"), None),
    "g32 fz search rms_abs, v/down int8": (_int4(32, False, True, True, "rms_abs"),
                                           _kinds(("v_proj", "down_proj"), None)),
    "g32 fz search rms_abs, v/down edge int8": (_int4(32, False, True, True, "rms_abs"),
                                                _kinds(("v_proj", "down_proj"), EDGE)),
    "g32 fz search rms_abs, edge blocks int8": (_int4(32, False, True, True, "rms_abs"), _kinds(("proj",), EDGE)),
    "g32 fz search rms_abs, v int8": (_int4(32, False, True, True, "rms_abs"), _kinds(("v_proj",), None)),
    "g32 fz search rms_abs, down int8": (_int4(32, False, True, True, "rms_abs"), _kinds(("down_proj",), None)),
    "GPTQ g32 fz search rms_abs": (_gptq(32, True), None),
    "GPTQ g32 fz search rms_abs, v/down int8": (_gptq(32, True), _kinds(("v_proj", "down_proj"), None)),
    "GPTQ g32 asym search": (_gptq(32, False, "none"), None),
    "GPTQ g32 fz search": (_gptq(32, True, "none"), None),
    **{f"g32 fz search, budget {b} bits ({p})": (_int4(32, False, True, True), Budget(b, p))
       for b in (5.5, 6.0, 6.5) for p in ("werr", "synth")},
    **{f"GPTQ g32 fz search rms_abs, budget {b} bits (synth)": (_gptq(32, True), Budget(b, "synth"))
       for b in (5.5, 6.0)},
}


def _hessians(model, lins, calib):
    """H = 2/n X^T X of every Linear's inputs over the calibration sequences, from one pass of the float model
    (with int8 heads): GPTQ without the layer-by-layer re-run (each layer sees float inputs)."""
    acc, hooks = {}, []
    for f, m in lins:
        def hook(mod, inp, f=f):
            x = inp[0].reshape(-1, inp[0].shape[-1]).double()
            h, n = acc.get(f, (0.0, 0))
            acc[f] = (h + x.t() @ x, n + x.shape[0])
        hooks.append(m.register_forward_pre_hook(hook))
    with torch.inference_mode():
        for x in calib:
            model(x, use_cache=False)
    for h in hooks:
        h.remove()
    return {f: (2.0 / n * h).float() for f, (h, n) in acc.items()}


def _picked(name, only):
    """``--only`` words: a recipe whose name holds one of them, or equals one given as ``=name``."""
    return not only or any(name == o[1:] if o.startswith("=") else o.lower() in name.lower() for o in only)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--off-grid", action="store_true")
    ap.add_argument("--only", nargs="*")
    ap.add_argument("--llama-cpp", action="store_true", help="also score llama.cpp's quantizers")
    ap.add_argument("--ppl-tokens", type=int, default=2048)
    ap.add_argument("--ctx", type=int, default=512)
    ap.add_argument("--calib", type=int, default=8, help="calibration sequences (of --ctx tokens) for GPTQ rows")
    ap.add_argument("--synthetic", action="store_true",
                    help="GPTQ rows calibrate on uniformly random token ids instead of text (no data)")
    a = ap.parse_args()
    torch.set_num_threads(1)
    path = llm.smollm2_gguf()
    tok, model = llm.load_gguf_llama(path)
    if a.off_grid:
        llm.rotate_off_grid(model)
    sp = llm.text_splits(tok, a.ppl_tokens, 0, a.calib, a.ctx)
    lins = [(f, m) for f, m in model.named_modules() if isinstance(m, torch.nn.Linear) and f != "lm_head"]
    orig = {f: m.weight.data.clone() for f, m in lins}
    heads = [m for m in (model.lm_head, model.model.embed_tokens)]
    head_orig = [h.weight.data.clone() for h in heads]
    fp = llm.perplexity(model, sp.ppl, a.ctx)
    grid = "off grid" if a.off_grid else "on grid"
    print(f"fp32 ({grid}): perplexity {fp:.3f}", flush=True)
    for h in heads:  # int8 heads in every recipe (a tied table is quantized once)
        h.weight.data = _int8(h.weight.data)[0]
    n_blocks = len(model.model.layers)
    hess = {}
    want = [n for n in RECIPES if _picked(n, a.only)]
    if any(getattr(RECIPES[n][0], "needs_hessian", False) for n in want):
        calib = sp.calib
        if a.synthetic:
            calib = llm.random_token_batches(model.config.vocab_size, a.calib, a.ctx, seed=1)
        hess = _hessians(model, lins, calib)
    for name, (q4, rule) in RECIPES.items():
        if not _picked(name, a.only):
            continue
        t0 = time.perf_counter()
        if isinstance(rule, Budget):
            rule = rule.rule(model, lins, orig, a.ctx)
            chosen = sorted(f for f, _ in lins if rule(f, 0, 0))
            kinds = {}
            for f in chosen:
                k = f.rsplit(".", 1)[-1]
                kinds[k] = kinds.get(k, 0) + 1
            print(f"  {name}: int8 {len(chosen)} tensors {kinds}", flush=True)
        bits = 0.0
        for f, m in lins:
            i = int(f.split(".")[2])
            w = orig[f]
            if rule is not None and rule(f, i, n_blocks):
                dq, b = _int8(w)
            else:
                dq, b = q4(w, hess[f]) if getattr(q4, "needs_hessian", False) else q4(w)
            m.weight.data = dq
            bits += b * w.numel()
        mb = bits / 8 / 1e6
        p = llm.perplexity(model, sp.ppl, a.ctx)
        print(f"| {name} | {mb:.1f} | {p:.3f} ({p / fp - 1:+.1%}) | [{time.perf_counter() - t0:.0f}s]", flush=True)
    for (f, m) in lins:
        m.weight.data = orig[f]
    for h, w in zip(heads, head_orig):
        h.weight.data = w
    if a.llama_cpp and llm.llama_cpp_available():
        import llama_cpp

        with tempfile.TemporaryDirectory() as d:
            f32 = os.path.join(d, "f32.gguf")
            llm.write_gguf_f32(model, path, f32)
            ids = sp.ppl[0].tolist()
            for qname, ftype in (("F32", 0), ("Q4_0", 2), ("Q4_1", 3), ("Q4_K_S", 14), ("Q4_K_M", 15)):
                dst = f32
                if ftype:
                    dst = os.path.join(d, f"{qname}.gguf")
                    params = llama_cpp.llama_model_quantize_default_params()
                    params.ftype = ftype
                    if llama_cpp.llama_model_quantize(f32.encode(), dst.encode(), params) != 0:
                        raise RuntimeError(qname)
                kw = dict(model_path=dst, n_ctx=a.ctx, n_batch=a.ctx, n_threads=1, n_threads_batch=1,
                          logits_all=True, verbose=False)
                lm = llm._llama(llama_cpp, kw)
                p = llm.llama_cpp_perplexity(lm, ids, a.ctx)
                mb = os.path.getsize(dst) / 1e6
                print(f"| llama.cpp {qname} (file, whole model) | {mb:.1f} | {p:.3f} ({p / fp - 1:+.1%}) |", flush=True)
                del lm
    return 0


if __name__ == "__main__":
    sys.exit(main())
