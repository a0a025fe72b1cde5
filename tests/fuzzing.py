"""A small mutation fuzzer for every parser of untrusted bytes (used by test_fuzz.py).

A *target* is a parser and a way to make valid inputs for it. Each run takes a valid input, applies one to
three random mutations (truncation, extension, bit flips, interesting integers written over header words,
random bytes, splices of two valid inputs, a repair of the length field so the input gets past the first
check), feeds it to the parser and requires that

- the parser either accepts the input or raises one of the target's clean error types (ValueError and
  TypeError by default) -- anything else (RuntimeError, MemoryError, OverflowError, a crash) is a bug;
- no call allocates much memory: the loop runs under an address-space limit (RLIMIT_AS) of the process's
  current size plus ``alloc_limit`` bytes, so even an untouched huge ``malloc`` fails (and then shows up as
  a stray MemoryError/RuntimeError), and the peak RSS may grow by at most that much;
- an input the parser accepts satisfies the target's invariants (``check_accepted``), e.g. that a q8
  blob accepted with the full check is canonical (re-packing its contents gives the same bytes) and
  computes without error.

Registering a format: put a module in tests/fuzz_targets/ that calls :func:`register`; test_fuzz.py picks
up every registered target. ``make_valid(rng)`` returns a list of (bytes, context) pairs; ``parse(data,
context)`` parses ``data`` the way untrusted bytes reach the library; ``repair(data)`` (optional) patches a
mutated input's length field so that more inputs reach the deeper checks.

Run time: ``SLIMNN_FUZZ_SECONDS`` per target (default 1.5 s), ``SLIMNN_FUZZ_SEED`` (default 0) for the
random stream; a failing input is written to ``SLIMNN_FUZZ_CRASH_DIR`` (default: the test's tmp dir).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import pathlib
import random
import re
import resource
import struct
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import torch

# Integers that break parsers: zero, signs, powers of two around type limits and our own shape limits.
INTERESTING_64 = [
    0, 1, -1, 2, 3, 4, 15, 16, 17, 63, 64, 65, 127, 128, 129, 255, 256,
    2**15, 2**16, 2**16 + 1, 2**24, 2**24 + 1, 2**31 - 1, 2**31, 2**32 - 1, 2**32, 2**32 + 1,
    2**40, 2**48, 2**62, 2**63 - 1, -(2**63), -(2**31), -(2**32),
]
INTERESTING_32 = [0, 1, 2, 4, 127, 128, 255, 2**15, 2**16 - 1, 2**16, 2**31 - 1, 2**31, 2**32 - 1]
INTERESTING_16 = [0, 1, 2, 0x7F, 0x80, 0xFF, 0x7FFF, 0x8000, 0xFFFF]


@dataclass
class Target:
    name: str
    make_valid: Callable[[random.Random], list[tuple[bytes, Any]]]
    parse: Callable[[bytes, Any], Any]
    errors: tuple[type, ...] = (ValueError, TypeError)
    check_accepted: Optional[Callable[[bytes, Any, Any], None]] = None
    repair: Optional[Callable[[bytes], bytes]] = None
    header_bytes: int = 128  # where the interesting-integer mutations write
    alloc_limit: int = 1 << 30


TARGETS: dict[str, Target] = {}

OFF_TOTAL_BYTES = 96  # PackedHeader::total_bytes, common to every slimnn blob (csrc/formats/header.h)


def repair_total_bytes(data: bytes) -> bytes:
    """A mutated blob with its header's total_bytes set to its real length, so mutations reach the sections
    behind the size check (a ``repair`` for blob targets)."""
    if len(data) < OFF_TOTAL_BYTES + 8:
        return data
    return data[:OFF_TOTAL_BYTES] + struct.pack("<Q", len(data)) + data[OFF_TOTAL_BYTES + 8 :]


def ramp(k: int, rows: int = 3) -> torch.Tensor:
    """Deterministic activations (rows x k) for running an accepted blob."""
    return torch.linspace(-2.0, 2.0, rows * k).reshape(rows, k)


def register(name: str, make_valid, parse, **kw) -> Target:
    if name in TARGETS:
        raise ValueError(f"fuzz target {name!r} registered twice")
    t = Target(name, make_valid, parse, **kw)
    TARGETS[name] = t
    return t


def load_targets() -> dict[str, Target]:
    """Imports every module in tests/fuzz_targets/ (each registers its targets) once."""
    folder = pathlib.Path(__file__).with_name("fuzz_targets")
    for path in sorted(folder.glob("*.py")):
        modname = f"slimnn_fuzz_targets_{path.stem}"
        if modname in _loaded:
            continue
        spec = importlib.util.spec_from_file_location(modname, path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        _loaded.add(modname)
    return TARGETS


_loaded: set[str] = set()


# --- mutations: each takes (rng, data, other valid input) and returns new bytes plus a label ---

def _truncate(rng, data, other):
    n = rng.randrange(len(data) + 1) if rng.random() < 0.5 else max(0, len(data) - rng.randrange(1, 65))
    return data[:n], f"truncate to {n}"


def _extend(rng, data, other):
    extra = rng.choice([1, 3, 4, 64, 4096, rng.randrange(1, 300)])
    fill = bytes(extra) if rng.random() < 0.5 else rng.randbytes(extra)
    return data + fill, f"extend by {extra}"


def _bit_flips(rng, data, other):
    if not data:
        return data, "flip (empty)"
    b = bytearray(data)
    flips = rng.choice([1, 1, 2, 4, 8, 32])
    where = []
    for _ in range(flips):
        # Half the flips land in the header, where the parsers make their decisions.
        i = rng.randrange(min(len(b), 128)) if rng.random() < 0.5 else rng.randrange(len(b))
        b[i] ^= 1 << rng.randrange(8)
        where.append(i)
    return bytes(b), f"flip bits at {where[:8]}"


def _interesting(rng, data, other, header_bytes=128):
    if len(data) < 2:
        return data, "interesting (too short)"
    b = bytearray(data)
    width = rng.choice([2, 4, 8, 8, 8])
    hi = max(1, min(len(b), header_bytes) - width + 1)
    off = rng.randrange(0, hi, width) if hi > width else 0
    if off + width > len(b):
        return data, "interesting (no room)"
    if width == 8:
        v = rng.choice(INTERESTING_64 + [len(data), 2 * len(data), len(data) // 2, -len(data)])
        if rng.random() < 0.2:
            v += rng.choice([-1, 1])
        b[off : off + 8] = struct.pack("<q", max(-(2**63), min(2**63 - 1, v)))
    elif width == 4:
        b[off : off + 4] = struct.pack("<I", rng.choice(INTERESTING_32))
    else:
        b[off : off + 2] = struct.pack("<H", rng.choice(INTERESTING_16))
    return bytes(b), f"write int{width * 8} at {off}"


def _random_bytes(rng, data, other):
    n = rng.choice([0, 1, 4, 64, 127, 128, 129, 256, len(data), rng.randrange(1, 2048)])
    r = rng.randbytes(n)
    if rng.random() < 0.7 and n >= 8:
        r = data[:8] + r[8:]  # keep the magic and version: get past the first check
    return r, f"random {n} bytes"


def _splice(rng, data, other):
    cut = rng.randrange(min(len(data), len(other)) + 1)
    return data[:cut] + other[cut:], f"splice at {cut}"


def _overwrite_block(rng, data, other):
    if not data:
        return data, "block (empty)"
    b = bytearray(data)
    i = rng.randrange(len(b))
    n = min(len(b) - i, rng.choice([1, 4, 16, 64, 256]))
    b[i : i + n] = bytes([rng.choice([0x00, 0xFF, 0x7F, 0x80])]) * n
    return bytes(b), f"fill {n} bytes at {i}"


MUTATORS = [_truncate, _extend, _bit_flips, _bit_flips, _interesting, _interesting, _interesting,
            _random_bytes, _splice, _overwrite_block]


def mutate(rng: random.Random, data: bytes, other: bytes, target: Target) -> tuple[bytes, list[str]]:
    steps = []
    for _ in range(rng.choice([1, 1, 2, 3])):
        m = rng.choice(MUTATORS)
        if m is _interesting:
            data, label = _interesting(rng, data, other, target.header_bytes)
        else:
            data, label = m(rng, data, other)
        steps.append(label)
    if target.repair is not None and rng.random() < 0.5:
        data = target.repair(data)
        steps.append("repair length")
    return data, steps


# --- resource bounds ---

def _vm_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")


def _hwm_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def _reset_hwm() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets the peak RSS (Linux >= 4.0)
        return True
    except OSError:
        return False


@contextlib.contextmanager
def address_space_limit(extra: int):
    """Caps the process's virtual memory at its current size + ``extra`` (a no-op under ASan, which
    reserves terabytes of shadow memory; there ASan's own allocation checks apply)."""
    if os.environ.get("SLIMNN_SANITIZED"):
        yield
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    cap = _vm_bytes() + extra
    if hard != resource.RLIM_INFINITY:
        cap = min(cap, hard)
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


