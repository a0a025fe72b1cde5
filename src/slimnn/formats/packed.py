"""Packed weight blobs: canonical form <-> the versioned, kernel-ready byte layout (see csrc/formats/).

A blob is a 1-D ``torch.uint8`` tensor that starts with a 128-byte header (magic ``SLNN``, format id and
version, shapes, section offsets). Its layout does not depend on the CPU, so a blob saved on one machine
runs on any other; every blob from outside is validated before a kernel reads it.
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import torch
from torch import Tensor

from .. import _C


class Q8Info(NamedTuple):
    n: int
    k: int
    group_size: Optional[int]  # None: per output channel
    n_groups: int
    np: int
    kp: int


def check_blob(blob: Tensor) -> None:
    if not isinstance(blob, Tensor):
        raise TypeError(f"packed weights must be a torch.Tensor, got {type(blob).__name__}")
    if blob.dtype != torch.uint8 or blob.dim() != 1:
        raise ValueError(f"packed weights must be a 1-D uint8 tensor, got {blob.dtype} with shape {tuple(blob.shape)}")
    if blob.device.type != "cpu":
        raise ValueError(f"packed weights must be on the CPU, got {blob.device}")
    if not blob.is_contiguous():
        raise ValueError("packed weights must be contiguous")


def q8_info(blob: Tensor, full_check: bool = False) -> Q8Info:
    """Parses and validates a q8 blob's header (``full_check``: also scales, padding and column sums)."""
    check_blob(blob)
    n, k, gs, ng, np_, kp = _C.q8_header(blob.data_ptr(), blob.numel(), full_check)
    return Q8Info(n, k, None if (ng == 1 and gs == kp) else gs, ng, np_, kp)


