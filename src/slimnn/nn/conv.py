"""Conv2dInt8 / Conv1dInt8: ``nn.Conv2d`` / ``nn.Conv1d`` with int8 weights on slimnn's conv kernels.

Weights: symmetric int8, one scale per output channel, rounded so that each input channel's taps keep
their sum (``math.quantize.quantize_int8_sum_preserving``). Activations: ``mode="dynamic"``
quantizes them to uint8 per image (or per tensor, ``quant="per_tensor"``, or per output pixel's receptive
field, ``quant="per_pixel"``: finer, slower on few input channels, see docs/conv.md), measured on each call;
``"weight_only"`` keeps them fp32. Depthwise convs (groups == in == out channels) always run fp32
activations times int8 weights (see csrc/kernels/conv/conv.h for why).

Inputs in any memory format; channels-last (``x.contiguous(memory_format=torch.channels_last)``) is used
as is, channels-first is converted once per call (one copy of the activations). Outputs are channels-last,
so a chain of int8 convs converts at most once, at its input. ``activation`` (None, relu, relu6, silu,
hardswish, gelu, gelu_tanh) is applied by the kernel to each output block; ``fold_batchnorm_`` and
``fuse_conv_activations_`` set it up from a float model.
"""

from __future__ import annotations

import warnings
from typing import Any, Callable, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..formats.packed import q8_info, unpack_q8
from ..math import reference
from ..math.calibration import conv_patches
from ..math.quantize import quantize_int8_sum_preserving
from ..ops import conv as co
from ..ops.common import untraceable
from ..runtime.threads import get_num_threads
from .. import _C

class _OpaqueChildren(torch.fx.Tracer):
    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:  # noqa: ARG002
        return True


_ACTS = {nn.ReLU: "relu", nn.ReLU6: "relu6", nn.SiLU: "silu", nn.Hardswish: "hardswish"}


def conv_activation_of(mod: nn.Module) -> Optional[str]:
    """The kernel activation ``mod`` computes exactly, or None."""
    if type(mod) in _ACTS:
        return _ACTS[type(mod)]
    if type(mod) is nn.GELU:
        return {"none": "gelu", "tanh": "gelu_tanh"}.get(mod.approximate)
    return None


def _trace(mod: nn.Module) -> Optional[torch.fx.Graph]:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return _OpaqueChildren().trace(mod)
    except Exception:  # noqa: BLE001
        return None


def _is_identity(mod: nn.Module) -> bool:
    """True when ``mod``'s forward provably returns its input (fx graph: input -> output), no state."""
    if isinstance(mod, nn.Identity):
        return True
    if any(True for _ in mod.parameters()) or any(True for _ in mod.buffers()) or any(True for _ in mod.children()):
        return False
    g = _trace(mod)
    if g is None:
        return False
    nodes = list(g.nodes)
    return len(nodes) == 2 and nodes[0].op == "placeholder" and nodes[1].op == "output" and nodes[1].args == (nodes[0],)


def _static_padding(conv: nn.Conv2d) -> Optional[tuple[int, int, int, int]]:
    """(top, bottom, left, right) of the "static same padding" Conv2d subclass of the EfficientNet ports
    (efficientnet_pytorch, efficientnet_lite_pytorch): its forward, traced by fx, must be exactly
    ``F.conv2d(self.static_padding(x), self.weight, self.bias, self.stride, self.padding, self.dilation,
    self.groups)`` with ``static_padding`` a ZeroPad2d or an identity. None if ``conv`` is anything else."""
    pad = getattr(conv, "static_padding", None)
    if type(pad) is nn.ZeroPad2d:
        l, r, t, b = pad.padding
        extra = (t, b, l, r)
    elif isinstance(pad, nn.Module) and _is_identity(pad):
        extra = (0, 0, 0, 0)
    else:
        return None
    g = _trace(conv)
    if g is None:
        return None
    nodes = [n for n in g.nodes]
    kinds = [(n.op, n.target) for n in nodes]
    calls = [n for n in nodes if n.op == "call_function"]
    if (len(calls) != 1 or calls[0].target not in (torch.conv2d, torch.nn.functional.conv2d)
            or ("call_module", "static_padding") not in kinds or nodes[-1].args != (calls[0],)):
        return None
    args = calls[0].args
    if len(args) != 7 or args[0].op != "call_module" or args[0].target != "static_padding":
        return None
    if not (args[1].op == "get_attr" and args[1].target == "weight"):
        return None
    if not ((args[2] is None and conv.bias is None) or (getattr(args[2], "op", None) == "get_attr" and args[2].target == "bias")):
        return None
    if tuple(args[3]) != tuple(conv.stride) or tuple(args[5]) != tuple(conv.dilation) or args[6] != conv.groups:
        return None
    if isinstance(args[4], str) or tuple(args[4]) != tuple(conv.padding):
        return None
    return extra


