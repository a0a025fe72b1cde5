"""Shared pieces of the int8 benchmarks (bench_qgemm.py and tables/int8_peers.py).

- the standard shapes (``shapes/llm_linear.csv``) and thread counts (1 and all cores);
- the implementations compared, all built from the same float ``nn.Linear``: slimnn's Int8Linear in both
  modes, and the peers a user would otherwise pick, each used as its documentation recommends
  (``F.linear`` in fp32 and bf16; ``torch.ao.quantization.quantize_dynamic`` -> dynamic int8 Linear under
  every x86 quantized engine torch lists);
- output checks, so a fast wrong kernel cannot report a time;
- DRAM read bandwidth, and the model-sized ("cold") GEMV set whose weights do not fit in any cache;
- interleaved timing (implementations alternate within every round; medians).

Nothing here asserts on time: figures are reported, ratios are computed side by side.
"""

from __future__ import annotations

import csv
import gc
import itertools
import math
import os
import resource
import statistics
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

import slimnn
from slimnn.math import reference

import ort_peers  # bench/ (the scripts put it on sys.path)
from slimnn.formats import unpack_q8

SHAPES_CSV = Path(__file__).resolve().parent / "shapes" / "llm_linear.csv"

# Quantized engines torch may list; qnnpack is left out on purpose (ARM-first, not what an x86 user picks).
_X86_ENGINES = ("fbgemm", "onednn", "x86")
INT8_ENGINES = tuple(e for e in _X86_ENGINES if e in torch.backends.quantized.supported_engines)

SLIMNN_IMPLS = ("slimnn_dynamic", "slimnn_weight_only")
FLOAT_IMPLS = ("torch_fp32", "torch_bf16")
TORCH_INT8_IMPLS = tuple(f"torch_int8_{e}" for e in INT8_ENGINES)
# ONNX Runtime's DynamicQuantizeMatMul (bench/ort_peers.py), when onnxruntime is installed.
ORT_IMPLS = ("ort_int8",) if ort_peers.available() else ()
ALL_IMPLS = SLIMNN_IMPLS + FLOAT_IMPLS + TORCH_INT8_IMPLS + ORT_IMPLS

# Output checks: relative Frobenius error against float64 math on the same float weights. Set at 2.5-7x
# what correct implementations show on these random layers (measured: slimnn int8 0.4-1.0%, torch's
# dynamic int8 with per-tensor weights and 7-bit activations 1.3-2.3%, bf16 0.3%, fp32 < 1e-6); a wrong
# kernel is off by O(1).
TOL_VS_FLOAT = {"int8": 6e-2, "bf16": 2e-2, "fp32": 1e-5}
# slimnn against slimnn.math.reference (same integers, same scales): only float32 rounding of the epilogue.
TOL_VS_SLIMNN_REF = 1e-5


def load_shapes(path: Path = SHAPES_CSV) -> list[tuple[int, int, int]]:
    """(k, n, m) rows of a shapes CSV (columns k,n,m; '#' lines are comments)."""
    with open(path) as f:
        lines = [ln for ln in f if ln.strip() and not ln.lstrip().startswith("#")]
    return [(int(r["k"]), int(r["n"]), int(r["m"])) for r in csv.DictReader(lines)]


def all_cores() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def default_threads() -> list[int]:
    return sorted({1, all_cores()})


def set_threads(t: int) -> None:
    """Same thread count for the peers (torch) and for us (slimnn)."""
    torch.set_num_threads(t)
    slimnn.set_num_threads(t)


def torch_isa() -> str:
    """The ISA level torch's own CPU kernels dispatch to (ATen; fbgemm and oneDNN do their own CPUID)."""
    try:
        return torch.backends.cpu.get_cpu_capability()
    except Exception:  # noqa: BLE001  (older torch)
        return "unknown"


def _quantize_dynamic(linear: nn.Linear, engine: str) -> nn.Module:
    """torch's recommended route to a dynamic int8 Linear, packed for ``engine``."""
    torch.backends.quantized.engine = engine
    with warnings.catch_warnings():
        # torch deprecates its own eager quantization (in favour of torchao) and its quantized tensors;
        # the peer is still what torch ships, so build it and silence only those notices.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        q = torch.ao.quantization.quantize_dynamic(nn.Sequential(linear), {nn.Linear}, dtype=torch.qint8)
    return q[0]


