"""LowRankLinear: an ``nn.Linear`` whose weight W (N x K) is stored as U (N x r) V (r x K) (+ a sparse S).

It runs the op :mod:`slimnn.ops.lowrank` (``slimnn::lowrank_linear``): both products in one fused kernel call.
"""

from __future__ import annotations

from typing import Any, Optional

import torch
from torch import Tensor, nn

from .. import _C
from ..configs import LowRankConfig
from ..formats.packed import pack_q8, q8_info, unpack_q8
from ..math import lowrank, reference
from ..math.calibration import LinearInputStats
from ..math.quantize import quantize_int8_symmetric
from ..ops.common import prepare_input, untraceable
from .base import bare_linear
from ..ops.lowrank import FACTORS, check_residual, dense_factors, factors_of, lowrank_linear_with_kernel  # noqa: F401

_F32 = torch.float32


class LowRankLinear(nn.Module):
    """y = x (U V)^T + b (+ x S^T): a Linear factorized to rank r, run by a fused kernel.

    Build one with :meth:`from_linear` (or ``slimnn.compress_(model, LowRankConfig(...))``) or
    :meth:`from_factors`. Buffers: fp32 factors ``weight_u`` (N x r) and ``weight_v`` (r x K), nn.Linear
    layout; or int8 factors ``packed_u`` / ``packed_v`` (q8 blobs, versioned header); ``bias``; and the
    optional sparse residual ``residual_rowptr`` / ``residual_col`` / ``residual_val`` (CSR over outputs).
    ``state_dict`` round-trips and is validated on load (the rank, factor type and residual may differ from
    the module's: the buffers follow the state dict). Inputs: float32 or bfloat16 (float16/float64 converted),
    any leading dimensions; the output has the input's dtype.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        rank: int,
        bias: bool = True,
        config: Optional[LowRankConfig] = None,
    ) -> None:
        super().__init__()
        if min(in_features, out_features, rank) < 1:
            raise ValueError("in_features, out_features and rank must be positive")
        self.config = config or LowRankConfig(rank=rank)
        self.in_features, self.out_features = int(in_features), int(out_features)
        u = torch.zeros(self.out_features, rank)
        v = torch.zeros(rank, self.in_features)
        self._set_factors(u, v)
        self.register_buffer("bias", torch.zeros(self.out_features) if bias else None)
        self._set_residual(None, None, None)
        self.last_kernel: Optional[str] = None

    # --- construction ---

    @classmethod
    def from_linear(
        cls,
        linear: nn.Linear,
        config: Optional[LowRankConfig] = None,
        stats: Optional[LinearInputStats] = None,
    ) -> "LowRankLinear":
        """Factorizes ``linear``'s weight as ``config`` says. ``stats`` (from
        :func:`slimnn.calibration.capture_linear_inputs`) is required for ``method="activation_aware"``."""
        if not isinstance(linear, nn.Linear):
            raise TypeError(f"from_linear expects an nn.Linear, got {type(linear).__name__}")
        config = config or LowRankConfig()
        gram = stats.gram if stats is not None else None
        n_rows = stats.n_rows if stats is not None else 0
        if config.method == "activation_aware" and (gram is None or n_rows == 0):
            raise ValueError("LowRankConfig(method='activation_aware') needs calibration data for this layer")
        f = lowrank.factorize(
            linear.weight, config.rank, config.rank_ratio if config.rank is None else None, config.energy,
            config.max_error, method=config.method, gram=gram, n_rows=n_rows, damping=config.damping,
            solver=config.solver,
        )
        residual = None
        if config.sparse_residual > 0:
            scale = stats.rms() if stats is not None and stats.sq_sum is not None else None
            residual = lowrank.sparse_residual(linear.weight, f.u, f.v, config.sparse_residual, scale)
        mod = cls.from_factors(f.u, f.v, linear.bias, config, residual)
        mod.rel_error = f.rel_error
        return mod

    @classmethod
    def from_factors(
        cls,
        u: Tensor,
        v: Tensor,
        bias: Optional[Tensor] = None,
        config: Optional[LowRankConfig] = None,
        residual: Optional[tuple[Tensor, Tensor, Tensor]] = None,
    ) -> "LowRankLinear":
        """A module computing x (U V + S)^T + bias from float factors u (N x r) and v (r x K) and an optional
        CSR residual (rowptr, col, val); int8 factors are quantized here when the config asks for them."""
        u = lowrank.check_weight(u, "u")
        v = lowrank.check_weight(v, "v")
        if u.shape[1] != v.shape[0]:
            raise ValueError(f"u is {tuple(u.shape)} and v is {tuple(v.shape)}: need N x r and r x K")
        config = config or LowRankConfig(rank=u.shape[1])
        mod = bare_linear(cls, config, v.shape[1], u.shape[0])
        mod._set_factors(u, v)
        if bias is not None:
            bias = bias.detach().to(_F32).contiguous().clone()
            if bias.shape != (mod.out_features,) or not bool(torch.isfinite(bias).all()):
                raise ValueError(f"bias must be {mod.out_features} finite values")
        mod.register_buffer("bias", bias)
        if residual is not None:
            rowptr, col, val = (t.detach().contiguous() for t in residual)
            mod._set_residual(rowptr.to(torch.int64), col.to(torch.int32), val.to(_F32))
            mod._validate_residual(mod.residual_rowptr, mod.residual_col, mod.residual_val)
        else:
            mod._set_residual(None, None, None)
        mod.last_kernel = None
        mod.rel_error = None
        return mod

    def _set_factors(self, u: Tensor, v: Tensor) -> None:
        for name in ("weight_u", "weight_v", "packed_u", "packed_v"):
            if name in self._buffers:
                del self._buffers[name]
        if self.config.factor_dtype == "float32":
            self.register_buffer("weight_u", u.to(_F32).contiguous().clone())
            self.register_buffer("weight_v", v.to(_F32).contiguous().clone())
        else:
            qu, su = quantize_int8_symmetric(u)
            qv, sv = quantize_int8_symmetric(v)
            self.register_buffer("packed_u", pack_q8(qu, su))
            self.register_buffer("packed_v", pack_q8(qv, sv))

    def _set_residual(self, rowptr: Optional[Tensor], col: Optional[Tensor], val: Optional[Tensor]) -> None:
        self.register_buffer("residual_rowptr", rowptr)
        self.register_buffer("residual_col", col)
        self.register_buffer("residual_val", val)

    def _validate_residual(self, rowptr: Tensor, col: Tensor, val: Tensor) -> None:
        check_residual(rowptr, col, val, self.out_features)
        _C.lowrank_check_csr(
            self.out_features, self.in_features, col.numel(), rowptr.data_ptr(), col.data_ptr(), val.data_ptr()
        )

    # --- properties ---

    @property
    def factors(self) -> str:
        return factors_of(self.config)

    @property
    def rank(self) -> int:
        if self.config.factor_dtype == "float32":
            return self.weight_u.shape[1]
        return q8_info(self.packed_u).k

    def _uv(self) -> tuple[Tensor, Tensor]:
        if self.config.factor_dtype == "float32":
            return self.weight_u, self.weight_v
        return self.packed_u, self.packed_v

    def factor_matrices(self) -> tuple[Tensor, Tensor]:
        """U (N x r) and V (r x K) as float32 (dequantized for int8 factors)."""
        return dense_factors(*self._uv(), self.factors)

    def residual_dense(self) -> Optional[Tensor]:
        if self.residual_rowptr is None:
            return None
        return lowrank.csr_to_dense(
            self.residual_rowptr, self.residual_col, self.residual_val, self.out_features, self.in_features
        )

    def weight(self) -> Tensor:
        """The dense N x K weight this module applies: U V (+ S)."""
        u, v = self.factor_matrices()
        w = u @ v
        s = self.residual_dense()
        return w if s is None else w + s

    # --- forward ---

    def forward(self, x: Tensor) -> Tensor:
        if self.config.kernel == "reference":
            return self._forward_reference(x)
        u, v = self._uv()
        args = (x, u, v, self.bias, self.residual_rowptr, self.residual_col, self.residual_val, self.factors,
                self.out_features)
        if torch.compiler.is_compiling() or torch.compiler.is_exporting() or (
            x.requires_grad and torch.is_grad_enabled()
        ):
            if torch.compiler.is_exporting() and torch.onnx.is_in_onnx_export():
                untraceable(self)
            return torch.ops.slimnn.lowrank_linear(*args)
        if torch._C._is_tracing():  # torch.jit.trace / TorchScript ONNX export: the trace would hold a constant
            untraceable(self)
        y, self.last_kernel = lowrank_linear_with_kernel(*args)
        return y

    def _forward_reference(self, x: Tensor) -> Tensor:
        xf, dt = prepare_input(x, self.in_features, "LowRankLinear")
        x2 = xf.reshape(-1, self.in_features).to(_F32)
        s = self.residual_dense()
        if self.config.factor_dtype == "float32":
            y = reference.lowrank_linear(x2, self.weight_u, self.weight_v, self.bias, s)
        else:
            qu, su, _ = unpack_q8(self.packed_u)
            qv, sv, _ = unpack_q8(self.packed_v)
            y = reference.lowrank_q8_linear(x2, qu, su, qv, sv, self.config.int8_mode, self.bias, s)
        return y.view(*x.shape[:-1], self.out_features).to(dt)

    def kernel_name(self, m: int = 16) -> str:
        """The kernel a call with ``m`` rows would take now on this CPU."""
        if self.config.kernel == "reference":
            return "reference"
        if self.config.factor_dtype == "float32":
            return _C.lowrank_select_kernel(m)
        return f"lowrank_{self.factors}[{_C.select_kernel(self.factors, m)}]"

    def storage_bytes(self) -> int:
        """Bytes of the factors (with headers and padding for q8), the bias and the residual."""
        total = sum(t.numel() * t.element_size() for t in self._uv())
        for t in (self.bias, self.residual_rowptr, self.residual_col, self.residual_val):
            if t is not None:
                total += t.numel() * t.element_size()
        return total

    def extra_repr(self) -> str:
        nnz = 0 if self.residual_col is None else self.residual_col.numel()
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, rank={self.rank}, "
            f"bias={self.bias is not None}, factors={self.factors}, residual_nnz={nnz}, "
            f"storage={self.storage_bytes() / (4 * self.in_features * self.out_features):.3f} of fp32 dense, "
            f"kernel={self.last_kernel or self.kernel_name(16)}"
        )

    # --- state_dict ---

    def _load_from_state_dict(
        self, state_dict: dict, prefix: str, local_metadata: Any, strict: bool, missing_keys: list,
        unexpected_keys: list, error_msgs: list,
    ) -> None:
        def err(msg: str) -> None:
            error_msgs.append(f"{prefix}: {msg}")

        f32 = prefix + "weight_u" in state_dict or prefix + "weight_v" in state_dict
        q8 = prefix + "packed_u" in state_dict or prefix + "packed_v" in state_dict
        if f32 and q8:
            return err("state dict holds both float32 and int8 factors")
        if f32 or q8:
            keys = ("weight_u", "weight_v") if f32 else ("packed_u", "packed_v")
            u, v = (state_dict.get(prefix + k) for k in keys)
            if u is None or v is None:
                return err(f"state dict has only one of {keys}")
            u, v = u.detach().cpu().contiguous(), v.detach().cpu().contiguous()
            try:
                if f32:
                    if u.dtype != _F32 or v.dtype != _F32 or u.dim() != 2 or v.dim() != 2 or u.shape[1] != v.shape[0]:
                        raise ValueError(f"factors must be float32 N x r and r x K, got {tuple(u.shape)}, {tuple(v.shape)}")
                    if not (bool(torch.isfinite(u).all()) and bool(torch.isfinite(v).all())):
                        raise ValueError("factors hold NaN or infinite values")
                    n, k = u.shape[0], v.shape[1]
                else:
                    iu, iv = q8_info(u, full_check=True), q8_info(v, full_check=True)
                    if iu.group_size is not None or iv.group_size is not None:
                        raise ValueError("int8 factors must have per-channel scales")
                    if iu.k != iv.n:
                        raise ValueError(f"U has {iu.k} inputs but V has {iv.n} outputs")
                    n, k = iu.n, iv.k
            except (ValueError, TypeError) as e:
                return err(str(e))
            if (n, k) != (self.out_features, self.in_features):
                return err(f"factors are for a {k}->{n} layer, this module is {self.in_features}->{self.out_features}")
            # The rank and factor type follow the state dict: re-shape our buffers, then the usual copy fills them.
            cfg = self.config
            if (cfg.factor_dtype == "float32") != f32:
                kw = {f: getattr(cfg, f) for f in ("method", "int8_mode", "kernel", "solver", "damping")}
                self.config = LowRankConfig(rank=u.shape[1] if f32 else q8_info(u).k,
                                            factor_dtype="float32" if f32 else "int8", **kw)
            for name in ("weight_u", "weight_v", "packed_u", "packed_v"):
                self._buffers.pop(name, None)
            self.register_buffer(keys[0], torch.empty_like(u))
            self.register_buffer(keys[1], torch.empty_like(v))
        rkeys = [prefix + "residual_" + s for s in ("rowptr", "col", "val")]
        present = [k in state_dict for k in rkeys]
        if any(present):
            if not all(present):
                return err("the sparse residual needs residual_rowptr, residual_col and residual_val together")
            rp, col, val = (state_dict[k].detach().cpu().contiguous() for k in rkeys)
            try:
                self._validate_residual(rp, col, val)
            except (ValueError, TypeError) as e:
                return err(f"sparse residual: {e}")
            self._set_residual(torch.empty_like(rp), torch.empty_like(col), torch.empty_like(val))
        elif f32 or q8:
            self._set_residual(None, None, None)
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )
