"""SparseLinear: an ``nn.Linear`` whose weights are pruned and stored sparse (fp32 or int8 values)."""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Optional

import torch
from torch import Tensor, nn

from .. import _C
from ..ops import q8 as ops, sparse as sparse_ops
from ..math import reference
from ..configs import SparseConfig
from ..formats.packed import pack_q8, q8_info, unpack_q8
from ..math.prune import input_norm_of, parse_pattern, prune_weight
from ..math.quantize import check_weight, dequantize_int8, quantize_int8_symmetric
from ..formats.sparse import dense_weight, is_sparse_blob, pack_sparse, sparse_info
from ..ops.common import check_input, untraceable
from .base import bare_linear, float_bias

AUTO_M = (1, 16)
"""Activation rows at which ``backend="auto"`` times the sparse and the dense kernel."""
AUTO_REPS = 7


def _pattern_of(fmt: str) -> str:
    """The pruning pattern a blob format stores: csr -> unstructured, bsr1x4 -> 1x4, nm2:4 -> 2:4."""
    if fmt.startswith("bsr"):
        return fmt[3:]
    if fmt.startswith("nm"):
        return fmt[2:]
    return "unstructured"


def _uses_bitmap(c: SparseConfig) -> bool:
    """Whether unstructured sparsity is stored as a bitmap (see SparseConfig.index)."""
    if c.index == "bitmap":
        if c.values != "int8":
            raise ValueError("SparseConfig.index='bitmap' stores int8 values: use values='int8' "
                             "(or compose with Int8Config)")
        return True
    return c.index == "auto" and c.values == "int8" and c.int8_mode == "dynamic" and c.index_bits is None


