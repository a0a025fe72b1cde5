"""Shared test helpers: weights, blobs, reference magnitudes, and the session's covered kernel paths."""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

import slimnn
from slimnn import formats
from slimnn.app.demo import MlpBlock
from slimnn.math import quantize
from slimnn.math import reference

# Kernel names that ran through slimnn.ops.q8_linear_with_kernel in this session (conftest records them;
# test_dispatch.py fails if this CPU's best paths are missing: ruy's "covered paths").
COVERED: set[str] = set()

SENTINEL_I32 = 0x5EADBEEF  # fills int32 outputs before a kernel writes them
SENTINEL_U8 = 0xA5
SENTINEL_F32 = float("-1.2345e+29")

# Configs that every whole-model test (torch.compile, transformers) runs, by test id; each test adds its own.
COMMON_FORMATS = {
    "int8_weight_only_g32": slimnn.Int8Config(mode="weight_only", group_size=32),
    "sparse_bitmap_int8": [slimnn.SparseConfig(0.9, backend="sparse"), slimnn.Int8Config()],
    "lowrank_fp32": slimnn.LowRankConfig(rank_ratio=0.5, progress=False),
    "lowrank_int8_residual": slimnn.LowRankConfig(rank_ratio=0.5, factor_dtype="int8", sparse_residual=0.02,
                                                  progress=False),
}

F32_MAX = torch.finfo(torch.float32).max
F32_TINY = torch.finfo(torch.float32).tiny  # smallest normal
F32_DENORM = 1.401298464324817e-45  # smallest subnormal


def entries(kind: Optional[str] = None) -> list[dict]:
    """q8 entries of slimnn.kernels() (both kinds, or one: 'q8_dynamic' / 'q8_weight_only')."""
    return [e for e in slimnn.kernels() if e["kind"] in ("q8_dynamic", "q8_weight_only") and (kind is None or e["kind"] == kind)]


def entry_id(e: dict) -> str:
    return e["name"]


def skip_unless_available(e: dict) -> None:
    import pytest

    if not e["available"]:
        pytest.skip(f"{e['name']}: this CPU lacks {e['isa']}")


class EmulatedTwin:
    """An ISA kernel (e.g. AMX) and its test-only emulated twin, over the kernel rows ``rows()`` returns (the
    family's table plus its emulated table): the twin is always under test, the real kernel where built
    (a skip, saying why, where the CPU cannot run it)."""

    def __init__(self, emulated: str, real: str, rows):
        self.emulated, self.real, self._rows = emulated, real, rows

    def by_name(self) -> dict[str, dict]:
        return {e["name"]: e for e in self._rows()}

    def runnable(self, name: str) -> bool:
        e = self.by_name().get(name)
        return e is not None and e["available"]

    def under_test(self) -> list[str]:
        return [self.emulated] + ([self.real] if self.real in self.by_name() else [])

    def skip_unless(self, name: str) -> None:
        import pytest

        if not self.runnable(name):
            e = self.by_name().get(name)
            pytest.skip(f"{name}: " + (f"this CPU lacks {e['isa']}" if e else "not built"))


