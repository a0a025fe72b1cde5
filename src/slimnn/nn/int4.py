"""Int4Linear: an ``nn.Linear`` whose weights are stored and multiplied as 4-bit codes (q4 format).

The op it runs is :func:`slimnn.ops.q4.q4_linear` (``torch.ops.slimnn.q4_linear`` under compile/export).
"""

from __future__ import annotations

from typing import Any, Optional

import torch
from torch import Tensor, nn

from .. import _C
from ..configs import Int4Config
from ..formats.packed import pack_q4, q4_info, unpack_q4
from ..math import reference
from ..math.quantize import INT4_SCALE_DTYPES, dequantize_int4, quantize_int4
from ..ops.common import prepare_input, untraceable
from ..ops.q4 import KINDS, q4_linear_module
from .base import check_packed_entry, float_bias

_is_exporting = torch.compiler.is_exporting
_is_tracing = torch._C._is_tracing  # torch.jit.is_tracing without its Python wrapper

_F32 = torch.float32
_BF16 = torch.bfloat16


def _check_in_mul(s: Optional[Tensor], k: int) -> Optional[Tensor]:
    if s is None:
        return None
    s = s.detach().to(torch.float32).contiguous().clone()
    if s.shape != (k,):
        raise ValueError(f"input_scale must have shape ({k},), got {tuple(s.shape)}")
    if not bool((torch.isfinite(s) & (s > 0)).all()):
        raise ValueError("input_scale must be finite and positive")
    return s