def conv_padding(conv: nn.Module) -> Optional[tuple[int, int, int, int]]:
    """The conv's zero padding as (top, bottom, left, right), or None if slimnn cannot run it exactly
    (padding_mode other than zeros, a subclass with its own forward, string padding it cannot resolve)."""
    if conv.padding_mode != "zeros":
        return None
    base = type(conv) in (nn.Conv1d, nn.Conv2d)
    extra = (0, 0, 0, 0)
    if not base:
        if not isinstance(conv, nn.Conv2d):
            return None
        extra = _static_padding(conv)
        if extra is None:
            return None
    p = conv.padding
    k = conv.kernel_size if isinstance(conv, nn.Conv2d) else (1, conv.kernel_size[0])
    d = conv.dilation if isinstance(conv, nn.Conv2d) else (1, conv.dilation[0])
    if isinstance(p, str):
        if p == "valid":
            p2 = (0, 0, 0, 0)
        else:  # "same" (stride 1, torch puts the odd pixel after)
            tot = [dd * (kk - 1) for dd, kk in zip(d, k)]
            p2 = (tot[0] // 2, tot[0] - tot[0] // 2, tot[1] // 2, tot[1] - tot[1] // 2)
    elif isinstance(conv, nn.Conv2d):
        p2 = (p[0], p[0], p[1], p[1])
    else:
        p2 = (0, 0, p[0], p[0])
    return tuple(a + b for a, b in zip(p2, extra))  # type: ignore[return-value]


def _float_bias(conv: nn.Module) -> Optional[Tensor]:
    b = conv.bias
    if b is None:
        return None
    b = b.detach().to(torch.float32).contiguous().clone()
    if not bool(torch.isfinite(b).all()):
        raise ValueError("conv bias has a NaN or infinite value")
    return b


def conv_patch_fn(conv: nn.Module) -> Callable[[Tensor], Tensor]:
    """``x -> (groups, rows, c/groups * kh * kw)``: the rows a float ``nn.Conv2d`` / ``nn.Conv1d`` (as
    :func:`conv_padding` reads its padding) multiplies with its flattened weight, for calibration (GPTQ)."""
    pads = conv_padding(conv)
    if pads is None:
        raise ValueError(f"{type(conv).__name__} with padding_mode={conv.padding_mode!r} is not supported")
    if isinstance(conv, nn.Conv1d):
        k, s, d = (1, conv.kernel_size[0]), (1, conv.stride[0]), (1, conv.dilation[0])
        return lambda x: conv_patches(x.unsqueeze(2), k, s, pads, d, conv.groups)
    k, s, d = tuple(conv.kernel_size), tuple(conv.stride), tuple(conv.dilation)
    return lambda x: conv_patches(x, k, s, pads, d, conv.groups)


class Conv2dInt8(nn.Module):
    """y = act(conv2d(x, W) + b) with W int8 (one scale per output channel). Build with :meth:`from_conv`.

    ``state_dict``: depthwise: ``qweight`` (int8, C x kh*kw) and ``scales``; otherwise ``packed`` (uint8,
    ``groups`` q8 blobs of ``group_bytes`` each, CPU-independent); ``bias`` when there is one.
    """

    _is_1d = False

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, dilation=1, groups: int = 1,
        bias: bool = True, mode: str = "dynamic", quant: str = "per_image", activation: Optional[str] = None,
    ) -> None:
        super().__init__()
        k = co.as_pair(kernel_size, "kernel_size")
        self._setup(in_channels, out_channels, k, co.as_pair(stride, "stride"), co.pads4(padding),
                    co.as_pair(dilation, "dilation"), groups, mode, quant, activation)
        q = torch.zeros(out_channels, in_channels // groups, *k, dtype=torch.int8)
        self._set_weight(q, torch.ones(out_channels))
        self.register_buffer("bias", torch.zeros(out_channels) if bias else None)

    def _setup(self, c, oc, k, s, p, d, groups, mode, quant, activation) -> None:
        if mode not in co.MODES:
            raise ValueError(f"{type(self).__name__}: mode must be one of {co.MODES}, got {mode!r}")
        if quant not in co.QUANTS:
            raise ValueError(f"{type(self).__name__}: quant must be one of {co.QUANTS}, got {quant!r}")
        if quant == co.STATIC and mode != "dynamic":
            raise ValueError(f"{type(self).__name__}: quant='static' quantizes activations; it needs mode='dynamic'")
        if activation not in co.ACTIVATIONS:
            raise ValueError(f"{type(self).__name__}: unknown activation {activation!r}")
        if groups < 1 or c % groups or oc % groups:
            raise ValueError(f"{type(self).__name__}: groups={groups} must divide in ({c}) and out ({oc}) channels")
        self.in_channels, self.out_channels, self.kernel_size = int(c), int(oc), k
        self.stride, self.padding, self.dilation, self.groups = s, p, d, int(groups)
        self.mode, self.quant, self.activation = mode, quant, activation
        self.depthwise = co.is_depthwise(c, oc, groups)
        self.last_kernel: Optional[str] = None
        # quant="static": the input grid (scale, zero point) set by calibration (static_quantize_convs_), and
        # the output grid when this conv's output goes to one static conv alone (it then returns uint8).
        self.in_q: Optional[tuple[float, int]] = None
        self.out_q: Optional[tuple[float, int]] = None

    def _set_weight(self, q: Tensor, scales: Tensor) -> None:
        """q: int8 (oc, c/g, kh, kw), scales fp32 (oc,)."""
        scales = scales.to(torch.float32).contiguous()
        if self.depthwise:
            self.register_buffer("qweight", q.reshape(self.out_channels, -1).contiguous())
            self.register_buffer("scales", scales)
            self.group_bytes = 0
        else:
            packed, gb = co.pack_conv_weight(q, scales, self.groups)
            self.register_buffer("packed", packed)
            self.group_bytes = gb

    @classmethod
    def from_conv(
        cls, conv: nn.Module, mode: str = "dynamic", quant: str = "per_image", activation: Optional[str] = None,
    ) -> "Conv2dInt8":
        """Quantizes ``conv`` (an ``nn.Conv2d``, or ``nn.Conv1d`` for :class:`Conv1dInt8`) into a new module."""
        mod, w = cls._shell(conv, mode, quant, activation)
        k = mod.kernel_size
        # Per output channel; each input channel's kh*kw taps (the whole row of a 1x1) keep their sum, so the
        # filter's response to a locally constant input is exact to half a step (math.quantize says why).
        taps = k[0] * k[1]
        q, scales = quantize_int8_sum_preserving(w.reshape(w.shape[0], -1), taps if taps > 1 else None)
        mod._set_weight(q.reshape(w.shape), scales.reshape(-1))
        b = _float_bias(conv)
        mean = conv.__dict__.get(INPUT_MEAN)
        if mean is not None and mean.shape == (conv.in_channels,):
            # Bias correction: the rounding error's expected output, sum over (c, taps) of (deq - w) * E[x_c],
            # moves into the bias (E[x] from the BatchNorm before, see fold_batchnorm_; border taps that read
            # the zero padding are counted as if they read the mean).
            err = (q.reshape(w.shape).double() * scales.reshape(-1, 1, 1, 1).double() - w.double()).sum(dim=(2, 3))
            if conv.groups == conv.in_channels == conv.out_channels:
                shift = err[:, 0] * mean.double()
            else:
                cg = conv.in_channels // conv.groups
                shift = (err * mean.double().view(conv.groups, 1, cg).expand(conv.groups, w.shape[0] // conv.groups, cg)
                         .reshape(w.shape[0], cg)).sum(dim=1)
            b = ((b.double() if b is not None else 0.0) - shift).to(torch.float32).contiguous()
        mod.register_buffer("bias", b)
        return mod

    @classmethod
    def from_quantized(cls, conv: nn.Module, q: Tensor, scales: Tensor, mode: str = "dynamic",
                       quant: str = "per_image", activation: Optional[str] = None) -> "Conv2dInt8":
        """A new module with ``conv``'s geometry and bias and the given int8 weights ``q`` (conv.weight's shape,
        values in [-127, 127]) and per-output-channel ``scales`` (e.g. from GPTQ); no bias correction."""
        mod, w = cls._shell(conv, mode, quant, activation)
        q = q.reshape(w.shape)
        if q.dtype != torch.int8 or (q.numel() and int(q.min()) < -127):
            raise ValueError("from_quantized: q must be int8 in [-127, 127]")
        scales = scales.detach().to(torch.float32).reshape(-1)
        if scales.numel() != mod.out_channels or not bool(torch.isfinite(scales).all()) or not bool((scales > 0).all()):
            raise ValueError(f"from_quantized: scales must be {mod.out_channels} finite positive values")
        mod._set_weight(q, scales)
        mod.register_buffer("bias", _float_bias(conv))
        return mod

    @classmethod
    def _shell(cls, conv: nn.Module, mode: str, quant: str, activation: Optional[str]) -> tuple["Conv2dInt8", Tensor]:
        """The module with ``conv``'s geometry and no weights yet, and conv's float32 weight as (oc, c/g, kh, kw)."""
        want = nn.Conv1d if cls._is_1d else nn.Conv2d
        if not isinstance(conv, want):
            raise TypeError(f"{cls.__name__}.from_conv expects an {want.__name__}, got {type(conv).__name__}")
        pads = conv_padding(conv)
        if pads is None:
            raise ValueError(f"{cls.__name__}: {type(conv).__name__} with padding_mode={conv.padding_mode!r} "
                             "or a forward of its own is not supported")
        w = conv.weight.detach().to(torch.float32)
        if not bool(torch.isfinite(w).all()):
            raise ValueError("conv weight has a NaN or infinite value")
        if cls._is_1d:
            w = w.unsqueeze(2)
            k, s, d = (1, conv.kernel_size[0]), (1, conv.stride[0]), (1, conv.dilation[0])
        else:
            k, s, d = tuple(conv.kernel_size), tuple(conv.stride), tuple(conv.dilation)
        mod = cls.__new__(cls)
        nn.Module.__init__(mod)
        mod._setup(conv.in_channels, conv.out_channels, k, s, pads, d, conv.groups, mode, quant, activation)
        return mod, w

    def int8_weight(self) -> tuple[Tensor, Tensor]:
        """(q int8 (oc, c/g, kh, kw), scales fp32 (oc,)): the canonical weights."""
        kh, kw = self.kernel_size
        if self.depthwise:
            return self.qweight.reshape(self.out_channels, 1, kh, kw), self.scales
        qs, ss = [], []
        gb = self.group_bytes
        for g in range(self.groups):
            q, s, _ = unpack_q8(self.packed[g * gb:(g + 1) * gb])
            qs.append(q)
            ss.append(s.reshape(-1))
        q = torch.cat(qs).reshape(self.out_channels, kh, kw, -1).permute(0, 3, 1, 2).contiguous()
        return q, torch.cat(ss)

    def dequantized_weight(self) -> Tensor:
        q, s = self.int8_weight()
        w = q.to(torch.float32) * s.view(-1, 1, 1, 1)
        return w.squeeze(2) if self._is_1d else w

    def _dw_prepared(self) -> tuple[Tensor, Tensor]:
        """The depthwise kernels' fp32 weights and padded bias (ops.conv.prepare_dw), formed once and formed
        again only when qweight, scales or bias change (a load_state_dict, an in-place edit)."""
        b = self.bias
        key = (self.qweight.data_ptr(), self.qweight._version, self.scales.data_ptr(), self.scales._version,
               None if b is None else (b.data_ptr(), b._version))
        cached = self.__dict__.get("_dw_cache")
        if cached is None or cached[0] != key:
            cached = (key, co.prepare_dw(self.qweight, self.scales, b))
            self.__dict__["_dw_cache"] = cached
        return cached[1]

    def _static_in_q(self) -> tuple[float, int]:
        if self.in_q is None:
            raise ValueError(f"{type(self).__name__}: quant='static' is not calibrated; run "
                             "slimnn.static_quantize_convs_(model, calib_data) first")
        return self.in_q

    def forward4(self, x: Tensor) -> Tensor:
        if torch.compiler.is_compiling() or torch.compiler.is_exporting():
            return self._traced_forward4(x)
        if torch._C._is_tracing():  # torch.jit.trace / TorchScript ONNX export: the trace would hold a constant
            untraceable(self)
        static = self.quant == co.STATIC
        if isinstance(x, Tensor) and x.dtype == torch.uint8 and not static:
            raise ValueError(f"{type(self).__name__}: a uint8 input needs quant='static' (it is {self.quant!r})")
        if static:
            y = self._static_planned(x)
            if y is not None:
                return y
        if self.depthwise:
            wf, bp = self._dw_prepared()
            in_q = self._static_in_q() if static else None
            y, name = co.conv2d_dw_prepared(x, wf, bp, self.in_channels, self.kernel_size, self.stride, self.padding,
                                            self.dilation, self.activation, in_q, self.out_q if static else None)
        elif static:
            y, name = co.conv2d_q8_static(x, self.packed, self.group_bytes, self.out_channels, self.kernel_size,
                                          self.stride, self.padding, self.dilation, self.groups, self.bias,
                                          self.activation, self._static_in_q(), self.out_q)
        else:
            y, name = co.conv2d_q8(x, self.packed, self.group_bytes, self.out_channels, self.kernel_size,
                                   self.stride, self.padding, self.dilation, self.groups, self.bias,
                                   self.activation, self.mode, self.quant)
        self.__dict__["last_kernel"] = name
        if static:
            self._static_plan(x, y)
        return y

    # quant="static" runs every layer of a model on each call, where the Python checks of ops.conv cost as
    # much as a small layer's kernel: after one checked call, a call with the same input shape, dtype and
    # layout (and the same grids and activation) goes to _C directly, which re-checks every size itself.
    def _static_plan(self, x: Tensor, y: Tensor) -> None:
        if not (isinstance(x, Tensor) and x.dtype in (torch.float32, torch.uint8) and x.device.type == "cpu"
                and x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last)):
            return
        t, b, l, r = self.padding
        n, c, h, w = x.shape
        dims = [n, h, w, c, self.out_channels, *self.kernel_size, *self.stride, t, b, l, r, *self.dilation, self.groups]
        # what the checked call saw: the input's shape, dtype and strides, and (by identity) the module state
        # it read; a change to any of them goes through the checked path again
        state = (self.in_q, self.out_q, self.activation, self.bias, None if self.depthwise else self.packed)
        self.__dict__["_plan"] = ((x.shape, x.dtype, x.stride()), state, dims, tuple(y.shape), y.dtype,
                                  co.ACTIVATIONS[self.activation])

    def _static_planned(self, x: Tensor) -> Optional[Tensor]:
        plan = self.__dict__.get("_plan")
        if plan is None or not isinstance(x, Tensor) or plan[0] != (x.shape, x.dtype, x.stride()):
            return None
        in_q, out_q, act_name, bias, packed = plan[1]
        buffers, attrs = self._buffers, self.__dict__  # plain dict lookups: nn.Module.__getattr__ costs a call each
        if (in_q is not attrs["in_q"] or out_q is not attrs["out_q"] or act_name is not attrs["activation"]
                or bias is not buffers.get("bias") or (packed is not None and packed is not buffers.get("packed"))):
            return None
        _, _, dims, shape, dtype, act = plan
        y = torch.empty(shape, dtype=dtype, memory_format=torch.channels_last)
        (isc, izp), out_u8 = in_q, out_q is not None
        osc, ozp = out_q if out_u8 else (1.0, 0)
        u8 = x.dtype == torch.uint8
        if packed is None:  # depthwise
            wf, bp = self._dw_prepared()
            name, finite = _C.conv2d_dw_prepared(x.data_ptr(), u8, x.numel(), dims, wf.data_ptr(), wf.numel(),
                                                 bp.data_ptr(), bp.numel(), act, isc, izp, y.data_ptr(), out_u8, osc,
                                                 ozp, y.numel(), get_num_threads())
        else:
            name, finite = _C.conv2d_q8_static(x.data_ptr(), u8, x.numel(), dims, packed.data_ptr(),
                                               attrs["group_bytes"], 0 if bias is None else bias.data_ptr(), act,
                                               isc, izp, y.data_ptr(), out_u8, osc, ozp, y.numel(), get_num_threads())
        if not finite and out_u8:
            raise ValueError(f"{type(self).__name__}: the input holds a NaN or an infinity, which a uint8 output "
                             "cannot carry")
        self.__dict__["last_kernel"] = name
        return y

    def _traced_forward4(self, x: Tensor) -> Tensor:
        # torch.compile / torch.export: the same kernels as one opaque op each (ops.conv's torch.library ops).
        # torch.onnx.export cannot see the packed weights: it refuses, naming slimnn.export_onnx, which swaps
        # this layer for an exportable twin.
        if torch.onnx.is_in_onnx_export():
            untraceable(self)
        k, s, p, d = list(self.kernel_size), list(self.stride), list(reference.conv_pads4(self.padding)), list(self.dilation)
        if self.quant == co.STATIC:
            (isc, izp), (osc, ozp) = self._static_in_q(), self.out_q or (None, 0)
            if self.depthwise:
                return torch.ops.slimnn.conv2d_dw_static(x, self.qweight, self.scales, k, s, p, d, self.bias,
                                                         self.activation, isc, izp, osc, ozp)
            return torch.ops.slimnn.conv2d_q8_static(x, self.packed, self.group_bytes, self.out_channels, k, s, p, d,
                                                     self.groups, self.bias, self.activation, isc, izp, osc, ozp)
        if self.depthwise:
            return torch.ops.slimnn.conv2d_dw(x, self.qweight, self.scales, k, s, p, d, self.bias, self.activation)
        return torch.ops.slimnn.conv2d_q8(x, self.packed, self.group_bytes, self.out_channels, k, s, p, d,
                                          self.groups, self.bias, self.activation, self.mode, self.quant)

    def forward(self, x: Tensor) -> Tensor:
        if not isinstance(x, Tensor):
            raise TypeError(f"{type(self).__name__}: input must be a torch.Tensor, got {type(x).__name__}")
        dt = x.dtype
        y = self.forward4(x)
        # uint8 in (codes) or out (this conv feeds a static conv alone): the codes pass as they are
        return y if dt in (torch.float32, torch.uint8) or y.dtype == torch.uint8 else y.to(dt)

    def reference_forward(self, x: Tensor) -> Tensor:
        """The float64 reference of what the kernel computes (slimnn.math.reference.conv2d_reference, or
        conv2d_static_reference for quant="static")."""
        q, s = self.int8_weight()
        if self.quant == co.STATIC:
            return reference.conv2d_static_reference(x, q, s, self.bias, self.stride, self.padding, self.dilation,
                                                     self.groups, self.activation, self._static_in_q(), self.out_q)
        return reference.conv2d_reference(x, q, s, self.bias, self.stride, self.padding, self.dilation, self.groups,
                                   self.activation, self.mode, self.quant)

    def storage_bytes(self) -> int:
        """Bytes of the stored weights (packed blobs or int8 + scales) and bias."""
        w = self.qweight.numel() + self.scales.numel() * 4 if self.depthwise else self.packed.numel()
        return w + (0 if self.bias is None else self.bias.numel() * 4)

    def float_bytes(self) -> int:
        kh, kw = self.kernel_size
        n = self.out_channels * (self.in_channels // self.groups) * kh * kw + (0 if self.bias is None else self.out_channels)
        return 4 * n

    def summary(self) -> str:
        kind = "depthwise" if self.depthwise else ("pointwise" if self.kernel_size == (1, 1) else "dense")
        st = ", static" + (" (uint8 out)" if self.out_q else "") if self.quant == co.STATIC else ""
        return f"{kind} {self.kernel_size[0]}x{self.kernel_size[1]}, {self.mode}{st}"

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
            f"padding={self.padding}, dilation={self.dilation}, groups={self.groups}, bias={self.bias is not None}, "
            f"mode={self.mode}" + (f", quant={self.quant}" if self.mode == "dynamic" and (not self.depthwise or self.quant == co.STATIC) else "")
            + (f", in_q=({self.in_q[0]:.6g}, {self.in_q[1]})" if self.in_q else "")
            + (f", out_q=({self.out_q[0]:.6g}, {self.out_q[1]}) uint8" if self.out_q else "")
            + ("" if self.activation is None else f", activation={self.activation}")
            + (f", kernel={self.last_kernel}" if self.last_kernel else "")
        )

    def _load_from_state_dict(self, state_dict: dict, prefix: str, local_metadata: Any, strict: bool,
                              missing_keys: list, unexpected_keys: list, error_msgs: list) -> None:
        key = prefix + "packed"
        if not self.depthwise and key in state_dict:
            blob = state_dict[key]
            if not isinstance(blob, Tensor) or blob.dtype != torch.uint8 or blob.dim() != 1 or blob.numel() != self.packed.numel():
                error_msgs.append(f"{key}: expected a uint8 blob of {self.packed.numel()} bytes")
                return
            kk = self.kernel_size[0] * self.kernel_size[1] * (self.in_channels // self.groups)
            gb = self.group_bytes
            for g in range(self.groups):
                try:
                    info = q8_info(blob[g * gb:(g + 1) * gb].detach().cpu().contiguous(), full_check=True)
                except (ValueError, TypeError) as e:
                    error_msgs.append(f"{key}: group {g}: {e}")
                    return
                if (info.n, info.k) != (self.out_channels // self.groups, kk) or info.group_size is not None:
                    error_msgs.append(f"{key}: group {g} is {info.n} x {info.k}, this conv needs "
                                      f"{self.out_channels // self.groups} x {kk} per channel")
                    return
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)


class Conv1dInt8(Conv2dInt8):
    """``nn.Conv1d`` with int8 weights: the Conv2dInt8 kernels over (N, C, 1, L). Output (N, OC, OL)."""

    _is_1d = True

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, padding: int = 0,
                 dilation: int = 1, groups: int = 1, bias: bool = True, mode: str = "dynamic",
                 quant: str = "per_image", activation: Optional[str] = None) -> None:
        nn.Module.__init__(self)
        p = (0, 0, padding, padding) if isinstance(padding, int) else (0, 0, *padding)
        self._setup(in_channels, out_channels, (1, int(kernel_size)), (1, int(stride)), p, (1, int(dilation)),
                    groups, mode, quant, activation)
        self._set_weight(torch.zeros(out_channels, in_channels // groups, 1, int(kernel_size), dtype=torch.int8),
                         torch.ones(out_channels))
        self.register_buffer("bias", torch.zeros(out_channels) if bias else None)

    def forward(self, x: Tensor) -> Tensor:
        if not isinstance(x, Tensor):
            raise TypeError(f"Conv1dInt8: input must be a torch.Tensor, got {type(x).__name__}")
        if x.dim() != 3:
            raise ValueError(f"Conv1dInt8: input must be (N, C, L), got {tuple(x.shape)}")
        dt = x.dtype
        y = self.forward4(x.unsqueeze(2)).squeeze(2)
        return y if dt in (torch.float32, torch.uint8) or y.dtype == torch.uint8 else y.to(dt)

    def reference_forward(self, x: Tensor) -> Tensor:
        return super().reference_forward(x.unsqueeze(2)).squeeze(2)


# --- BatchNorm folding and activation fusion (eval mode) ----------------------------------------------------


def _traced_calls(parent: nn.Module) -> Optional[torch.fx.Graph]:
    """``parent``'s forward traced with every child opaque, arguments with defaults taken at their defaults
    (e.g. EfficientNet blocks' ``drop_connect_rate=None``); None if fx cannot trace it."""
    import inspect

    try:
        sig = inspect.signature(parent.forward)
        concrete = {n: p.default for n, p in list(sig.parameters.items())[1:] if p.default is not inspect.Parameter.empty}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return _OpaqueChildren().trace(parent, concrete_args=concrete or None)
    except Exception:  # noqa: BLE001  (fx raises many kinds; any of them means "cannot tell")
        return None


def _chains(parent: nn.Module) -> list[tuple[str, Optional[str], list, Optional[str]]]:
    """(conv child, bn child or None, [activation call nodes], consumer conv child or None) of ``parent``'s
    traced eval-mode forward where the conv is called once and its only user is the BN's only call (and
    likewise BN -> activation); the consumer is the conv child, called once, whose input is the chain's output
    alone."""
    was = parent.training
    parent.eval()
    try:
        graph = _traced_calls(parent)
    finally:
        parent.train(was)
    if graph is None:
        return []
    calls: dict[str, list] = {}
    for node in graph.nodes:
        if node.op == "call_module":
            calls.setdefault(node.target, []).append(node)
    kids = dict(parent.named_children())

    def only_user(node):  # noqa: ANN001, ANN202
        if len(node.users) != 1:
            return None
        u = next(iter(node.users))
        if u.op == "call_module" and "." not in u.target and u.args == (node,) and not u.kwargs:
            return u
        return None

    out = []
    for name, nodes in calls.items():
        if "." in name or len(nodes) != 1 or not isinstance(kids.get(name), (nn.Conv1d, nn.Conv2d, Conv2dInt8)):
            continue
        node, bn = nodes[0], None
        u = only_user(node)
        if (u is not None and isinstance(kids[u.target], (nn.BatchNorm1d, nn.BatchNorm2d, nn.Identity))
                and len(calls[u.target]) == 1):
            bn, node = u.target, u
            u = only_user(node)
        acts = [u] if u is not None and conv_activation_of(kids[u.target]) is not None else []
        nxt = only_user(acts[0]) if acts else u
        consumer = (nxt.target if nxt is not None and isinstance(kids.get(nxt.target), (nn.Conv1d, nn.Conv2d))
                    and len(calls.get(nxt.target, ())) == 1 else None)
        out.append((name, bn, acts, consumer))
    return out


# The expected value of each input channel of a float conv, set by fold_batchnorm_ when the conv's input is
# act(bn(...)) of a folded BatchNorm; Conv2dInt8.from_conv corrects its bias for the weights' rounding with it.
INPUT_MEAN = "_slimnn_input_mean"

_ACT_FN = {None: lambda z: z, "relu": torch.relu, "relu6": lambda z: z.clamp(0.0, 6.0), "silu": F.silu,
           "hardswish": F.hardswish, "gelu": F.gelu, "gelu_tanh": lambda z: F.gelu(z, approximate="tanh")}


def _expected_activation(bn: nn.Module, act: Optional[str]) -> Tensor:
    """E[act(z)] per channel for z ~ N(beta, gamma^2): an eval BatchNorm's output over the data its running
    statistics describe has mean beta and standard deviation |gamma| (gamma = weight, beta = bias; 1 and 0
    when affine=False); the Gaussian shape is the assumption (Nagel et al., "Data-Free Quantization", 2019).
    Trapezoidal rule over +-8 standard deviations, 2049 points, float64."""
    c = bn.num_features
    beta = bn.bias.detach().double() if bn.bias is not None else torch.zeros(c, dtype=torch.float64)
    gamma = bn.weight.detach().double().abs() if bn.weight is not None else torch.ones(c, dtype=torch.float64)
    t = torch.linspace(-8.0, 8.0, 2049, dtype=torch.float64)
    pdf = torch.exp(-0.5 * t * t) / (2.0 * torch.pi) ** 0.5
    z = beta.view(-1, 1) + gamma.view(-1, 1) * t.view(1, -1)
    return torch.trapezoid(_ACT_FN[act](z) * pdf, t, dim=1)


class FoldedBatchNorm(nn.Identity):
    """What a BatchNorm becomes once folded into the conv before it (``into``, that conv's attribute name):
    an identity that still says, in the model's structure and in a saved file, what happened there."""

    def __init__(self, into: str) -> None:
        super().__init__()
        self.into = into

    def extra_repr(self) -> str:
        return f"folded into {self.into}"


class FusedConvActivation(nn.Identity):
    """What an activation module becomes once the int8 conv(s) before it apply it in their kernel."""

    def __init__(self, activation: str, into: str) -> None:
        super().__init__()
        if activation not in co.ACTIVATIONS or activation is None:
            raise ValueError(f"FusedConvActivation: unknown activation {activation!r}")
        self.activation, self.into = activation, into

    def extra_repr(self) -> str:
        return f"{self.activation}, fused into {self.into}"


def _uses(model: nn.Module) -> dict[int, int]:
    uses: dict[int, int] = {}
    for _, m in model.named_modules(remove_duplicate=False):
        uses[id(m)] = uses.get(id(m), 0) + 1
    return uses


def fold_batchnorm_(model: nn.Module, select=None) -> dict[str, str]:  # noqa: ANN001
    """Folds every eval-mode BatchNorm that provably takes a float conv's output alone (its parent's forward,
    traced by fx, shows conv -> bn with no other user) into that conv's weight and bias; the BN becomes a
    :class:`FoldedBatchNorm`. ``select(conv) -> bool`` limits it to some convs. Returns {conv fqn: bn fqn}.
    Training-mode BNs (batch statistics) are left alone."""
    uses = _uses(model)
    done: dict[str, str] = {}
    for pname, parent in list(model.named_modules()):
        kids = dict(parent.named_children())
        if not any(isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)) for m in kids.values()):
            continue
        for conv_name, bn_name, acts, consumer in _chains(parent):
            if bn_name is None:
                continue
            conv, bn = kids[conv_name], kids[bn_name]
            if select is not None and not select(conv):
                continue
            if not isinstance(bn, (nn.BatchNorm1d, nn.BatchNorm2d)):
                continue
            if (type(conv) not in (nn.Conv1d, nn.Conv2d) and conv_padding(conv) is None) or isinstance(conv, Conv2dInt8):
                continue
            if bn.training or not bn.track_running_stats or bn.running_var is None or uses[id(conv)] != 1 or uses[id(bn)] != 1:
                continue
            if conv._forward_hooks or conv._forward_pre_hooks or bn._forward_hooks or bn._forward_pre_hooks:
                continue
            if consumer is not None and uses[id(kids[consumer])] == 1:
                act = conv_activation_of(kids[acts[0].target]) if acts else None
                kids[consumer].__dict__[INPUT_MEAN] = _expected_activation(bn, act)
            with torch.no_grad():
                inv = torch.rsqrt(bn.running_var.double() + bn.eps)
                g = inv * (bn.weight.double() if bn.weight is not None else 1.0)
                shape = (-1,) + (1,) * (conv.weight.dim() - 1)
                w = conv.weight.double() * g.view(shape)
                b0 = conv.bias.double() if conv.bias is not None else torch.zeros_like(g)
                b = (b0 - bn.running_mean.double()) * g + (bn.bias.double() if bn.bias is not None else 0.0)
                conv.weight.copy_(w.to(conv.weight.dtype))
                if conv.bias is None:
                    conv.bias = nn.Parameter(b.to(conv.weight.dtype))
                else:
                    conv.bias.copy_(b.to(conv.bias.dtype))
            setattr(parent, bn_name, FoldedBatchNorm(conv_name))
            prefix = f"{pname}." if pname else ""
            done[prefix + conv_name] = prefix + bn_name
    return done


