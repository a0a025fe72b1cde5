"""int4: ``Int4Config`` -> :class:`slimnn.nn.Int4Linear` (group-wise 4-bit codes, W4A8 or weight-only).

Round to nearest converts layer by layer; GPTQ and AWQ calibrate the whole model with
:func:`quantize_model_int4_`, layer by layer: each target Linear is calibrated on the inputs it receives from the
model *as already quantized up to it* (earlier layers replaced first), as GPTQ does, so errors do not compound
unseen. In a stack of transformer blocks this runs block by block (:mod:`slimnn.math.blockwise`: the first
block's inputs are caught once, each block is replayed alone, its Linears quantized in stages of a shared input,
q/k/v together), so the cost is about three block passes per block over the data instead of one partial model
pass per Linear; Linears outside the stack, and models without one, take one partial forward pass each. Each
stage keeps only its layers' statistics: a Hessian (K x K) each for GPTQ, a bounded sample of input rows for AWQ.
"""

from __future__ import annotations

from typing import Any


import torch
from torch import Tensor, nn

from ..configs import Int4Config
from ..formats.manifest import config_field, TensorSpec, bool_field, int_field, linear_meta
from ..math.blockwise import sequential_quantize_
from ..math.calibration import capture_linear_inputs
from ..math.gptq import awq_quantize, gptq_quantize
from ..math.quantize import INT4_SCALE_DTYPES, quantize_int4
from ..nn.int4 import Int4Linear
from .registry import register, single_module_technique


HEAD_MIN_OUT = 16384
"""``Int4Config.head_int8``: a Linear with at least this many outputs and 8x more outputs than inputs is
taken for a vocabulary head (GPT-2 50257 x 768, SmolLM2 49152 x 576, Llama-3 128256 x 2048; no transformer
MLP projection is that wide: theirs are 2.5-4x their inputs)."""


def is_vocab_head(out_features: int, in_features: int) -> bool:
    return out_features >= HEAD_MIN_OUT and out_features >= 8 * in_features


def _head_int8(linear: nn.Module, config: Int4Config) -> Any:
    from ..configs import Int8Config
    from ..nn.int8 import Int8Linear

    return Int8Linear.from_linear(linear, Int8Config(mode=config.mode))


def _keeps_int8(linear: nn.Module, config: Int4Config) -> bool:
    return config.head_int8 and is_vocab_head(linear.out_features, linear.in_features)


def convert(linear: nn.Module, config: Int4Config) -> nn.Module:
    if _keeps_int8(linear, config):
        return _head_int8(linear, config)
    return Int4Linear.from_linear(linear, config)


def int4_sensitivity(linear: nn.Linear, config: Int4Config) -> float:
    """Data-free: the relative squared error ||W - Q(W)||^2 / ||W||^2 of ``linear``'s weights rounded to int4
    with ``config``'s format (round to nearest, its scale search)."""
    from ..math.quantize import dequantize_int4, quantize_int4

    w = linear.weight.detach().to(torch.float32)
    codes, scales, zeros = quantize_int4(
        w, config.group_size, config.symmetric, INT4_SCALE_DTYPES[config.scale_dtype],
        search=config.scale_search, float_zeros=config.float_zeros, importance=config.importance,
    )
    err = (dequantize_int4(codes, scales, zeros, config.group_size) - w).square().sum()
    return float(err / w.square().sum().clamp(min=1e-30))


def int4_bits_per_weight(config: Int4Config, k: int) -> float:
    """Bits per weight of ``config``'s int4 format for a Linear of ``k`` inputs: 4 + the group's scale (and
    zero point: a float in the scale dtype, or a 4-bit integer) over the group size."""
    gs = k if config.group_size is None else config.group_size
    sb = 32 if config.scale_dtype == "float32" else 16
    zb = 0 if config.symmetric else (sb if config.float_zeros else 4)
    return 4 + (sb + zb) / gs


def int8_bits_per_weight(k: int) -> float:
    """int8 per output channel: 8 bits and one float32 scale per row of ``k`` weights."""
    return 8 + 32 / k


def output_sensitivity(linear: nn.Linear, config: Int4Config, h: Tensor) -> float:
    """The relative output error of ``linear`` rounded to int4 with ``config``'s format, for inputs of second
    moment ``h`` (K x K, X^T X): tr(dW H dW^T) / tr(W H W^T), dW = Q(W) - W."""
    from ..math.quantize import dequantize_int4

    w = linear.weight.detach().to(torch.float32)
    codes, scales, zeros = quantize_int4(
        w, config.group_size, config.symmetric, INT4_SCALE_DTYPES[config.scale_dtype],
        search=config.scale_search, float_zeros=config.float_zeros, importance=config.importance,
    )
    d = dequantize_int4(codes, scales, zeros, config.group_size) - w
    h = h.to(torch.float32)
    return float(((d @ h) * d).sum() / ((w @ h) * w).sum().clamp(min=1e-30))