def pack_q8(q: Tensor, scales: Tensor, group_size: Optional[int] = None) -> Tensor:
    """Packs int8 weights ``q`` (N x K) and float32 ``scales`` (n_groups x N) into a q8 blob."""
    if q.dtype != torch.int8 or q.dim() != 2:
        raise ValueError(f"q must be a 2-D int8 tensor, got {q.dtype} with shape {tuple(q.shape)}")
    n, k = q.shape
    gs = 0 if group_size is None else int(group_size)
    n_groups = 1 if gs == 0 else -(-k // gs)
    if scales.shape != (n_groups, n):
        raise ValueError(f"scales must have shape {(n_groups, n)}, got {tuple(scales.shape)}")
    q = q.contiguous()
    scales = scales.to(torch.float32).contiguous()
    size = _C.q8_blob_bytes(n, k, gs)
    out = torch.empty(size, dtype=torch.uint8)
    _C.q8_pack(q.data_ptr(), scales.data_ptr(), n, k, gs, out.data_ptr(), size)
    return out


def unpack_q8(blob: Tensor) -> tuple[Tensor, Tensor, Optional[int]]:
    """The canonical form of a q8 blob: (q int8 N x K, scales float32 n_groups x N, group_size)."""
    info = q8_info(blob)
    q = torch.empty(info.n, info.k, dtype=torch.int8)
    scales = torch.empty(info.n_groups, info.n, dtype=torch.float32)
    _C.q8_unpack(blob.data_ptr(), blob.numel(), q.data_ptr(), scales.data_ptr())
    return q, scales, info.group_size


# --- q4 ------------------------------------------------------------------------------------------------------

_SCALE_CODES = {torch.float32: 0, torch.float16: 1, torch.bfloat16: 2}
_SCALE_DTYPES = {v: k for k, v in _SCALE_CODES.items()}


class Q4Info(NamedTuple):
    n: int
    k: int
    group_size: Optional[int]  # None: per output channel
    n_groups: int
    np: int
    kp: int
    scale_dtype: torch.dtype
    symmetric: bool
    float_zeros: bool = False  # zero mode 2: float zero points (in the scale dtype), symmetric is then False


def q4_info(blob: Tensor, full_check: bool = False) -> Q4Info:
    """Parses and validates a q4 blob's header (``full_check``: also codes, zeros, scales and sums)."""
    check_blob(blob)
    n, k, gs, ng, np_, kp, sd, mode = _C.q4_header(blob.data_ptr(), blob.numel(), full_check)
    return Q4Info(n, k, None if (ng == 1 and gs == kp) else gs, ng, np_, kp, _SCALE_DTYPES[sd], mode == 0, mode == 2)


def pack_q4(
    codes: Tensor, scales: Tensor, zeros: Optional[Tensor] = None, group_size: Optional[int] = 64
) -> Tensor:
    """Packs the int4 canonical form into a q4 blob (see ``csrc/formats/q4.h``).

    codes: uint8 (N x K) in [0, 15]; scales: (n_groups x N) float32, float16 or bfloat16 (kept as is);
    zeros: uint8 (n_groups x N) in [0, 15] (integer zero points), a float tensor of the scales' dtype
    (n_groups x N, float zero points: W = scales * (codes - zeros) with any finite zeros; zero mode 2 of the
    blob), or None for symmetric (zero point 8); group_size: a multiple of 32, or None for per output channel.
    """
    if not isinstance(codes, Tensor) or codes.dtype != torch.uint8 or codes.dim() != 2:
        raise ValueError("codes must be a 2-D uint8 tensor of values in [0, 15]")
    n, k = codes.shape
    if group_size is not None and (isinstance(group_size, bool) or not isinstance(group_size, int)):
        raise ValueError(f"group_size must be an int or None, got {group_size!r}")
    gs = 0 if group_size is None else int(group_size)
    if gs != 0 and (gs < 32 or gs % 32):
        raise ValueError(f"group_size must be a positive multiple of 32 or None, got {group_size}")
    n_groups = 1 if gs == 0 else -(-k // gs)
    if not isinstance(scales, Tensor) or scales.dtype not in _SCALE_CODES:
        raise ValueError("scales must be a float32, float16 or bfloat16 tensor")
    if scales.shape != (n_groups, n):
        raise ValueError(f"scales must have shape {(n_groups, n)}, got {tuple(scales.shape)}")
    if zeros is not None and (
        not isinstance(zeros, Tensor) or zeros.dtype not in (torch.uint8, scales.dtype) or zeros.shape != (n_groups, n)
    ):
        raise ValueError(
            f"zeros must be None, a uint8 tensor (integer zero points) or a {scales.dtype} tensor (float zero "
            f"points, the scales' dtype) of shape {(n_groups, n)}"
        )
    codes = codes.contiguous()
    scales = scales.contiguous()
    zeros = None if zeros is None else zeros.contiguous()
    sd = _SCALE_CODES[scales.dtype]
    fz = zeros is not None and zeros.dtype != torch.uint8
    mode = 0 if zeros is None else 2 if fz else 1
    size = _C.q4_blob_bytes(n, k, gs, sd, mode)
    out = torch.empty(size, dtype=torch.uint8)
    zp = 0 if zeros is None else zeros.data_ptr()
    _C.q4_pack(
        codes.data_ptr(), scales.data_ptr(), 0 if fz else zp, zp if fz else 0, n, k, gs, sd, out.data_ptr(), size,
    )
    return out


def unpack_q4(blob: Tensor) -> tuple[Tensor, Tensor, Optional[Tensor], Optional[int]]:
    """The canonical form of a q4 blob: (codes uint8 N x K, scales n_groups x N in the packed dtype,
    zeros uint8 n_groups x N, float zero points n_groups x N in the scales' dtype, or None; group_size or None)."""
    info = q4_info(blob)
    codes = torch.empty(info.n, info.k, dtype=torch.uint8)
    scales = torch.empty(info.n_groups, info.n, dtype=info.scale_dtype)
    zeros = None
    if not info.symmetric:
        zeros = torch.empty(info.n_groups, info.n, dtype=info.scale_dtype if info.float_zeros else torch.uint8)
    zp = 0 if zeros is None else zeros.data_ptr()
    _C.q4_unpack(
        blob.data_ptr(), blob.numel(), codes.data_ptr(), scales.data_ptr(), 0 if info.float_zeros else zp,
        zp if info.float_zeros else 0,
    )
    return codes, scales, zeros, info.group_size
