"""Low-rank: factorization math, the fused kernels (every path against the reference), LowRankLinear, compress_."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import slimnn
from slimnn import _C
from slimnn.math import calibration
from slimnn.math import lowrank
from slimnn.math import reference
from slimnn.nn import LowRankLinear
from slimnn.ops.lowrank import lowrank_linear_with_kernel

F32_KERNELS = [k["name"] for k in _C.lowrank_kernels()]
KERNEL_ISA = {k["name"]: k["isa"] for k in _C.lowrank_kernels()}
AVAILABLE = {k["name"]: k["available"] for k in _C.lowrank_kernels()}
SENTINEL = -12345.0


def _assert_close_bound(y, x, u, v, b=None):  # noqa: ANN001
    """|y - exact| <= gamma * (|x| |V|^T) |U|^T elementwise: the classic bound for float sums of k then r products
    (gamma = 2 (k + r) eps, slack for the partial-sum tree and the intermediate's own rounding)."""
    want = reference.lowrank_linear(x, u, v, b)
    bound = (x.double().abs() @ v.double().abs().t()) @ u.double().abs().t()
    if b is not None:
        bound = bound + b.double().abs()
    gamma = 2 * (x.shape[1] + u.shape[1] + 2) * torch.finfo(torch.float32).eps
    err = (y.double() - want.double()).abs()
    assert bool((err <= gamma * bound + 1e-30).all()), float((err / (bound + 1e-30)).max())


def _run_f32(x, u, v, bias, kernel="", ldx=None, ldy=None, residual=None):  # noqa: ANN001, ANN202
    m, k = x.shape
    n, r = u.shape
    ldx = ldx or k
    ldy = ldy or n
    xs = torch.full((max(m, 1), ldx), float("nan"))  # strided input, NaN between rows' ends
    xs[:m, :k] = x
    y = torch.full((max(m, 1), ldy), SENTINEL)
    res = (0, 0, 0, 0)
    if residual is not None:
        rp, col, val = residual
        res = (rp.data_ptr(), col.data_ptr(), val.data_ptr(), col.numel())
    b = 0 if bias is None else bias.data_ptr()
    name = _C.lowrank_f32_linear(
        xs.data_ptr(), m, ldx, n, k, r, u.data_ptr(), v.data_ptr(), b, y.data_ptr(), ldy, slimnn.get_num_threads(),
        kernel, *res,
    )
    if ldy > n and m > 0:
        assert bool((y[:m, n:] == SENTINEL).all()), "kernel wrote past N"
    return y[:m, :n], name


# ---------------------------------------------------------------- reference


def test_reference_matches_float_math():
    g = torch.Generator().manual_seed(1)
    x, u, v, b = (torch.randn(*s, generator=g) for s in ((5, 24), (12, 6), (6, 24), (12,)))
    s = torch.randn(12, 24, generator=g) * (torch.rand(12, 24, generator=g) < 0.1)
    want = torch.nn.functional.linear(x.double(), (u.double() @ v.double() + s.double()), b.double())
    got = reference.lowrank_linear(x, u, v, b, s)
    torch.testing.assert_close(got, want.float(), rtol=1e-6, atol=1e-6)


def test_reference_q8_is_two_q8_products():
    g = torch.Generator().manual_seed(2)
    u, v = torch.randn(16, 8, generator=g), torch.randn(8, 40, generator=g)
    x = torch.randn(3, 40, generator=g)
    from slimnn.math.quantize import quantize_int8_symmetric

    qu, su = quantize_int8_symmetric(u)
    qv, sv = quantize_int8_symmetric(v)
    for mode in ("dynamic", "weight_only"):
        y = reference.lowrank_q8_linear(x, qu, su, qv, sv, mode)
        exact = x.double() @ (u.double() @ v.double()).t()
        assert ((y.double() - exact).norm() / exact.norm()).item() < 0.03


# ---------------------------------------------------------------- fp32 kernels, every path

SHAPES = [  # (M, K, N, r): zero rows, single elements, tails around 4/8/16 lanes and the 1x8 / 4x4 / 3x4 tiles
    (0, 8, 4, 2), (1, 1, 1, 1), (1, 7, 3, 1), (1, 16, 8, 8), (1, 17, 9, 9), (2, 15, 5, 3), (3, 33, 17, 5),
    (4, 8, 4, 4), (5, 31, 13, 7), (7, 100, 33, 17), (9, 64, 65, 16), (13, 129, 10, 33), (17, 48, 24, 12),
    (1, 300, 70, 40), (65, 40, 20, 6),
]


@pytest.mark.parametrize("kernel", F32_KERNELS)
@pytest.mark.parametrize("shape", SHAPES)
def test_f32_kernel_matches_reference(kernel, shape):
    if not AVAILABLE[kernel]:
        pytest.skip(f"{KERNEL_ISA[kernel]} not on this CPU")
    m, k, n, r = shape
    g = torch.Generator().manual_seed(m * 1000 + k)
    x, u, v, b = (torch.randn(*s, generator=g) for s in ((m, k), (n, r), (r, k), (n,)))
    y, name = _run_f32(x, u, v, b, kernel, ldx=k + 3, ldy=n + 5)
    assert name == kernel
    _assert_close_bound(y, x, u, v, b)


@settings(max_examples=30, deadline=None)
@given(
    m=st.integers(0, 9), k=st.integers(1, 70), n=st.integers(1, 40), r=st.integers(1, 20),
    idx=st.integers(0, len(F32_KERNELS) - 1), threads=st.integers(1, 3),
)
def test_f32_kernels_hypothesis(m, k, n, r, idx, threads):
    kernel = F32_KERNELS[idx]
    if not AVAILABLE[kernel]:
        return
    slimnn.set_num_threads(threads)
    g = torch.Generator().manual_seed(k * 31 + n)
    x, u, v = (torch.randn(*s, generator=g) for s in ((m, k), (n, r), (r, k)))
    y, _ = _run_f32(x, u, v, None, kernel)
    _assert_close_bound(y, x, u, v)
    slimnn.set_num_threads(None)


@pytest.mark.parametrize("isa", ["avx512", "avx2", "portable"])
def test_f32_kernels_of_one_isa_agree_bitwise_across_tiles_and_threads(isa):
    """Each output is one accumulator with a fixed summation order, whatever the tile or thread count."""
    names = [k for k in F32_KERNELS if KERNEL_ISA[k] == isa]
    if not names or not all(AVAILABLE[k] for k in names):
        pytest.skip(f"{isa} not on this CPU or not built")
    g = torch.Generator().manual_seed(3)
    x, u, v, b = (torch.randn(*s, generator=g) for s in ((11, 203), (77, 29), (29, 203), (77,)))
    outs = []
    for kernel in names:
        for threads in (1, 2, 3):
            slimnn.set_num_threads(threads)
            outs.append(_run_f32(x, u, v, b, kernel)[0])
    for o in outs[1:]:
        assert torch.equal(o, outs[0])


def test_selection_follows_forced_isa():
    for isa in slimnn.isa.available():
        with slimnn.isa.forced(isa):
            for m in (1, 16):
                name = _C.lowrank_select_kernel(m)
                want = isa if isa in ("avx2", "avx512", "portable") else ("avx512" if "avx512" in isa else "avx2")
                assert name.endswith("__" + want) or (want == "avx2" and isa == "avxvnni"), (isa, m, name)
                if m == 1 and want != "portable":
                    assert "_1x8__" in name


def test_unavailable_or_unknown_kernel_is_an_error():
    x, u, v = torch.randn(1, 8), torch.randn(4, 2), torch.randn(2, 8)
    with pytest.raises(ValueError, match="unknown lowrank kernel"):
        _run_f32(x, u, v, None, "nope")


def test_f32_residual_matches_reference():
    g = torch.Generator().manual_seed(4)
    w = torch.randn(37, 53, generator=g)
    f = lowrank.factorize(w, rank=5)
    rp, col, val = lowrank.sparse_residual(w, f.u, f.v, 0.07)
    s = lowrank.csr_to_dense(rp, col, val, 37, 53)
    x = torch.randn(6, 53, generator=g)
    for kernel in F32_KERNELS:
        if AVAILABLE[kernel]:
            y, _ = _run_f32(x, f.u, f.v, None, kernel, residual=(rp, col, val))
            torch.testing.assert_close(y, reference.lowrank_linear(x, f.u, f.v, None, s), rtol=1e-5, atol=1e-4)


def test_f32_nonfinite_inputs_propagate():
    u, v = torch.randn(6, 2), torch.randn(2, 9)
    x = torch.randn(3, 9)
    x[1, 4] = float("nan")
    y, _ = _run_f32(x, u, v, None)
    assert bool(torch.isnan(y[1]).all()) and bool(torch.isfinite(y[[0, 2]]).all())


# ---------------------------------------------------------------- int8 factors, every ISA


def _q8_module(n, k, r, mode, seed=0):  # noqa: ANN001, ANN202
    g = torch.Generator().manual_seed(seed)
    u, v = torch.randn(n, r, generator=g), torch.randn(r, k, generator=g)
    b = torch.randn(n, generator=g)
    cfg = slimnn.LowRankConfig(rank=r, factor_dtype="int8", int8_mode=mode)
    return LowRankLinear.from_factors(u, v, b, cfg)


@pytest.mark.parametrize("mode", ["dynamic", "weight_only"])
@pytest.mark.parametrize("shape", [(1, 5, 3, 1), (1, 64, 64, 16), (3, 37, 21, 9), (4, 130, 17, 33), (9, 16, 70, 4)])
def test_q8_factors_match_reference_on_every_isa(mode, shape):
    m, k, n, r = shape
    mod = _q8_module(n, k, r, mode, seed=k)
    x = torch.randn(m, k, generator=torch.Generator().manual_seed(m))
    want = mod._forward_reference(x)
    for isa in slimnn.isa.available():
        for threads in (1, 2):
            slimnn.set_num_threads(threads)
            with slimnn.isa.forced(isa):
                y, name = lowrank_linear_with_kernel(x, mod.packed_u, mod.packed_v, mod.bias, None, None, None,
                                                     mod.factors, n)
            assert name.startswith(f"lowrank_q8_{mode}[")
            err = (y - want).norm() / want.norm()
            if mode == "weight_only":
                torch.testing.assert_close(y, want, rtol=1e-5, atol=1e-4)
            else:  # t is requantized: a rounding tie in t may flip one level, nothing more
                assert err.item() < 2e-3, (isa, err.item())


def test_q8_nonfinite_row_gives_nan_row():
    mod = _q8_module(16, 24, 4, "dynamic")
    x = torch.randn(3, 24)
    x[2, 0] = float("inf")
    y = mod(x)
    assert bool(torch.isnan(y[2]).all()) and bool(torch.isfinite(y[:2]).all())


# ---------------------------------------------------------------- factorization math


def _decaying(n, k, seed=0, decay=0.9):  # noqa: ANN001, ANN202
    g = torch.Generator().manual_seed(seed)
    p = torch.linalg.qr(torch.randn(n, min(n, k), generator=g)).Q
    q = torch.linalg.qr(torch.randn(k, min(n, k), generator=g)).Q
    s = decay ** torch.arange(min(n, k), dtype=torch.float32)
    return (p * s) @ q.t()


def test_svd_is_optimal_and_error_estimate_is_exact():
    w = _decaying(60, 40)
    f = lowrank.factorize(w, rank=7, solver="full")
    err = ((w - f.u @ f.v).norm() / w.norm()).item()
    assert abs(err - f.rel_error) < 1e-4
    s = torch.linalg.svdvals(w.double())
    assert abs(err - (s[7:].pow(2).sum() / s.pow(2).sum()).sqrt().item()) < 1e-4


def test_rank_selection_modes():
    w = _decaying(50, 80, decay=0.8)
    s = torch.linalg.svdvals(w.double())
    energy = (s.pow(2).cumsum(0) / s.pow(2).sum()).tolist()
    assert lowrank.factorize(w, rank=9).rank == 9
    assert lowrank.factorize(w, rank=500).rank == 50
    assert lowrank.factorize(w, rank_ratio=0.5).rank == math.floor(0.5 * 50 * 80 / 130)
    assert lowrank.rank_for_ratio(4096, 4096, 0.5) == 1024
    f = lowrank.factorize(w, energy=0.99)
    assert energy[f.rank - 1] >= 0.99 - 1e-9 and energy[f.rank - 2] < 0.99
    f = lowrank.factorize(w, max_error=0.05)
    assert f.rel_error <= 0.05 + 1e-6
    assert lowrank.factorize(w, rank=f.rank - 1).rel_error > 0.05
    with pytest.raises(ValueError, match="exactly one"):
        lowrank.choose_rank(s, 1.0, 50, 80, rank=3, energy=0.5)


def test_randomized_svd_is_accurate_and_auto_uses_it_for_small_ranks():
    w = _decaying(300, 200, decay=0.97)
    full = lowrank.factorize(w, rank=20, solver="full")
    rnd = lowrank.factorize(w, rank=20, solver="randomized")
    err = lambda f: ((w - f.u @ f.v).norm() / w.norm()).item()  # noqa: E731
    assert err(rnd) <= err(full) * 1.005
    assert lowrank._solver_for("auto", 300, 200, 20) == "randomized"
    assert lowrank._solver_for("auto", 4096, 4096, 1024) == "full"
    # energy mode through the randomized path falls back to full when the prefix is too short
    f = lowrank.factorize(w, energy=0.9999, solver="randomized")
    assert f.rank == lowrank.factorize(w, energy=0.9999, solver="full").rank


def _correlated_inputs(n_rows, k, seed):  # noqa: ANN001, ANN202
    """Samples (seeded) from one fixed distribution: 8 latent factors mixed into k features, plus noise."""
    mix = torch.randn(8, k, generator=torch.Generator().manual_seed(1234))
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n_rows, 8, generator=g) @ mix + 0.1 * torch.randn(n_rows, k, generator=g)
    x[:, :3] *= 15  # outlier features, as in transformer activations
    return x