def _scores(model: nn.Module, targets: list, config: Int4Config) -> list:
    """(score, fqn, weights, in_features) of each target in order, by ``config.sensitivity``."""
    n = len(targets)
    if config.sensitivity == "output_error" and config.bits_budget is not None:
        if config.calib_data is None:
            raise ValueError("Int4Config(sensitivity='output_error') needs calib_data (random token ids will do "
                             "for an LM: slimnn.app.llm.random_token_batches)")
        st = capture_linear_inputs(model, targets, list(config.calib_data), gram=True, gram_dtype=torch.float32,
                                   require_called=True)
        return [(output_sensitivity(lin, config, st[fqn].hessian()), fqn, lin.weight.numel(), lin.in_features)
                for fqn, lin in targets]
    out = []
    for i, (fqn, lin) in enumerate(targets):
        edge = i < n / 8 or i >= n - n / 8
        out.append((int4_sensitivity(lin, config) * (2.0 if edge else 1.0), fqn, lin.weight.numel(),
                    lin.in_features))
    return out


def int8_budget_layers(targets: list, config: Int4Config, model: Any = None) -> set:
    """The fqns of ``targets`` (int4 candidates, in module order) kept at int8 under the config's size budget.
    ``int8_fraction``: by decreasing score (relative int4 weight error, doubled in the first and last eighth of
    the list), as long as their weights fit in that fraction of all candidates' weights. ``bits_budget``: by
    decreasing score per extra bit (int8's bits minus int4's, times the weights), as long as the candidates
    average at most ``bits_budget`` bits per weight; scores by ``config.sensitivity`` (``"output_error"`` runs
    ``model`` once over ``calib_data``)."""
    if (config.int8_fraction <= 0 and config.bits_budget is None) or not targets:
        return set()
    scored = _scores(model, targets, config)
    keep = set()
    if config.bits_budget is None:
        budget, used = config.int8_fraction * sum(s[2] for s in scored), 0
        for _score, fqn, size, _k in sorted(scored, key=lambda s: -s[0]):
            if used + size <= budget:
                keep.add(fqn)
                used += size
        return keep
    base = sum(size * int4_bits_per_weight(config, k) for _s, _f, size, k in scored)
    room = config.bits_budget * sum(s[2] for s in scored) - base
    extra = {fqn: size * (int8_bits_per_weight(k) - int4_bits_per_weight(config, k)) for _s, fqn, size, k in scored}
    used = 0.0
    for score, fqn, _size, _k in sorted(scored, key=lambda s: -s[0] / max(extra[s[1]], 1e-30)):
        if used + extra[fqn] <= room:
            keep.add(fqn)
            used += extra[fqn]
    return keep


def convert_model(model: nn.Module, targets: list, config: Int4Config, report: Any) -> bool:
    if config.method == "rtn" and config.int8_fraction <= 0 and config.bits_budget is None:
        return False  # layer by layer, no data
    heads = [(f, m) for f, m in targets if _keeps_int8(m, config)]
    rest = [t for t in targets if t not in heads]
    wide = int8_budget_layers(rest, config, model)
    for fqn, lin in heads + [t for t in rest if t[0] in wide]:
        new = _head_int8(lin, config)
        model.set_submodule(fqn, new)
        report.converted[fqn] = type(new).__name__
    rest = [t for t in rest if t[0] not in wide]
    if config.method == "rtn":
        for fqn, lin in rest:
            new = convert(lin, config)
            model.set_submodule(fqn, new)
            report.converted[fqn] = type(new).__name__
    else:
        quantize_model_int4_(model, rest, config, report)
    return True


def quantize_model_int4_(model: nn.Module, targets: list, config: Any, report: Any, blockwise: bool = True) -> None:
    """Replaces every (fqn, nn.Linear) of ``targets`` in ``model`` by a calibrated Int4Linear, in order
    (the order of ``model.named_modules()``, i.e. usually execution order). Used by ``compress_``."""
    if config.calib_data is None:
        raise ValueError(
            f"Int4Config(method={config.method!r}) needs calibration data: pass calib_data=<iterable of model inputs>"
        )
    data = list(config.calib_data)
    if not data:
        raise ValueError("Int4Config.calib_data is empty")
    sdt = INT4_SCALE_DTYPES[config.scale_dtype]
    was_training = model.training
    model.eval()
    try:
        def quantize_one(fqn: str, lin: nn.Module, st: Any) -> nn.Module:
            in_mul = None
            if config.method == "gptq":
                params = None
                if config.scale_search or config.float_zeros:  # the data-free search's groups, then GPTQ
                    _, ps, pz = quantize_int4(
                        lin.weight, config.group_size, config.symmetric, sdt, search=config.scale_search,
                        float_zeros=config.float_zeros, importance=config.importance,
                    )
                    params = (ps, pz)
                codes, scales, zeros = gptq_quantize(
                    lin.weight, st.hessian(), config.group_size, config.symmetric, sdt, config.gptq_damp,
                    config.gptq_block, config.gptq_act_order, params=params,
                )
            else:
                in_mul, codes, scales, zeros = awq_quantize(
                    lin.weight, st.inputs(), config.group_size, config.symmetric, sdt, config.awq_grid,
                    config.awq_clip, quantize_inputs=config.mode == "dynamic",
                )
            new = Int4Linear.from_quantized(codes, scales, zeros, config.group_size, lin.bias, in_mul, config)
            report.converted[fqn] = type(new).__name__
            return new

        capture = {"gram": config.method == "gptq", "gram_dtype": torch.float32,
                   "keep_rows": config.max_calib_rows if config.method == "awq" else 0, "sample": "strided"}
        sequential_quantize_(model, targets, data, quantize_one, capture=capture, desc=f"int4 {config.method}",
                             progress=config.progress, blockwise=blockwise)
    finally:
        model.train(was_training)


