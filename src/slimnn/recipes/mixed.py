"""Mixed int4 / int8: 4-bit weights everywhere except the layers the model is most sensitive to.

``slimnn.mixed_int4_(model, calib_data, min_ratio=6.0)`` is the int4 recipe that keeps accuracy on small
models: it measures, on calibration data, how much the model's output moves when each Linear layer alone is
rounded to 4 bits (round to nearest: fast, and it ranks layers the way calibrated int4 errs), keeps in int8
the layers with the most output error per extra byte for as long as the Linear weights stay at least
``min_ratio`` times smaller than float32, and calibrates the rest with ``int4_config`` (GPTQ by default).
llama.cpp's ``Q4_K_M`` follows the same idea with a fixed rule (attention ``v`` and the FFN down projection in
more bits); here the rule is measured on the user's model and data, and the sensitive layers of MiniLM turn out
to be the same kinds.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Optional

import torch
from torch import Tensor, nn

from ..math.calibration import call_model
from ..configs import Int4Config, Int8Config
from ..api import compress_
from ..techniques import for_config


@dataclass
class MixedReport:
    """What :func:`mixed_int4_` chose: per layer its format, output sensitivity and bytes."""

    choice: dict[str, str] = field(default_factory=dict)       # fqn -> "int4" | "int8"
    sensitivity: dict[str, float] = field(default_factory=dict)  # fqn -> relative output error, layer alone in int4
    bytes_int4: dict[str, int] = field(default_factory=dict)
    bytes_int8: dict[str, int] = field(default_factory=dict)
    float_bytes: int = 0       # float32 bytes of the model's Linear layers (weights and biases)
    compressed_bytes: int = 0  # the same layers after compression (storage bytes)

    @property
    def ratio(self) -> float:
        return self.float_bytes / self.compressed_bytes if self.compressed_bytes else float("nan")

    def summary(self) -> str:
        n8 = sorted(n for n, c in self.choice.items() if c == "int8")
        return (f"{len(self.choice) - len(n8)} layers int4, {len(n8)} int8 ({', '.join(n8) or 'none'}); "
                f"Linear weights {self.ratio:.2f}x smaller than float32")


def _first_tensor(out: Any) -> Tensor:
    if isinstance(out, Tensor):
        return out
    for attr in ("last_hidden_state", "logits"):
        t = getattr(out, attr, None)
        if isinstance(t, Tensor):
            return t
    if isinstance(out, dict):
        out = list(out.values())
    if isinstance(out, (tuple, list)):
        for o in out:
            if isinstance(o, Tensor):
                return o
    raise TypeError(f"mixed_int4_: cannot find a tensor in the model output ({type(out).__name__}); pass output_fn")


def _float_bytes(lin: nn.Linear) -> int:
    return sum(p.numel() * p.element_size() for p in lin.parameters(recurse=False))


def mixed_int4_(
    model: nn.Module,
    calib_data: Iterable[Any],
    min_ratio: float = 6.0,
    int4_config: Optional[Int4Config] = None,
    keep_config: Optional[Int8Config] = None,
    filter_fn: Optional[Callable[[nn.Module, str], bool]] = None,
    output_fn: Optional[Callable[[Any], Tensor]] = None,
) -> MixedReport:
    """Compresses ``model``'s Linear layers in place: int4 (``int4_config``, default GPTQ with group 64 on
    ``calib_data``) except the most sensitive layers, which get ``keep_config`` (default int8 dynamic), as
    many as fit while the Linear weights stay ``min_ratio`` times smaller than float32.

    Sensitivity of a layer: the relative squared error ``|y - y_ref|^2 / |y_ref|^2`` of the model output on
    ``calib_data`` with only that layer rounded to int4 (RTN). Layers are kept in ``keep_config`` in order
    of sensitivity per extra byte. ``calib_data``: model inputs (Tensor, tuple or dict of keyword arguments).
    ``output_fn(out) -> Tensor`` picks the output to compare (default: the tensor itself, or
    ``last_hidden_state`` / ``logits`` / the first tensor). Returns a :class:`MixedReport`.
    """
    data = list(calib_data)
    if not data:
        raise ValueError("mixed_int4_: calib_data is empty")
    if not (isinstance(min_ratio, (int, float)) and min_ratio > 0):
        raise ValueError(f"mixed_int4_: min_ratio must be a positive number, got {min_ratio!r}")
    # its own int4 default: GPTQ on g64 symmetric min/max groups, the size its min_ratio budget was tuned for
    # (Int4Config()'s float-zero g32 groups are ~25% larger: 5.9x instead of 7.1x smaller than float32)
    int4_config = int4_config or Int4Config(group_size=64, symmetric=True, scale_search=False, importance="none",
                                            method="gptq", progress=False)
    if int4_config.method != "rtn" and int4_config.calib_data is None:
        int4_config = dataclasses.replace(int4_config, calib_data=data)
    keep_config = keep_config or Int8Config()
    pick = output_fn or _first_tensor
    names = [n for n, m in model.named_modules()
             if type(m) is nn.Linear and n and (filter_fn is None or filter_fn(m, n))]
    if not names:
        raise ValueError("mixed_int4_: the model has no nn.Linear layers to compress (after filter_fn)")

    rep = MixedReport()
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            refs = [pick(call_model(model, x)).detach().to(torch.float64) for x in data]
            ref_sq = sum(float(r.square().sum()) for r in refs) or 1.0
            rtn = Int4Config(group_size=int4_config.group_size, symmetric=int4_config.symmetric,
                             scale_dtype=int4_config.scale_dtype, mode=int4_config.mode,
                             scale_search=int4_config.scale_search, float_zeros=int4_config.float_zeros,
                             importance=int4_config.importance)  # the probe rounds as the int4 layers will
            other_bytes = sum(_float_bytes(m) for n, m in model.named_modules() if type(m) is nn.Linear
                              and n not in names)
            for n in names:
                lin = model.get_submodule(n)
                q4 = for_config(Int4Config).convert(lin, rtn)
                q8 = for_config(type(keep_config)).convert(lin, keep_config)
                rep.float_bytes += _float_bytes(lin)
                rep.bytes_int4[n], rep.bytes_int8[n] = int(q4.storage_bytes()), int(q8.storage_bytes())
                model.set_submodule(n, q4)
                try:
                    err = sum(float((pick(call_model(model, x)).to(torch.float64) - r).square().sum())
                              for x, r in zip(data, refs))
                finally:
                    model.set_submodule(n, lin)
                rep.sensitivity[n] = err / ref_sq
        rep.float_bytes += other_bytes
        budget = rep.float_bytes / min_ratio - other_bytes
        used = sum(rep.bytes_int4.values())
        if used > budget:
            raise ValueError(f"mixed_int4_: even all-int4 Linear weights are only {rep.float_bytes / (used + other_bytes):.2f}x "
                             f"smaller than float32, short of min_ratio={min_ratio}")
        order = sorted(names, key=lambda n: rep.sensitivity[n] / max(1, rep.bytes_int8[n] - rep.bytes_int4[n]),
                       reverse=True)
        keep = set()
        for n in order:
            extra = rep.bytes_int8[n] - rep.bytes_int4[n]
            if used + extra <= budget:
                keep.add(n)
                used += extra
        for n in names:
            rep.choice[n] = "int8" if n in keep else "int4"
        if keep:
            compress_(model, keep_config, filter_fn=lambda m, fqn: fqn in keep)
        rest = [n for n in names if n not in keep]
        compress_(model, int4_config, filter_fn=lambda m, fqn: fqn in rest)
        rep.compressed_bytes = other_bytes + sum(int(model.get_submodule(n).storage_bytes()) for n in names)
    finally:
        model.train(was_training)
    return rep
