"""Property-based tests (hypothesis) of the q8 blob parser: layout, round trips, and arbitrary bytes.

The bounded mutation fuzzer is tests/test_fuzz.py; these state the same contract as properties that
hypothesis shrinks to a minimal counterexample when one fails.
"""

from __future__ import annotations

import struct

import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import fuzzing
from slimnn import _C, formats

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
HEADER = struct.Struct("<4sHHII6q5Q24s")  # csrc/formats/header.h PackedHeader
assert HEADER.size == 128


def _align64(x: int) -> int:
    return (x + 63) // 64 * 64


@st.composite
def q8_case(draw):
    n = draw(st.integers(1, 40))
    k = draw(st.integers(1, 140))
    gs = draw(st.one_of(st.none(), st.sampled_from([4, 8, 12, 16, 32, 64, 128, 256])))
    seed = draw(st.integers(0, 2**31 - 1))
    g = torch.Generator().manual_seed(seed)
    ng = 1 if gs is None else -(-k // gs)
    q = torch.randint(-128, 128, (n, k), dtype=torch.int8, generator=g)
    scales = torch.rand(ng, n, generator=g) + 1e-6
    return q, scales, gs


@SETTINGS
@given(q8_case())
def test_layout_header_and_round_trip(case):
    q, scales, gs = case
    n, k = q.shape
    blob = formats.pack_q8(q, scales, gs)
    np_, kp = -(-n // 16) * 16, -(-k // 4) * 4
    gsz = kp if gs is None or gs >= kp else gs  # a group as long as K is stored per-channel
    ng = -(-kp // gsz)
    off_w = 128
    off_s = _align64(off_w + np_ * kp)
    off_c = _align64(off_s + ng * np_ * 4)
    off_comp = _align64(off_c + ng * np_ * 4)
    total = _align64(off_comp + np_ * 4)
    assert blob.numel() == total == _C.q8_blob_bytes(n, k, gs or 0)
    h = HEADER.unpack_from(blob.numpy())
    assert h == (b"SLNN", 1, 1, 128, 0, n, k, np_, kp, gsz, ng, off_w, off_s, off_c, off_comp, total, bytes(24))
    info = formats.q8_info(blob, full_check=True)
    assert (info.n, info.k, info.n_groups, info.np, info.kp) == (n, k, ng, np_, kp)
    q2, s2, gs2 = formats.unpack_q8(blob)
    assert torch.equal(q2, q) and torch.equal(s2, scales)
    assert torch.equal(formats.pack_q8(q2, s2, gs2), blob)


@pytest.mark.parametrize("gs", [None, 8])
def test_every_truncation_and_extension_is_rejected(gs):
    blob = formats.pack_q8(torch.ones(5, 10, dtype=torch.int8), torch.ones(1 if gs is None else 2, 5), gs)
    data = blob.numpy().tobytes()
    for cut in range(len(data)):
        with pytest.raises(ValueError, match="shorter than|header says"):
            formats.q8_info(fuzzing.as_tensor(data[:cut]))
    for extra in (1, 3, 4, 63, 64, 4096):
        with pytest.raises(ValueError, match="header says"):
            formats.q8_info(fuzzing.as_tensor(data + bytes(extra)))


def _accepted_is_canonical(data: bytes) -> None:
    """The parser's whole contract for one input: a clean ValueError, or (full check) a canonical blob."""
    t = fuzzing.as_tensor(data)
    try:
        formats.q8_info(t, full_check=False)
    except ValueError:
        with pytest.raises(ValueError):
            formats.q8_info(t, full_check=True)
        return
    try:
        formats.q8_info(t, full_check=True)
    except ValueError:
        return
    q, s, gs = formats.unpack_q8(t)
    assert formats.pack_q8(q, s, gs).numpy().tobytes() == data


@SETTINGS
@given(st.binary(max_size=600))
def test_arbitrary_bytes(data):
    _accepted_is_canonical(data)


@SETTINGS
@given(
    q8_case(),
    st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=6),
    st.booleans(),
)
def test_overwritten_bytes(case, writes, fix_total):
    """Valid blobs with a few bytes overwritten (header fields included), optionally with total_bytes
    patched back to the length so the deeper checks run."""
    blob = bytearray(formats.pack_q8(*case).numpy().tobytes())
    for off, val in writes:
        blob[off % len(blob)] = val
    if fix_total:
        struct.pack_into("<Q", blob, 96, len(blob))
    assume(bytes(blob) != formats.pack_q8(*case).numpy().tobytes())
    _accepted_is_canonical(bytes(blob))


@SETTINGS
@given(
    st.sampled_from([16, 24, 32, 40, 48, 56, 64, 72, 80, 88, 96]),
    st.one_of(st.sampled_from(fuzzing.INTERESTING_64), st.integers(-(2**63), 2**63 - 1)),
)
def test_any_header_word(offset, value):
    """Any value in any 64-bit header field: shapes, paddings, group fields and offsets."""
    blob = bytearray(formats.pack_q8(torch.ones(17, 33, dtype=torch.int8), torch.ones(2, 17), 32).numpy().tobytes())
    struct.pack_into("<q", blob, offset, value)
    _accepted_is_canonical(bytes(blob))
