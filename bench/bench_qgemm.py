"""int8 linear layers: slimnn against the peers a user would otherwise pick, one kernel call per case.

    PYTHONPATH=src python -m pytest bench/bench_qgemm.py                 # all cases (see pytest.ini)
    PYTHONPATH=src python -m pytest bench/ -k "4096x4096 and M1"         # a subset
    PYTHONPATH=src python -m pytest bench/ -m cold                       # model-sized GEMV only
    PYTHONPATH=src python -m pytest bench/ --benchmark-json=out.json     # keep the figures + extra_info

bench_linear: shape x M from shapes/llm_linear.csv x threads (1, all cores) x implementation.
bench_linear_isa: slimnn only, 1 thread, every ISA path forced in turn (slimnn.isa.forced).
bench_gemv_model_sized (marker ``cold``): M=1 cycling through > 1 GiB of fp32-equivalent weights. Each case first
checks its output (harness.check_output), so a fast wrong kernel fails instead of reporting a time.
extra_info: gflops (2*M*K*N / median), gbps (nominal weight bytes / median: int8 1, bf16 2, fp32 4 per
weight), kernel, threads, cpu_info, err_vs_float64. Absolute times from a shared machine are noisy;
for ratios measured side by side use bench/tables/int8_peers.py.
"""

from __future__ import annotations

import pytest
import torch

import slimnn
from harness import (
    ALL_IMPLS,
    COLD_IMPLS,
    SLIMNN_IMPLS,
    check_output,
    default_threads,
    load_shapes,
    random_input,
    set_threads,
)

THREADS = default_threads()
CASES = [(k, n, m, t, name) for (k, n, m) in load_shapes() for t in THREADS for name in ALL_IMPLS]


def _case_id(c):
    k, n, m, t, name = c
    return f"{k}x{n}-M{m}-t{t}-{name}"


def _record(benchmark, impl, m, k, n, threads, err, **extra):
    benchmark.extra_info.update(
        kernel=impl.kernel(), threads=threads, m=m, k=k, n=n, err_vs_float64=err,
        cpu_info=slimnn.cpu_info(), torch_version=torch.__version__, **extra,
    )
    if benchmark.stats:  # None or empty under --benchmark-disable
        t = benchmark.stats.stats.median
        benchmark.extra_info["gflops"] = 2.0 * m * k * n / t / 1e9
        benchmark.extra_info["gbps"] = k * n * impl.bytes_per_weight / t / 1e9
        return t
    return None


@pytest.mark.parametrize("k,n,m,threads,impl_name", CASES, ids=[_case_id(c) for c in CASES])
def bench_linear(benchmark, layer_cache, k, n, m, threads, impl_name):
    layers = layer_cache.get(k, n)
    impl = layers.impl(impl_name)
    x, y64 = layers.case(m)
    set_threads(threads)
    impl.enter()
    fn = impl.bind(x)
    with torch.inference_mode():
        err = check_output(impl, x, fn(), y64)
        benchmark.group = f"{k}x{n} M={m} threads={threads}"
        benchmark(fn)
    _record(benchmark, impl, m, k, n, threads, err)


# The portable (scalar) path is ~30x slower than the vector ones; time it where a call stays under ~50 ms.
PORTABLE_MAX_MACS = 1 << 24
ISA_CASES = [(k, n, m, isa, name) for (k, n, m) in load_shapes() for isa in slimnn.isa.detected()
             for name in SLIMNN_IMPLS]


@pytest.mark.parametrize("k,n,m,isa,impl_name", ISA_CASES,
                         ids=[f"{k}x{n}-M{m}-{isa}-{name}" for k, n, m, isa, name in ISA_CASES])
def bench_linear_isa(benchmark, layer_cache, k, n, m, isa, impl_name):
    if isa not in slimnn.isa.available():
        pytest.skip(f"{isa} is detected but not built or not enabled in this build")
    if isa == "portable" and m * k * n > PORTABLE_MAX_MACS:
        pytest.skip(f"portable path timed only up to {PORTABLE_MAX_MACS} MACs per call (keeps bench/ short)")
    layers = layer_cache.get(k, n)
    impl = layers.impl(impl_name)
    x, y64 = layers.case(m)
    set_threads(1)
    fn = impl.bind(x)
    with slimnn.isa.forced(isa), torch.inference_mode():
        err = check_output(impl, x, fn(), y64)
        benchmark.group = f"{k}x{n} M={m} threads=1 slimnn ISA paths"
        benchmark(fn)
    _record(benchmark, impl, m, k, n, 1, err, forced_isa=isa)