# --- the loop ---

@dataclass
class Stats:
    runs: int = 0
    accepted: int = 0
    rejected: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    peak_rss_growth: int = 0
    seconds: float = 0.0


class FuzzFailure(AssertionError):
    pass


def error_kind(e: BaseException) -> str:
    """The error's message with numbers blanked (its last line: torch's state_dict errors list one per line)."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()] or [""]
    return type(e).__name__ + ": " + re.sub(r"-?\d+", "#", lines[-1])[:100]


def as_tensor(data: bytes) -> torch.Tensor:
    """A 64-byte aligned uint8 tensor holding ``data`` (how a blob arrives from torch.load)."""
    t = torch.empty(len(data), dtype=torch.uint8)
    if data:
        t.copy_(torch.frombuffer(bytearray(data), dtype=torch.uint8))
    return t


def run(target: Target, seconds: float, seed: int, crash_dir: Optional[pathlib.Path] = None,
        max_runs: Optional[int] = None) -> Stats:
    rng = random.Random(f"{target.name}:{seed}")
    valid = target.make_valid(rng)
    if not valid:
        raise ValueError(f"fuzz target {target.name} made no valid inputs")
    # Every valid input must be accepted: otherwise the fuzzer would only ever test the first check.
    for data, ctx in valid:
        result = target.parse(data, ctx)
        if target.check_accepted is not None:
            target.check_accepted(data, ctx, result)
    stats = Stats()
    have_hwm = _reset_hwm()
    hwm0 = _hwm_bytes()
    t0 = time.monotonic()
    with address_space_limit(target.alloc_limit):
        while time.monotonic() - t0 < seconds and (max_runs is None or stats.runs < max_runs):
            data, ctx = rng.choice(valid)
            other = rng.choice(valid)[0]
            mutated, steps = mutate(rng, data, other, target)
            stats.runs += 1
            try:
                result = target.parse(mutated, ctx)
            except target.errors as e:
                stats.rejected += 1
                key = error_kind(e)
                stats.errors[key] = stats.errors.get(key, 0) + 1
                continue
            except BaseException as e:  # noqa: BLE001  (anything else is the bug we are looking for)
                _fail(target, mutated, steps, f"{type(e).__name__}: {e}", crash_dir)
            stats.accepted += 1
            if target.check_accepted is not None:
                try:
                    target.check_accepted(mutated, ctx, result)
                except BaseException as e:  # noqa: BLE001
                    _fail(target, mutated, steps, f"accepted input breaks an invariant: {type(e).__name__}: {e}",
                          crash_dir)
    stats.seconds = time.monotonic() - t0
    if have_hwm:
        stats.peak_rss_growth = max(0, _hwm_bytes() - hwm0)
        if stats.peak_rss_growth > target.alloc_limit:
            raise FuzzFailure(f"{target.name}: peak RSS grew by {stats.peak_rss_growth >> 20} MiB while fuzzing")
    return stats


def _fail(target: Target, data: bytes, steps: list[str], what: str, crash_dir: Optional[pathlib.Path]):
    where = ""
    if crash_dir is not None:
        crash_dir.mkdir(parents=True, exist_ok=True)
        path = crash_dir / f"crash-{target.name}-{abs(hash(data)) % 10**12}.bin"
        path.write_bytes(data)
        where = f"; input saved to {path}"
    raise FuzzFailure(
        f"fuzz target {target.name}: {what}\n  mutations: {steps}\n  {len(data)} bytes, header: "
        f"{data[:128].hex()}{where}"
    )


def load_blob_state_dict(mod: torch.nn.Module, data: bytes) -> torch.nn.Module:
    """``mod.load_state_dict`` of the blob ``data`` as ``packed`` (and a zero bias): a state-dict target's parse.
    torch's documented way to report bad state, a RuntimeError whose message lists each problem, is raised
    as the ValueError of a rejected input."""
    sd = {"packed": as_tensor(data), "bias": torch.zeros(mod.out_features)}
    try:
        mod.load_state_dict(sd)
    except RuntimeError as e:
        if str(e).startswith("Error(s) in loading state_dict"):
            raise ValueError(str(e)) from None
        raise
    return mod


def check_loaded_blob(mod: torch.nn.Module, data: bytes) -> None:
    """A state-dict target's accepted blob: the module holds it byte for byte and runs on :func:`ramp` rows."""
    assert mod.packed.numpy().tobytes() == data
    with torch.inference_mode():
        y = mod(ramp(mod.in_features))
    assert y.shape == (3, mod.out_features)
