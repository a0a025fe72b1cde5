"""Int8Linear: an ``nn.Linear`` whose weights are stored and multiplied as int8."""

from __future__ import annotations

from typing import Any, Optional

import torch
from torch import Tensor, nn

from .. import _C
from ..ops import q8 as ops
from ..math import reference
from ..configs import Int8Config
from ..formats.packed import pack_q8, q8_info, unpack_q8
from ..math.quantize import quantize_int8_symmetric
from ..ops.common import prepare_input, untraceable
from .base import bare_linear, check_packed_entry, float_bias

_KIND = {"dynamic": "q8_dynamic", "weight_only": "q8_weight_only"}
_is_exporting = torch.compiler.is_exporting
_is_tracing = torch._C._is_tracing  # torch.jit.is_tracing without its Python wrapper


class PackedWeightStandIn(Tensor):
    """What ``Int8Linear.weight`` returns: the float weight's shape, dtype and device, and no values.

    Some callers read a child Linear's ``weight`` to run a fused kernel of their own, e.g. the inference
    fast path of ``nn.TransformerEncoderLayer`` / ``nn.TransformerEncoder`` (eval mode, no grad). Without
    a ``weight`` attribute they raise AttributeError; with the dequantized weight they would silently run
    in float. This stand-in overrides ``__torch_function__``, which makes those fast paths decline
    ("some Tensor argument has_torch_function") and call the modules instead. Metadata queries work; any
    computation with it raises TypeError naming the way out.
    """

    _METADATA = frozenset({
        Tensor.shape.__get__, Tensor.dtype.__get__, Tensor.device.__get__, Tensor.ndim.__get__,
        Tensor.requires_grad.__get__, Tensor.is_nested.__get__, Tensor.size, Tensor.dim, Tensor.numel,
        Tensor.is_floating_point,
    })

    @staticmethod
    def make(out_features: int, in_features: int) -> "PackedWeightStandIn":
        # one float of storage, broadcast: no memory for the (absent) float values
        return Tensor._make_subclass(PackedWeightStandIn, torch.zeros(1).expand(out_features, in_features))

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):  # noqa: ANN001
        if func in cls._METADATA:
            with torch._C.DisableTorchFunctionSubclass():
                return func(*args, **(kwargs or {}))
        name = getattr(func, "__name__", str(func))
        raise TypeError(
            f"Int8Linear.weight is a stand-in without values (the weights are packed int8), so {name} cannot "
            "use it; call the module, or use Int8Linear.dequantized_weight() for a float copy"
        )

    def __repr__(self, *, tensor_contents=None) -> str:  # noqa: ANN001
        return f"PackedWeightStandIn(shape={tuple(self.shape)}, dtype={self.dtype})"