class Int4Linear(nn.Module):
    """y = x W^T + b with W stored as 4-bit codes (group-wise scales, optional zero points), packed for the
    CPU kernels (format q4, ``csrc/formats/q4.h``).

    Build one with :meth:`from_linear` (round to nearest), :meth:`from_quantized` (a canonical form from a
    calibrated quantizer) or ``slimnn.compress_(model, Int4Config(...))``. Inputs: float32 or bfloat16
    (float16 and float64 are converted), any leading dimensions; the output has the input's dtype.
    ``state_dict`` holds ``packed`` (uint8 blob with a versioned header), ``bias`` and ``in_mul`` (None, or
    the K factors AWQ applies to inputs before the product); loading validates the blob.
    """

    def __init__(
        self, in_features: int, out_features: int, bias: bool = True, config: Optional[Int4Config] = None
    ) -> None:
        super().__init__()
        self.config = config or Int4Config()
        self.in_features = int(in_features)
        self.out_features = int(out_features)
        gs = self.config.group_size
        ng = 1 if gs is None else -(-self.in_features // gs)
        codes = torch.full((self.out_features, self.in_features), 8, dtype=torch.uint8)
        sdt = INT4_SCALE_DTYPES[self.config.scale_dtype]
        zeros = None if self.config.symmetric else torch.full(
            (ng, self.out_features), 8, dtype=sdt if self.config.float_zeros else torch.uint8
        )
        self.register_buffer("packed", pack_q4(codes, torch.ones(ng, self.out_features, dtype=sdt), zeros, gs))
        self.register_buffer("bias", torch.zeros(self.out_features) if bias else None)
        self.register_buffer("in_mul", None)
        self.last_kernel: Optional[str] = None

    @classmethod
    def from_quantized(
        cls,
        codes: Tensor,
        scales: Tensor,
        zeros: Optional[Tensor],
        group_size: Optional[int],
        bias: Optional[Tensor] = None,
        input_scale: Optional[Tensor] = None,
        config: Optional[Int4Config] = None,
    ) -> "Int4Linear":
        """A layer from the int4 canonical form (see :func:`slimnn.quantize.quantize_int4`).

        ``input_scale``: None or K positive factors multiplying inputs before the product (the layer then
        computes ``(x * input_scale) @ W^T``). ``config`` supplies mode and kernel; its group size,
        symmetry and scale dtype are replaced by what the arguments say.
        """
        config = config or Int4Config()
        mod = cls.__new__(cls)
        nn.Module.__init__(mod)
        mod.register_buffer("packed", pack_q4(codes, scales, zeros, group_size))
        info = q4_info(mod.packed)
        sd = {v: k for k, v in INT4_SCALE_DTYPES.items()}[info.scale_dtype]
        mod.config = _replace(config, group_size=info.group_size, symmetric=info.symmetric,
                              float_zeros=info.float_zeros, scale_dtype=sd)
        mod.in_features, mod.out_features = info.k, info.n
        mod.register_buffer("bias", float_bias(bias, info.n))
        mod.register_buffer("in_mul", _check_in_mul(input_scale, info.k))
        mod.last_kernel = None
        return mod

    @classmethod
    def from_linear(cls, linear: nn.Linear, config: Optional[Int4Config] = None) -> "Int4Linear":
        """Quantizes ``linear``'s weights by round to nearest (``config.method`` must be ``"rtn"``; the
        calibrated methods need the model and data: use ``slimnn.compress_``)."""
        if not isinstance(linear, nn.Linear):
            raise TypeError(f"from_linear expects an nn.Linear, got {type(linear).__name__}")
        config = config or Int4Config()
        if config.method != "rtn":
            raise ValueError(
                f"Int4Linear.from_linear quantizes by round to nearest; method={config.method!r} needs calibration "
                "data and the whole model: use slimnn.compress_(model, Int4Config(method=..., calib_data=...))"
            )
        codes, scales, zeros = quantize_int4(
            linear.weight, config.group_size, config.symmetric, INT4_SCALE_DTYPES[config.scale_dtype],
            search=config.scale_search, float_zeros=config.float_zeros,
            importance=config.importance,
        )
        return cls.from_quantized(codes, scales, zeros, config.group_size, linear.bias, None, config)

    @property
    def mode(self) -> str:
        return self.config.mode

    def forward(self, x: Tensor) -> Tensor:
        if self.config.kernel == "reference":
            return self._forward_reference(x)
        if (x.requires_grad and torch.is_grad_enabled()) or torch.compiler.is_compiling() or _is_exporting():
            if _is_exporting() and torch.onnx.is_in_onnx_export():
                untraceable(self)
            return torch.ops.slimnn.q4_linear(x, self.packed, self.bias, self.in_mul, self.config.mode,
                                              self.out_features)
        if _is_tracing():  # torch.jit.trace / TorchScript ONNX export: the trace would hold a constant
            untraceable(self)
        d = self.__dict__
        buffers = d["_buffers"]  # direct dict access: nn.Module.__getattr__ is slow on a hot path
        y, name = q4_linear_module(
            x, buffers["packed"], buffers["bias"], buffers["in_mul"], KINDS[d["config"].mode], d["in_features"],
            d["out_features"],
        )
        d["last_kernel"] = name  # plain attribute; skips nn.Module.__setattr__'s bookkeeping
        return y

    def _forward_reference(self, x: Tensor) -> Tensor:
        xf, dt = prepare_input(x, self.in_features, "Int4Linear")
        codes, scales, zeros, gs = unpack_q4(self.packed)
        x2 = xf.reshape(-1, self.in_features).to(torch.float32)
        fn = reference.q4_linear_dynamic if self.config.mode == "dynamic" else reference.q4_linear_weight_only
        y = fn(x2, codes, scales, zeros, gs, self.bias, self.in_mul)
        return y.view(*x.shape[:-1], self.out_features).to(dt)

    def kernel_name(self, m: int = 16) -> str:
        """The kernel a call with ``m`` rows would take now on this CPU."""
        if self.config.kernel == "reference":
            return "reference"
        return _C.q4_select_kernel(KINDS[self.config.mode], m)

    def dequantized_weight(self) -> Tensor:
        """The float32 (N x K) weight this layer applies to its inputs (``in_mul`` folded in)."""
        codes, scales, zeros, gs = unpack_q4(self.packed)
        w = dequantize_int4(codes, scales, zeros, gs)
        return w if self.in_mul is None else w * self.in_mul

    def storage_bytes(self) -> int:
        """Bytes of the packed weights (with scales, zero points, sums, padding and header), bias and in_mul."""
        extra = sum(0 if t is None else t.numel() * 4 for t in (self.bias, self.in_mul))
        return self.packed.numel() + extra

    def extra_repr(self) -> str:
        c = self.config
        fmt = "q4 " + ("per-channel" if c.group_size is None else f"g={c.group_size}")
        fmt += (" sym" if c.symmetric else " asym float-zero" if c.float_zeros else " asym") + f" scales={c.scale_dtype}"
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}, "
            f"mode={c.mode}, format={fmt}, method={c.method}, in_mul={self.in_mul is not None}, "
            f"kernel={self.last_kernel or self.kernel_name(16)}"
        )

    def _load_from_state_dict(
        self, state_dict: dict, prefix: str, local_metadata: Any, strict: bool, missing_keys: list,
        unexpected_keys: list, error_msgs: list,
    ) -> None:
        key = prefix + "packed"
        info = check_packed_entry(self, state_dict, key, q4_info, error_msgs)
        if key in state_dict and info is None:
            return
        if info is not None:
            sd = {v: k for k, v in INT4_SCALE_DTYPES.items()}[info.scale_dtype]
            self.config = _replace(self.config, group_size=info.group_size, symmetric=info.symmetric,
                                   float_zeros=info.float_zeros, scale_dtype=sd)
        mkey = prefix + "in_mul"
        if mkey in state_dict:
            s = state_dict[mkey]
            if s is not None:
                try:
                    _check_in_mul(s, self.in_features)
                except ValueError as e:
                    error_msgs.append(f"{mkey}: {e}")
                    return
                if self.in_mul is None:
                    self.in_mul = torch.empty(self.in_features, dtype=torch.float32)
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )


def _replace(config: Int4Config, **kw: Any) -> Int4Config:
    import dataclasses

    return dataclasses.replace(config, calib_data=None, **kw)
