"""int4: ``Int4Config`` -> :class:`slimnn.nn.Int4Linear` (group-wise 4-bit codes, W4A8 or weight-only).

Round to nearest converts layer by layer; GPTQ and AWQ calibrate the whole model with
:func:`quantize_model_int4_`, layer by layer: each target Linear is calibrated on the inputs it receives from the model *as already
quantized up to it* (earlier layers replaced first), as GPTQ does, so errors do not compound unseen. Each
step runs the model on the calibration data only up to the layer being calibrated (the forward pass is
stopped once that layer has been called), and keeps that one layer's statistics: its Hessian (K x K) for
GPTQ, a bounded sample of its input rows for AWQ. Peak memory is thus the model plus one layer's
statistics. Cost: one partial forward pass over the data per layer (about L/2 full passes for L layers).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..configs import Int4Config
from ..math.calibration import capture_linear_inputs, progress_iter
from ..math.gptq import awq_quantize, gptq_quantize
from ..math.quantize import INT4_SCALE_DTYPES
from ..nn.int4 import Int4Linear
from .registry import AutoStep, Technique, register


def convert(linear: nn.Module, config: Int4Config) -> nn.Module:
    return Int4Linear.from_linear(linear, config)


def convert_model(model: nn.Module, targets: list, config: Int4Config, report: Any) -> bool:
    if config.method == "rtn":
        return False  # layer by layer, no data
    quantize_model_int4_(model, targets, config, report)
    return True


def quantize_model_int4_(model: nn.Module, targets: list, config: Any, report: Any) -> None:
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
        for fqn, lin in progress_iter(targets, f"int4 {config.method}", config.progress):
            st = capture_linear_inputs(
                model, {fqn: lin}, data, gram=config.method == "gptq", gram_dtype=torch.float32,
                keep_rows=config.max_calib_rows if config.method == "awq" else 0, sample="strided",
                stop_early=True, require_called=True,
            )[fqn]
            in_mul = None
            if config.method == "gptq":
                codes, scales, zeros = gptq_quantize(
                    lin.weight, st.hessian(), config.group_size, config.symmetric, sdt, config.gptq_damp,
                    config.gptq_block, config.gptq_act_order,
                )
            else:
                in_mul, codes, scales, zeros = awq_quantize(
                    lin.weight, st.inputs(), config.group_size, config.symmetric, sdt, config.awq_grid,
                    config.awq_clip, quantize_inputs=config.mode == "dynamic",
                )
            del st
            new = Int4Linear.from_quantized(codes, scales, zeros, config.group_size, lin.bias, in_mul, config)
            parent_name, _, child = fqn.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            setattr(parent, child, new)
            report.converted[fqn] = type(new).__name__
    finally:
        model.train(was_training)


TECHNIQUE = register(Technique(
    name="int4",
    config=Int4Config,
    modules=(Int4Linear,),
    convert=convert,
    convert_model=convert_model,
    summary="4-bit group-wise weights (W4A8 or weight-only), RTN or calibrated with GPTQ / AWQ",
    cli_config=lambda args: Int4Config(),
    autocompress=AutoStep(lambda: [Int4Config()], order=10),
))
