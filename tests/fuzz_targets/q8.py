"""Fuzz targets for the q8 packed-weight format (csrc/formats/header.cc) and the ways its bytes arrive:
``formats.q8_info`` (header only and full check), ``Int8Linear.load_state_dict`` and the ``q8_linear`` op."""

from __future__ import annotations

import contextlib

import torch

import fuzzing
import slimnn
from slimnn import formats, ops
from slimnn.nn import Int8Linear

# (out_features N, in_features K, group_size): tails around the 16-column panels and 4-wide K steps,
# per-channel and grouped (including a last group shorter than the others).
SHAPES = [(1, 1, None), (16, 4, None), (17, 5, None), (3, 70, 32), (33, 12, 4), (8, 130, 64), (20, 9, 8)]


def _valid(rng):
    g = torch.Generator().manual_seed(rng.randrange(2**31))
    out = []
    for n, k, gs in SHAPES:
        q = torch.randint(-127, 128, (n, k), dtype=torch.int8, generator=g)
        ng = 1 if gs is None else -(-k // gs)
        scales = torch.rand(ng, n, generator=g) * 0.1 + 1e-3
        blob = formats.pack_q8(q, scales, gs)
        out.append((blob.numpy().tobytes(), (n, k, gs)))
    return out


def _parse_full(data, ctx):
    return formats.q8_info(fuzzing.as_tensor(data), full_check=True)


def _accepted_full(data, ctx, info):
    # The full check admits only canonical blobs: unpacking and packing again gives the same bytes
    # (header, padding, column sums, compensation terms and section gaps included).
    blob = fuzzing.as_tensor(data)
    q, scales, gs = formats.unpack_q8(blob)
    again = formats.pack_q8(q, scales, gs)
    assert again.numpy().tobytes() == data, "an accepted blob is not canonical (repacking changes bytes)"
    for mode in ("dynamic", "weight_only"):
        y = ops.q8_linear(fuzzing.ramp(info.k), blob, None, mode, info.n)
        assert y.shape == (3, info.n)


def _parse_header(data, ctx):
    return formats.q8_info(fuzzing.as_tensor(data), full_check=False)


def _accepted_header(data, ctx, info):
    # The header check alone must make every read in bounds: unpack and the kernels run on whatever
    # contents passed it (the sanitizer CI step checks the reads).
    blob = fuzzing.as_tensor(data)
    q, scales, _ = formats.unpack_q8(blob)
    assert q.shape == (info.n, info.k) and scales.shape == (info.n_groups, info.n)
    for isa in (None, "portable"):  # the best kernels and the portable twins
        with slimnn.isa.forced(isa) if isa else _nullcontext():
            for mode in ("dynamic", "weight_only"):
                for rows in (1, 5):
                    ops.q8_linear(fuzzing.ramp(info.k, rows), blob, None, mode, info.n)


_nullcontext = contextlib.nullcontext


def _parse_op(data, ctx):
    n, k, _ = ctx
    return ops.q8_linear(fuzzing.ramp(k, 2), fuzzing.as_tensor(data), None, "dynamic", n)


def _accepted_op(data, ctx, y):
    n, k, _ = ctx
    info = formats.q8_info(fuzzing.as_tensor(data))
    assert (info.n, info.k) == (n, k), f"op accepted a {info.k}->{info.n} blob as a {k}->{n} layer"
    assert y.shape == (2, n)


def _parse_state_dict(data, ctx):
    n, k, gs = ctx
    return fuzzing.load_blob_state_dict(Int8Linear(k, n, bias=True, config=slimnn.Int8Config(group_size=gs)), data)


def _accepted_state_dict(data, ctx, mod):
    fuzzing.check_loaded_blob(mod, data)


fuzzing.register("q8_full_check", _valid, _parse_full, check_accepted=_accepted_full, repair=fuzzing.repair_total_bytes)
fuzzing.register("q8_header", _valid, _parse_header, check_accepted=_accepted_header, repair=fuzzing.repair_total_bytes)
fuzzing.register("q8_linear_op", _valid, _parse_op, check_accepted=_accepted_op, repair=fuzzing.repair_total_bytes)
fuzzing.register("int8_load_state_dict", _valid, _parse_state_dict, check_accepted=_accepted_state_dict,
                 repair=fuzzing.repair_total_bytes)