def test_activation_aware_beats_svd_on_correlated_inputs():
    g = torch.Generator().manual_seed(5)
    w = torch.randn(64, 96, generator=g) / 10
    calib, held_out = _correlated_inputs(2000, 96, 6), _correlated_inputs(500, 96, 7)
    gram, n = lowrank.input_gram(calib)
    plain = lowrank.factorize(w, rank=6)
    aware = lowrank.factorize(w, rank=6, method="activation_aware", gram=gram, n_rows=n, damping=1e-4)
    out_err = lambda f: ((held_out @ (w - f.u @ f.v).t()).norm() / (held_out @ w.t()).norm()).item()  # noqa: E731
    assert out_err(aware) < 0.5 * out_err(plain)
    assert abs(aware.rel_error - out_err(aware)) < 0.05  # the whitened spectrum predicts the output error


def _train_digits_mlp():  # noqa: ANN202
    datasets = pytest.importorskip("sklearn.datasets")
    d = datasets.load_digits()
    x = torch.tensor(d.data, dtype=torch.float32) / 16.0
    y = torch.tensor(d.target)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 10))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    xtr, ytr, xte, yte = x[:1400], y[:1400], x[1400:], y[1400:]
    for _ in range(120):
        opt.zero_grad()
        nn.functional.cross_entropy(model(xtr), ytr).backward()
        opt.step()
    return model.eval(), xtr, xte, yte


