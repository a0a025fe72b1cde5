"""Sparse weight blobs: a pruned matrix <-> the versioned, kernel-ready byte layouts (csrc/formats/sparse.h).

Format names (one closed list, :data:`FORMATS`):

``csr``
    Unstructured. Rows in slices of 8 (sorted by length, permutation stored), column indices as 4- or
    8-bit deltas (zero-valued filler entries bridge wider gaps). ``index_bits=None`` picks the smaller blob.
``bsr1x4``, ``bsr1x8``, ``bsr4x1``, ``bsr16x1``
    Block-sparse rows: R x C blocks, a uint16 block-column index per block.
``nm2:4``, ``nm4:8``, ... (``nmN:M``, M in 4, 8, 16)
    Every group of M columns holds at most N nonzeros: a 16-bit mask and 16*N/M values per 16 columns.
``bitmap``
    Unstructured, int8 values only: per row and 64 columns a 64-bit mask of the nonzeros, the row's values
    packed; multiplied with u8-quantized activations (W8A8, the numerics of ``Int8Config(mode="dynamic")``).

Values are fp32, or int8 with one fp32 scale per output row (W = q * scale[:, None]). A blob is a 1-D
``torch.uint8`` tensor starting with the 128-byte slimnn header; it is validated before a kernel reads it.
"""

from __future__ import annotations

import re
from typing import NamedTuple, Optional

import torch
from torch import Tensor

from .. import _C
from .packed import check_blob

BLOCKS = ((1, 4), (1, 8), (4, 1), (16, 1))
"""Block shapes (R x C) with kernels."""

_NM_RE = re.compile(r"^nm(\d+):(\d+)$")
_BSR_RE = re.compile(r"^bsr(\d+)x(\d+)$")


class SparseInfo(NamedTuple):
    format: str  # "csr", "bsr1x4", "nm2:4", ...
    values: str  # "fp32" or "int8"
    n: int
    k: int
    nnz: int
    index_bits: Optional[int]  # csr only
    total_bytes: int
    value_bytes: int
    index_bytes: int  # deltas, block columns or masks
    scale_bytes: int
    meta_bytes: int  # header, row pointers, row permutation
    kind: str  # kernel kind, e.g. "csr_i8"


def parse_format(name: str) -> tuple[str, tuple[int, int]]:
    """Splits a format name into ("csr" | "bsr" | "nm", params); raises ValueError for unknown names."""
    if name in ("csr", "bitmap"):
        return name, (0, 0)
    m = _BSR_RE.match(name)
    if m:
        rc = (int(m.group(1)), int(m.group(2)))
        if rc not in BLOCKS:
            raise ValueError(f"block shape {rc[0]}x{rc[1]} has no kernel; use one of "
                             f"{', '.join(f'{r}x{c}' for r, c in BLOCKS)}")
        return "bsr", rc
    m = _NM_RE.match(name)
    if m:
        nn, mm = int(m.group(1)), int(m.group(2))
        if mm not in (4, 8, 16) or not 1 <= nn < mm:
            raise ValueError(f"N:M must have M in (4, 8, 16) and 1 <= N < M, got {nn}:{mm}")
        return "nm", (nn, mm)
    raise ValueError(f"unknown sparse format {name!r}; expected 'csr', 'bitmap', 'bsr<R>x<C>' or 'nm<N>:<M>'")


def sparse_info(blob: Tensor, full_check: bool = False) -> SparseInfo:
    """Parses and validates a sparse blob (``full_check``: every index, padding, value and scale too)."""
    check_blob(blob)
    d = _C.sparse_info(blob.data_ptr(), blob.numel(), full_check)
    if d["format"] == "bsr":
        name = "bsr{}x{}".format(*d["block"])
    elif d["format"] == "nm":
        name = "nm{}:{}".format(*d["nm"])
    elif d["format"] == "bitmap":
        name = "bitmap"
    else:
        name = "csr"
    return SparseInfo(
        name, d["values"], d["n"], d["k"], d["nnz"], d.get("index_bits"), d["total_bytes"], d["value_bytes"],
        d["index_bytes"], d["scale_bytes"], d["meta_bytes"], d["kind"],
    )


def is_sparse_blob(blob: Tensor) -> bool:
    """True if ``blob`` is a uint8 tensor whose header names a sparse format (not validated further)."""
    if not isinstance(blob, Tensor) or blob.dtype != torch.uint8 or blob.dim() != 1 or blob.numel() < 128:
        return False
    return int(blob[6:8].view(torch.int16).item()) in (3, 4, 5, 6)