def fuse_conv_activations_(model: nn.Module) -> dict[str, str]:
    """Lets every Conv2dInt8/Conv1dInt8 apply the activation module that provably takes its output alone
    (through an already folded BN, now an Identity). An activation module called several times (EfficientNet
    blocks share one ``_swish``) is replaced only when every one of its calls is such a fused output.
    Returns {conv fqn: "<activation> (from <module fqn>)"}."""
    uses = _uses(model)
    fused: dict[str, str] = {}
    for pname, parent in list(model.named_modules()):
        kids = dict(parent.named_children())
        if not any(isinstance(m, Conv2dInt8) for m in kids.values()):
            continue
        chains = _chains(parent)
        graph_calls: dict[str, int] = {}
        g = _traced_calls(parent)
        if g is None:
            continue
        for node in g.nodes:
            if node.op == "call_module":
                graph_calls[node.target] = graph_calls.get(node.target, 0) + 1
        by_act: dict[str, list[str]] = {}
        for conv_name, bn_name, acts, _ in chains:
            conv = kids[conv_name]
            if not isinstance(conv, Conv2dInt8) or conv.activation is not None or uses[id(conv)] != 1 or not acts:
                continue
            if bn_name is not None and not isinstance(kids[bn_name], nn.Identity):
                continue
            by_act.setdefault(acts[0].target, []).append(conv_name)
        for act_name, convs in by_act.items():
            act = kids[act_name]
            if uses[id(act)] != 1 or graph_calls.get(act_name, 0) != len(convs) or act._forward_hooks:
                continue
            a = conv_activation_of(act)
            for conv_name in convs:
                kids[conv_name].activation = a
                prefix = f"{pname}." if pname else ""
                fused[prefix + conv_name] = f"{a} (from {prefix + act_name})"
            setattr(parent, act_name, FusedConvActivation(a, ",".join(convs)))
    return fused


