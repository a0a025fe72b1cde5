"""Threads: the thread-count setting, results independent of thread count and of concurrent callers,
calls in a forked child, and the GIL released during a kernel."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import threading
import time

import pytest
import torch
from torch import nn

import slimnn
from slimnn import _C

from helpers import make_layer, q8_linear
from tolerances import assert_exact

MODES = ["dynamic", "weight_only"]


def test_set_num_threads_validation():
    assert slimnn.get_num_threads() == torch.get_num_threads()
    for bad in (0, -1, True, False, 1.5, "2", 2.0):
        with pytest.raises(ValueError, match="positive int"):
            slimnn.set_num_threads(bad)
    slimnn.set_num_threads(3)
    assert slimnn.get_num_threads() == 3
    slimnn.set_num_threads(None)
    assert slimnn.get_num_threads() == torch.get_num_threads()
    old = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert slimnn.get_num_threads() == 1  # follows torch by default
    finally:
        torch.set_num_threads(old)


CASES = [  # (m, k, n, group_size): few column blocks (rows get split), many column blocks, grouped, GEMV
    (64, 100, 17, None),
    (9, 64, 300, None),
    (33, 255, 65, 32),
    (1, 512, 129, None),
    (130, 37, 5, 8),
]


@pytest.mark.parametrize("mode", MODES)
def test_bit_identical_across_thread_counts_and_calls(mode):
    g = torch.Generator().manual_seed(0)
    for isa in slimnn.isa.available():
        with slimnn.isa.forced(isa):
            for m, k, n, gs in CASES:
                _, _, _, blob = make_layer(n, k, gs, g)
                bias = torch.randn(n, generator=g)
                x = torch.randn(m, k, generator=g)
                slimnn.set_num_threads(1)
                y1, _ = q8_linear(x, blob, bias, mode, n)
                for threads in (2, 3, 1, 2):
                    slimnn.set_num_threads(threads)
                    y, _ = q8_linear(x, blob, bias, mode, n)
                    assert_exact(y, y1, f"{isa} {mode} {(m, k, n, gs)} with {threads} threads")


@pytest.mark.parametrize("mode", MODES)
def test_concurrent_python_threads(mode):
    """8 Python threads x 50 calls on one module, each with its own inputs: the results equal the serial
    ones bit for bit (no shared scratch, no races in the pool)."""
    torch.manual_seed(0)
    mod = slimnn.nn.Int8Linear.from_linear(nn.Linear(96, 80), slimnn.Int8Config(mode=mode, group_size=32))
    inputs = [torch.randn(1 + (i % 9), 96) for i in range(8)]
    with torch.no_grad():
        serial = [mod(x) for x in inputs]
    errors: list[str] = []
    barrier = threading.Barrier(8)

    def work(i: int) -> None:
        try:
            barrier.wait()
            with torch.no_grad():
                for j in range(50):
                    y = mod(inputs[i])
                    if not torch.equal(y, serial[i]):
                        errors.append(f"thread {i} call {j} differs")
                        return
        except Exception as e:  # noqa: BLE001  (reported below)
            errors.append(f"thread {i}: {e!r}")

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a thread hung"
    assert not errors, errors


def wait_child(pid: int, fd: int, timeout: float = 60.0) -> tuple[bytes, int]:
    """Reads the child's pipe to EOF and reaps it; kills it and fails if it takes longer than `timeout`."""
    deadline = time.monotonic() + timeout
    data = b""
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            os.close(fd)
            pytest.fail("the forked child hung")
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                break
            data += chunk
    os.close(fd)
    _, status = os.waitpid(pid, 0)
    return data, status


