"""Fuzz targets for the save formats of Int4Linear (``int4_linear``) and LowRankLinear (``lowrank_linear``):
whole files written by ``slimnn.save``, mutated, then ``slimnn.load``-ed. The manifest's JSON and the
safetensors header are checked by ``io`` (fuzzed through these too); the formats' own ``spec`` and
``from_canonical`` must turn bad metadata and bad tensor values (codes above 15, -128 in int8 factors,
residual columns out of range, non-finite scales) into ValueError, never a crash or a module that reads
out of bounds."""

from __future__ import annotations

import os
import tempfile

import torch
from torch import nn

import fuzzing
import slimnn

_DIR = tempfile.mkdtemp(prefix="slimnn-fuzz-")


def _file(model: nn.Module) -> bytes:
    p = os.path.join(_DIR, "valid.safetensors")
    slimnn.save(model, p)
    with open(p, "rb") as f:
        return f.read()


def _models(configs):
    def make(rng):
        torch.manual_seed(rng.randrange(2**31))
        out = []
        for cfg in configs:
            m = nn.Sequential(nn.Linear(40, 24), nn.ReLU(), nn.Linear(24, 8)).eval()
            slimnn.compress_(m, cfg)
            out.append((_file(m), 40))
        return out
    return make


INT4 = [slimnn.Int4Config(group_size=32), slimnn.Int4Config(group_size=None, symmetric=False, scale_dtype="bfloat16")]
LOWRANK = [slimnn.LowRankConfig(rank=4, progress=False),
           slimnn.LowRankConfig(rank=4, factor_dtype="int8", sparse_residual=0.05, progress=False)]


def _parse(data, ctx):
    p = os.path.join(_DIR, "input.safetensors")
    with open(p, "wb") as f:
        f.write(data)
    return slimnn.load(p)


def _accepted(data, ctx, model):
    with torch.inference_mode():
        y = model(fuzzing.ramp(ctx))
    assert y.shape == (3, 8)


# header_bytes: the interesting-integer mutations write anywhere in the (small) file, tensor data included.
fuzzing.register("int4_saved_file", _models(INT4), _parse, check_accepted=_accepted, header_bytes=4096)
fuzzing.register("lowrank_saved_file", _models(LOWRANK), _parse, check_accepted=_accepted, header_bytes=4096)
