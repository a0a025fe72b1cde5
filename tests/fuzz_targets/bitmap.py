"""Fuzz targets for the bitmap sparse format (csrc/formats/bitmap.cc) and the ways its bytes arrive:
``sparse_formats.sparse_info`` (light and full check), the ``sparse_linear`` op and
``SparseLinear.load_state_dict``."""

from __future__ import annotations

import contextlib

import torch

import fuzzing
import slimnn
from slimnn.formats import sparse as sf
from slimnn.ops import sparse as sparse_ops
from slimnn.configs import SparseConfig
from slimnn.nn import SparseLinear

# (N, K, density): K around the 64-column chunks and the GEMV kernels' steps; empty and dense; each packed
# with single rows, row pairs (odd N: a phantom last row) and the permute layout (8-row blocks).
SHAPES = [(1, 1, 1.0), (3, 63, 0.3), (5, 65, 0.1), (4, 200, 0.5), (7, 257, 0.05), (2, 64, 0.0)]


def _valid(rng):
    g = torch.Generator().manual_seed(rng.randrange(2**31))
    out = []
    for n, k, density in SHAPES:
        q = torch.randint(-127, 128, (n, k), dtype=torch.int8, generator=g)
        q = (q * (torch.rand(n, k, generator=g) < density)).to(torch.int8)
        scales = torch.rand(n, generator=g) * 0.1 + 1e-3
        for rows in (1, 2, 8):  # 8: the permute layout
            blob = sf.pack_sparse(q, "bitmap", scales=scales, group_rows=rows)
            out.append((blob.numpy().tobytes(), (n, k)))
    return out


def _parse_full(data, ctx):
    return sf.sparse_info(fuzzing.as_tensor(data), full_check=True)


def _accepted_full(data, ctx, info):
    # The full check admits only canonical blobs: unpacking and packing again gives the same bytes.
    blob = fuzzing.as_tensor(data)
    q, scales = sf.unpack_sparse(blob)
    g = int(blob[104:108].view(torch.int32).item())
    again = sf.pack_sparse(q, "bitmap", scales=scales, group_rows=g)
    assert again.numpy().tobytes() == data, "an accepted blob is not canonical (repacking changes bytes)"
    y = sparse_ops.sparse_linear(fuzzing.ramp(info.k), blob, None, info.n)
    assert y.shape == (3, info.n)


def _parse_header(data, ctx):
    return sf.sparse_info(fuzzing.as_tensor(data), full_check=False)


def _accepted_header(data, ctx, info):
    # The light check alone must make every read in bounds: unpack and every kernel run on whatever
    # contents passed it (the sanitizer CI step checks the reads).
    if info.format != "bitmap":
        return
    blob = fuzzing.as_tensor(data)
    q, scales = sf.unpack_sparse(blob)
    assert q.shape == (info.n, info.k) and scales.shape == (info.n,)
    for isa in (None, "portable"):
        with slimnn.isa.forced(isa) if isa else contextlib.nullcontext():
            for rows in (1, 9):
                sparse_ops.sparse_linear(fuzzing.ramp(info.k, rows), blob, None, info.n)


def _parse_state_dict(data, ctx):
    n, k = ctx
    cfg = SparseConfig(0.5, values="int8", index="bitmap", backend="sparse")
    return fuzzing.load_blob_state_dict(SparseLinear(k, n, bias=True, config=cfg), data)


def _accepted_state_dict(data, ctx, mod):
    fuzzing.check_loaded_blob(mod, data)


fuzzing.register("bitmap_full_check", _valid, _parse_full, check_accepted=_accepted_full, repair=fuzzing.repair_total_bytes)
fuzzing.register("bitmap_header", _valid, _parse_header, check_accepted=_accepted_header, repair=fuzzing.repair_total_bytes)
fuzzing.register("bitmap_load_state_dict", _valid, _parse_state_dict, check_accepted=_accepted_state_dict,
                 repair=fuzzing.repair_total_bytes)