def kp_of(k: int) -> int:
    return -(-k // 4) * 4


def np_of(n: int) -> int:
    return -(-n // 16) * 16


def random_q(n: int, k: int, g: torch.Generator, extremes: bool = True) -> Tensor:
    """int8 weights over the full range, with -128 and 127 planted at the first and last positions."""
    q = torch.randint(-128, 128, (n, k), generator=g, dtype=torch.int16).to(torch.int8)
    if extremes and q.numel():
        q.view(-1)[0] = -128
        q.view(-1)[-1] = 127
        q[:, ::7] = -128  # whole columns of the extreme value: the worst case of every dot product
    return q


def random_scales(n_groups: int, n: int, g: torch.Generator) -> Tensor:
    return (torch.rand(n_groups, n, generator=g) * 0.05 + 1e-3).to(torch.float32)


def q8_layer(n: int, k: int, group_size: Optional[int], seed: int, with_bias: bool):
    """(q, scales, bias, blob) of a q8 layer with extreme int8 values (random_q), from ``seed``."""
    g = torch.Generator().manual_seed(seed)
    q = random_q(n, k, g)
    ng = 1 if group_size is None else -(-k // group_size)
    scales = random_scales(ng, n, g)
    bias = torch.randn(n, generator=g) if with_bias else None
    return q, scales, bias, formats.pack_q8(q, scales, group_size)


def make_layer(n: int, k: int, group_size: Optional[int], g: torch.Generator, realistic: bool = True):
    """(w float N x K, q int8, scales, blob) with W quantized by slimnn.math.quantize (realistic=True: weights
    with a per-channel scale spread like a trained layer's)."""
    w = torch.randn(n, k, generator=g) / max(k, 1) ** 0.5
    if realistic:
        w = w * torch.exp(0.5 * torch.randn(n, 1, generator=g))
    q, scales = quantize.quantize_int8_symmetric(w, group_size)
    return w, q, scales, formats.pack_q8(q, scales, group_size)


def dequant(q: Tensor, scales: Tensor, group_size: Optional[int]) -> Tensor:
    """q * scale per group, exactly (float64; slimnn.math.quantize.dequantize_int8 rounds to float32)."""
    n, k = q.shape
    qg, g = quantize.group_view(q.to(torch.float64), group_size)
    return (qg * scales.to(torch.float64).t().unsqueeze(2)).reshape(n, -1)[:, :k]


def wo_magnitude(x: Tensor, q: Tensor, scales: Tensor, group_size: Optional[int], bias: Optional[Tensor]) -> Tensor:
    """The size of the terms a weight-only kernel adds: |x| @ |W|^T + |bias| (float64, M x N)."""
    w = dequant(q, scales, group_size).abs()
    mag = x.to(torch.float64).abs() @ w.t()
    if bias is not None:
        mag = mag + bias.to(torch.float64).abs()
    return mag


def dyn_magnitude(x: Tensor, q: Tensor, scales: Tensor, group_size: Optional[int], bias: Optional[Tensor]) -> Tensor:
    """The size of the terms a dynamic kernel adds in float: a_scale * ((a + zp) @ |W|^T) + |bias|."""
    a, a_scale, zp, finite = reference.quantize_rows_u8(x.to(torch.float32))
    w = dequant(q, scales, group_size).abs()
    mag = (a.to(torch.float64) + zp.to(torch.float64).unsqueeze(1)) @ w.t()
    mag = mag * a_scale.to(torch.float64).unsqueeze(1)
    if bias is not None:
        mag = mag + bias.to(torch.float64).abs()
    return mag


def reference_linear(mode: str, x2: Tensor, q: Tensor, scales: Tensor, group_size: Optional[int],
                     bias: Optional[Tensor]) -> tuple[Tensor, Tensor]:
    """(reference output float32 M x N, magnitude) for x2 (M x K, float32 values)."""
    x2 = x2.to(torch.float32)
    if mode == "dynamic":
        return (reference.q8_linear_dynamic(x2, q, scales, group_size, bias),
                dyn_magnitude(x2, q, scales, group_size, bias))
    return (reference.q8_linear_weight_only(x2, q, scales, group_size, bias),
            wo_magnitude(x2, q, scales, group_size, bias))


def q8_linear(x: Tensor, blob: Tensor, bias: Optional[Tensor], mode: str, n: int) -> tuple[Tensor, str]:
    """slimnn.ops.q8_linear_with_kernel (recorded in COVERED by conftest)."""
    return slimnn.ops.q8.q8_linear_with_kernel(x, blob, bias, mode, n)


def special_rows(k: int, g: torch.Generator) -> list[torch.Tensor]:
    """Rows that stress the quantizer: extremes, tiny and subnormal values, one-signed, zero, ties."""
    rows = [
        torch.zeros(k),
        torch.randn(k, generator=g),
        torch.rand(k, generator=g) * 3.0,  # all non-negative: zero point 0
        -torch.rand(k, generator=g) * 3.0,  # all non-positive: zero point 255
        torch.full((k,), -0.0),
        torch.linspace(-1.0, 1.0, k, dtype=torch.float64).mul(F32_MAX).to(torch.float32),  # -FLT_MAX..FLT_MAX
        torch.full((k,), F32_MAX),
        torch.full((k,), -F32_MAX),
        torch.randn(k, generator=g) * 1e30,
        torch.randn(k, generator=g) * 1e-30,
        torch.randn(k, generator=g) * F32_TINY,  # subnormal range: scale falls back to 1
        torch.full((k,), F32_DENORM),
        torch.randn(k, generator=g) * 300 * F32_TINY,  # scale just above the smallest normal
        torch.randint(-255, 256, (k,), generator=g).to(torch.float32),
    ]
    # scale exactly 1 (max 255 or min -255), so every x.5 value is an exact rounding tie (half to even)
    ties = (torch.arange(k, dtype=torch.float32) % 254) + 0.5
    ties[0] = 255.0
    rows += [ties, -ties]
    mixed = torch.randn(k, generator=g)
    mixed[::3] = 1e-38
    mixed[0] = 1e20
    rows.append(mixed)
    return [r.to(torch.float32) for r in rows]




def make_mlp_model(d: int, h: int, blocks: int, seed: int = 0) -> torch.nn.Module:
    """MLP blocks with weights drawn like a trained network's (per-channel scale spread)."""
    g = torch.Generator().manual_seed(seed)
    model = torch.nn.Sequential(*[MlpBlock(d, h) for _ in range(blocks)])
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.Linear):
                k = m.in_features
                w = torch.randn(m.out_features, k, generator=g) / k**0.5
                w *= torch.exp(0.5 * torch.randn(m.out_features, 1, generator=g))
                m.weight.copy_(w)
                m.bias.copy_(0.02 * torch.randn(m.out_features, generator=g))
    return model.eval()


def runs_without_the_gil(kernel_call) -> int:
    """How often the main thread ran while ``kernel_call()`` (3 calls) ran in a worker thread, with the
    interpreter's switch interval made huge: a thread holding the GIL is then never preempted, so the main
    thread observes the worker *inside* the call only if the kernel released the GIL. > 0 means released."""
    import sys
    import threading
    import time

    state = ["idle"]

    def call() -> None:
        state[0] = "calling"
        for _ in range(3):
            kernel_call()
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
    return seen_inside
