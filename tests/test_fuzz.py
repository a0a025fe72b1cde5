"""Bounded fuzzing of every parser of untrusted bytes (targets in tests/fuzz_targets/, harness in fuzzing.py).

Default: SLIMNN_FUZZ_SECONDS=1.5 per target. Longer: SLIMNN_FUZZ_SECONDS=60 pytest tests/test_fuzz.py.
"""

from __future__ import annotations

import os
import pathlib
import struct

import pytest
import torch

import fuzzing
import slimnn
from slimnn import formats, ops
from slimnn.nn import Int8Linear

TARGETS = fuzzing.load_targets()
SECONDS = float(os.environ.get("SLIMNN_FUZZ_SECONDS", "1.5"))
SEED = int(os.environ.get("SLIMNN_FUZZ_SEED", "0"))


@pytest.fixture(autouse=True)
def _one_thread():
    """Kernels run single-threaded while fuzzing: the time goes to inputs, not to parallel regions (which
    on a busy 2-core machine wait on the scheduler). conftest restores the default afterwards."""
    slimnn.set_num_threads(1)


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_fuzz_target(name, tmp_path):
    crash_dir = pathlib.Path(os.environ.get("SLIMNN_FUZZ_CRASH_DIR", tmp_path))
    stats = fuzzing.run(TARGETS[name], SECONDS, SEED, crash_dir)
    # The mutations must reach both outcomes: a fuzzer whose inputs are all rejected by the first check
    # (or all accepted) tests nothing.
    assert stats.runs > 0 and stats.rejected > 0, stats
    print(f"\n{name}: {stats.runs} inputs in {stats.seconds:.1f}s, {stats.accepted} accepted, "
          f"{stats.rejected} rejected, peak RSS +{stats.peak_rss_growth >> 20} MiB; "
          f"{len(stats.errors)} distinct errors")


def test_mutations_reach_the_deep_checks():
    """Rejections come from many different checks of the parser, not just the first one."""
    stats = fuzzing.run(TARGETS["q8_full_check"], 0.5, SEED, max_runs=3000)
    assert len(stats.errors) >= 8, sorted(stats.errors)


def test_harness_catches_a_stray_exception():
    def bad_parse(data, ctx):
        if len(data) % 7 == 3:
            raise RuntimeError("boom")
        raise ValueError("clean")

    t = fuzzing.Target("selftest", lambda rng: [(b"\0" * 200, None)], lambda d, c: None)
    t.parse = lambda d, c: bad_parse(d, c) if d != b"\0" * 200 else None
    with pytest.raises(fuzzing.FuzzFailure, match="RuntimeError: boom"):
        fuzzing.run(t, 5.0, 0)


@pytest.mark.skipif(bool(os.environ.get("SLIMNN_SANITIZED")), reason="RLIMIT_AS does not apply under ASan")
def test_harness_catches_a_huge_allocation():
    """An untouched huge allocation (virtual memory only, so RSS alone would not see it) fails the run."""

    def greedy(data, ctx):
        if len(data) != 200:
            torch.empty(4 << 30, dtype=torch.uint8)  # 4 GiB: over the 1 GiB limit
        raise ValueError("clean")

    t = fuzzing.Target("selftest_alloc", lambda rng: [(b"\0" * 200, None)],
                       lambda d, c: None if d == b"\0" * 200 else greedy(d, c))
    with pytest.raises(fuzzing.FuzzFailure, match="(RuntimeError|MemoryError)"):
        fuzzing.run(t, 5.0, 0)


# --- structurally wrong inputs (not byte mutations) reach the same clean errors ---

def _blob(n=16, k=8):
    return slimnn.nn.Int8Linear.from_linear(torch.nn.Linear(k, n)).packed


@pytest.mark.parametrize(
    "bad, exc",
    [
        (lambda b: b.numpy().tobytes(), TypeError),  # not a tensor
        (lambda b: b.to(torch.int8), ValueError),
        (lambda b: b.float(), ValueError),
        (lambda b: b.reshape(1, -1), ValueError),
        (lambda b: torch.cat([b, b])[::2], ValueError),  # non-contiguous
        (lambda b: b[:0], ValueError),
        (lambda b: b[1:], ValueError),  # misaligned view and wrong length
        (lambda b: torch.cat([torch.zeros(4, dtype=torch.uint8), b])[4:], None),  # 4-byte offset view: fine
    ],
)
def test_q8_info_bad_containers(bad, exc):
    arg = bad(_blob())
    if exc is None:
        assert formats.q8_info(arg, full_check=True).n == 16
    else:
        with pytest.raises(exc):
            formats.q8_info(arg, full_check=True)