def test_activation_aware_beats_svd_on_real_activations():
    """Real data (scikit-learn's 8x8 handwritten digits) through a trained MLP: the hidden layer's inputs are
    real post-ReLU activations. At the same rank, whitening gives a lower output error on held-out digits."""
    model, xtr, xte, yte = _train_digits_mlp()
    layer = model[2]
    stats = calibration.capture_linear_inputs(model, {"2": layer}, [xtr], keep_rows=10**6)["2"]
    test_in = calibration.capture_linear_inputs(model, {"2": layer}, [xte], gram=False, keep_rows=10**6)["2"].inputs()
    w = layer.weight.detach()
    for r in (8, 16):
        plain = lowrank.factorize(w, rank=r)
        aware = lowrank.factorize(w, rank=r, method="activation_aware", gram=stats.gram, n_rows=stats.n_rows)
        err = lambda f: ((test_in @ (w - f.u @ f.v).t()).norm() / (test_in @ w.t()).norm()).item()  # noqa: E731
        assert err(aware) < 0.8 * err(plain), (r, err(aware), err(plain))
    # and end to end through compress_: the compressed classifier's logits and accuracy on held-out digits
    with torch.no_grad():
        want = model(xte)
    errs, accs = {}, {}
    for method in ("svd", "activation_aware"):
        m = copy.deepcopy(model)
        cfg = slimnn.LowRankConfig(rank=8, method=method, calib_data=[xtr], progress=False)
        rep = slimnn.compress_(m, cfg, filter_fn=lambda mod, fqn: fqn == "2")
        assert rep.converted == {"2": "LowRankLinear"}
        with torch.no_grad():
            out = m(xte)
        errs[method] = ((out - want).norm() / want.norm()).item()
        accs[method] = (out.argmax(1) == yte).float().mean().item()
    assert errs["activation_aware"] < errs["svd"]
    # Accuracy is too coarse (a few digits flip either way at rank 8 of 128) to order the methods; it must stay sane.
    acc_float = (want.argmax(1) == yte).float().mean().item()
    assert accs["activation_aware"] >= acc_float - 0.1


