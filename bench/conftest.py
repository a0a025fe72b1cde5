"""Fixtures for the benchmarks in this directory (collected only by `pytest bench/`, see pytest.ini)."""

from __future__ import annotations

import gc
import os

import pytest
import torch

import slimnn
from harness import (
    INT8_ENGINES,
    ColdSet,
    ReadBandwidth,
    default_threads,
    float64_reference,
    make_impls,
    random_input,
    random_linear,
    set_threads,
    torch_isa,
)


def pytest_report_header(config):
    info = slimnn.cpu_info()
    return [
        f"slimnn {slimnn.__version__} from {os.path.dirname(slimnn.__file__)}",
        f"cpu: {info['brand']} ({info['vendor']}), slimnn isa: {info['isa_best']}, torch isa: {torch_isa()}",
        f"torch {torch.__version__}, int8 engines: {', '.join(INT8_ENGINES)}, threads: {default_threads()}",
    ]


def pytest_benchmark_update_machine_info(config, machine_info):
    machine_info["slimnn_cpu_info"] = slimnn.cpu_info()
    machine_info["torch_version"] = torch.__version__
    machine_info["torch_isa"] = torch_isa()
    machine_info["torch_int8_engines"] = list(INT8_ENGINES)


@pytest.fixture(autouse=True)
def _restore_threads_and_engine():
    torch_threads, engine = torch.get_num_threads(), torch.backends.quantized.engine
    yield
    torch.set_num_threads(torch_threads)
    slimnn.set_num_threads(None)
    torch.backends.quantized.engine = engine


class LayerCache:
    """The implementations of ONE shape at a time (the cases run shape by shape), with inputs and float64
    references per M, so the big layers are quantized once per shape and never all held together."""

    def __init__(self) -> None:
        self.key = None
        self.impls = {}
        self.linear = None
        self._inputs = {}

    def get(self, k: int, n: int) -> "LayerCache":
        if self.key != (k, n):
            self.clear()
            self.linear = random_linear(k, n, seed=k * 100003 + n)
            self.key = (k, n)
        return self

    def impl(self, name: str):
        """The implementation ``name`` of the current shape (built on first use)."""
        if name not in self.impls:
            self.impls.update(make_impls(self.linear, (name,)))
        return self.impls[name]

    def case(self, m: int):
        """(x, float64 reference) for M = m."""
        if m not in self._inputs:
            x = random_input(m, self.key[0])
            self._inputs[m] = (x, float64_reference(self.linear, x))
        return self._inputs[m]

    def clear(self) -> None:
        self.key, self.impls, self.linear, self._inputs = None, {}, None, {}
        gc.collect()


@pytest.fixture(scope="session")
def layer_cache():
    cache = LayerCache()
    yield cache
    cache.clear()


@pytest.fixture(scope="session")
def dram_read_gbps(layer_cache):
    """Measured DRAM read bandwidth (GB/s) per thread count; the 1 GiB buffer is freed afterwards."""
    layer_cache.clear()
    bw = ReadBandwidth()
    out = {}
    for t in default_threads():
        set_threads(t)
        out[t] = bw.measure()
    del bw
    gc.collect()
    return out


@pytest.fixture(scope="session")
def cold_set(layer_cache, dram_read_gbps):
    layer_cache.clear()
    cs = ColdSet()
    yield cs
    del cs
    gc.collect()
