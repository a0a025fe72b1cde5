"""embedding: ``Int8Config`` / ``Int4Config`` also convert ``nn.Embedding`` into
:class:`slimnn.nn.embedding.QuantEmbedding` (q8 rows per row or per group; q4 rows with group scales).

A table tied to a Linear head (one Parameter in both, e.g. Llama's ``lm_head`` and ``embed_tokens``) is not
quantized on its own: ``compress_`` converts the head and gives the embedding the head's own blob
(``QuantEmbedding.tied``), so the model holds one compressed copy. Saved as ``quant_embedding`` v1: the
canonical rows (q8: int8 + scales; q4: codes + scales + zeros), or, for a tied table, only the name of the
head, whose blob ``load`` hands it again (``resolve``).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import Tensor, nn

from ..configs import Int4Config, Int8Config
from ..formats.manifest import ModuleFormat, TensorSpec, int_field
from ..formats.packed import pack_q4, pack_q8, unpack_q4, unpack_q8
from ..nn.base import is_hf_conv1d  # noqa: F401  (re-exported for api: Conv1D is converted there)
from ..nn.embedding import QuantEmbedding
from . import int4 as _int4  # noqa: F401  (registers int4 before it is extended below)
from .registry import for_config, register


def _convert_for(base: Any, fmt: str):  # noqa: ANN202
    def convert(layer: nn.Module, config: Any) -> Any:
        if not isinstance(layer, nn.Embedding):
            return base.convert(layer, config)
        if layer.max_norm is not None or layer.sparse:
            return "nn.Embedding with max_norm or sparse gradients is not converted"
        if fmt == "q4" and config.head_int8 and layer.num_embeddings >= _int4.HEAD_MIN_OUT:
            return QuantEmbedding.from_embedding(layer, "q8", None)  # a vocabulary table: int8, as its head
        gs = config.group_size if fmt == "q8" else (config.group_size or 32)
        return QuantEmbedding.from_embedding(layer, fmt, gs)

    return convert


def _to_canonical(mod: nn.Module) -> tuple[dict[str, Tensor], dict[str, Any]]:
    meta = {"num_embeddings": mod.num_embeddings, "embedding_dim": mod.embedding_dim, "fmt": mod.fmt,
            "group_size": mod.group_size, "tied_to": mod.tied_to}
    if mod.tied_to is not None:
        return {}, meta
    if mod.fmt == "q8":
        q, scales, _ = unpack_q8(mod.packed)
        return {"q": q, "scales": scales}, meta
    codes, scales, zeros, _ = unpack_q4(mod.packed)
    meta["scale_dtype"] = str(scales.dtype).replace("torch.", "")
    out = {"codes": codes, "scales": scales}
    if zeros is not None:
        out["zeros"] = zeros
    return out, meta


def _spec(meta: dict) -> TensorSpec:
    n, k = int_field(meta, "num_embeddings", 1), int_field(meta, "embedding_dim", 1)
    fmt, gs, tied = meta.get("fmt"), meta.get("group_size"), meta.get("tied_to")
    if fmt not in ("q8", "q4") or not (gs is None or (isinstance(gs, int) and not isinstance(gs, bool) and 4 <= gs <= k + 64)):
        raise ValueError(f"quant_embedding: bad fmt/group_size {fmt!r}/{gs!r}")
    if tied is not None:
        if not isinstance(tied, str):
            raise ValueError(f"quant_embedding: tied_to must be a module name, got {tied!r}")
        return {}
    groups = 1 if gs is None else -(-k // gs)
    if fmt == "q8":
        return {"q": (torch.int8, (n, k)), "scales": (torch.float32, (groups, n))}
    dt = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}.get(meta.get("scale_dtype"))
    if dt is None:
        raise ValueError(f"quant_embedding: bad scale_dtype {meta.get('scale_dtype')!r}")
    return {"codes": (torch.uint8, (n, k)), "scales": (dt, (groups, n))}


def _from_canonical(tensors: dict[str, Tensor], meta: dict) -> nn.Module:
    mod = QuantEmbedding.__new__(QuantEmbedding)
    nn.Module.__init__(mod)
    mod.num_embeddings, mod.embedding_dim, mod.fmt = meta["num_embeddings"], meta["embedding_dim"], meta["fmt"]
    mod.padding_idx = None
    mod.register_buffer("in_mul", None)
    mod.tied_to = meta["tied_to"]
    if mod.tied_to is not None:  # the head's blob is handed over by resolve() once the model is built
        mod.group_size = meta["group_size"]
        mod.register_buffer("packed", torch.empty(0, dtype=torch.uint8))
        return mod
    if mod.fmt == "q8":
        q, scales = tensors["q"], tensors["scales"]
        if q.numel() and int(q.min()) < -127:
            raise ValueError("quant_embedding: int8 rows hold -128")
        if not bool(torch.isfinite(scales).all()) or not bool((scales > 0).all()):
            raise ValueError("quant_embedding: scales must be finite and positive")
        blob = pack_q8(q, scales, meta["group_size"])
    else:
        blob = pack_q4(tensors["codes"], tensors["scales"], tensors.get("zeros"), meta["group_size"])
    mod._set_packed(blob)
    return mod


def tie_to_head(head: nn.Module, emb: nn.Embedding, head_fqn: str) -> Any:
    """The embedding tied to ``head`` (already converted): a QuantEmbedding reading the head's blob, or the
    reason it stays float (the head is not an Int8Linear / Int4Linear)."""
    if getattr(head, "packed", None) is not None and type(head).__name__ in ("Int8Linear", "Int4Linear"):
        return QuantEmbedding.tied(head, emb, head_fqn)
    return f"tied to {head_fqn}, which is a {type(head).__name__} (the table stays float with it)"


_FORMAT = ModuleFormat("quant_embedding", 1, QuantEmbedding, _to_canonical, _spec, _from_canonical)

for _cfg, _fmt in ((Int8Config, "q8"), (Int4Config, "q4")):
    _base = for_config(_cfg)
    register(dataclasses.replace(
        _base,
        modules=_base.modules + (QuantEmbedding,),
        targets=_base.targets + (nn.Embedding,),
        convert=_convert_for(_base, _fmt),
        summary=_base.summary + f"; nn.Embedding rows {_fmt} (tied tables share the head's blob)",
        save_formats=_base.save_formats + (_FORMAT,),
    ))