def test_whitening_damping_handles_rank_deficient_inputs():
    x = torch.randn(5, 20)  # 5 rows: X^T X has rank 5
    gram, n = lowrank.input_gram(x)
    l64 = lowrank.whitening(gram, n, damping=0.0)  # raised until Cholesky succeeds
    assert bool(torch.isfinite(l64).all())
    with pytest.raises(ValueError, match="0 rows"):
        lowrank.whitening(gram, 0)


def test_sparse_residual_keeps_largest_entries():
    w = _decaying(30, 40)
    f = lowrank.factorize(w, rank=3)
    rp, col, val = lowrank.sparse_residual(w, f.u, f.v, 0.1)
    assert col.numel() == 120 and rp[-1].item() == 120
    s = lowrank.csr_to_dense(rp, col, val, 30, 40)
    r = w - f.u @ f.v
    assert (r - s).norm() < r.norm()
    assert float(s.abs()[s != 0].min()) >= float((r - s).abs().max()) - 1e-7


def test_capture_linear_inputs_matches_direct_gram_and_removes_hooks():
    model = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 4))
    batches = [torch.randn(3, 6), (torch.randn(2, 7, 6),)]
    stats = calibration.capture_linear_inputs(model, [("0", model[0]), ("2", model[2])], batches, keep_rows=100)
    x = torch.cat([batches[0], batches[1][0].reshape(-1, 6)])
    assert stats["0"].n_rows == 17
    torch.testing.assert_close(stats["0"].gram, x.double().t() @ x.double())
    with torch.no_grad():
        h = model[1](model[0](x))
    torch.testing.assert_close(stats["2"].inputs(), h)
    assert not model[0]._forward_pre_hooks and not model[2]._forward_pre_hooks