@dataclass
class Impl:
    """One way of computing y = x W^T + b for one layer."""

    name: str
    fn: Callable[[Tensor], Tensor]  # called with the activations already in ``in_dtype``
    in_dtype: torch.dtype
    kind: str  # "int8" | "bf16" | "fp32": picks the tolerance and the nominal bytes per weight
    engine: Optional[str] = None  # torch quantized engine to select before calling
    module: Optional[nn.Module] = None  # slimnn Int8Linear (for last_kernel and the exact check)

    @property
    def bytes_per_weight(self) -> int:
        return {"int8": 1, "bf16": 2, "fp32": 4}[self.kind]

    def enter(self) -> None:
        """Selects this implementation's engine (outside any timed region)."""
        if self.engine is not None:
            torch.backends.quantized.engine = self.engine

    def bind(self, x: Tensor) -> Callable[[], Tensor]:
        """A no-argument call on ``x`` (converted here, not in the timed call)."""
        xi = x.to(self.in_dtype).contiguous()
        fn = self.fn
        return lambda: fn(xi)

    def kernel(self) -> str:
        """The kernel that ran last (slimnn) or the library path with torch's ISA level (peers)."""
        if self.module is not None:
            return self.module.last_kernel or "not run yet"
        if self.engine is not None:
            return f"quantized::linear_dynamic[{self.engine}] ({torch_isa()})"
        return f"aten::linear {self.kind} ({torch_isa()})"


class OrtImpl(Impl):
    """ONNX Runtime DynamicQuantizeMatMul: one session per thread count, input and output bound once."""

    def __init__(self, name: str, linear: nn.Linear) -> None:
        super().__init__(name, None, torch.float32, "int8")
        self.linear = linear
        self.sessions: dict[int, object] = {}

    def bind(self, x: Tensor) -> Callable[[], Tensor]:
        t = slimnn.get_num_threads()
        if t not in self.sessions:
            self.sessions[t] = ort_peers.int8_session(self.linear.weight, self.linear.bias, t)
        call, _ = ort_peers.bind(self.sessions[t], x, self.linear.out_features)
        return call

    def kernel(self) -> str:
        return f"ORT {ort_peers.version()} DynamicQuantizeMatMul"


def make_impls(linear: nn.Linear, names: tuple[str, ...] = ALL_IMPLS) -> dict[str, Impl]:
    """Every implementation in ``names`` for the layer ``linear`` (fp32)."""
    w = linear.weight.detach()
    b = None if linear.bias is None else linear.bias.detach()
    out: dict[str, Impl] = {}
    packed = None
    for name in names:
        if name in SLIMNN_IMPLS:
            mode = name[len("slimnn_"):]
            mod = slimnn.nn.Int8Linear.from_linear(linear, slimnn.Int8Config(mode=mode))
            if packed is None:
                packed = mod.packed
            else:  # both modes read the same q8 blob; share it so model-sized sets stay small
                mod.packed = packed
            out[name] = Impl(name, mod, torch.float32, "int8", module=mod)
        elif name == "torch_fp32":
            out[name] = Impl(name, lambda x, w=w, b=b: F.linear(x, w, b), torch.float32, "fp32")
        elif name == "torch_bf16":
            wb, bb = w.to(torch.bfloat16), None if b is None else b.to(torch.bfloat16)
            out[name] = Impl(name, lambda x, w=wb, b=bb: F.linear(x, w, b), torch.bfloat16, "bf16")
        elif name in ORT_IMPLS:
            out[name] = OrtImpl(name, linear)
        elif name in TORCH_INT8_IMPLS:
            engine = name[len("torch_int8_"):]
            out[name] = Impl(name, _quantize_dynamic(linear, engine), torch.float32, "int8", engine=engine)
        else:
            raise ValueError(f"unknown implementation {name!r}; known: {ALL_IMPLS}")
    return out