class Int8Linear(nn.Module):
    """y = x W^T + b with W stored as int8 (per-channel or group-wise scales), packed for the CPU kernels.

    Build one with :meth:`from_linear` (or ``slimnn.compress_``). Inputs: float32 or bfloat16 (float16 and
    float64 are converted), any leading dimensions; the output has the input's dtype. ``state_dict`` holds
    the packed blob (``packed``, uint8, versioned header) and ``bias``; loading validates the blob.

    ``activation`` (None, "relu", "gelu", "gelu_tanh", "silu"): y = act(x W^T + b), applied by the kernel
    to each output block while it is in cache (see docs/fusion.md; ``slimnn.fuse_activations_`` sets it on
    Linear -> activation pairs). A fused module's ``state_dict`` also holds ``activation`` (an int64 code),
    so loading it into an unfused module (or the reverse) is an error instead of a silently wrong model.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        config: Optional[Int8Config] = None,
        activation: Optional[str] = None,
    ) -> None:
        super().__init__()
        self.activation = activation
        self.config = config or Int8Config()
        self.in_features = int(in_features)
        self.out_features = int(out_features)
        q = torch.zeros(self.out_features, self.in_features, dtype=torch.int8)
        gs = self.config.group_size
        ng = 1 if gs is None else -(-self.in_features // gs)
        self.register_buffer("packed", pack_q8(q, torch.ones(ng, self.out_features), gs))
        self.register_buffer("bias", torch.zeros(self.out_features) if bias else None)
        self.last_kernel: Optional[str] = None

    _activation: Optional[str] = None  # class defaults, for instances built with __new__
    _act_code: int = 0

    @property
    def activation(self) -> Optional[str]:
        """The fused activation (None, "relu", "gelu", "gelu_tanh" or "silu")."""
        return self._activation

    @activation.setter
    def activation(self, value: Optional[str]) -> None:
        self.__dict__["_act_code"] = ops.activation_code(value)  # validates
        self.__dict__["_activation"] = value

    @classmethod
    def from_linear(
        cls, linear: nn.Linear, config: Optional[Int8Config] = None, activation: Optional[str] = None
    ) -> "Int8Linear":
        """Quantizes ``linear``'s weights (symmetric, round half to even) into a new Int8Linear, optionally
        with a fused ``activation`` applied to its output."""
        if not isinstance(linear, nn.Linear):
            raise TypeError(f"from_linear expects an nn.Linear, got {type(linear).__name__}")
        config = config or Int8Config()
        mod = bare_linear(cls, config, linear.in_features, linear.out_features)
        mod.activation = activation
        q, scales = quantize_int8_symmetric(linear.weight, config.group_size)
        mod.register_buffer("packed", pack_q8(q, scales, config.group_size))
        mod.register_buffer("bias", float_bias(linear.bias, linear.out_features))
        mod.last_kernel = None
        return mod

    @classmethod
    def from_quantized(cls, linear: nn.Linear, q: Tensor, scales: Tensor, config: Optional[Int8Config] = None) -> "Int8Linear":
        """A new Int8Linear with ``linear``'s shape and bias and the given per-channel int8 weights ``q``
        (N x K in [-127, 127]) and ``scales`` (N), e.g. from GPTQ."""
        if not isinstance(linear, nn.Linear):
            raise TypeError(f"from_quantized expects an nn.Linear, got {type(linear).__name__}")
        config = config or Int8Config()
        n, k = linear.out_features, linear.in_features
        if q.shape != (n, k) or q.dtype != torch.int8 or (q.numel() and int(q.min()) < -127):
            raise ValueError(f"from_quantized: q must be int8 ({n}, {k}) in [-127, 127], got {q.dtype} {tuple(q.shape)}")
        scales = scales.detach().to(torch.float32).reshape(-1)
        if scales.numel() != n or not bool(torch.isfinite(scales).all()) or not bool((scales > 0).all()):
            raise ValueError(f"from_quantized: scales must be {n} finite positive values")
        mod = bare_linear(cls, config, k, n)
        mod.activation = None
        mod.register_buffer("packed", pack_q8(q.contiguous(), scales.reshape(1, n).contiguous(), None))
        mod.register_buffer("bias", float_bias(linear.bias, n))
        mod.last_kernel = None
        return mod

    @property
    def mode(self) -> str:
        return self.config.mode

    def forward(self, x: Tensor) -> Tensor:
        if not isinstance(x, Tensor):
            raise TypeError(f"Int8Linear: input must be a torch.Tensor, got {type(x).__name__}")
        if self.config.kernel == "reference":
            return self._forward_reference(x)
        if (x.requires_grad and torch.is_grad_enabled()) or torch.compiler.is_compiling() or _is_exporting():
            if _is_exporting() and torch.onnx.is_in_onnx_export():
                untraceable(self)
            act = self.activation
            if (ops.FUSE_QUANTIZATION and self.config.mode == "dynamic" and x.dtype == torch.float32
                    and not _is_exporting()
                    and not (x.requires_grad and torch.is_grad_enabled()) and x.shape[-1] == self.in_features):
                # torch.compile: the row quantization as torch ops, which Inductor fuses into x's producer
                return ops.q8_linear_traced(x, self.packed, self.bias, self.out_features,
                                           -(-self.in_features // 4) * 4, act)  # the blob's kp (checked)
            if act is None:
                return torch.ops.slimnn.q8_linear(x, self.packed, self.bias, self.config.mode, self.out_features)
            return torch.ops.slimnn.q8_linear(x, self.packed, self.bias, self.config.mode, self.out_features, act)
        if _is_tracing():  # torch.jit.trace / TorchScript ONNX export: the trace would hold a constant
            untraceable(self)
        d = self.__dict__
        buffers = d["_buffers"]  # direct dict access: nn.Module.__getattr__ is slow on a hot path
        y, name = ops.q8_linear_module(
            x, buffers["packed"], buffers["bias"], _KIND[d["config"].mode], d["in_features"], d["out_features"],
            self._act_code, self._activation,
        )
        self.__dict__["last_kernel"] = name  # plain attribute; skips nn.Module.__setattr__'s bookkeeping
        return y

    def _forward_reference(self, x: Tensor) -> Tensor:
        xf, dt = prepare_input(x, self.in_features, "Int8Linear")
        q, scales, gs = unpack_q8(self.packed)
        x2 = xf.reshape(-1, self.in_features).to(torch.float32)
        fn = reference.q8_linear_dynamic if self.config.mode == "dynamic" else reference.q8_linear_weight_only
        y = ops.apply_activation(fn(x2, q, scales, gs, self.bias), self.activation)
        return y.view(*x.shape[:-1], self.out_features).to(dt)

    def kernel_name(self, m: int = 16) -> str:
        """The kernel a call with ``m`` rows would take now on this CPU."""
        if self.config.kernel == "reference":
            return "reference"
        return _C.select_kernel(_KIND[self.config.mode], m)

    @property
    def weight(self) -> Tensor:
        """A stand-in with the float weight's shape/dtype/device and no values (see PackedWeightStandIn)."""
        return PackedWeightStandIn.make(self.out_features, self.in_features)

    def dequantized_weight(self) -> Tensor:
        from ..math.quantize import dequantize_int8

        q, scales, gs = unpack_q8(self.packed)
        return dequantize_int8(q, scales, gs)

    def storage_bytes(self) -> int:
        """Bytes of the packed weights (with scales, column sums, padding and header) plus the bias."""
        return self.packed.numel() + (0 if self.bias is None else self.bias.numel() * 4)

    def extra_repr(self) -> str:
        gs = self.config.group_size
        fmt = "q8 per-channel" if gs is None else f"q8 group={gs}"
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}, "
            f"mode={self.config.mode}, format={fmt}, kernel={self.last_kernel or self.kernel_name(16)}"
            + ("" if self.activation is None else f", activation={self.activation}")
        )

    # The fused activation travels in the state_dict as "activation" (an int64 code) only when one is set, so
    # unfused modules keep exactly the keys they always had.
    def _save_to_state_dict(self, destination: dict, prefix: str, keep_vars: bool) -> None:
        super()._save_to_state_dict(destination, prefix, keep_vars)
        if self.activation is not None:
            destination[prefix + "activation"] = torch.tensor(self._act_code, dtype=torch.int64)

    def _load_from_state_dict(
        self, state_dict: dict, prefix: str, local_metadata: Any, strict: bool, missing_keys: list,
        unexpected_keys: list, error_msgs: list,
    ) -> None:
        # A state_dict without "activation" (unfused, or from before fusion existed) says nothing about it:
        # the activation is part of the model's structure. One that has it must agree with this module.
        akey = prefix + "activation"
        saved = state_dict.get(akey)
        code = self._act_code if saved is None else int(saved) if isinstance(saved, Tensor) and saved.numel() == 1 else -1
        names = {v: k for k, v in ops.ACTIVATIONS.items()}
        if code not in names:
            error_msgs.append(f"{akey}: not an activation code ({saved!r})")
            return
        if names[code] != self.activation:
            error_msgs.append(
                f"{prefix or 'module'}: the state_dict is of an Int8Linear with activation={names[code]!r}, this "
                f"module has activation={self.activation!r}; fuse the model the same way (slimnn.fuse_activations_) "
                "before loading"
            )
            return
        key = prefix + "packed"
        info = check_packed_entry(self, state_dict, key, q8_info, error_msgs)
        if key in state_dict and info is None:
            return
        if info is not None:
            self.config = Int8Config(mode=self.config.mode, group_size=info.group_size, kernel=self.config.kernel)
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )
        if akey in unexpected_keys:
            unexpected_keys.remove(akey)
