"""Running a model on calibration data to see what its Linear layers receive, and the layer-by-layer
int4 calibration that ``slimnn.compress_(model, Int4Config(method="gptq" | "awq", calib_data=...))`` runs.

Layer by layer: each target Linear is calibrated on the inputs it receives from the model *as already
quantized up to it* (earlier layers replaced first), as GPTQ does, so errors do not compound unseen. Each
step runs the model on the calibration data only up to the layer being calibrated (the forward pass is
stopped once that layer has been called), and keeps that one layer's statistics: its Hessian (K x K) for
GPTQ, a bounded sample of its input rows for AWQ. Peak memory is thus the model plus one layer's
statistics. Cost: one partial forward pass over the data per layer (about L/2 full passes for L layers).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Iterable, Optional, Sequence, Union

import torch
from torch import Tensor, nn


@dataclasses.dataclass
class LinearInputs:
    """What one Linear received over the calibration data."""

    rows: int = 0                      # input rows (tokens) seen
    hessian: Optional[Tensor] = None   # 2/rows * sum x x^T (K x K), when asked for
    abs_mean: Optional[Tensor] = None  # mean |x| per input channel (K)
    samples: Optional[Tensor] = None   # up to max_rows input rows (float32, rows x K), when asked for


class _Stop(Exception):
    """Raised by a hook to end the forward pass once every hooked module has run."""


def _call(model: nn.Module, item: Any) -> None:
    if isinstance(item, dict):
        model(**item)
    elif isinstance(item, (tuple, list)):
        model(*item)
    else:
        model(item)


def capture_linear_inputs(
    model: nn.Module,
    modules: Union[dict[str, nn.Module], Sequence[tuple[str, nn.Module]]],
    calib_data: Iterable[Any],
    hessian: bool = False,
    max_rows: int = 0,
    stop_early: bool = True,
) -> dict[str, LinearInputs]:
    """Runs ``model`` over ``calib_data`` with forward hooks on ``modules`` (fqn -> module) and returns, per
    module, the number of input rows, mean |x| per channel, and optionally the Hessian 2/n X^T X
    (``hessian``) and up to ``max_rows`` input rows (kept by reservoir-free even striding of each batch).

    Each item of ``calib_data`` is a model input: a Tensor (``model(x)``), a tuple/list (``model(*x)``) or
    a dict (``model(**x)``). With ``stop_early`` the forward pass on an item stops once every hooked module
    has run once (later layers are not needed); a module called several times per forward pass is then
    only seen at its first call (pass ``stop_early=False`` for such models).
    """
    mods = dict(modules)
    if not mods:
        return {}
    stats = {name: LinearInputs() for name in mods}
    sums: dict[str, Tensor] = {}
    kept: dict[str, list[Tensor]] = {name: [] for name in mods}
    fired: set[str] = set()
    items = list(calib_data) if not isinstance(calib_data, list) else calib_data
    per_item = max(1, -(-max_rows // max(1, len(items)))) if max_rows else 0

    def make_hook(name: str):
        def hook(mod: nn.Module, args: tuple, kwargs: dict) -> None:
            x = args[0] if args else kwargs.get("input")
            if not isinstance(x, Tensor):
                raise TypeError(f"calibration: {name} was called without a tensor input")
            x = x.detach().reshape(-1, x.shape[-1]).to(torch.float32)
            st = stats[name]
            st.rows += x.shape[0]
            a = x.abs().sum(dim=0)
            sums[name] = a if name not in sums else sums[name] + a
            if hessian:
                xtx = x.t() @ x
                st.hessian = xtx if st.hessian is None else st.hessian + xtx
            if per_item and x.shape[0]:
                idx = torch.linspace(0, x.shape[0] - 1, min(per_item, x.shape[0])).round().long()
                kept[name].append(x[idx].clone())
            fired.add(name)
            if stop_early and len(fired) == len(mods):
                raise _Stop

        return hook

    handles = [m.register_forward_pre_hook(make_hook(name), with_kwargs=True) for name, m in mods.items()]
    try:
        with torch.no_grad():
            for item in items:
                fired.clear()
                try:
                    _call(model, item)
                except _Stop:
                    pass
    finally:
        for h in handles:
            h.remove()
    for name, st in stats.items():
        if st.rows == 0:
            raise ValueError(f"calibration: layer {name!r} was never called by the model on the calibration data")
        st.abs_mean = sums[name] / st.rows
        if st.hessian is not None:
            st.hessian = st.hessian * (2.0 / st.rows)
        if per_item:
            st.samples = torch.cat(kept[name])[:max_rows] if max_rows else torch.cat(kept[name])
    return stats


def _progress(iterable, enabled: bool, total: int, desc: str):  # noqa: ANN001
    if enabled:
        try:
            from tqdm.auto import tqdm
        except ImportError:  # tqdm is optional: no bar without it
            return iterable
        return tqdm(iterable, total=total, desc=desc, unit="layer")
    return iterable


def quantize_model_int4_(model: nn.Module, targets: list, config: Any, report: Any) -> None:
    """Replaces every (fqn, nn.Linear) of ``targets`` in ``model`` by a calibrated Int4Linear, in order
    (the order of ``model.named_modules()``, i.e. usually execution order). Used by ``compress_``."""
    from .calibrate import awq_quantize, gptq_quantize
    from .nn.int4 import Int4Linear
    from .quantize import INT4_SCALE_DTYPES

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
        for fqn, lin in _progress(targets, config.progress, len(targets), f"int4 {config.method}"):
            st = capture_linear_inputs(
                model, {fqn: lin}, data, hessian=config.method == "gptq",
                max_rows=config.max_calib_rows if config.method == "awq" else 0,
            )[fqn]
            in_mul = None
            if config.method == "gptq":
                codes, scales, zeros = gptq_quantize(
                    lin.weight, st.hessian, config.group_size, config.symmetric, sdt, config.gptq_damp,
                    config.gptq_block, config.gptq_act_order,
                )
            else:
                in_mul, codes, scales, zeros = awq_quantize(
                    lin.weight, st.samples, config.group_size, config.symmetric, sdt, config.awq_grid,
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