def random_linear(k: int, n: int, seed: int) -> nn.Linear:
    """A float layer with nn.Linear's default init, reproducible per seed."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return nn.Linear(k, n)


def random_input(m: int, k: int, seed: int = 1) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(m, k, generator=g)


def float64_reference(linear: nn.Linear, x: Tensor, chunk: int = 1024) -> Tensor:
    """y = x W^T + b in float64 (over chunks of output columns, so the big layers stay small in memory)."""
    x64 = x.to(torch.float64)
    w = linear.weight.detach()
    b = None if linear.bias is None else linear.bias.detach()
    parts = []
    for n0 in range(0, w.shape[0], chunk):
        bb = None if b is None else b[n0:n0 + chunk].to(torch.float64)
        parts.append(F.linear(x64, w[n0:n0 + chunk].to(torch.float64), bb))
    return torch.cat(parts, dim=1)


def rel_err(y: Tensor, ref: Tensor) -> float:
    ref = ref.to(torch.float64)
    return float((y.to(torch.float64) - ref).norm() / ref.norm().clamp_min(1e-300))


def check_output(impl: Impl, x: Tensor, y: Tensor, y64: Tensor) -> float:
    """Raises AssertionError if ``y`` (impl's output on ``x``) is wrong; returns its error vs float64.

    Every implementation: relative error vs float64 math within its kind's tolerance. slimnn in addition:
    the first rows x columns against ``slimnn.math.reference`` (exact integers; float32 epilogue rounding only),
    on a corner so the check stays cheap at 14336x4096 (per-channel scales make columns independent).
    """
    if tuple(y.shape) != tuple(y64.shape) or not bool(torch.isfinite(y).all()):
        finite = bool(torch.isfinite(y).all())
        raise AssertionError(f"{impl.name}: bad output (shape {tuple(y.shape)}, all finite: {finite})")
    err = rel_err(y, y64)
    tol = TOL_VS_FLOAT[impl.kind]
    if not err <= tol:
        raise AssertionError(f"{impl.name}: relative error vs float64 {err:.3g} > {tol:g}")
    mod = impl.module
    if mod is not None:
        q, scales, gs = unpack_q8(mod.packed)
        r, c = min(4, x.shape[0]), min(256, q.shape[0])
        ref_fn = reference.q8_linear_dynamic if mod.mode == "dynamic" else reference.q8_linear_weight_only
        bias = None if mod.bias is None else mod.bias[:c]
        ref = ref_fn(x[:r].to(torch.float32), q[:c], scales[:, :c], gs, bias)
        got = y[:r, :c].to(torch.float32)
        diff = float((got - ref).abs().max()) if ref.numel() else 0.0
        bound = TOL_VS_SLIMNN_REF * max(1.0, float(ref.abs().max()) if ref.numel() else 0.0)
        if not diff <= bound:
            raise AssertionError(f"{impl.name}: max |y - slimnn.math.reference| = {diff:.3g} > {bound:.3g}")
    return err


# ---------------------------------------------------------------------------------------------- bandwidth
class ReadBandwidth:
    """DRAM read bandwidth: one ``torch.sum`` over a float32 view of an ``nbytes`` buffer, bytes / time.

    Why this measure: a GEMV's weights are a pure read stream, so the roof is read bandwidth, not copy
    (read + write) bandwidth. ``sum`` is a vectorized read-only reduction that runs at 55-90 GB/s from
    cache on one core here, well above DRAM, so it is memory-bound; it uses torch's thread count like the
    kernels. The buffer is written first (calloc'd pages that were never written all map one zero page,
    which sits in cache and would flatter the figure) and is 1 GiB, 30x the 32 MiB L3 reported here.
    """

    def __init__(self, nbytes: int = 1 << 30) -> None:
        self.nbytes = nbytes
        self.buf = torch.empty(nbytes // 4, dtype=torch.float32).fill_(1.0)

    def run(self) -> None:
        self.buf.sum()

    def gbps(self, seconds: float) -> float:
        return self.nbytes / seconds / 1e9

    def measure(self, repeats: int = 5) -> float:
        """Median GB/s over ``repeats`` passes (after one warm-up pass) with the current thread count."""
        self.run()
        ts = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            self.run()
            ts.append(time.perf_counter() - t0)
        return self.gbps(statistics.median(ts))


# ---------------------------------------------------------------------------------------- model-sized GEMV
COLD_SHAPE = (4096, 4096)
COLD_IMPLS = SLIMNN_IMPLS + ("torch_fp32",) + TORCH_INT8_IMPLS


def cold_count(k: int, n: int, min_fp32_bytes: int = 1 << 30, margin: int = 4) -> int:
    """Distinct k x n matrices whose fp32 weights exceed ``min_fp32_bytes`` (20 at 4096 x 4096)."""
    return math.floor(min_fp32_bytes / (4 * k * n)) + margin


class ColdSet:
    """Many distinct layers of one shape, called in turn as a model's layers are for one token.

    At 4096 x 4096: 20 layers = 1.25 GiB of fp32 weights, 320 MiB as int8 (10x the L3), so each GEMV
    streams its weights from DRAM, as in real decoding. Peak memory: fp32 1.34 GB (kept only when
    torch_fp32 is asked for) + int8 ~0.34 GB per int8 implementation (slimnn's two modes share one blob).
    """

    def __init__(self, names: tuple[str, ...] = COLD_IMPLS, shape: tuple[int, int] = COLD_SHAPE,
                 count: Optional[int] = None, seed: int = 1000) -> None:
        self.k, self.n = shape
        self.count = count or cold_count(self.k, self.n)
        self.names = names
        self.impls: dict[str, list[Impl]] = {name: [] for name in names}
        self.first_linear: Optional[nn.Linear] = None
        for i in range(self.count):
            lin = random_linear(self.k, self.n, seed + i)
            if i == 0:
                self.first_linear = lin
            for name, impl in make_impls(lin, names).items():
                self.impls[name].append(impl)
            del lin
            gc.collect()

    @property
    def fp32_bytes(self) -> int:
        return 4 * self.k * self.n * self.count

    def bind_cycle(self, name: str, x: Tensor) -> Callable[[], Tensor]:
        """One GEMV per call, on the next layer each time (wrapping around)."""
        fns = itertools.cycle([impl.bind(x) for impl in self.impls[name]])
        return lambda: next(fns)()

    def bind_pass(self, name: str, x: Tensor) -> Callable[[], None]:
        """One call = one GEMV on every layer (a 'token' through the whole stack)."""
        fns = [impl.bind(x) for impl in self.impls[name]]

        def run() -> None:
            for f in fns:
                f()

        return run

    def check(self, x: Tensor) -> dict[str, float]:
        """Checks each implementation's output on the first layer; returns the errors vs float64."""
        y64 = float64_reference(self.first_linear, x)
        errs = {}
        for name in self.names:
            impl = self.impls[name][0]
            impl.enter()
            errs[name] = check_output(impl, x, impl.bind(x)(), y64)
        return errs


# ----------------------------------------------------------------------------------------------- timing
class ForeignLoad:
    """CPU time other processes used while a block ran, in cores (Linux /proc/stat; None elsewhere).

    The machines are shared: a figure measured while another process held a core is suspect, most of all
    with 2 threads on 2 cores (a worker thread then waits for a scheduler slice, milliseconds). Printed
    next to each figure so a reader can tell. ``with ForeignLoad() as fl: ...; fl.cores``.
    """

    def __enter__(self) -> "ForeignLoad":
        self.cores: Optional[float] = None
        self._start = (self._busy(), self._self(), time.perf_counter())
        return self

    def __exit__(self, *exc) -> None:
        busy0, self0, t0 = self._start
        busy1, wall = self._busy(), time.perf_counter() - t0
        if busy0 is not None and busy1 is not None and wall > 0:
            self.cores = max(0.0, ((busy1 - busy0) - (self._self() - self0)) / wall)

    @staticmethod
    def _busy() -> Optional[float]:
        try:
            with open("/proc/stat") as f:
                v = [int(a) for a in f.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        idle = v[3] + (v[4] if len(v) > 4 else 0)  # idle + iowait
        guest = sum(v[8:10]) if len(v) > 9 else 0  # already counted in user/nice
        return (sum(v) - idle - guest) / os.sysconf("SC_CLK_TCK")

    @staticmethod
    def _self() -> float:
        r = resource.getrusage(resource.RUSAGE_SELF)
        return r.ru_utime + r.ru_stime


def per_call_estimate(fn: Callable[[], object], min_time: float = 0.02, max_calls: int = 1000,
                      warmup: bool = True) -> float:
    """Rough seconds per call (after one warm-up call), to size the batches of interleaved timing."""
    if warmup:
        fn()
    n, t0 = 0, time.perf_counter()
    while True:
        fn()
        n += 1
        dt = time.perf_counter() - t0
        if dt >= min_time or n >= max_calls:
            return dt / n


def interleaved_medians(
    calls: dict[str, tuple[Callable[[], None], Callable[[], object]]],
    inner: dict[str, int],
    rounds: int,
) -> dict[str, float]:
    """Median seconds per call of each named (enter, fn), measured interleaved.

    Each round times a batch of ``inner[name]`` back-to-back calls of every implementation in turn; the
    order rotates by one each round so none always runs first (or right after the heaviest). GC is off
    while timing.
    """
    names = list(calls)
    samples: dict[str, list[float]] = {n: [] for n in names}
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for r in range(rounds):
            s = r % len(names)
            for name in names[s:] + names[:s]:
                enter, fn = calls[name]
                enter()
                reps = inner[name]
                t0 = time.perf_counter()
                for _ in range(reps):
                    fn()
                samples[name].append((time.perf_counter() - t0) / reps)
    finally:
        if gc_was_enabled:
            gc.enable()
    return {n: statistics.median(v) for n, v in samples.items()}


def interleaved(fns: dict[str, Callable[[], float]], rounds: int) -> dict[str, float]:
    """The median over ``rounds`` of what each timer ``fns[name]()`` returns (seconds, say), the timers
    alternating within every round after one warm-up call each."""
    times: dict[str, list] = {k: [] for k in fns}
    for f in fns.values():
        f()
    for _ in range(rounds):
        for k, f in fns.items():
            times[k].append(f())
    return {k: statistics.median(v) for k, v in times.items()}