@pytest.mark.parametrize("mode", MODES)
def test_forked_child(mode):
    """After fork only the forking thread exists in the child; a slimnn call there runs single-threaded
    instead of waiting for the parent's threads, and gives the parent's results."""
    g = torch.Generator().manual_seed(1)
    _, _, _, blob = make_layer(130, 256, None, g)
    x = torch.randn(40, 256, generator=g)
    slimnn.set_num_threads(2)
    want, _ = q8_linear(x, blob, None, mode, 130)  # the parent's pool/OpenMP team is up
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: no pytest machinery, no torch ops that would start OpenMP work
        code = 1
        try:
            os.close(r)
            y = slimnn.ops.q8_linear(x, blob, None, mode, 130)
            os.write(w, y.numpy().tobytes())
            code = 0
        finally:
            os._exit(code)
    os.close(w)
    data, status = wait_child(pid, r)
    assert os.waitstatus_to_exitcode(status) == 0
    got = torch.frombuffer(bytearray(data), dtype=torch.float32).view(40, 130)
    assert_exact(got, want, "result in the forked child")


FRESH_FORK = r"""
import os, sys, torch, slimnn
from slimnn import formats, ops
from slimnn.math import quantize
torch.set_num_threads(2)
a = torch.randn(256, 256)
for _ in range(3):
    a @ a  # torch's OpenMP team is up; slimnn has not run yet
q, s = quantize.quantize_int8_symmetric(torch.randn(64, 256))
blob = formats.pack_q8(q, s)
x = torch.randn(32, 256)
pid = os.fork()
if pid == 0:
    y = ops.q8_linear(x, blob, None, sys.argv[1], 64)
    os._exit(0 if y.shape == (32, 64) else 3)
import time
deadline = time.monotonic() + 60
while True:
    done, st = os.waitpid(pid, os.WNOHANG)
    if done:
        print("child", os.waitstatus_to_exitcode(st))
        break
    if time.monotonic() > deadline:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        print("child hung")
        break
    time.sleep(0.05)
"""


def test_forked_child_before_first_call():
    """The first slimnn call of the process happens in a forked child of a parent whose torch ops already
    started OpenMP threads (this hung before the fork handler was registered at load time)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [os.path.dirname(os.path.dirname(slimnn.__file__)), os.environ.get("PYTHONPATH", "")]))
    out = subprocess.run([sys.executable, "-c", FRESH_FORK, "dynamic"], capture_output=True, text=True,
                         timeout=120, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith("child 0"), out.stdout + out.stderr


def test_kernel_releases_the_gil():
    """With the interpreter's switch interval made huge, a thread holding the GIL is never preempted; so
    the main thread can observe the worker *inside* the kernel call only if the kernel released the GIL."""
    _, _, _, blob = make_layer(2048, 2048, None, torch.Generator().manual_seed(2))
    m, k, n = 128, 2048, 2048
    x = torch.randn(m, k)
    y = torch.empty(m, n)
    slimnn.set_num_threads(1)
    state = ["idle"]

    def call() -> None:
        state[0] = "calling"
        for _ in range(3):
            _C.q8_linear("q8_dynamic", x.data_ptr(), False, m, k, blob.data_ptr(), blob.numel(), 0, y.data_ptr(),
                         n, 1)
        state[0] = "returned"

    seen_inside = 0
    old = sys.getswitchinterval()
    sys.setswitchinterval(1000.0)
    try:
        t = threading.Thread(target=call)
        t.start()
        while state[0] != "returned":
            if state[0] == "calling":
                seen_inside += 1
            time.sleep(0.0005)  # gives the GIL back so the worker can return
        t.join()
    finally:
        sys.setswitchinterval(old)
    assert seen_inside > 0, "the main thread never ran while the kernel did: the GIL was held"


def test_no_threads_of_our_own():
    """With OpenMP (the default build) slimnn runs on the OpenMP runtime torch loaded: no pool of its own."""
    _, _, _, blob = make_layer(64, 64, None, torch.Generator().manual_seed(3))
    slimnn.set_num_threads(2)
    q8_linear(torch.randn(64, 64), blob, None, "dynamic", 64)
    assert _C.pool_worker_count() <= 1  # 0 with OpenMP; the own pool never grows past threads - 1
