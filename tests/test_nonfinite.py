"""Non-finite activations (docs/reliability.md, "Non-finite activations"): per output element, an int8 layer
gives NaN / +inf / -inf exactly where the float computation with its dequantized weights does, in both
modes, on every ISA path of this CPU, with and without groups, bias, fused activations, bf16 inputs and
threads; rows without such values are computed by the int8 kernels as before, bit for bit."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import slimnn
from slimnn import ops
from slimnn.nn import Int8Linear

INF, NAN = float("inf"), float("nan")
ISAS = slimnn.isa.available()
K, N = 96, 40


def float_reference(mod: Int8Linear, x: torch.Tensor) -> torch.Tensor:
    """What the float model does with the same weights: x @ W_deq^T + b in float32, then the activation.
    One documented difference: torch's exact GELU gives NaN at +inf (its formula computes inf * 0 there),
    the limit -- and slimnn's fused GELU -- is +inf."""
    w = mod.dequantized_weight()
    y = x.float() @ w.t()
    if mod.bias is not None:
        y = y + mod.bias
    out = ops.apply_activation(y, mod.activation)
    if mod.activation == "gelu":
        out = torch.where(y == INF, y, out)
    return out


def assert_same_nonfinite(y: torch.Tensor, ref: torch.Tensor, what: str) -> None:
    for name, f in (("NaN", torch.isnan), ("+inf", torch.isposinf), ("-inf", torch.isneginf)):
        mism = f(y) != f(ref)
        assert not bool(mism.any()), (
            f"{what}: {name} differs at {mism.nonzero()[:5].tolist()}: got {y[mism][:5].tolist()}, "
            f"float gives {ref[mism][:5].tolist()}")


def hostile_rows(k: int, g: torch.Generator) -> torch.Tensor:
    """Clean rows interleaved with: one +inf, one -inf, one NaN, +inf and -inf together, a whole row of inf,
    values of 1e36 (finite, but past what the integer kernels' intermediates can hold), bf16-sized 3e38."""
    x = torch.randn(12, k, generator=g)
    x[1, 3] = INF
    x[3, k - 1] = -INF
    x[5, k // 2] = NAN
    x[6, 0], x[6, 1] = INF, -INF
    x[7, :] = INF
    x[8, :] = 1e36 * torch.sign(torch.randn(k, generator=g))
    x[10, 5] = 1e36
    return x


BAD_ROWS = [1, 3, 5, 6, 7, 8, 10]
CLEAN_ROWS = [0, 2, 4, 9, 11]


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("mode", ["dynamic", "weight_only"])
@pytest.mark.parametrize("group_size", [None, 32])
@pytest.mark.parametrize("activation", [None, "relu", "gelu", "gelu_tanh", "silu"])
def test_matches_float_per_element(isa, mode, group_size, activation):
    g = torch.Generator().manual_seed(7)
    lin = nn.Linear(K, N)
    with torch.no_grad():
        lin.weight[:, 4] = 0  # a zero weight column: inf * 0 = NaN in float, and so here
    mod = Int8Linear.from_linear(lin, slimnn.Int8Config(mode=mode, group_size=group_size), activation=activation)
    x = hostile_rows(K, g)
    with slimnn.isa.forced(isa), torch.no_grad():
        y = mod(x)
        clean = mod(x[CLEAN_ROWS])
    ref = float_reference(mod, x)
    what = f"{isa} {mode} gs={group_size} act={activation}"
    assert_same_nonfinite(y, ref, what)
    fin = torch.isfinite(ref[BAD_ROWS])
    got, want = y[BAD_ROWS][fin], ref[BAD_ROWS][fin]
    assert torch.allclose(got, want, rtol=1e-4, atol=1e-4 * float(want.abs().max())), what  # float32 sums
    assert torch.equal(y[CLEAN_ROWS], clean), what  # the other rows: the integer kernels, unchanged
    assert bool(torch.isfinite(y[CLEAN_ROWS]).all()), what
    x[1, 4] = 1.0  # the +inf of row 1 meets a nonzero column only: the whole row is +-inf, no NaN at all
    with slimnn.isa.forced(isa), torch.no_grad():
        y1 = mod(x[1:2])
    assert_same_nonfinite(y1, float_reference(mod, x[1:2]), what + " row 1")


@pytest.mark.parametrize("mode", ["dynamic", "weight_only"])
def test_same_on_every_isa_threads_and_bf16(mode):
    """The fallback rows are bit-identical across ISAs and thread counts (one portable float loop), for
    float32 and bfloat16 inputs and for many rows (both work splits of the dynamic driver)."""
    g = torch.Generator().manual_seed(3)
    mod = Int8Linear.from_linear(nn.Linear(K, N), slimnn.Int8Config(mode=mode))
    x = torch.cat([hostile_rows(K, g)] * 20)  # 240 rows
    for dt in (torch.float32, torch.bfloat16):
        outs = []
        for isa in ISAS:
            for threads in (1, 2):
                slimnn.set_num_threads(threads)
                with slimnn.isa.forced(isa), torch.no_grad():
                    outs.append(mod(x.to(dt)).float())
        for o in outs[1:]:
            bad = torch.tensor(BAD_ROWS * 0 + [r + 12 * i for i in range(20) for r in BAD_ROWS])
            assert torch.equal(o[bad].nan_to_num(nan=7.0), outs[0][bad].nan_to_num(nan=7.0)), (mode, dt)
        assert_same_nonfinite(outs[0], float_reference(mod, x.to(dt)), f"{mode} {dt}")


def test_op_and_torch_op_follow_the_policy():
    """torch.ops.slimnn.q8_linear (the autograd / compile path) and slimnn.ops.q8_linear take the same
    driver."""
    mod = Int8Linear.from_linear(nn.Linear(K, N))
    x = hostile_rows(K, torch.Generator().manual_seed(1))
    ref = float_reference(mod, x)
    y1 = torch.ops.slimnn.q8_linear(x, mod.packed, mod.bias, "dynamic", N)
    y2 = ops.q8_linear(x, mod.packed, mod.bias, "dynamic", N)
    assert_same_nonfinite(y1, ref, "torch.ops")
    assert_same_nonfinite(y2, ref, "ops")
