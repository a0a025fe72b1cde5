"""Fuzz target for whole model files (slimnn.load, issue 18): small int8, sparse and fused models saved with
slimnn.save, mutated anywhere (the 8-byte length, the JSON header, the manifest, the tensor bytes). The only
clean error is slimnn.io.LoadError, and with the content digests any changed byte must be one: a file that
loads must be byte-identical to a valid one (and compute what it computed)."""

from __future__ import annotations

import os
import tempfile

import torch
from torch import nn

import fuzzing
import slimnn
from slimnn import io

_DIR = tempfile.mkdtemp(prefix="slimnn-fuzz-files-")
_PATH = os.path.join(_DIR, "m.safetensors")
_X = fuzzing.ramp(16, 2)
_VALID: dict = {}  # each valid file's bytes -> what its model computes


def _models():
    torch.manual_seed(0)
    a = nn.Sequential(nn.Linear(16, 24), nn.GELU(), nn.Linear(24, 8), nn.LayerNorm(8)).eval()
    slimnn.compress_(a, slimnn.Int8Config(group_size=8), filter_fn=lambda m, n: n == "0", fuse=False)
    slimnn.compress_(a, slimnn.Int8Config(mode="weight_only"), fuse=False)
    b = nn.Sequential(nn.Linear(16, 24), nn.ReLU(), nn.Linear(24, 8)).eval()
    slimnn.compress_(b, slimnn.SparseConfig(0.75, backend="sparse"), filter_fn=lambda m, n: n == "0")
    slimnn.compress_(b, slimnn.SparseConfig(0.5, values="int8", backend="dense"))
    c = nn.Sequential(nn.Linear(16, 24), nn.GELU(), nn.Linear(24, 8)).eval()
    slimnn.compress_(c, slimnn.Int8Config())  # the GELU fused into the first Linear
    return [a, b, c]


def _valid(rng):
    out = []
    for m in _models():
        slimnn.save(m, _PATH)
        with open(_PATH, "rb") as f:
            data = f.read()
        with torch.inference_mode():
            y = m(_X)
        _VALID[data] = y
        out.append((data, y))
    return out


def _parse(data, ctx):
    with open(_PATH, "wb") as f:
        f.write(data)
    model = slimnn.load(_PATH)
    with torch.inference_mode():
        return model(_X)


def _accepted(data, expected, y):
    assert data in _VALID, "a model file with changed bytes loaded (a digest or a check missed it)"
    # A splice of two seeds can rebuild another seed's file exactly: it must compute what that model did.
    assert torch.equal(y, _VALID[data]), "a valid model file computes something else after loading"


fuzzing.register("model_file_load", _valid, _parse, errors=(io.LoadError,), check_accepted=_accepted,
                 header_bytes=64)
