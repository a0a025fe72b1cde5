"""lowrank: ``LowRankConfig`` -> :class:`slimnn.nn.LowRankLinear` (W ~ U V, SVD or activation-aware, fp32 or
int8 factors, optional sparse residual), factorized with one calibration pass over the model.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ..configs import LowRankConfig
from ..formats.manifest import config_field, TensorSpec, bool_field, int_field, linear_meta
from ..math.calibration import capture_linear_inputs, progress_iter
from ..math.lowrank import rank_for_ratio
from ..nn.base import bare_linear
from ..nn.lowrank import LowRankLinear
from .registry import register, single_module_technique


def convert(linear: nn.Module, config: LowRankConfig) -> nn.Module:
    return LowRankLinear.from_linear(linear, config)


def convert_batch(model: nn.Module, targets: list, config: LowRankConfig) -> dict:
    """Calibrates once over ``config.calib_data`` (activation_aware) on the original model, then factorizes
    layer by layer with a progress bar. Layers whose factors would not save ``min_saving`` are skipped."""
    stats: dict = {}
    if config.method == "activation_aware":
        if config.calib_data is None:
            raise ValueError("LowRankConfig(method='activation_aware') needs calib_data (an iterable of model inputs)")
        stats = capture_linear_inputs(model, targets, config.calib_data, progress=config.progress)
    out: dict = {}
    for fqn, mod in progress_iter(targets, "slimnn low-rank", config.progress):
        n, k = mod.out_features, mod.in_features
        if config.rank is not None or config.rank_ratio is not None:
            r = min(config.rank if config.rank is not None else rank_for_ratio(n, k, config.rank_ratio), n, k)
            if r * (n + k) > (1.0 - config.min_saving) * n * k:
                out[fqn] = f"rank {r} saves nothing on a {k}->{n} layer (r*(N+K) = {r * (n + k)} >= N*K = {n * k})"
                continue
        st = stats.get(fqn)
        if config.method == "activation_aware" and (st is None or st.n_rows == 0):
            out[fqn] = "no calibration inputs reached this layer"
            continue
        new = LowRankLinear.from_linear(mod, config, st)
        if new.rank * (n + k) > (1.0 - config.min_saving) * n * k:
            out[fqn] = f"rank {new.rank} chosen by the config saves nothing on a {k}->{n} layer"
            continue
        out[fqn] = new
    return out


# ----------------------------------------------------------------------------------------------------
# Save format "lowrank_linear" v1. Canonical tensors: float32 factors u (N x r) and v (r x K); or int8
# factors u_q (int8 N x r), u_scales (float32 1 x N), v_q (int8 r x K), v_scales (float32 1 x r), repacked
# into the same q8 blobs at load; bias (float32 N); the sparse residual residual_rowptr (int64 N + 1),
# residual_col (int32 nnz), residual_val (float32 nnz). Metadata: shapes, rank, residual nnz (-1: none),
# the config (factor dtype, int8 mode, method).
# ----------------------------------------------------------------------------------------------------

def _to_canonical(mod: nn.Module) -> tuple[dict[str, Tensor], dict[str, Any]]:
    from ..formats.packed import unpack_q8

    tensors: dict[str, Tensor] = {}
    if mod.config.factor_dtype == "float32":
        tensors["u"] = mod.weight_u.detach().contiguous()
        tensors["v"] = mod.weight_v.detach().contiguous()
    else:
        for side, blob in (("u", mod.packed_u), ("v", mod.packed_v)):
            q, s, _gs = unpack_q8(blob)
            tensors[f"{side}_q"], tensors[f"{side}_scales"] = q, s
    if mod.bias is not None:
        tensors["bias"] = mod.bias.detach().to(torch.float32).contiguous()
    nnz = -1
    if mod.residual_rowptr is not None:
        tensors["residual_rowptr"] = mod.residual_rowptr.detach().contiguous()
        tensors["residual_col"] = mod.residual_col.detach().contiguous()
        tensors["residual_val"] = mod.residual_val.detach().contiguous()
        nnz = int(mod.residual_col.numel())
    meta = linear_meta(mod, mod.config)
    meta["rank"], meta["residual_nnz"] = int(mod.rank), nnz
    return tensors, meta


def _config(meta: dict) -> Any:
    return config_field(meta, LowRankConfig, "lowrank_linear")


def _spec(meta: dict) -> TensorSpec:
    k, n = int_field(meta, "in_features", 1), int_field(meta, "out_features", 1)
    r = int_field(meta, "rank", 1)
    cfg = _config(meta)
    if cfg.factor_dtype == "float32":
        spec = {"u": (torch.float32, (n, r)), "v": (torch.float32, (r, k))}
    else:
        spec = {"u_q": (torch.int8, (n, r)), "u_scales": (torch.float32, (1, n)),
                "v_q": (torch.int8, (r, k)), "v_scales": (torch.float32, (1, r))}
    if bool_field(meta, "bias"):
        spec["bias"] = (torch.float32, (n,))
    nnz = int_field(meta, "residual_nnz", -1, n * k)
    if nnz >= 0:
        spec["residual_rowptr"] = (torch.int64, (n + 1,))
        spec["residual_col"] = (torch.int32, (nnz,))
        spec["residual_val"] = (torch.float32, (nnz,))
    return spec


def _from_canonical(tensors: dict[str, Tensor], meta: dict) -> nn.Module:
    from ..formats.packed import pack_q8

    cfg = _config(meta)
    mod = bare_linear(LowRankLinear, cfg, meta["in_features"], meta["out_features"])
    if cfg.factor_dtype == "float32":
        u, v = tensors["u"], tensors["v"]
        if not (bool(torch.isfinite(u).all()) and bool(torch.isfinite(v).all())):
            raise ValueError("low-rank factors hold NaN or infinite values")
        mod.register_buffer("weight_u", u.contiguous().clone())
        mod.register_buffer("weight_v", v.contiguous().clone())
    else:
        for side in ("u", "v"):
            q, s = tensors[f"{side}_q"], tensors[f"{side}_scales"]
            if q.numel() and int(q.min()) < -127:
                raise ValueError(f"int8 factor {side} holds -128; slimnn's symmetric int8 format uses [-127, 127]")
            if not bool(torch.isfinite(s).all()) or not bool((s > 0).all()):
                raise ValueError(f"int8 factor {side}: scales must be finite and positive")
            mod.register_buffer(f"packed_{side}", pack_q8(q, s))
    bias = tensors.get("bias")
    if bias is not None and not bool(torch.isfinite(bias).all()):
        raise ValueError("bias has a NaN or infinite value")
    mod.register_buffer("bias", None if bias is None else bias.clone())
    if "residual_rowptr" in tensors:
        rp, col, val = (tensors["residual_" + s].contiguous().clone() for s in ("rowptr", "col", "val"))
        mod._validate_residual(rp, col, val)  # bounds of every row pointer and column, in C++
        if not bool(torch.isfinite(val).all()):
            raise ValueError("sparse residual holds NaN or infinite values")
        mod._set_residual(rp, col, val)
    else:
        mod._set_residual(None, None, None)
    mod.last_kernel = None
    mod.rel_error = None
    return mod


TECHNIQUE = register(single_module_technique(
    "lowrank", LowRankConfig, LowRankLinear, convert, ("lowrank_linear", _to_canonical, _spec, _from_canonical),
    summary="low-rank factors U V (SVD or activation-aware), run as one fused kernel",
    order=30,
    convert_batch=convert_batch,
))