# ----------------------------------------------------------------------------------------------------
# Save format "int4_linear" v1. Canonical tensors (CPU-independent; the q4 blob is rebuilt by pack_q4 at
# load, byte for byte the one saved): codes (uint8 N x K, 0..15), scales (n_groups x N in the config's
# scale dtype: float16, bfloat16 or float32), zeros (uint8 n_groups x N, asymmetric only), bias (float32 N),
# in_mul (float32 K, AWQ's input scaling). Metadata: shapes, which optional tensors are present, the
# config (group size, symmetry, scale dtype, mode, method). Every group size, both symmetries and both
# modes share the format; the config says which. Float zero points (config float_zeros=true) store zeros in
# the scales' dtype; files without that config field (older slimnn) load as before, and an older slimnn
# refuses a file that has it (unknown Int4Config field).
# ----------------------------------------------------------------------------------------------------

def _to_canonical(mod: nn.Module) -> tuple[dict[str, Tensor], dict[str, Any]]:
    from ..formats.packed import unpack_q4

    codes, scales, zeros, _gs = unpack_q4(mod.packed)
    tensors = {"codes": codes, "scales": scales}
    if zeros is not None:
        tensors["zeros"] = zeros
    if mod.bias is not None:
        tensors["bias"] = mod.bias.detach().to(torch.float32).contiguous()
    if mod.in_mul is not None:
        tensors["in_mul"] = mod.in_mul.detach().to(torch.float32).contiguous()
    meta = linear_meta(mod, mod.config)
    meta["in_mul"] = mod.in_mul is not None
    return tensors, meta


def _config(meta: dict) -> Any:
    return config_field(meta, Int4Config, "int4_linear")


def _spec(meta: dict) -> TensorSpec:
    from ..math.quantize import INT4_SCALE_DTYPES

    k, n = int_field(meta, "in_features", 1), int_field(meta, "out_features", 1)
    cfg = _config(meta)
    groups = 1 if cfg.group_size is None else -(-k // cfg.group_size)
    spec = {"codes": (torch.uint8, (n, k)), "scales": (INT4_SCALE_DTYPES[cfg.scale_dtype], (groups, n))}
    if not cfg.symmetric:
        spec["zeros"] = (INT4_SCALE_DTYPES[cfg.scale_dtype] if cfg.float_zeros else torch.uint8, (groups, n))
    if bool_field(meta, "bias"):
        spec["bias"] = (torch.float32, (n,))
    if bool_field(meta, "in_mul"):
        spec["in_mul"] = (torch.float32, (k,))
    return spec


def _from_canonical(tensors: dict[str, Tensor], meta: dict) -> nn.Module:
    from ..formats.packed import q4_info
    
    cfg = _config(meta)
    codes, scales, zeros = tensors["codes"], tensors["scales"], tensors.get("zeros")
    for name, t in (("codes", codes), ("zeros", None if cfg.float_zeros else zeros)):
        if t is not None and t.numel() and int(t.max()) > 15:
            raise ValueError(f"int4 {name} hold {int(t.max())}; 4-bit values are 0..15")
    if not bool(torch.isfinite(scales.float()).all()):
        raise ValueError("int4 scales must be finite")
    if cfg.float_zeros and zeros is not None and not bool(torch.isfinite(zeros.float()).all()):
        raise ValueError("int4 float zero points must be finite")
    bias, in_mul = tensors.get("bias"), tensors.get("in_mul")
    if bias is not None and not bool(torch.isfinite(bias).all()):
        raise ValueError("bias has a NaN or infinite value")
    mod = Int4Linear.from_quantized(codes, scales, zeros, cfg.group_size, bias, in_mul, cfg)  # validates in_mul
    q4_info(mod.packed, full_check=True)
    if (mod.in_features, mod.out_features) != (meta["in_features"], meta["out_features"]):
        raise ValueError("int4 tensors do not match the module's shape")
    return mod


TECHNIQUE = register(single_module_technique(
    "int4", Int4Config, Int4Linear, convert, ("int4_linear", _to_canonical, _spec, _from_canonical),
    summary="4-bit group-wise weights (W4A8 or weight-only), RTN or calibrated with GPTQ / AWQ",
    order=10,
    convert_model=convert_model,
))