@pytest.mark.cold
@pytest.mark.parametrize("threads", THREADS, ids=[f"t{t}" for t in THREADS])
@pytest.mark.parametrize("impl_name", COLD_IMPLS)
def bench_gemv_model_sized(benchmark, cold_set, dram_read_gbps, threads, impl_name):
    """M=1 over cold_set.count distinct layers (> 1 GiB fp32-equivalent), one GEMV per call, each on the
    next layer: weights stream from DRAM as in decoding. gbps / dram_read_gbps = fraction of the roof."""
    k, n = cold_set.k, cold_set.n
    x = random_input(1, k)
    set_threads(threads)
    with torch.inference_mode():
        errs = cold_set.check(x)
        impl = cold_set.impls[impl_name][0]
        impl.enter()
        fn = cold_set.bind_cycle(impl_name, x)
        benchmark.group = f"model-sized GEMV {k}x{n} x{cold_set.count} threads={threads}"
        benchmark(fn)
    dram = dram_read_gbps[threads]
    t = _record(benchmark, impl, 1, k, n, threads, errs[impl_name], layers=cold_set.count,
                fp32_equivalent_bytes=cold_set.fp32_bytes, dram_read_gbps=dram)
    if t is not None:
        benchmark.extra_info["fraction_of_dram_bw"] = benchmark.extra_info["gbps"] / dram


# The AMX crossover (csrc/kernels/qgemm/select.cc, kAmxMinRows): the AMX kernel against the avx512vnni one at
# small and large M, both forced by name through the same driver (_C.q8_linear_forced), 1 thread. Runs only
# where AMX is usable (a skip elsewhere: the emulated twin is a test vehicle, not something to time). The
# ratio of the two medians per (shape, M) is what the crossover constant should be set from.
AMX_KERNEL = "qgemm_q8_u8_32x64__amx"
AMX_PEERS = {"amx": AMX_KERNEL, "avx512vnni": "qgemm_q8_u8_4x64__avx512vnni"}
AMX_M = (1, 2, 3, 4, 8, 16, 32, 128)
AMX_CASES = [(k, n, m, path) for (k, n) in sorted({(k, n) for k, n, _ in load_shapes()}) for m in AMX_M
             for path in AMX_PEERS]


@pytest.mark.parametrize("k,n,m,path", AMX_CASES, ids=[f"{k}x{n}-M{m}-{p}" for k, n, m, p in AMX_CASES])
def bench_amx_crossover(benchmark, k, n, m, path):
    from slimnn import _C, formats
    from slimnn.math import quantize

    if "amx" not in slimnn.isa.available():
        pytest.skip(f"AMX not usable on this CPU ({slimnn.cpu_info()['brand']})")
    name = AMX_PEERS[path] if m > 1 or path == "amx" else "qgemm_q8_u8_1x128__avx512vnni"
    g = torch.Generator().manual_seed(k + n)
    w = torch.randn(n, k, generator=g) / k**0.5
    q, s = quantize.quantize_int8_symmetric(w, None)
    blob = formats.pack_q8(q, s)
    x = random_input(m, k)
    y = torch.empty(m, n)

    def run():
        _C.q8_linear_forced(name, x.data_ptr(), False, m, k, blob.data_ptr(), blob.numel(), 0, y.data_ptr(), n, 1)
        return y

    want = slimnn.ops.q8.q8_linear(x, blob, None, "dynamic", n)  # whichever kernel the selector takes
    torch.testing.assert_close(run(), want, rtol=1e-4, atol=1e-4 * float(want.abs().max()) + 1e-6)
    benchmark.group = f"AMX crossover {k}x{n} M={m} threads=1"
    benchmark(run)
    benchmark.extra_info.update(kernel=name, m=m, k=k, n=n, threads=1, cpu_info=slimnn.cpu_info())
    if benchmark.stats:
        benchmark.extra_info["gflops"] = 2.0 * m * k * n / benchmark.stats.stats.median / 1e9
