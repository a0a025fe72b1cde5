"""Sparse: pruning criteria, formats (pack/unpack, validation), every spmm kernel against the reference,
SparseLinear, compress_ (composition with int8, global/per-layer targets, structured), compile/export."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

import slimnn
from slimnn import _C, prune
from slimnn.math import reference
from slimnn.ops import sparse as sparse_ops
from slimnn.formats import sparse as sf
from slimnn.configs import SparseConfig, config_from_json
from slimnn.nn import SparseLinear

EPS = torch.finfo(torch.float32).eps
FORMATS = ["csr", "bsr1x4", "bsr1x8", "bsr4x1", "bsr16x1", "nm2:4", "nm4:8", "nm1:4", "nm3:16"]
KERNELS = _C.spmm_kernels()


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def pruned(n: int, k: int, fmt: str, density: float = 0.1, seed: int = 0) -> torch.Tensor:
    """A random float32 matrix whose zeros fit ``fmt``."""
    g = gen(seed)
    w = torch.randn(n, k, generator=g)
    kind, (a, b) = sf.parse_format(fmt)
    if kind == "nm":
        return w * prune.mask_nm(torch.rand(n, k, generator=g), a, b)
    if kind == "bsr":
        bm = torch.rand(-(-n // a), -(-k // b), generator=g) < density
        return w * prune.expand_block_mask(bm, a, b, n, k)
    return w * (torch.rand(n, k, generator=g) < density)


def quantized(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    q, s = slimnn.math.quantize.quantize_int8_symmetric(w)
    return q, s[0]


def pack(w: torch.Tensor, fmt: str, values: str, index_bits=None):
    """(blob, dense float32 weights the blob stands for)."""
    if values == "int8":
        q, s = quantized(w)
        return sf.pack_sparse(q, fmt, scales=s, index_bits=index_bits), q.float() * s[:, None]
    return sf.pack_sparse(w, fmt, index_bits=index_bits), w


def assert_close(y: torch.Tensor, x: torch.Tensor, w: torch.Tensor, bias=None) -> None:
    """Float results: within 8 sqrt(K) eps of the magnitude sum |x| |W|^T of each output."""
    ref = reference.sparse_linear(x, w, None, bias)
    k = max(1, w.shape[1])
    bound = 8 * math.sqrt(k) * EPS * (x.abs().double() @ w.abs().double().t()).float() + 1e-6
    if bias is not None:
        bound = bound + EPS * bias.abs()
    finite = torch.isfinite(ref)
    assert torch.equal(finite, torch.isfinite(y)), "NaN rows differ"
    err = (y - ref).abs()[finite]
    assert bool((err <= bound[finite]).all()), f"max err {err.max().item():.3e}"


# ---------------------------------------------------------------------------------------------- reference


def test_reference_matches_float_math():
    w = pruned(13, 29, "csr", 0.3)
    x = torch.randn(5, 29, generator=gen(1))
    b = torch.randn(13, generator=gen(2))
    y = reference.sparse_linear(x, w, None, b)
    expect = [[sum(float(x[i, k]) * float(w[j, k]) for k in range(29)) + float(b[j]) for j in range(13)] for i in range(5)]
    assert torch.allclose(y, torch.tensor(expect), atol=1e-5)
    q, s = quantized(w)
    y8 = reference.sparse_linear(x, q, s)
    assert torch.allclose(y8, x @ (q.float() * s[:, None]).t(), atol=1e-5)
    x[2, 3] = float("inf")
    y = reference.sparse_linear(x, w)
    assert torch.isnan(y[2]).all() and torch.isfinite(y[[0, 1, 3, 4]]).all()


# ---------------------------------------------------------------------------------------------- pruning


def test_magnitude_unstructured_exact_count_and_largest_kept():
    w = torch.randn(40, 50, generator=gen(3))
    for s in (0.0, 0.37, 0.9):
        keep = prune.prune_mask(w, "unstructured", s)
        assert int((~keep).sum()) == round(s * w.numel())
        if 0 < s:
            assert w.abs()[keep].min() >= w.abs()[~keep].max()


def test_ties_are_deterministic():
    w = torch.ones(4, 8)
    keep = prune.prune_mask(w, "unstructured", 0.5)
    assert torch.equal(keep.reshape(-1), torch.arange(32) >= 16)  # lower positions pruned first


def test_wanda_scores_and_per_row_counts():
    w = torch.randn(16, 32, generator=gen(4))
    norm = torch.rand(32, generator=gen(5)) * 3
    keep = prune.prune_mask(w, "unstructured", 0.75, "wanda", norm)
    assert (keep.sum(dim=1) == 8).all()
    sc = w.abs() * norm
    for r in range(16):
        assert sc[r][keep[r]].min() >= sc[r][~keep[r]].max()
    with pytest.raises(ValueError, match="calibrate_"):
        prune.prune_mask(w, "unstructured", 0.5, "wanda")
    with pytest.raises(ValueError, match="entries"):
        prune.prune_mask(w, "unstructured", 0.5, "wanda", torch.ones(31))


def test_calibrate_records_input_norms():
    model = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3))
    batches = [torch.randn(4, 6, generator=gen(i)) for i in range(3)]
    norms = prune.calibrate_(model, batches)
    xs = torch.cat(batches)
    assert torch.allclose(norms["0"], xs.norm(dim=0), rtol=1e-5)
    h = torch.relu(model[0](xs))
    assert torch.allclose(model[2]._slimnn_input_norm, h.norm(dim=0), rtol=1e-4)
    assert "_slimnn_input_norm" not in model.state_dict()


@pytest.mark.parametrize("n_keep,m", [(2, 4), (4, 8), (1, 4), (3, 16)])
def test_nm_mask(n_keep, m):
    w = torch.randn(9, 37, generator=gen(6))
    keep = prune.prune_mask(w, f"{n_keep}:{m}")
    kp = -(-37 // m) * m
    kk = torch.nn.functional.pad(keep, (0, kp - 37)).reshape(9, -1, m)
    assert (kk.sum(dim=2)[:, : 37 // m] == n_keep).all()
    assert (kk.sum(dim=2) <= n_keep).all()
    wa = torch.nn.functional.pad(w.abs(), (0, kp - 37), value=-1).reshape(9, -1, m)
    kept_min = torch.where(kk, wa, torch.full_like(wa, float("inf"))).amin(dim=2)
    pruned_max = torch.where(~kk, wa, torch.full_like(wa, -float("inf"))).amax(dim=2)
    assert (kept_min >= pruned_max).all()


@pytest.mark.parametrize("r,c", sf.BLOCKS)
def test_block_mask(r, c):
    w = torch.randn(35, 43, generator=gen(7))
    keep = prune.prune_mask(w, f"{r}x{c}", 0.6)
    bs = prune.block_scores(w.abs(), r, c)
    bkeep = prune.block_scores(keep.float(), r, c) > 0
    assert int((~bkeep).sum()) == round(0.6 * bs.numel())
    assert torch.equal(prune.expand_block_mask(bkeep, r, c, 35, 43), keep)
    assert bs[bkeep].min() >= bs[~bkeep].max()


def test_existing_method_and_pattern_errors():
    w = pruned(8, 16, "nm2:4")
    assert torch.equal(prune.prune_mask(w, "2:4", method="existing"), w != 0)
    with pytest.raises(ValueError, match="2:4"):
        prune.prune_mask(torch.randn(4, 8), "2:4", method="existing")
    for bad in ("3:3", "2:5", "2x2", "banana", "0:4"):
        with pytest.raises(ValueError):
            prune.parse_pattern(bad)
    with pytest.raises(ValueError, match="sparsity"):
        prune.prune_mask(w, "unstructured", 1.5)
    with pytest.raises(ValueError, match="NaN"):
        prune.prune_mask(torch.tensor([[float("nan"), 1.0]]), "unstructured", 0.5)


def test_global_allocation_is_one_threshold():
    a, b = torch.rand(10, 10, generator=gen(8)), torch.rand(5, 30, generator=gen(9)) * 0.5
    alloc = prune.global_allocation([("a", a), ("b", b)], 0.6)
    na, nb = round(alloc["a"] * 100), round(alloc["b"] * 150)
    assert na + nb == round(0.6 * 250)
    ka = prune.mask_unstructured(a, alloc["a"])
    kb = prune.mask_unstructured(b, alloc["b"])
    assert max(a[~ka].max(), b[~kb].max()) <= min(a[ka].min(), b[kb].min())


def test_gradual_schedule_and_pruner():
    sch = prune.GradualSchedule(0.8, start_step=10, end_step=50, every=10)
    assert sch.sparsity_at(0) == 0.0 and sch.sparsity_at(50) == 0.8 and sch.sparsity_at(500) == 0.8
    assert abs(sch.sparsity_at(30) - (0.8 - 0.8 * 0.5**3)) < 1e-12
    assert sch.is_update_step(10) and sch.is_update_step(20) and not sch.is_update_step(21)
    assert sch.is_update_step(50) and not sch.is_update_step(51)
    with pytest.raises(ValueError):
        prune.GradualSchedule(0.5, start_step=5, end_step=5)
    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4))
    pruner = prune.GradualPruner(model, SparseConfig(0.8, scope="global"), sch)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for step in range(55):
        loss = model(torch.randn(8, 16, generator=gen(step))).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        s = pruner.step(step)
    w0, w2 = model[0].weight, model[2].weight
    assert s == 0.8
    total = int((w0 == 0).sum() + (w2 == 0).sum())
    assert total == round(0.8 * (w0.numel() + w2.numel()))
    slimnn.compress_(model, SparseConfig(method="existing", backend="sparse"))
    assert abs(model[0].sparsity() - prune.sparsity_of(w0)) < 1e-9


def test_prune_neurons_sequential_and_gated():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.GELU(), nn.Dropout(0.0), nn.Linear(16, 4), nn.Linear(4, 2))
    assert prune.find_mlp_pairs(model) == [(("0",), "3")]
    x = torch.randn(5, 8)
    sc = prune.neuron_scores([model[0]], model[3])
    kept = torch.sort(torch.argsort(-sc, stable=True)[:8]).values
    expect = model[3].weight[:, kept] @ torch.nn.functional.gelu(x @ model[0].weight[kept].t() + model[0].bias[kept]).t()
    expect = expect.t() + model[3].bias
    done = prune.prune_neurons_(model, 0.5)
    assert set(done) == {"0", "3"} and model[0].out_features == 8 and model[3].in_features == 8
    assert torch.allclose(model[3](model[2](model[1](model[0](x)))), expect, atol=1e-5)

    class Gated(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.gate_proj, self.up_proj, self.down_proj = nn.Linear(6, 12), nn.Linear(6, 12), nn.Linear(12, 6)

        def forward(self, x):
            return self.down_proj(torch.nn.functional.silu(self.gate_proj(x)) * self.up_proj(x))

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.mlp = Gated()

        def forward(self, x):
            return self.mlp(x)

    net = Net()
    assert prune.find_mlp_pairs(net) == [(("mlp.gate_proj", "mlp.up_proj"), "mlp.down_proj")]
    rep = slimnn.compress_(net, SparseConfig(0.25, pattern="neurons"))
    assert len(rep.converted) == 3 and net.mlp.down_proj.in_features == 9
    assert net(torch.randn(2, 6)).shape == (2, 6)
    prune.calibrate_(net, [torch.randn(4, 6)])
    prune.prune_neurons_(net, 0.5, [(["mlp.gate_proj", "mlp.up_proj"], "mlp.down_proj")], method="wanda", multiple_of=4)
    assert net.mlp.up_proj.out_features == 8  # 9 - round(4.5) = 5 -> rounded up to a multiple of 4


# ---------------------------------------------------------------------------------------------- formats

SHAPES = [(1, 1), (1, 300), (7, 5), (8, 16), (9, 33), (37, 53), (64, 100), (100, 257), (17, 1030)]


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("values", ["fp32", "int8"])
def test_pack_unpack_exact(fmt, values):
    for i, (n, k) in enumerate(SHAPES):
        for density in (0.0, 0.03, 0.5, 1.0):
            w = pruned(n, k, fmt, density, seed=i)
            if values == "int8":
                q, s = quantized(w)
                blob = sf.pack_sparse(q, fmt, scales=s)
                q2, s2 = sf.unpack_sparse(blob)
                assert torch.equal(q2, q) and torch.equal(s2, s)
                nnz = int((q != 0).sum())
            else:
                blob = sf.pack_sparse(w, fmt)
                w2, s2 = sf.unpack_sparse(blob)
                assert s2 is None and torch.equal(w2, w)
                nnz = int((w != 0).sum())
            info = sf.sparse_info(blob, full_check=True)
            assert (info.n, info.k, info.nnz, info.values, info.format) == (n, k, nnz, values, fmt)
            assert info.total_bytes == blob.numel()
            assert info.meta_bytes + info.index_bytes + info.value_bytes + info.scale_bytes == blob.numel()


@pytest.mark.parametrize("bits", [4, 8])
def test_csr_long_gaps_use_fillers(bits):
    w = torch.zeros(3, 5000)
    w[0, [0, 16, 17, 300, 4999]] = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0])
    w[2, 4999] = -1.0  # row 1 stays empty
    blob = sf.pack_sparse(w, "csr", index_bits=bits)
    assert sf.sparse_info(blob, full_check=True).index_bits == bits
    assert torch.equal(sf.unpack_sparse(blob)[0], w)
    x = torch.randn(2, 5000, generator=gen(1))
    for kk in KERNELS:
        if kk["kind"] == "sparse_csr_f32" and kk["available"]:
            y, _ = sparse_ops.sparse_linear_with_kernel(x, blob, None, 3, kernel=kk["name"])
            assert_close(y, x, w)


def test_index_bits_auto_picks_smaller():
    w = pruned(64, 512, "csr", 0.1)
    b4, b8, auto = (sf.pack_sparse(w, "csr", index_bits=b) for b in (4, 8, None))
    assert auto.numel() == min(b4.numel(), b8.numel())
    q, s = quantized(w)
    assert sf.sparse_info(sf.pack_sparse(q, "csr", scales=s)).index_bits == 4  # int8 at 90%: nibbles win


def test_pack_rejects_bad_input():
    with pytest.raises(ValueError, match="non-finite"):
        sf.pack_sparse(torch.tensor([[1.0, float("nan")]]), "csr")
    with pytest.raises(ValueError, match="more than N=2"):
        sf.pack_sparse(torch.ones(2, 8), "nm2:4")
    with pytest.raises(ValueError, match="no kernel"):
        sf.pack_sparse(torch.ones(2, 8), "bsr2x2")
    with pytest.raises(ValueError, match="unknown sparse format"):
        sf.pack_sparse(torch.ones(2, 8), "coo")
    with pytest.raises(ValueError, match="scales"):
        sf.pack_sparse(torch.ones(2, 8, dtype=torch.int8), "csr")
    with pytest.raises(ValueError, match="float32"):
        sf.pack_sparse(torch.ones(2, 8, dtype=torch.float64), "csr")
    with pytest.raises(ValueError, match="index_bits"):
        sf.pack_sparse(torch.ones(2, 8), "csr", index_bits=16)
    with pytest.raises(ValueError, match="block columns"):
        sf.pack_sparse(torch.zeros(1, 65537 * 4 + 1), "bsr1x4")


def _corrupt(blob: torch.Tensor, offset: int, value: int) -> torch.Tensor:
    b = blob.clone()
    b[offset] = value
    return b


def test_validation_rejects_corrupt_blobs():
    w = pruned(20, 300, "csr", 0.2)
    blob = sf.pack_sparse(w, "csr", index_bits=8)
    hdr = blob[:128]
    off_index = int(hdr[88:96].view(torch.int64))
    off_perm = int(hdr[80:88].view(torch.int64))
    off_ptr = int(hdr[72:80].view(torch.int64))
    with pytest.raises(ValueError, match="shorter than the header"):
        sf.sparse_info(blob[:100])
    with pytest.raises(ValueError, match="bytes but the blob has"):
        sf.sparse_info(blob[:-64].clone())
    with pytest.raises(ValueError, match="magic"):
        sf.sparse_info(_corrupt(blob, 0, ord("X")))
    with pytest.raises(ValueError, match="version"):
        sf.sparse_info(_corrupt(blob, 4, 9))
    with pytest.raises(ValueError, match="not a sparse format"):
        sf.sparse_info(slimnn.formats.pack_q8(torch.zeros(4, 8, dtype=torch.int8), torch.ones(1, 4)))
    with pytest.raises(ValueError, match="slice pointers"):
        sf.sparse_info(_corrupt(blob, off_ptr + 4, 255))
    bad = _corrupt(blob, off_index, 255)
    for i in range(1, 8):
        bad[off_index + 8 * i] = 255
    sf.sparse_info(bad)  # the light check passes: indices are only checked in full
    with pytest.raises(ValueError, match="out of range"):
        sf.sparse_info(bad, full_check=True)
    # Kernels clamp: a corrupt index gives wrong numbers, never a crash.
    x = torch.randn(3, 300)
    for kk in KERNELS:
        if kk["kind"] == "sparse_csr_f32" and kk["available"]:
            y, _ = sparse_ops.sparse_linear_with_kernel(x, bad, None, 20, kernel=kk["name"])
            assert y.shape == (3, 20)
    with pytest.raises(ValueError, match="permutation"):
        sf.sparse_info(_corrupt(blob, off_perm, int(blob[off_perm + 4])), full_check=True)
    with pytest.raises(ValueError, match="nnz field"):
        sf.sparse_info(_corrupt(blob, 64, int(blob[64]) ^ 1), full_check=True)
    nm = sf.pack_sparse(pruned(4, 32, "nm2:4"), "nm2:4")
    with pytest.raises(ValueError, match="bits set"):
        sf.sparse_info(_corrupt(nm, 128, 0xFF), full_check=True)
    bsr = sf.pack_sparse(pruned(4, 64, "bsr1x4", 0.5), "bsr1x4")
    hb = int(bsr[88:96].view(torch.int64))
    with pytest.raises(ValueError, match="block columns"):
        sf.sparse_info(_corrupt(bsr, hb + 1, 7), full_check=True)
    fb = sf.pack_sparse(pruned(4, 64, "csr", 0.5), "csr")
    off_values = int(fb[104:112].view(torch.int64))
    fb = fb.clone()
    fb[off_values:off_values + 4] = torch.tensor([0x00, 0x00, 0xC0, 0x7F], dtype=torch.uint8)  # a NaN
    with pytest.raises(ValueError, match="non-finite"):
        sf.sparse_info(fb, full_check=True)


def test_fuzzed_blobs_never_crash():
    """Random bytes anywhere past the header: the light check raises ValueError or every kernel runs (the
    numbers are then meaningless, but nothing is read or written out of bounds; run under ASan to see it)."""
    g = torch.Generator().manual_seed(11)
    x = torch.randn(3, 45, generator=g)
    for fmt in ("csr", "bsr1x4", "bsr1x8", "bsr4x1", "bsr16x1", "nm2:4", "nm1:4"):
        for values in ("fp32", "int8"):
            blob, _ = pack(pruned(21, 45, fmt, 0.3), fmt, values)
            kind = "sparse_" + sf.sparse_info(blob).kind
            for trial in range(12):
                bad = blob.clone()
                pos = torch.randint(128, blob.numel(), (4,), generator=g)
                bad[pos] = torch.randint(0, 256, (4,), generator=g, dtype=torch.uint8)
                for kk in KERNELS:
                    if kk["kind"] != kind or not kk["available"]:
                        continue
                    try:
                        y, _ = sparse_ops.sparse_linear_with_kernel(x, bad, None, 21, kernel=kk["name"])
                    except ValueError:
                        continue
                    assert y.shape == (3, 21)


# ---------------------------------------------------------------------------------------------- kernels

# Adversarial shapes: single row/column, N around the 8-row slices and 16-row blocks, K around the vector
# widths, block widths and 16-column masks, K past a 255-column delta; densities 0 (empty rows, all-zero
# matrix), sparse, half and dense cycle with the shapes. M covers 0, GEMV, and tails of 8- and 16-row tiles.
KERNEL_CASES = [((1, 1), 1.0), ((5, 3), 0.0), ((8, 16), 0.6), ((9, 17), 0.15), ((37, 53), 1.0), ((64, 100), 0.15),
                ((33, 300), 0.6), ((17, 1030), 0.05), ((130, 70), 0.15)]
MS = [0, 1, 3, 17]
_BLOBS: dict = {}


def _case(si: int, fmt: str, values: str, bits):
    key = (si, fmt, values, bits)
    if key not in _BLOBS:
        (n, k), density = KERNEL_CASES[si]
        _BLOBS[key] = pack(pruned(n, k, fmt, density, seed=si), fmt, values, bits)
    return _BLOBS[key]


def _kernel_id(k):
    return k["name"]


def _check_kernel(kernel, ms, all_formats: bool) -> None:
    if not kernel["available"]:
        pytest.skip(f"{kernel['isa']} not available on this CPU")
    kind = kernel["kind"].removeprefix("sparse_")
    base, values = kind.split("_")
    values = "fp32" if values == "f32" else "int8"
    fmts = [f for f in FORMATS if f.startswith(base)]
    for si, ((n, k), _) in enumerate(KERNEL_CASES):
        b = torch.randn(n, generator=gen(n))
        # Every format meets every shape over the cases of the fast test (two formats per case).
        case_fmts = fmts if all_formats or len(fmts) <= 2 else [fmts[si % len(fmts)], fmts[(si + 1) % len(fmts)]]
        for fmt in case_fmts:
            for bits in ([4, 8] if base == "csr" else [None]):
                blob, wd = _case(si, fmt, values, bits)
                for m in ms:
                    x = torch.randn(m, k, generator=gen(m))
                    y, name = sparse_ops.sparse_linear_with_kernel(x, blob, b, n, kernel=kernel["name"])
                    assert name == kernel["name"]
                    assert y.shape == (m, n)
                    assert_close(y, x, wd, b)


@pytest.mark.parametrize("kernel", KERNELS, ids=_kernel_id)
def test_every_kernel_against_reference(kernel):
    _check_kernel(kernel, MS, all_formats=False)


@pytest.mark.slow
@pytest.mark.parametrize("kernel", KERNELS, ids=_kernel_id)
def test_every_kernel_all_formats_slow(kernel, request):
    if "slow" not in (request.config.option.markexpr or ""):
        pytest.skip("slow sweep: run with -m slow")
    _check_kernel(kernel, MS + [2, 8, 16, 33], all_formats=True)


def test_output_sentinels_and_strides():
    """Kernels write exactly the N columns of every row, with strided x and y."""
    n, k, m = 37, 53, 5
    for fmt in ("csr", "bsr16x1", "bsr1x4", "nm2:4"):
        w = pruned(n, k, fmt, 0.3)
        blob = sf.pack_sparse(w, fmt)
        xs = torch.randn(m, k + 7, generator=gen(3))
        x = xs[:, :k]
        for kk in KERNELS:
            if not kk["available"] or kk["kind"] != "sparse_" + sf.sparse_info(blob).kind:
                continue
            y = torch.full((m, n + 9), 12345.0)
            _C.sparse_linear(x.data_ptr(), m, k, k + 7, blob.data_ptr(), blob.numel(), 0, y.data_ptr(), n, n + 9, 1,
                             kk["name"])
            assert (y[:, n:] == 12345.0).all()
            assert_close(y[:, :n], x, w)


def test_nonfinite_input_rows_give_nan_rows():
    w = pruned(20, 40, "csr", 0.3)
    blob = sf.pack_sparse(w, "csr")
    x = torch.randn(4, 40, generator=gen(5))
    x[1, 7], x[3, 0] = float("nan"), float("-inf")
    y = sparse_ops.sparse_linear(x, blob, None, 20)
    assert torch.isnan(y[[1, 3]]).all() and torch.isfinite(y[[0, 2]]).all()


@pytest.mark.parametrize("fmt", ["csr", "bsr4x1", "nm2:4"])
def test_threads_give_identical_results(fmt):
    w = pruned(300, 500, fmt, 0.3)
    blob = sf.pack_sparse(w, fmt)
    for m in (1, 40):
        x = torch.randn(m, 500, generator=gen(m))
        slimnn.set_num_threads(1)
        y1 = sparse_ops.sparse_linear(x, blob, None, 300)
        slimnn.set_num_threads(2)
        y2 = sparse_ops.sparse_linear(x, blob, None, 300)
        assert torch.equal(y1, y2)


def test_isa_forcing_selects_lower_paths():
    for isa in slimnn.isa.available():
        with slimnn.isa.forced(isa):
            for kind in ("csr_f32", "bsr_i8", "nm_f32"):
                for m in (1, 16):
                    name = _C.spmm_select(kind, m)
                    assert name.endswith("__" + isa) or (isa not in ("portable", "avx2", "avx512")), name
    with slimnn.isa.forced("portable"):
        assert _C.spmm_select("csr_i8", 1) == "spmm_csr_i8_f32_m1__portable"


def test_best_isa_path_is_exercised():
    names = {k["name"] for k in KERNELS if k["available"]}
    best = slimnn.isa.best()
    best_spmm = "avx512" if best in ("avx512", "avx512vnni", "avx512vbmi2", "amx", "amx_bf16") else best
    assert _C.spmm_select("csr_f32", 1).endswith(best_spmm) and _C.spmm_select("csr_f32", 1) in names


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=st.integers(1, 70), k=st.integers(1, 600), m=st.integers(0, 20), density=st.floats(0.0, 1.0),
    fmt=st.sampled_from(FORMATS), values=st.sampled_from(["fp32", "int8"]), seed=st.integers(0, 1000),
)
def test_hypothesis_shapes(n, k, m, density, fmt, values, seed):
    w = pruned(n, k, fmt, density, seed)
    blob, wd = pack(w, fmt, values)
    sf.sparse_info(blob, full_check=True)
    x = torch.randn(m, k, generator=gen(seed))
    y = sparse_ops.sparse_linear(x, blob, None, n)
    assert_close(y, x, wd)


def test_op_bad_input():
    blob = sf.pack_sparse(pruned(6, 10, "csr", 0.5), "csr")
    with pytest.raises(ValueError, match="in_features=10"):
        sparse_ops.sparse_linear(torch.randn(2, 11), blob, None, 6)
    with pytest.raises(ValueError, match="10->6 layer"):
        sparse_ops.sparse_linear(torch.randn(2, 10), blob, None, 7)
    with pytest.raises(TypeError, match="dtype"):
        sparse_ops.sparse_linear(torch.ones(2, 10, dtype=torch.int32), blob, None, 6)
    with pytest.raises(ValueError, match="bias"):
        sparse_ops.sparse_linear(torch.randn(2, 10), blob, torch.zeros(5), 6)
    with pytest.raises(ValueError, match="uint8"):
        sparse_ops.sparse_linear(torch.randn(2, 10), blob.float(), None, 6)
    with pytest.raises(ValueError, match="does not run"):
        sparse_ops.sparse_linear_with_kernel(torch.randn(2, 10), blob, None, 6, kernel="spmm_nm_f32_f32_m1__portable")
    with pytest.raises(ValueError, match="unknown sparse kernel"):
        sparse_ops.sparse_linear_with_kernel(torch.randn(2, 10), blob, None, 6, kernel="nope")


def test_op_dtypes_and_opcheck():
    w = pruned(6, 10, "csr", 0.5)
    blob = sf.pack_sparse(w, "csr")
    for dt in (torch.bfloat16, torch.float16, torch.float64):
        x = torch.randn(3, 10).to(dt)
        y = sparse_ops.sparse_linear(x, blob, None, 6)
        assert y.dtype == dt
    x = torch.randn(2, 3, 10, requires_grad=True)
    torch.library.opcheck(torch.ops.slimnn.sparse_linear.default, (x, blob, torch.randn(6), 6))
    y = torch.ops.slimnn.sparse_linear(x, blob, None, 6)
    y.sum().backward()
    assert torch.allclose(x.grad, torch.ones(2, 3, 6) @ w, atol=1e-5)


# ---------------------------------------------------------------------------------------------- SparseLinear


def _lin(k=64, n=48, seed=0):
    torch.manual_seed(seed)
    return nn.Linear(k, n)


@pytest.mark.parametrize("pattern", ["unstructured", "2:4", "4:8", "1x4", "1x8", "4x1", "16x1"])
@pytest.mark.parametrize("values", ["fp32", "int8"])
@pytest.mark.parametrize("backend", ["sparse", "dense"])
def test_sparse_linear_matches_its_weights(pattern, values, backend):
    lin = _lin(70, 40)
    cfg = SparseConfig(0.7, pattern=pattern, values=values, backend=backend)
    mod = SparseLinear.from_linear(lin, cfg)
    assert mod.backend == backend
    w = mod.dequantized_weight()
    keep = prune.prune_mask(lin.weight, pattern, 0.7)
    assert torch.equal(w != 0, keep & (w != 0)) and int((w != 0).sum()) <= int(keep.sum())
    if values == "fp32":
        assert torch.equal(w, lin.weight.detach() * keep)
    x = torch.randn(3, 5, 70)
    with torch.inference_mode():
        y = mod(x)
    ref = x.reshape(-1, 70) @ w.t() + lin.bias.detach()
    if backend == "dense" and values == "int8":  # int8 dynamic: activations quantized too
        assert torch.nn.functional.cosine_similarity(y.reshape(-1, 40), ref).min() > 0.999
    else:
        assert torch.allclose(y.reshape(-1, 40), ref, atol=1e-4)
    assert mod.last_kernel is not None
    ref_mod = SparseLinear.from_linear(lin, SparseConfig(0.7, pattern=pattern, values=values, backend=backend,
                                                         kernel="reference"))
    with torch.inference_mode():
        assert torch.allclose(ref_mod(x), y, atol=1e-3)
    r = repr(mod)
    assert f"backend={backend}" in r and "format=" in r


def test_index_bits_reach_the_blob():
    for values in ("fp32", "int8"):
        for bits in (4, 8):
            mod = SparseLinear.from_linear(_lin(64, 32), SparseConfig(0.9, values=values, index_bits=bits,
                                                                       backend="sparse"))
            assert sf.sparse_info(mod.packed).index_bits == bits and f"d{bits}" in mod.format


def test_sparse_linear_int8_sqnr():
    lin = _lin(256, 128)
    x = torch.randn(32, 256)
    f = SparseLinear.from_linear(lin, SparseConfig(0.5, backend="sparse"))
    q = SparseLinear.from_linear(lin, SparseConfig(0.5, values="int8", backend="sparse"))
    with torch.inference_mode():
        yf, yq = f(x), q(x)
    sqnr = 10 * torch.log10(yf.pow(2).mean() / (yf - yq).pow(2).mean())
    assert sqnr > 35


def test_auto_backend_records_choice():
    mod = SparseLinear.from_linear(_lin(128, 64), SparseConfig(0.9))
    assert mod.backend in ("sparse", "dense")
    assert mod.choice["by"] == "auto" and set(mod.choice["time_ratio"]) == {1, 16}
    assert "auto: sparse/dense time" in repr(mod)


def test_storage_bytes_at_90_percent_int8():
    lin = nn.Linear(2048, 1024, bias=False)
    mod = SparseLinear.from_linear(lin, SparseConfig(0.9, values="int8", backend="sparse"))
    parts = mod.storage_breakdown()
    assert sum(parts.values()) == mod.storage_bytes()
    assert mod.storage_bytes() <= 0.05 * 2048 * 1024 * 4
    assert parts["scales"] >= 1024 * 4 and parts["index"] > 0


@pytest.mark.parametrize("values", ["fp32", "int8"])
@pytest.mark.parametrize("backend", ["sparse", "dense"])
def test_state_dict_round_trip(values, backend):
    lin = _lin(40, 24)
    cfg = SparseConfig(0.6, pattern="1x4", values=values, backend=backend)
    src = SparseLinear.from_linear(lin, cfg)
    sd = src.state_dict()
    dst = SparseLinear(40, 24, config=SparseConfig(0.6, pattern="1x4", values="fp32" if values == "int8" else "int8"))
    dst.load_state_dict(sd)
    assert dst.backend == backend and dst.config.values == values
    other = SparseLinear(40, 24, config=SparseConfig(pattern="2:4"))
    other.load_state_dict(sd)
    assert other.config.pattern == ("1x4" if backend == "sparse" else "2:4")
    x = torch.randn(3, 40)
    with torch.inference_mode():
        assert torch.equal(dst(x), src(x))
    assert dst.storage_bytes() == src.storage_bytes()


def test_state_dict_rejects_bad_blobs():
    src = SparseLinear.from_linear(_lin(40, 24), SparseConfig(0.6, backend="sparse"))
    dst = SparseLinear(40, 24)
    sd = src.state_dict()
    bad = dict(sd)
    bad["packed"] = _corrupt(sd["packed"], 64, int(sd["packed"][64]) ^ 3)
    with pytest.raises(RuntimeError, match="nnz"):
        dst.load_state_dict(bad)
    other = SparseLinear.from_linear(_lin(41, 24), SparseConfig(0.6, backend="sparse")).state_dict()
    with pytest.raises(RuntimeError, match="41->24"):
        dst.load_state_dict(other)
    with pytest.raises(RuntimeError, match="24x40"):
        dst.load_state_dict({"weight": torch.zeros(3, 3), "bias": torch.zeros(24)})


def test_sparse_linear_bad_input():
    mod = SparseLinear.from_linear(_lin(16, 8), SparseConfig(0.5, backend="sparse"))
    with pytest.raises(ValueError, match="in_features=16"):
        mod(torch.randn(2, 15))
    with pytest.raises(TypeError):
        SparseLinear.from_linear(nn.Conv1d(2, 2, 1), SparseConfig())
    with pytest.raises(ValueError, match="neurons"):
        SparseLinear.from_linear(_lin(16, 8), SparseConfig(pattern="neurons"))
    with pytest.raises(ValueError, match="calibrate_"):
        SparseLinear.from_linear(_lin(16, 8), SparseConfig(method="wanda"))


def test_compile_and_export():
    model = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 16))
    slimnn.compress_(model, SparseConfig(0.8, backend="sparse"))
    slimnn.compress_(model, SparseConfig(0.8, backend="sparse"))  # already converted: nothing to do
    x = torch.randn(4, 32)
    with torch.inference_mode():
        ref = model(x)
    compiled = torch.compile(model, fullgraph=True, backend="eager")
    with torch.inference_mode():
        assert torch.allclose(compiled(x), ref, atol=1e-5)
    ep = torch.export.export(model, (x,))
    assert torch.allclose(ep.module()(x), ref, atol=1e-5)
    assert "slimnn.sparse_linear" in str(ep.graph)
    xg = x.clone().requires_grad_()
    model(xg).sum().backward()
    assert xg.grad is not None and xg.grad.shape == x.shape


# ---------------------------------------------------------------------------------------------- compress_


def _mlp():
    torch.manual_seed(1)
    return nn.Sequential(nn.Linear(32, 64), nn.GELU(), nn.Linear(64, 32), nn.Linear(32, 8))


@pytest.mark.parametrize("order", [0, 1])
def test_compose_sparse_with_int8(order):
    cfgs = [SparseConfig(0.8, backend="sparse"), slimnn.Int8Config()]
    model = _mlp()
    rep = slimnn.compress_(model, cfgs if order == 0 else cfgs[::-1])
    assert len(rep.converted) == 3
    for i in (0, 2, 3):
        assert model[i].config.values == "int8" and model[i].config.int8_mode == "dynamic"
        assert sf.sparse_info(model[i].packed).values == "int8"
    with pytest.raises(ValueError, match="group_size"):
        slimnn.compress_(_mlp(), [SparseConfig(0.8), slimnn.Int8Config(group_size=32)])
    with pytest.raises(NotImplementedError, match="supported"):
        slimnn.compress_(_mlp(), [slimnn.Int8Config(), slimnn.Int8Config()])


def test_compose_dense_fallback_uses_int8_mode():
    model = _mlp()
    slimnn.compress_(model, [SparseConfig(0.5, backend="dense"), slimnn.Int8Config(mode="weight_only")])
    assert model[0].backend == "dense" and model[0].kernel_name(1).startswith("qgemm_q8_f32")


def test_compress_skip_overrides_and_global():
    model = _mlp()
    cfg = SparseConfig(0.6, scope="global", skip=("3",), layer_sparsity=(("0", 0.25),), backend="sparse")
    rep = slimnn.compress_(model, cfg)
    assert rep.skipped == {"3": "matched SparseConfig.skip"} and type(model[3]) is nn.Linear
    assert abs(model[0].sparsity() - 0.25) < 1e-3
    assert abs(model[2].sparsity() - 0.6) < 1e-3  # the only free layer takes the whole global target
    model = _mlp()
    slimnn.compress_(model, SparseConfig(0.7, scope="global", backend="sparse"))
    total = sum(model[i].sparsity() * model[i].in_features * model[i].out_features for i in (0, 2, 3))
    assert round(total) == round(0.7 * (32 * 64 + 64 * 32 + 32 * 8))


def test_compress_wanda_with_calibration():
    model = _mlp()
    prune.calibrate_(model, [torch.randn(16, 32, generator=gen(i)) for i in range(2)])
    slimnn.compress_(model, SparseConfig(0.5, method="wanda", backend="sparse"))
    w = model[0].dequantized_weight()
    assert ((w != 0).sum(dim=1) == 16).all()
    with pytest.raises(ValueError, match="calibrat"):
        slimnn.compress_(_mlp(), SparseConfig(0.5, method="wanda", scope="global"))


def test_config_validation_and_json():
    cfg = SparseConfig(0.8, pattern="2:4", skip=["a*"], layer_sparsity={"b": 0.5}, values="int8")
    assert cfg.skip == ("a*",) and cfg.layer_sparsity == (("b", 0.5),)
    assert config_from_json(cfg.to_json()) == cfg
    for bad in (dict(sparsity=1.01), dict(sparsity=-0.1), dict(pattern="3x3"), dict(method="random"),
                dict(scope="model"), dict(values="int4"), dict(backend="gpu"), dict(index_bits=16),
                dict(pattern="2:4", index_bits=8),
                dict(kernel="fast"), dict(version=2), dict(layer_sparsity=(("a", 2.0),)), dict(skip=3)):
        with pytest.raises(ValueError):
            SparseConfig(**bad)


def test_kernels_listed():
    names = [k["name"] for k in slimnn.kernels()]
    assert "spmm_csr_i8_f32_m1__portable" in names
    assert copy.deepcopy(SparseConfig()) == SparseConfig()