@pytest.mark.parametrize(
    "sd_fn",
    [
        lambda b: {"packed": b.float(), "bias": torch.zeros(16)},
        lambda b: {"packed": b.reshape(2, -1), "bias": torch.zeros(16)},
        lambda b: {"packed": b[:100], "bias": torch.zeros(16)},
        lambda b: {"packed": _blob(16, 9), "bias": torch.zeros(16)},  # another layer's blob
        lambda b: {"packed": _blob(8, 8), "bias": torch.zeros(16)},
        lambda b: {"packed": b, "bias": torch.zeros(17)},
        lambda b: {"bias": torch.zeros(16)},  # missing key
    ],
)
def test_load_state_dict_rejects_cleanly(sd_fn):
    mod = Int8Linear(8, 16)
    with pytest.raises(RuntimeError, match="Error\\(s\\) in loading state_dict"):
        mod.load_state_dict(sd_fn(_blob()))
    # Like torch's own modules, a failed load may have taken some entries, but the module stays usable:
    # its blob still matches its shape.
    assert formats.q8_info(mod.packed, full_check=True)[:2] == (16, 8)
    assert mod(torch.ones(2, 8)).shape == (2, 16)


# --- regressions: inputs the fuzzer found, kept as plain cases ---

def _patched(blob, offset, fmt, value):
    b = bytearray(blob.numpy().tobytes())
    struct.pack_into(fmt, b, offset, value)
    return fuzzing.as_tensor(bytes(b))


@pytest.mark.parametrize(
    "offset, fmt, value, match",
    [
        (24, "<q", 2**63 - 1, "shape out of range"),  # K + 3 overflowed int64 (UBSan) before the bound check
        (16, "<q", -(2**63), "shape out of range"),
        (48, "<q", 2**62, "group_size .* larger than the largest K"),  # kp + gs overflowed in the layout
        (120, "<B", 1, "reserved header bytes"),  # was accepted: a blob from a newer writer would be misread
    ],
)
def test_regression_header_fields(offset, fmt, value, match):
    blob = formats.pack_q8(torch.ones(3, 70, dtype=torch.int8), torch.ones(3, 3), 32)
    with pytest.raises(ValueError, match=match):
        formats.q8_info(_patched(blob, offset, fmt, value), full_check=False)


def test_regression_full_check_is_canonical():
    """A flipped bit in a scale of a padding column, or in a compensation term, used to pass the full check
    (the blob then computed wrong values for grouped dynamic layers without any error)."""
    n, k, gs = 3, 70, 32
    blob = formats.pack_q8(torch.ones(n, k, dtype=torch.int8), torch.ones(3, n), gs)
    info = formats.q8_info(blob)
    off_scales, off_comp = struct.unpack_from("<QQ", blob.numpy(), 72)[0], struct.unpack_from("<Q", blob.numpy(), 88)[0]
    pad_scale = _patched(blob, off_scales + 4 * (info.np - 1), "<f", 1.0)
    with pytest.raises(ValueError, match="non-zero scale in padding column"):
        formats.q8_info(pad_scale, full_check=True)
    comp = _patched(blob, off_comp, "<f", 1.5)
    with pytest.raises(ValueError, match="compensation term"):
        formats.q8_info(comp, full_check=True)
    formats.q8_info(comp, full_check=False)  # the header alone is fine: only the full check reads contents


def test_regression_op_checks_out_features():
    """q8_linear (and torch.ops.slimnn.q8_linear) with out_features larger than the blob's N used to return
    uninitialized columns."""
    blob = formats.pack_q8(torch.ones(3, 8, dtype=torch.int8), torch.ones(1, 3))
    with pytest.raises(ValueError, match="out_features=16 but the packed weights have N=3"):
        ops.q8_linear(torch.ones(2, 8), blob, None, "dynamic", 16)
    assert ops.q8_linear(torch.ones(2, 8), blob, None, "dynamic", 3).shape == (2, 3)