# ---------------------------------------------------------------- module, API


def _mlp():  # noqa: ANN202
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(64, 96), nn.GELU(), nn.Linear(96, 64), nn.GELU(), nn.Linear(64, 8)).eval()


@pytest.mark.parametrize("factor_dtype,mode", [("float32", "dynamic"), ("int8", "dynamic"), ("int8", "weight_only")])
def test_module_matches_its_reference_and_float(factor_dtype, mode):
    lin = nn.Linear(70, 50)
    lin.weight.data = _decaying(50, 70, decay=0.8)
    cfg = slimnn.LowRankConfig(rank=20, factor_dtype=factor_dtype, int8_mode=mode, sparse_residual=0.02)
    mod = LowRankLinear.from_linear(lin, cfg)
    x = torch.randn(2, 3, 70)
    y = mod(x)
    assert y.shape == (2, 3, 50)
    ref = LowRankLinear.from_linear(lin, cfg).__class__._forward_reference(mod, x)
    tol = 1e-4 if factor_dtype == "float32" or mode == "weight_only" else 5e-3
    assert ((y - ref).norm() / ref.norm()).item() < tol
    with torch.no_grad():
        dense = lin(x)
    sqnr = 10 * math.log10(dense.pow(2).sum() / (y - dense).pow(2).sum())
    assert sqnr > (30 if factor_dtype == "float32" else 20)
    assert mod.kernel_name(1) and "kernel=" in repr(mod) and mod.last_kernel


