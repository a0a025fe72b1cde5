"""sparse: ``SparseConfig`` -> :class:`slimnn.nn.SparseLinear` (pruning into csr / bsr / N:M / bitmap storage,
fp32 or int8 values), planned across layers (global sparsity, skip lists, whole neurons).

Saved as module format ``"sparse_linear"`` v1.

Canonical tensors: ``packed`` (uint8: the sparse blob -- csr, bsr, nm or bitmap -- or, for the dense int8
backend, the q8 blob; both layouts are fixed byte formats that do not depend on the CPU) or ``weight``
(float32, dense fp32 backend), and ``bias``. Metadata: shapes, the config (JSON), the backend and the blob
size. Loading goes through ``SparseLinear.load_state_dict``, which runs the full check of the blob.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ..configs import SparseConfig
from ..formats.manifest import config_field, TensorSpec, bool_field, int_field, linear_meta
from ..math import prune
from ..nn.base import bare_linear
from ..nn.sparse import SparseLinear
from .registry import Done, register, single_module_technique


def _to_canonical(mod: nn.Module) -> tuple[dict[str, Tensor], dict[str, Any]]:
    tensors: dict[str, Tensor] = {}
    meta = linear_meta(mod, mod.config)
    meta["backend"] = mod.backend
    if mod.weight is not None:
        tensors["weight"] = mod.weight.detach().to(torch.float32).contiguous()
    else:
        tensors["packed"] = mod.packed.detach().contiguous()
        meta["packed_bytes"] = int(mod.packed.numel())
    if mod.bias is not None:
        tensors["bias"] = mod.bias.detach().to(torch.float32).contiguous()
    return tensors, meta


def _config(meta: dict) -> Any:
    return config_field(meta, SparseConfig, "sparse_linear")


_META = {"in_features", "out_features", "bias", "config", "backend", "packed_bytes"}


def _spec(meta: dict) -> TensorSpec:
    if set(meta) - _META:
        raise ValueError(f"sparse_linear metadata has unknown fields {sorted(set(meta) - _META)}")
    k, n = int_field(meta, "in_features", 1), int_field(meta, "out_features", 1)
    cfg = _config(meta)
    backend = meta.get("backend")
    if backend not in ("sparse", "dense"):
        raise ValueError(f"manifest field 'backend' must be 'sparse' or 'dense', got {backend!r}")
    if "packed_bytes" in meta:
        spec = {"packed": (torch.uint8, (int_field(meta, "packed_bytes", 128, 2**40),))}
    else:
        if backend != "dense":
            raise ValueError("a sparse backend needs 'packed_bytes'")
        if cfg.values != "fp32":
            raise ValueError(f"dense float weights, but the config says values={cfg.values!r}")
        spec = {"weight": (torch.float32, (n, k))}
    if bool_field(meta, "bias"):
        spec["bias"] = (torch.float32, (n,))
    return spec


def _from_canonical(tensors: dict[str, Tensor], meta: dict) -> nn.Module:
    cfg = _config(meta)
    # Built without its constructor, which would allocate (and pack) a dense zeros(out, in) before the blob
    # is checked: the only memory taken before validation is the bias, O(out).
    mod = bare_linear(SparseLinear, cfg, meta["in_features"], meta["out_features"])
    mod.register_buffer("packed", None)
    mod.register_buffer("weight", None)
    mod.register_buffer("bias", torch.empty(mod.out_features) if meta["bias"] else None)
    mod.backend = meta["backend"]
    mod.choice = {"by": "file"}
    mod.last_kernel = None
    sd = {k: v for k, v in tensors.items()}
    try:
        mod.load_state_dict(sd)  # the full check of the blob, then the copy
    except RuntimeError as e:  # torch lists the problems; they are format errors here
        raise ValueError(str(e)) from None
    if mod.backend != meta["backend"]:
        raise ValueError(f"the stored weights are for the {mod.backend} backend, the manifest says {meta['backend']}")
    if mod.config != cfg:  # the blob's format, values and index must be what the manifest's config says
        diff = {f: (getattr(cfg, f), getattr(mod.config, f)) for f in ("values", "pattern", "index", "index_bits")
                if getattr(cfg, f) != getattr(mod.config, f)}
        raise ValueError(f"the manifest's config disagrees with the stored blob (manifest, blob): {diff}")
    mod.choice = {"by": "state_dict"}
    return mod


def convert(linear: nn.Module, config: SparseConfig) -> nn.Module:
    return SparseLinear.from_linear(linear, config)


def plan(model: nn.Module, targets: list, config: SparseConfig) -> dict:
    if config.pattern != "neurons":
        return prune.plan_layers(targets, config)
    names = {fqn for fqn, _ in targets}
    out: dict[str, Any] = {fqn: "matched SparseConfig.skip" for fqn in names if prune.matches_any(fqn, config.skip)}
    groups = [
        (p, c) for p, c in prune.find_mlp_pairs(model)
        if all(x in names and x not in out for x in (*p, c))
    ]
    done = prune.prune_neurons_(model, config.sparsity, groups, config.method)
    for fqn in names:
        if fqn in done:
            out[fqn] = Done(done[fqn])
        elif fqn not in out:
            out[fqn] = "no partner layer found: removing its neurons would change the model's outputs"
    return out


TECHNIQUE = register(single_module_technique(
    "sparse", SparseConfig, SparseLinear, convert, ("sparse_linear", _to_canonical, _spec, _from_canonical),
    summary="pruning (magnitude, Wanda, N:M, blocks, neurons) into sparse storage with sparse kernels",
    order=20,
    plan=plan,
))