def _values_of(w: Tensor, scales: Optional[Tensor]) -> tuple[Tensor, Tensor, str]:
    if not isinstance(w, Tensor) or w.dim() != 2:
        raise ValueError(f"weights must be a 2-D tensor, got {type(w).__name__} {getattr(w, 'shape', '')}")
    if w.device.type != "cpu":
        raise ValueError(f"weights must be on the CPU, got {w.device}")
    if w.dtype == torch.int8:
        if scales is None:
            raise ValueError("int8 weights need scales (float32, one per output row)")
        if not isinstance(scales, Tensor) or scales.shape != (w.shape[0],):
            raise ValueError(f"scales must have shape ({w.shape[0]},), got {tuple(getattr(scales, 'shape', ()))}")
        return w.contiguous(), scales.detach().to(torch.float32).contiguous(), "int8"
    if w.dtype != torch.float32:
        raise ValueError(f"weights must be float32 (or int8 with scales), got {w.dtype}")
    if scales is not None:
        raise ValueError("scales are only for int8 weights")
    return w.detach().contiguous(), torch.ones(1, dtype=torch.float32), "fp32"


def pack_sparse(w: Tensor, format: str = "csr", scales: Optional[Tensor] = None,
                index_bits: Optional[int] = None, group_rows: Optional[int] = None) -> Tensor:
    """Packs a pruned matrix: ``w`` float32 (N x K) whose zeros are the pruned weights, or int8 (N x K) with
    float32 ``scales`` [N]. Returns the blob. ``index_bits`` (csr only): 4, 8 or None for the smaller blob.
    ``group_rows`` (bitmap only): rows sharing one mask, 1 or 2 (one compress serves both rows, the values
    grow by the union's zeros), or 8: the permute layout (per row and 256-column window, the nonzeros' byte
    offsets and values; docs/sparse.md); None picks 8 below 15% density (N >= 8; 2 for N < 8), else 1.
    """
    if group_rows is not None and format != "bitmap":
        raise ValueError(f"group_rows is for the bitmap format only, not {format!r}")
    kind, (p, q) = parse_format(format)
    if kind != "csr" and index_bits is not None:
        raise ValueError(f"index_bits is for the csr format only, not {format!r}")
    w, sc, vals = _values_of(w, scales)
    n, k = w.shape
    wp = w.data_ptr()
    if kind == "csr":
        if index_bits is None:
            b4 = _C.sparse_csr_bytes(wp, vals, n, k, 4)
            b8 = _C.sparse_csr_bytes(wp, vals, n, k, 8)
            index_bits = 4 if b4 < b8 else 8
        elif index_bits not in (4, 8):
            raise ValueError(f"index_bits must be 4, 8 or None, got {index_bits!r}")
        size = _C.sparse_csr_bytes(wp, vals, n, k, index_bits)
        out = torch.empty(size, dtype=torch.uint8)
        _C.sparse_csr_pack(wp, sc.data_ptr(), vals, n, k, index_bits, out.data_ptr(), size)
    elif kind == "bitmap":
        if vals != "int8":
            raise ValueError("the bitmap format stores int8 values: pass int8 weights with scales")
        g = _C.sparse_bitmap_group_rows(wp, n, k) if group_rows is None else group_rows
        if g not in (1, 2, 8):
            raise ValueError(f"group_rows must be 1, 2, 8 or None, got {group_rows!r}")
        size = _C.sparse_bitmap_bytes(wp, n, k, g)
        out = torch.empty(size, dtype=torch.uint8)
        _C.sparse_bitmap_pack(wp, sc.data_ptr(), n, k, g, out.data_ptr(), size)
    elif kind == "bsr":
        size = _C.sparse_bsr_bytes(wp, vals, n, k, p, q)
        out = torch.empty(size, dtype=torch.uint8)
        _C.sparse_bsr_pack(wp, sc.data_ptr(), vals, n, k, p, q, out.data_ptr(), size)
    else:
        size = _C.sparse_nm_bytes(vals, n, k, p, q)
        out = torch.empty(size, dtype=torch.uint8)
        _C.sparse_nm_pack(wp, sc.data_ptr(), vals, n, k, p, q, out.data_ptr(), size)
    return out


def unpack_sparse(blob: Tensor) -> tuple[Tensor, Optional[Tensor]]:
    """The canonical form of a blob: (W float32 N x K, None) or (q int8 N x K, scales float32 [N]). Exact."""
    info = sparse_info(blob)
    if info.values == "fp32":
        w = torch.empty(info.n, info.k, dtype=torch.float32)
        _C.sparse_unpack(blob.data_ptr(), blob.numel(), w.data_ptr(), 0)
        return w, None
    q = torch.empty(info.n, info.k, dtype=torch.int8)
    scales = torch.empty(info.n, dtype=torch.float32)
    _C.sparse_unpack(blob.data_ptr(), blob.numel(), q.data_ptr(), scales.data_ptr())
    return q, scales


def dense_weight(blob: Tensor) -> Tensor:
    """The float32 weight matrix a blob stands for (int8 values times their row scales)."""
    w, scales = unpack_sparse(blob)
    return w if scales is None else w.to(torch.float32) * scales.unsqueeze(1)
