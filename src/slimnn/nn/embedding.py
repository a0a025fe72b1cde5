"""QuantEmbedding: ``nn.Embedding`` whose rows are stored int8 (q8) or int4 (q4), looked up by a gather +
dequantize kernel (csrc/kernels/embed).

The table is the same blob format an Int8Linear / Int4Linear multiplies with (N = vocabulary rows, K = the
embedding width; per-row scales, or group scales along the row). So a tied embedding and ``lm_head`` (Llama,
SmolLM2, GPT-2: one Parameter in both modules) are compressed once: :func:`tie_` makes the embedding read
the head's own ``packed`` buffer, one tensor registered in both modules, which ``state_dict`` and
``slimnn.save``/``load`` keep as one.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn

from ..formats.packed import pack_q4, pack_q8, q4_info, q8_info
from ..math.quantize import quantize_int4, quantize_int8_symmetric
from ..ops.conv import embed_gather

FORMATS = ("q8", "q4")


class QuantEmbedding(nn.Module):
    """y = W[ids] with W (num_embeddings x embedding_dim) stored as a q8 or q4 blob.

    ``padding_idx``, ``max_norm`` and sparse gradients of nn.Embedding are not supported (``from_embedding``
    refuses max_norm; padding_idx only affects training and is kept for the record). ``in_mul``: None, or the
    per-column factors of an AWQ-scaled Int4Linear this table is tied to (rows are then W_stored * in_mul).
    """

    def __init__(self, num_embeddings: int, embedding_dim: int, fmt: str = "q8", group_size: Optional[int] = None) -> None:
        super().__init__()
        if fmt not in FORMATS:
            raise ValueError(f"QuantEmbedding: fmt must be one of {FORMATS}, got {fmt!r}")
        self.num_embeddings, self.embedding_dim, self.fmt = int(num_embeddings), int(embedding_dim), fmt
        self.padding_idx: Optional[int] = None
        w = torch.zeros(self.num_embeddings, self.embedding_dim)
        self._set_packed(self._pack(w, fmt, group_size))
        self.register_buffer("in_mul", None)
        self.tied_to: Optional[str] = None

    @staticmethod
    def _pack(w: Tensor, fmt: str, group_size: Optional[int], scale_dtype: torch.dtype = torch.float16) -> Tensor:
        if fmt == "q8":
            q, s = quantize_int8_symmetric(w, group_size)
            return pack_q8(q, s, group_size)
        codes, scales, zeros = quantize_int4(w, group_size, True, scale_dtype)
        return pack_q4(codes, scales, zeros, group_size)

    def _set_packed(self, blob: Tensor) -> None:
        info = q8_info(blob, full_check=False) if self.fmt == "q8" else q4_info(blob, full_check=False)
        if (info.n, info.k) != (self.num_embeddings, self.embedding_dim):
            raise ValueError(f"QuantEmbedding: blob is {info.n} x {info.k}, the table is "
                             f"{self.num_embeddings} x {self.embedding_dim}")
        self.group_size = info.group_size
        self.register_buffer("packed", blob)

    @classmethod
    def from_embedding(cls, emb: nn.Embedding, fmt: str = "q8", group_size: Optional[int] = None) -> "QuantEmbedding":
        """Quantizes ``emb``'s rows: q8 symmetric per row (or per group of ``group_size``), q4 symmetric with
        fp16 group scales (``group_size`` a multiple of 32, default 32)."""
        if not isinstance(emb, nn.Embedding):
            raise TypeError(f"QuantEmbedding.from_embedding expects an nn.Embedding, got {type(emb).__name__}")
        if emb.max_norm is not None:
            raise ValueError("QuantEmbedding: max_norm renormalizes rows on lookup and is not supported")
        if fmt == "q4" and group_size is None:
            group_size = 32
        w = emb.weight.detach().to(torch.float32)
        if not bool(torch.isfinite(w).all()):
            raise ValueError("embedding weight has a NaN or infinite value")
        mod = cls.__new__(cls)
        nn.Module.__init__(mod)
        mod.num_embeddings, mod.embedding_dim, mod.fmt = emb.num_embeddings, emb.embedding_dim, fmt
        mod.padding_idx = emb.padding_idx
        mod._set_packed(cls._pack(w, fmt, group_size))
        mod.register_buffer("in_mul", None)
        mod.tied_to = None
        return mod

    @classmethod
    def tied(cls, head: nn.Module, emb: nn.Embedding, head_fqn: str) -> "QuantEmbedding":
        """An embedding that reads ``head``'s packed blob (an Int8Linear or Int4Linear made from the Parameter
        ``emb`` shares with it). No copy: the buffer is the head's tensor."""
        fmt = "q8" if type(head).__name__ == "Int8Linear" else "q4"
        mod = cls.__new__(cls)
        nn.Module.__init__(mod)
        mod.num_embeddings, mod.embedding_dim, mod.fmt = emb.num_embeddings, emb.embedding_dim, fmt
        mod.padding_idx = emb.padding_idx
        mod._set_packed(head.packed)
        mod.register_buffer("in_mul", getattr(head, "in_mul", None))
        mod.tied_to = head_fqn
        return mod

    def resolve(self, model: nn.Module) -> None:
        """After loading: take the blob of the head this table is tied to (``tied_to``) again."""
        if self.tied_to is None:
            return
        head = model.get_submodule(self.tied_to)
        if getattr(head, "packed", None) is None:
            raise ValueError(f"QuantEmbedding: tied to {self.tied_to!r}, a {type(head).__name__} without a packed blob")
        self._set_packed(head.packed)
        self.in_mul = getattr(head, "in_mul", None)

    def forward(self, ids: Tensor) -> Tensor:
        if not isinstance(ids, Tensor) or ids.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8, torch.int8):
            raise TypeError(f"QuantEmbedding: ids must be an integer tensor, got {getattr(ids, 'dtype', type(ids))}")
        out = embed_gather(self.fmt, self.packed, ids, self.num_embeddings, self.embedding_dim)
        if self.in_mul is not None:
            out.mul_(self.in_mul)
        return out

    def dequantized_weight(self) -> Tensor:
        return self.forward(torch.arange(self.num_embeddings))

    def storage_bytes(self) -> int:
        return self.packed.numel()

    def summary(self) -> str:
        gs = "per row" if self.group_size is None else f"group {self.group_size}"
        return f"{self.fmt} {gs}" + (f", tied to {self.tied_to}" if self.tied_to else "")

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}, format={self.summary()}"