def test_storage_is_reported():
    lin = nn.Linear(256, 128)
    fp = LowRankLinear.from_linear(lin, slimnn.LowRankConfig(rank=32))
    assert fp.storage_bytes() == (128 * 32 + 32 * 256 + 128) * 4
    q = LowRankLinear.from_linear(lin, slimnn.LowRankConfig(rank=32, factor_dtype="int8"))
    assert q.storage_bytes() < fp.storage_bytes() / 3


@pytest.mark.parametrize("factor_dtype", ["float32", "int8"])
def test_state_dict_round_trip(factor_dtype, tmp_path):
    lin = nn.Linear(40, 30)
    mod = LowRankLinear.from_linear(lin, slimnn.LowRankConfig(rank=7, factor_dtype=factor_dtype, sparse_residual=0.05))
    path = tmp_path / "m.pt"
    torch.save(mod.state_dict(), path)
    other = LowRankLinear(40, 30, rank=3, config=slimnn.LowRankConfig(rank=3, factor_dtype=factor_dtype))
    other.load_state_dict(torch.load(path))
    x = torch.randn(4, 40)
    torch.testing.assert_close(other(x), mod(x), rtol=0, atol=0)
    assert other.rank == 7 and other.residual_col.numel() == mod.residual_col.numel()
    # loading factors without a residual drops the residual
    sd = {k: v for k, v in mod.state_dict().items() if not k.startswith("residual")}
    other.load_state_dict(sd)
    assert other.residual_rowptr is None


def test_state_dict_validation():
    mod = LowRankLinear.from_linear(nn.Linear(40, 30), slimnn.LowRankConfig(rank=5, sparse_residual=0.05))
    good = mod.state_dict()
    bad = dict(good, weight_u=torch.randn(31, 5))
    with pytest.raises(RuntimeError, match="40->31"):
        LowRankLinear(40, 30, 5).load_state_dict(bad)
    bad = dict(good, weight_v=torch.full((5, 40), float("nan")))
    with pytest.raises(RuntimeError, match="NaN"):
        LowRankLinear(40, 30, 5).load_state_dict(bad)
    col = good["residual_col"].clone()
    col[0] = 40
    with pytest.raises(RuntimeError, match="column index out of range"):
        LowRankLinear(40, 30, 5).load_state_dict(dict(good, residual_col=col))
    q = LowRankLinear.from_linear(nn.Linear(40, 30), slimnn.LowRankConfig(rank=5, factor_dtype="int8"))
    sd = q.state_dict()
    blob = sd["packed_u"].clone()
    blob[200] ^= 1
    with pytest.raises(RuntimeError, match="corrupt|column sums"):
        LowRankLinear(40, 30, 5).load_state_dict(dict(sd, packed_u=blob))
    with pytest.raises(RuntimeError, match="truncated|shorter"):
        LowRankLinear(40, 30, 5).load_state_dict(dict(sd, packed_v=sd["packed_v"][:100]))