# --- static activation quantization (calibrated) -------------------------------------------------------------

_PASS_THROUGH = (nn.Identity, FoldedBatchNorm, FusedConvActivation)  # exact types: forward returns its input


def _static_links(model: nn.Module) -> list[tuple[str, str]]:
    """(producer fqn, consumer fqn) of static int8 convs where the producer's output provably reaches the
    consumer alone: in their parent's traced forward, the producer's only call has one user, a chain of
    pass-through modules (folded BatchNorms, fused activations, identities; no hooks) each with one user, ending
    at the consumer's only call with that value as its only argument. Neither conv may have hooks (they would
    see uint8 codes) or appear twice in the model. A residual add, a pooling, a squeeze-excitation multiply
    or anything else between them is a user that is not a pass-through: no link, the tensor stays fp32."""
    uses = _uses(model)
    links = []
    for pname, parent in model.named_modules():
        kids = dict(parent.named_children())
        if sum(isinstance(m, Conv2dInt8) and m.quant == co.STATIC for m in kids.values()) < 2:
            continue
        graph = _traced_calls(parent)
        if graph is None:
            continue
        calls: dict[str, int] = {}
        for node in graph.nodes:
            if node.op == "call_module":
                calls[node.target] = calls.get(node.target, 0) + 1

        def static_conv(name: str) -> bool:
            m = kids.get(name)
            return (isinstance(m, Conv2dInt8) and m.quant == co.STATIC and calls.get(name) == 1 and uses[id(m)] == 1
                    and not (m._forward_hooks or m._forward_pre_hooks))

        def only_user(node):  # noqa: ANN001, ANN202
            if len(node.users) != 1:
                return None
            u = next(iter(node.users))
            ok = u.op == "call_module" and "." not in u.target and u.args == (node,) and not u.kwargs
            return u if ok else None

        for node in graph.nodes:
            if node.op != "call_module" or "." in node.target or not static_conv(node.target):
                continue
            u = only_user(node)
            while u is not None and type(kids.get(u.target)) in _PASS_THROUGH and not (
                    kids[u.target]._forward_hooks or kids[u.target]._forward_pre_hooks):
                u = only_user(u)
            if u is not None and u.target != node.target and static_conv(u.target):
                prefix = f"{pname}." if pname else ""
                links.append((prefix + node.target, prefix + u.target))
    return links