def _median_time(fn, x: Tensor, reps: int) -> float:
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn(x)
        ts.append(time.perf_counter() - t0)
    ts.sort()
    return ts[len(ts) // 2]


class SparseLinear(nn.Module):
    """y = x W^T + b with W pruned (see :mod:`slimnn.prune`) and stored in a sparse format (csr, bsr or nm,
    fp32 or int8 values; :mod:`slimnn.sparse_formats`), multiplied by the spmm kernels.

    Build one with :meth:`from_linear` (or ``slimnn.compress_(model, SparseConfig(...))``). With
    ``backend="auto"`` the layer is timed at build time on this machine, sparse against dense (torch fp32,
    or slimnn int8 for int8 values), and keeps the faster one: :attr:`backend` and the repr say which, with
    the measured ratios in :attr:`choice`. ``state_dict`` holds ``packed`` (a sparse blob, or a q8 blob for
    dense int8), ``weight`` (dense fp32 only) and ``bias``; loading validates everything.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 config: Optional[SparseConfig] = None) -> None:
        super().__init__()
        self.config = config or SparseConfig()
        self.in_features = int(in_features)
        self.out_features = int(out_features)
        fmt = self._format()
        w = torch.zeros(self.out_features, self.in_features)
        if self.config.values == "int8":
            blob = pack_sparse(w.to(torch.int8), fmt, scales=torch.ones(self.out_features),
                               index_bits=self.config.index_bits)
        else:
            blob = pack_sparse(w, fmt, index_bits=self.config.index_bits)
        self.register_buffer("packed", blob)
        self.register_buffer("weight", None)
        self.register_buffer("bias", torch.zeros(self.out_features) if bias else None)
        self.backend = "sparse"
        self.choice: dict[str, Any] = {"by": "constructor"}
        self.last_kernel: Optional[str] = None

    def _format(self) -> str:
        p = parse_pattern(self.config.pattern)
        if p.kind == "neurons":
            raise ValueError("SparseLinear stores element, block or N:M sparsity; 'neurons' gives dense layers "
                             "(slimnn.prune.prune_neurons_)")
        if p.format == "csr" and _uses_bitmap(self.config):
            return "bitmap"
        return p.format

    @classmethod
    def from_linear(cls, linear: nn.Linear, config: Optional[SparseConfig] = None,
                    input_norm: Optional[Tensor] = None) -> "SparseLinear":
        """Prunes ``linear``'s weights as ``config`` says and packs them. ``input_norm`` (wanda) defaults to
        the norms :func:`slimnn.prune.calibrate_` stored on ``linear``."""
        if not isinstance(linear, nn.Linear):
            raise TypeError(f"from_linear expects an nn.Linear, got {type(linear).__name__}")
        config = config or SparseConfig()
        mod = bare_linear(cls, config, linear.in_features, linear.out_features)
        pat = parse_pattern(config.pattern)
        fmt = mod._format()
        w = check_weight(linear.weight)
        if config.method == "wanda" and input_norm is None:
            input_norm = input_norm_of(linear)
        pruned, _ = prune_weight(w, pat, config.sparsity, config.method, input_norm)
        mod.register_buffer("bias", float_bias(linear.bias, linear.out_features))
        mod.last_kernel = None
        if config.values == "int8":
            q, scales = quantize_int8_symmetric(pruned)  # pruned weights stay exactly 0
            sparse_blob = pack_sparse(q, fmt, scales=scales[0], index_bits=config.index_bits)
            dense = (q, scales)
        else:
            sparse_blob = pack_sparse(pruned, fmt, index_bits=config.index_bits)
            dense = pruned
        mod._set_backend(config.backend, sparse_blob, dense)
        return mod

    # -------------------------------------------------------------- backend choice

    def _set_backend(self, backend: str, sparse_blob: Tensor, dense: Any) -> None:
        if backend == "auto":
            backend, self.choice = self._measure(sparse_blob, dense)
        else:
            self.choice = {"by": "config"}
        self.backend = backend
        if backend == "sparse":
            self.register_buffer("packed", sparse_blob)
            self.register_buffer("weight", None)
        elif self.config.values == "int8":
            q, scales = dense
            self.register_buffer("packed", pack_q8(q, scales, None))
            self.register_buffer("weight", None)
        else:
            self.register_buffer("packed", None)
            self.register_buffer("weight", dense.contiguous())

    def _measure(self, sparse_blob: Tensor, dense: Any) -> tuple[str, dict[str, Any]]:
        n = self.out_features
        if self.config.values == "int8":
            q8 = pack_q8(dense[0], dense[1], None)
            mode = self.config.int8_mode
            dense_fn = lambda x: ops.q8_linear(x, q8, self.bias, mode, n)  # noqa: E731
            dense_name = f"slimnn int8 {mode}"
        else:
            wd = dense.contiguous()
            dense_fn = lambda x: torch.nn.functional.linear(x, wd, self.bias)  # noqa: E731
            dense_name = "torch fp32"
        k = self.in_features
        sparse_fn = lambda x: sparse_ops.sparse_linear_trusted(x, sparse_blob, self.bias, n, k)  # noqa: E731
        ratios = {}
        g = torch.Generator().manual_seed(0)
        with torch.inference_mode():
            for m in AUTO_M:
                x = torch.randn(m, self.in_features, generator=g)
                sparse_fn(x), dense_fn(x)  # warm up
                ts, td = [], []
                for _ in range(AUTO_REPS):  # interleaved, so both see the same machine load
                    ts.append(_median_time(sparse_fn, x, 1))
                    td.append(_median_time(dense_fn, x, 1))
                ts.sort(), td.sort()
                ratios[m] = ts[len(ts) // 2] / td[len(td) // 2]
        gmean = 1.0
        for r in ratios.values():
            gmean *= r
        gmean **= 1.0 / len(ratios)
        backend = "sparse" if gmean < 1.0 else "dense"
        return backend, {"by": "auto", "dense": dense_name, "time_ratio": ratios}

    # -------------------------------------------------------------- forward

    def forward(self, x: Tensor) -> Tensor:
        # Hot path first: eager, sparse, no autograd. Buffers are read from _buffers and last_kernel written
        # to __dict__ directly: nn.Module's __getattr__/__setattr__ cost about 4 us per call together, as
        # much as a small layer's whole kernel.
        if (
            self.__dict__["backend"] == "sparse" and self.config.kernel != "reference"
            and not (x.requires_grad and torch.is_grad_enabled())
            and not torch.compiler.is_compiling() and not torch.compiler.is_exporting()
        ):
            if torch._C._is_tracing():  # torch.jit.trace / TorchScript ONNX export: would hold a constant
                untraceable(self)
            b = self._buffers
            y, self.__dict__["last_kernel"] = sparse_ops.sparse_linear_trusted(
                x, b["packed"], b["bias"], self.out_features, self.in_features)
            return y
        if self.config.kernel == "reference":
            return self._forward_reference(x)
        tracing = torch.compiler.is_compiling() or torch.compiler.is_exporting()
        if torch.compiler.is_exporting() and torch.onnx.is_in_onnx_export():
            untraceable(self)
        if self.backend == "dense" and self.weight is not None:
            self.last_kernel = "torch.nn.functional.linear"
            b = None if self.bias is None else self.bias.to(x.dtype)
            return torch.nn.functional.linear(x, self.weight.to(x.dtype), b)
        if not tracing and torch._C._is_tracing():
            untraceable(self)
        if self.backend == "dense":
            mode = self.config.int8_mode
            if tracing or (x.requires_grad and torch.is_grad_enabled()):
                return torch.ops.slimnn.q8_linear(x, self.packed, self.bias, mode, self.out_features)
            y, self.last_kernel = ops.q8_linear_with_kernel(x, self.packed, self.bias, mode, self.out_features)
            return y
        return torch.ops.slimnn.sparse_linear(x, self.packed, self.bias, self.out_features)

    def _forward_reference(self, x: Tensor) -> Tensor:
        x = check_input(x, self.in_features, "SparseLinear")
        x2 = x.reshape(-1, self.in_features).to(torch.float32)
        y = reference.sparse_linear(x2, self.dequantized_weight(), None, self.bias)
        return y.view(*x.shape[:-1], self.out_features).to(x.dtype)

    # -------------------------------------------------------------- introspection

    def dequantized_weight(self) -> Tensor:
        """The float32 weights this layer multiplies with (pruned; int8 values times their scales)."""
        if self.weight is not None:
            return self.weight.clone()
        if self.backend == "dense":
            q, scales, gs = unpack_q8(self.packed)
            return dequantize_int8(q, scales, gs)
        return dense_weight(self.packed)

    @property
    def format(self) -> str:
        if self.backend == "dense":
            return "dense fp32" if self.weight is not None else "q8"
        info = sparse_info(self.packed)
        return info.format + (f" d{info.index_bits}" if info.index_bits else "")

    def sparsity(self) -> float:
        """Fraction of the weights that are zero."""
        if self.backend == "sparse":
            return 1.0 - sparse_info(self.packed).nnz / (self.in_features * self.out_features)
        w = self.dequantized_weight()
        return float((w == 0).sum()) / w.numel()

    def storage_bytes(self) -> int:
        """Bytes stored for the layer: the whole blob (header, row pointers/permutation, indices, values,
        scales, alignment) or the dense weights, plus the bias."""
        wb = self.weight.numel() * 4 if self.weight is not None else self.packed.numel()
        return wb + (0 if self.bias is None else self.bias.numel() * 4)

    def storage_breakdown(self) -> dict[str, int]:
        """Bytes per part: values, index (deltas / block columns / masks), scales, meta (header, row
        pointers, permutation, alignment), bias."""
        bias = 0 if self.bias is None else self.bias.numel() * 4
        if self.backend == "sparse":
            i = sparse_info(self.packed)
            return {"values": i.value_bytes, "index": i.index_bytes, "scales": i.scale_bytes, "meta": i.meta_bytes,
                    "bias": bias}
        if self.weight is not None:
            return {"values": self.weight.numel() * 4, "index": 0, "scales": 0, "meta": 0, "bias": bias}
        info = q8_info(self.packed)
        vals = info.n * info.k
        scales = info.n_groups * info.np * 4
        return {"values": vals, "index": 0, "scales": scales, "meta": self.packed.numel() - vals - scales,
                "bias": bias}

    def kernel_name(self, m: int = 16) -> str:
        """The kernel a call with ``m`` rows would take now on this CPU."""
        if self.config.kernel == "reference":
            return "reference"
        if self.backend == "dense":
            if self.weight is not None:
                return "torch.nn.functional.linear"
            return _C.select_kernel("q8_dynamic" if self.config.int8_mode == "dynamic" else "q8_weight_only", m)
        kind = sparse_info(self.packed).kind
        return _C.bitmap_select(m) if kind == "bitmap_i8" else _C.spmm_select(kind, m)

    def extra_repr(self) -> str:
        ch = self.choice
        if ch.get("by") == "auto":
            r = ", ".join(f"{v:.2f}x at M={m}" for m, v in ch["time_ratio"].items())
            why = f"auto: sparse/dense time {r} vs {ch['dense']}"
        else:
            why = ch.get("by", "config")
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}, "
            f"pattern={self.config.pattern}, sparsity={self.sparsity():.3f}, values={self.config.values}, "
            f"backend={self.backend} ({why}), format={self.format}, "
            f"kernel={self.last_kernel or self.kernel_name(1)}"
        )

    def summary(self) -> str:
        """One line for compression reports."""
        return f"{self.format}, {self.config.values}, backend {self.backend}, sparsity {self.sparsity():.3f}"

    # -------------------------------------------------------------- state_dict

    def _load_from_state_dict(
        self, state_dict: dict, prefix: str, local_metadata: Any, strict: bool, missing_keys: list,
        unexpected_keys: list, error_msgs: list,
    ) -> None:
        pk, wk = prefix + "packed", prefix + "weight"
        shape = f"{self.in_features}->{self.out_features}"
        if wk in state_dict:  # dense fp32 backend
            w = state_dict[wk]
            if not isinstance(w, Tensor) or w.shape != (self.out_features, self.in_features):
                error_msgs.append(f"{wk}: expected a {self.out_features}x{self.in_features} tensor")
                return
            try:
                check_weight(w, wk)
            except (ValueError, TypeError) as e:
                error_msgs.append(str(e))
                return
            self.packed = None
            self.weight = torch.empty(self.out_features, self.in_features)
            self.backend = "dense"
            self._set_values("fp32")
        elif pk in state_dict:
            blob = state_dict[pk]
            try:
                blob_c = blob.detach().cpu().contiguous()
                pattern = index = None
                if is_sparse_blob(blob_c):
                    info = sparse_info(blob_c, full_check=True)
                    n, k, backend, values = info.n, info.k, "sparse", info.values
                    pattern = _pattern_of(info.format)
                    index = "bitmap" if info.format == "bitmap" else ("csr" if info.format == "csr" else None)
                else:
                    qi = q8_info(blob_c, full_check=True)
                    if qi.group_size is not None:
                        raise ValueError("dense int8 weights of a SparseLinear are per-channel (no group_size)")
                    n, k, backend, values = qi.n, qi.k, "dense", "int8"
            except (ValueError, TypeError) as e:
                error_msgs.append(f"{pk}: {e}")
                return
            if (n, k) != (self.out_features, self.in_features):
                error_msgs.append(f"{pk}: blob is for a {k}->{n} layer, this module is {shape}")
                return
            self.packed = torch.empty_like(blob_c)
            self.weight = None
            self.backend = backend
            self._set_values(values, pattern, index)
        self.choice = {"by": "state_dict"}
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )

    def _set_values(self, values: str, pattern: Optional[str] = None, index: Optional[str] = None) -> None:
        """Makes the config describe the loaded weights (values, and the pattern a sparse blob stores)."""
        changes: dict[str, Any] = {}
        if self.config.values != values:
            changes["values"] = values
        if pattern is not None and parse_pattern(self.config.pattern).format != parse_pattern(pattern).format:
            changes["pattern"] = pattern
        if index is not None:  # csr or bitmap blob: the config must say which, for repr and re-saving
            c = self.config
            now = c.index == "bitmap" or (c.index == "auto" and c.int8_mode == "dynamic" and c.index_bits is None
                                          and changes.get("values", c.values) == "int8")
            if now != (index == "bitmap"):
                changes["index"] = index
                if index == "bitmap":
                    changes["index_bits"] = None
        if changes:
            self.config = dataclasses.replace(self.config, **changes)