def test_bad_inputs_raise_clear_errors():
    mod = LowRankLinear.from_linear(nn.Linear(16, 8), slimnn.LowRankConfig(rank=4))
    with pytest.raises(ValueError, match="in_features=16"):
        mod(torch.randn(2, 15))
    with pytest.raises(TypeError, match="dtype"):
        mod(torch.ones(2, 16, dtype=torch.int32))
    with pytest.raises(ValueError, match="rank must match|need u"):
        lowrank_linear_with_kernel(torch.randn(1, 16), torch.randn(8, 4), torch.randn(3, 16), None, None, None, None,
                                   "float32", 8)
    with pytest.raises(ValueError, match="bias"):
        lowrank_linear_with_kernel(torch.randn(1, 16), mod.weight_u, mod.weight_v, torch.randn(9), None, None, None,
                                   "float32", 8)
    with pytest.raises(ValueError, match="together"):
        lowrank_linear_with_kernel(torch.randn(1, 16), mod.weight_u, mod.weight_v, None, torch.zeros(9, dtype=torch.int64),
                                   None, None, "float32", 8)
    rp = torch.zeros(9, dtype=torch.int64)
    rp[-1] = 1  # ends at nnz=1 but decreases nowhere... starts at 0; col has 2 entries: mismatch with rowptr[n]
    with pytest.raises(ValueError, match="nnz"):
        lowrank_linear_with_kernel(torch.randn(1, 16), mod.weight_u, mod.weight_v, None, rp,
                                   torch.zeros(2, dtype=torch.int32), torch.zeros(2), "float32", 8)
    with pytest.raises(ValueError, match="factors must be one of"):
        lowrank_linear_with_kernel(torch.randn(1, 16), mod.weight_u, mod.weight_v, None, None, None, None, "fp8", 8)
    for bad in (dict(rank=0), dict(rank=3, energy=0.9), dict(energy=1.5), dict(method="x"), dict(factor_dtype="int4"),
                dict(sparse_residual=-0.1), dict(solver="magic"), dict(max_error=1.0)):
        with pytest.raises(ValueError):
            slimnn.LowRankConfig(**bad)
    with pytest.raises(ValueError, match="calib_data"):
        slimnn.compress_(_mlp(), slimnn.LowRankConfig(method="activation_aware", progress=False))
    with pytest.raises(ValueError, match="calibration"):
        LowRankLinear.from_linear(nn.Linear(4, 4), slimnn.LowRankConfig(rank=1, method="activation_aware"))


def test_dtypes_and_leading_dims():
    mod = LowRankLinear.from_linear(nn.Linear(16, 8), slimnn.LowRankConfig(rank=4))
    x = torch.randn(2, 3, 16)
    y = mod(x)
    for dt in (torch.bfloat16, torch.float16, torch.float64):
        yd = mod(x.to(dt))
        assert yd.dtype == dt and yd.shape == (2, 3, 8)
        torch.testing.assert_close(yd.float(), y, rtol=0.05, atol=0.05)
    xt = torch.randn(16, 5).t()  # non-contiguous
    torch.testing.assert_close(mod(xt), mod(xt.contiguous()))
    assert mod(torch.zeros(0, 16)).shape == (0, 8)


