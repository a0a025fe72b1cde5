"""Resource stability: many calls grow neither memory nor threads; run-time thread-count changes, torch ops
running beside, and threads that come and go stay safe.

(Concurrent callers giving serial results, fork and GIL release are tests/test_threads.py's.)
"""

from __future__ import annotations

import gc
import os
import threading
import time

import pytest
import torch

import slimnn
from slimnn.nn import Int8Linear

SANITIZED = bool(os.environ.get("SLIMNN_SANITIZED"))
# At least 100k calls; fewer under ASan+UBSan (about 5x slower, and its quarantine makes RSS meaningless).
CALLS = int(os.environ.get("SLIMNN_STABILITY_CALLS", 20_000 if SANITIZED else 100_000))


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def os_threads() -> int:
    return len(os.listdir("/proc/self/task"))


def settled_os_threads(limit: int, wait_s: float = 20.0) -> int:
    """The OS thread count once it is at most ``limit``, polling: OpenMP workers of a finished caller thread
    exit asynchronously. Returns the last count seen if it never gets there (the assertion then fails)."""
    t0 = time.monotonic()
    n = os_threads()
    while n > limit and time.monotonic() - t0 < wait_s:
        time.sleep(0.05)
        n = os_threads()
    return n


@pytest.fixture
def torch_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def _layer(k, n, mode="dynamic", seed=0):
    g = torch.Generator().manual_seed(seed)
    lin = torch.nn.Linear(k, n)
    with torch.no_grad():
        lin.weight.copy_(torch.randn(n, k, generator=g) / k**0.5)
        lin.bias.copy_(torch.randn(n, generator=g) * 0.1)
    return Int8Linear.from_linear(lin, slimnn.Int8Config(mode=mode))


@pytest.mark.parametrize(
    "mode, shape, dtype, calls",
    [
        ("dynamic", (1, 64), torch.float32, CALLS),
        ("weight_only", (1, 64), torch.float32, CALLS),
        ("dynamic", (2, 3, 64), torch.bfloat16, CALLS // 10),  # the general (reshaping, converting) path
    ],
)
def test_many_small_calls_grow_neither_memory_nor_threads(mode, shape, dtype, calls):
    if shape[0] > 1:
        # Six rows make two tasks; one thread keeps 10k calls quick on a loaded 2-core machine, where every
        # parallel region waits for the scheduler (the two-thread team has its own tests below).
        slimnn.set_num_threads(1)
    mod = _layer(64, 64, mode)
    x = torch.randn(*shape).to(dtype)
    with torch.inference_mode():
        ref = mod(x).clone()
        for _ in range(2000):  # warm up: allocator caches, OpenMP team, lazy CPU detection
            mod(x)
        gc.collect()
        rss0, threads0, py_threads0, objs0 = rss_bytes(), os_threads(), threading.active_count(), len(gc.get_objects())
        for _ in range(calls // 2):
            y = mod(x)
        gc.collect()
        # A leak grows in every window; the heap settling after earlier tests (seen once in a full run:
        # 7.5 MiB in the first window) does not. So the bound applies to the second half of the calls.
        rss_mid = rss_bytes()
        for _ in range(calls - calls // 2):
            y = mod(x)
        gc.collect()
        rss1, threads1, py_threads1, objs1 = rss_bytes(), os_threads(), threading.active_count(), len(gc.get_objects())
        rss0 = rss_mid
    assert torch.equal(y, ref)
    assert threads1 <= threads0 and py_threads1 == py_threads0
    assert objs1 - objs0 < 100, f"{objs1 - objs0} more Python objects after {calls} calls"
    if not SANITIZED:
        # 2 MiB over 50k calls: a leak of even 40 bytes a call would show.
        assert rss1 - rss0 < 2 << 20, f"RSS grew by {(rss1 - rss0) / 2**20:.1f} MiB over {calls // 2} calls"


def test_autograd_path_is_stable(torch_threads):
    """The torch.library op with autograd (the training-time path): memory and threads steady too."""
    torch.set_num_threads(1)  # the backward's float matmul is torch's; keep it off a contended team
    mod = _layer(64, 32)
    x = torch.randn(4, 64, requires_grad=True)
    for _ in range(100):
        mod(x).sum().backward()
    gc.collect()
    rss0, threads0 = rss_bytes(), os_threads()
    for _ in range(500):
        x.grad = None
        mod(x).sum().backward()
    gc.collect()
    assert os_threads() <= threads0
    if not SANITIZED:
        assert rss_bytes() - rss0 < 4 << 20


def test_thread_count_changes_between_calls(torch_threads):
    """slimnn.set_num_threads and torch.set_num_threads toggled between calls: every result equals the
    single-threaded one bit for bit, and the thread count stays within what was asked."""
    mod = _layer(256, 512)  # enough column blocks for several tasks, so two threads really run
    mods = {"dynamic": mod, "weight_only": _layer(256, 512, "weight_only")}
    xs = [torch.randn(m, 256) for m in (1, 7, 33)]
    refs = {}
    slimnn.set_num_threads(1)
    with torch.inference_mode():
        for name, m in mods.items():
            for i, x in enumerate(xs):
                refs[name, i] = m(x).clone()
    base = os_threads()
    settings = [(1, 1), (2, 1), (None, 2), (1, 2), (2, 2), (None, 1), (3, 2)]
    with torch.inference_mode():
        for step in range(420):
            ours, theirs = settings[step % len(settings)]
            torch.set_num_threads(theirs)
            slimnn.set_num_threads(ours)
            assert slimnn.get_num_threads() == (theirs if ours is None else ours)
            name = "dynamic" if step % 2 else "weight_only"
            i = step % len(xs)
            assert torch.equal(mods[name](xs[i]), refs[name, i]), (step, ours, theirs)
    # One team of at most max(asked) - 1 OpenMP workers beside this thread (3 was asked once).
    assert settled_os_threads(base + 2) <= base + 2


def test_calls_beside_torch_parallel_ops_and_thread_churn():
    """Threads calling slimnn while other threads run torch's own OpenMP-parallel ops, in rounds of
    short-lived threads: no deadlock (every round joins), identical results, and the OS thread count
    returns to where it was once the threads are gone."""
    mod = _layer(256, 512)
    x = torch.randn(16, 256)
    with torch.inference_mode():
        ref = mod(x).clone()
    errors: list[str] = []

    def ours(n):
        try:
            with torch.inference_mode():
                for _ in range(n):
                    if not torch.equal(mod(x), ref):
                        errors.append("result differs")
                        return
        except BaseException as e:  # noqa: BLE001
            errors.append(repr(e))

    def theirs(n):
        a = torch.randn(192, 192)
        for _ in range(n):
            a = torch.tanh(a @ a)  # intra-op parallel on torch's OpenMP team

    settled_os_threads(os_threads())
    base = os_threads()
    rounds = 4 if SANITIZED else 12
    for _ in range(rounds):
        ts = [threading.Thread(target=ours, args=(60,), daemon=True) for _ in range(3)]
        ts += [threading.Thread(target=theirs, args=(60,), daemon=True) for _ in range(2)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(timeout=300)
        assert not any(t.is_alive() for t in ts), "a thread is stuck (deadlock?)"
        assert not errors, errors[:3]
    assert settled_os_threads(base) <= base