def static_quantize_convs_(model: nn.Module, calib_data: Any, progress: bool = False) -> dict[str, str]:
    """Switches every dynamic int8 conv of ``model`` (after ``compress_``) to ``quant="static"``: each conv's
    input range is measured over ``calib_data`` (an iterable of model inputs, as :func:`call_model` takes them;
    min and max over all of it, widened to hold 0, as ONNX Runtime's default MinMax calibration) and becomes a
    fixed uint8 grid; then each conv whose output provably goes to one static conv alone (:func:`_static_links`)
    writes uint8 codes on that conv's grid, its ReLU / ReLU6 folded into the clamp, so those tensors cross
    between layers as uint8. Convs that saw no calibration input stay dynamic. Returns {conv fqn: what it does}.
    ``model`` is put in eval mode for the calibration and restored after."""
    from ..math.calibration import call_model, progress_iter

    convs = {n: m for n, m in model.named_modules() if isinstance(m, Conv2dInt8) and m.mode == "dynamic"}
    for m in convs.values():
        if m.out_q is not None or (m.quant == co.STATIC and m.in_q is None):
            raise ValueError("static_quantize_convs_: the model is partly static already; start from compress_")
    ranges: dict[str, list[float]] = {}

    def hook(name: str):  # noqa: ANN202
        def pre(mod: nn.Module, args: tuple) -> None:
            x = args[0]
            if not isinstance(x, Tensor) or not x.is_floating_point() or x.numel() == 0:
                return
            x = x.detach().to(torch.float32)
            if not bool(torch.isfinite(x).all()):
                raise ValueError(f"static_quantize_convs_: {name} sees a NaN or an infinity in the calibration data")
            r = ranges.setdefault(name, [0.0, 0.0])
            r[0], r[1] = min(r[0], float(x.min())), max(r[1], float(x.max()))
        return pre

    saved = {n: (m.quant, m.in_q, m.out_q) for n, m in convs.items()}
    for m in convs.values():  # calibrate on the dynamic float path
        m.quant, m.in_q, m.out_q = ("per_image" if m.quant == co.STATIC else m.quant), None, None
    handles = [m.register_forward_pre_hook(hook(n)) for n, m in convs.items()]
    was = model.training
    model.eval()
    try:
        items = calib_data if isinstance(calib_data, (list, tuple)) else list(calib_data)
        if not items:
            raise ValueError("static_quantize_convs_: calib_data is empty")
        with torch.no_grad():
            for batch in progress_iter(items, "calibrating conv inputs", progress):
                call_model(model, batch)
    except BaseException:
        for n, m in convs.items():
            m.quant, m.in_q, m.out_q = saved[n]
        raise
    finally:
        for h in handles:
            h.remove()
        model.train(was)
    report: dict[str, str] = {}
    for n, m in convs.items():
        if n not in ranges:
            m.quant = saved[n][0] if saved[n][0] != co.STATIC else "per_image"
            report[n] = "not called on the calibration data: stays dynamic"
            continue
        m.quant, m.in_q = co.STATIC, reference.static_range_params(*ranges[n])
        report[n] = f"static input grid (scale {m.in_q[0]:.6g}, zero point {m.in_q[1]})"
    for prod, cons in _static_links(model):
        mods = dict(model.named_modules())
        mods[prod].out_q = mods[cons].in_q
        report[prod] += f"; uint8 output to {cons}"
    return report