def test_config_json_round_trip():
    from slimnn.configs import config_from_json

    cfg = slimnn.LowRankConfig(energy=0.95, method="activation_aware", factor_dtype="int8", calib_data=[1, 2])
    back = config_from_json(cfg.to_json())
    assert back == cfg and back.calib_data is None
    assert slimnn.LowRankConfig().rank_ratio == 0.5


def test_compress_converts_skips_and_keeps_outputs_close():
    model = _mlp()
    x = torch.randn(5, 64)
    with torch.no_grad():
        want = model(x)
    rep = slimnn.compress_(model, slimnn.LowRankConfig(rank=24, progress=False))
    assert rep.converted == {"0": "LowRankLinear", "2": "LowRankLinear"}
    assert "saves nothing" in rep.skipped["4"]  # 64 -> 8: rank 8 (capped) costs more than the dense layer
    assert isinstance(model[0], LowRankLinear) and isinstance(model[4], nn.Linear)
    with torch.no_grad():
        got = model(x)
    assert got.shape == want.shape and bool(torch.isfinite(got).all())


def test_compress_activation_aware_with_calib_data():
    model = _mlp()
    data = [_correlated_inputs(64, 64, s) for s in range(4)]
    held = _correlated_inputs(64, 64, 99)
    with torch.no_grad():
        want = model(held)
    errs = {}
    for method in ("svd", "activation_aware"):
        m = copy.deepcopy(model)
        slimnn.compress_(m, slimnn.LowRankConfig(rank=8, method=method, calib_data=data, progress=False),
                         filter_fn=lambda mod, fqn: fqn in ("0", "2"))
        with torch.no_grad():
            errs[method] = ((m(held) - want).norm() / want.norm()).item()
    assert errs["activation_aware"] < errs["svd"]


def test_progress_bar_can_be_shown_and_silenced(capsys):
    model = _mlp()
    slimnn.compress_(copy.deepcopy(model), slimnn.LowRankConfig(rank=8, progress=True))
    shown = capsys.readouterr().err
    slimnn.compress_(copy.deepcopy(model), slimnn.LowRankConfig(rank=8, progress=False))
    assert "low-rank" in shown and capsys.readouterr().err == ""


def test_autograd_through_the_op():
    mod = LowRankLinear.from_linear(nn.Linear(12, 6), slimnn.LowRankConfig(rank=3, sparse_residual=0.1))
    x = torch.randn(4, 12, requires_grad=True)
    mod(x).sum().backward()
    w = mod.weight()
    torch.testing.assert_close(x.grad, torch.ones(4, 6) @ w, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("factor_dtype", ["float32", "int8"])
def test_opcheck(factor_dtype):
    mod = LowRankLinear.from_linear(nn.Linear(12, 6), slimnn.LowRankConfig(rank=3, factor_dtype=factor_dtype,
                                                                           sparse_residual=0.1))
    u, v = mod._uv()
    args = (torch.randn(3, 12), u, v, mod.bias, mod.residual_rowptr, mod.residual_col, mod.residual_val,
            mod.factors, 6)
    torch.library.opcheck(torch.ops.slimnn.lowrank_linear.default, args)


def test_compile_and_export():
    model = _mlp()
    slimnn.compress_(model, slimnn.LowRankConfig(rank=16, progress=False), filter_fn=lambda m, f: f != "4")
    x = torch.randn(3, 64)
    with torch.no_grad():
        want = model(x)
        compiled = torch.compile(model, backend="aot_eager", fullgraph=True)
        torch.testing.assert_close(compiled(x), want)
    ep = torch.export.export(model, (x,))
    assert "slimnn.lowrank_linear" in str(ep.graph)
    torch.testing.assert_close(ep.module()(x), want)


def test_kernels_listed_and_cpu_info():
    names = [k["name"] for k in slimnn.kernels()]
    assert "lowrank_f32_1x4__portable" in names
    assert slimnn.cpu_info()["ops"]["lowrank_float32"][1]
