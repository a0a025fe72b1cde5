"""The bitmap sparse format (int8 values, a 64-bit mask per row and 64 columns) and its W8A8 kernels:
pack/unpack, validation, every kernel's int32 dots against the portable reference exactly, the op against
the dense int8 dynamic path (same integer products, same epilogue), ISA forcing, threads, SparseLinear."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import slimnn
from slimnn import _C
from slimnn.math import reference
from slimnn.ops import sparse as sparse_ops
from slimnn.formats import sparse as sf
from slimnn.configs import SparseConfig
from slimnn.nn import SparseLinear

KERNELS = _C.bitmap_kernels()
PORTABLE = {k["mr"]: k["name"] for k in KERNELS if k["isa"] == "portable"}
# (N, K): K around the 64-column chunks and the 4-chunk steps of the GEMV kernel, N odd.
SHAPES = [(1, 1), (3, 63), (5, 64), (7, 65), (9, 200), (2, 256), (11, 257), (33, 130), (6, 700)]
OFF = {"n": 16, "k": 24, "kc": 32, "nnz": 40, "ptr": 48, "masks": 56, "values": 64, "scales": 72, "rowsum": 80,
       "stored": 88, "group_rows": 104}
GROUPS = (1, 2, 8)  # 8: the permute layout


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def int8_weights(n: int, k: int, density: float, seed: int = 0, extreme: bool = False):
    """(q int8 N x K with zeros where pruned, scales [N]); rows 0 empty and 1 dense when there are enough."""
    g = gen(seed)
    q = torch.randint(-127, 128, (n, k), generator=g, dtype=torch.int8)
    if extreme:
        q = torch.where(torch.rand(n, k, generator=g) < 0.5, -128, 127).to(torch.int8)
    q = q * (torch.rand(n, k, generator=g) < density)
    if n > 2:
        q[0] = 0
        q[1] = torch.where(q[1] == 0, 5, q[1]).to(torch.int8)
    scales = torch.rand(n, generator=g) * 0.01 + 1e-4
    return q.to(torch.int8), scales


def field(blob: torch.Tensor, name: str) -> int:
    o = OFF[name]
    return int(blob[o:o + 8].view(torch.int64))


def corrupt(blob: torch.Tensor, offset: int, value: int) -> torch.Tensor:
    b = blob.clone()
    b[offset] = value
    return b


def runs_on_every_kernel(blob: torch.Tensor, n: int, k: int) -> None:
    """Every available kernel runs 9 rows through ``blob`` (N x K) and gives an output of the right shape."""
    x = torch.randn(9, k)
    for e in KERNELS:
        if e["available"]:
            y, _ = sparse_ops.sparse_linear_with_kernel(x, blob, None, n, kernel=e["name"])
            assert y.shape == (9, n)


def dots_ref(q: torch.Tensor, xq: torch.Tensor) -> torch.Tensor:
    """Exact int64 products of u8 activations with int8 weights."""
    return xq[:, : q.shape[1]].long() @ q.long().t()


def available(e: dict) -> None:
    if not e["available"]:
        pytest.skip(f"{e['name']}: this CPU lacks {e['isa']}")


# ---------------------------------------------------------------------------------------------- format


@pytest.mark.parametrize("n,k", SHAPES)
@pytest.mark.parametrize("density", [0.0, 0.1, 0.5, 1.0])
@pytest.mark.parametrize("g", GROUPS)
def test_pack_unpack_exact(n, k, density, g):
    q, s = int8_weights(n, k, density)
    blob = sf.pack_sparse(q, "bitmap", scales=s, group_rows=g)
    assert field(blob, "group_rows") & 0xFFFFFFFF == g
    info = sf.sparse_info(blob, full_check=True)
    assert (info.format, info.values, info.n, info.k, info.nnz) == ("bitmap", "int8", n, k, int((q != 0).sum()))
    assert info.total_bytes == blob.numel() == info.value_bytes + info.index_bytes + info.scale_bytes + info.meta_bytes
    assert info.index_bytes >= -(-n // g) * (-(-k // 256) * 16 if g == 8 else -(-k // 64) * 8)
    q2, s2 = sf.unpack_sparse(blob)
    assert torch.equal(q2, q) and torch.equal(s2, s)
    assert sf.is_sparse_blob(blob)
    assert torch.equal(sf.dense_weight(blob), q.float() * s[:, None])


def test_group_rows_choice():
    q, s = int8_weights(64, 256, 0.1)
    assert field(sf.pack_sparse(q, "bitmap", scales=s), "group_rows") & 0xFF == 8
    q, s = int8_weights(7, 256, 0.1)
    q[1] = 0  # (the helper makes row 1 dense)
    assert field(sf.pack_sparse(q, "bitmap", scales=s), "group_rows") & 0xFF == 2
    assert field(sf.pack_sparse(q, "bitmap", scales=s, group_rows=1), "group_rows") & 0xFF == 1
    q, s = int8_weights(64, 256, 0.3)
    assert field(sf.pack_sparse(q, "bitmap", scales=s), "group_rows") & 0xFF == 1
    q, s = int8_weights(1, 256, 0.01)
    assert field(sf.pack_sparse(q, "bitmap", scales=s), "group_rows") & 0xFF == 1  # one row: no pairs
    with pytest.raises(ValueError, match="group_rows"):
        sf.pack_sparse(q, "bitmap", scales=s, group_rows=3)
    with pytest.raises(ValueError, match="group_rows"):
        sf.pack_sparse(q, "csr", scales=s, group_rows=2)


def test_pack_extremes_and_errors():
    q, s = int8_weights(4, 130, 0.7, extreme=True)
    blob = sf.pack_sparse(q, "bitmap", scales=s)
    assert torch.equal(sf.unpack_sparse(blob)[0], q)
    with pytest.raises(ValueError, match="int8 values"):
        sf.pack_sparse(torch.randn(3, 4), "bitmap")
    with pytest.raises(ValueError, match="index_bits"):
        sf.pack_sparse(q, "bitmap", scales=s, index_bits=8)
    with pytest.raises(ValueError, match="non-finite scale"):
        sf.pack_sparse(q, "bitmap", scales=torch.full((4,), float("nan")))
    with pytest.raises(ValueError, match="K=70000"):
        sf.pack_sparse(torch.zeros(1, 70000, dtype=torch.int8), "bitmap", scales=torch.ones(1))


def test_validation_rejects_corrupt_blobs():
    q, s = int8_weights(9, 200, 0.3)
    blob = sf.pack_sparse(q, "bitmap", scales=s, group_rows=1)
    ptr, masks, values = field(blob, "ptr"), field(blob, "masks"), field(blob, "values")
    rowsum, nnz = field(blob, "rowsum"), field(blob, "stored")
    with pytest.raises(ValueError, match="shorter than the"):
        sf.sparse_info(blob[:100])
    with pytest.raises(ValueError, match="bytes but the blob has"):
        sf.sparse_info(blob[:-64].clone())
    with pytest.raises(ValueError, match="section offsets"):
        sf.sparse_info(corrupt(blob, OFF["values"], blob[OFF["values"]] + 64))
    with pytest.raises(ValueError, match="kc"):
        sf.sparse_info(corrupt(blob, OFF["kc"], 9))
    with pytest.raises(ValueError, match="reserved"):
        sf.sparse_info(corrupt(blob, 110, 1))
    with pytest.raises(ValueError, match="group_rows"):
        sf.sparse_info(corrupt(blob, OFF["group_rows"], 3))
    with pytest.raises(ValueError, match="group pointers decrease"):
        sf.sparse_info(corrupt(blob, ptr + 4 * 3 + 3, 0x7F))
    with pytest.raises(ValueError, match="section offsets|last group pointer"):
        sf.sparse_info(corrupt(blob, OFF["stored"], (nnz + 1) & 0xFF))
    with pytest.raises(ValueError, match="nnz field"):
        sf.sparse_info(corrupt(blob, OFF["nnz"], (field(blob, "nnz") - 1) & 0xFF), full_check=True)
    bad_mask = corrupt(blob, masks + 8, 0xFF)  # row 0 (empty), chunk 1: bits the row pointers do not count
    sf.sparse_info(bad_mask)  # the light check passes: masks are only counted in full
    with pytest.raises(ValueError, match="masks hold"):
        sf.sparse_info(bad_mask, full_check=True)
    with pytest.raises(ValueError, match="columns >= K"):
        # row 0 (empty), last chunk (columns 192..255): a bit at column 255 >= K
        sf.sparse_info(corrupt(corrupt(blob, masks + 8 * 3 + 7, 0x80), ptr + 4, 1), full_check=True)
    with pytest.raises(ValueError, match="only zero values"):
        sf.sparse_info(corrupt(blob, values, 0), full_check=True)
    q2, s2 = int8_weights(5, 70, 0.2)
    pairs = sf.pack_sparse(q2, "bitmap", scales=s2, group_rows=2)
    v2, st2 = field(pairs, "values"), field(pairs, "stored")
    # the last group's second run is the phantom row 5: its values must be zero
    with pytest.raises(ValueError, match="past N|only zero|nnz"):
        sf.sparse_info(corrupt(pairs, v2 + st2 - 1, 1), full_check=True)
    with pytest.raises(ValueError, match="row sum"):
        sf.sparse_info(corrupt(blob, rowsum + 4, blob[rowsum + 4] ^ 1), full_check=True)
    with pytest.raises(ValueError, match="padding"):
        sf.sparse_info(corrupt(blob, values + nnz + 10, 1), full_check=True)
    with pytest.raises(ValueError, match="not a sparse format|format id"):
        sf.sparse_info(slimnn.formats.pack_q8(torch.zeros(4, 8, dtype=torch.int8), torch.ones(1, 4)))
    # Kernels clamp their value pointer: all-ones masks (far more bits than values) never read out of bounds.
    allbits = blob.clone()
    allbits[masks:values] = 0xFF
    runs_on_every_kernel(allbits, 9, 200)


def test_validation_rejects_corrupt_perm_blobs():
    """G = 8 (the permute layout): counts, offsets, values, phantom rows; kernels never read out of bounds."""
    q, s = int8_weights(11, 300, 0.3)  # two groups (rows 11..15 phantom), two windows (the second 44 wide)
    blob = sf.pack_sparse(q, "bitmap", scales=s, group_rows=8)
    counts, values = field(blob, "masks"), field(blob, "values")
    nw = 2

    def count_at(gi, wi, jr):
        return counts + 2 * ((gi * nw + wi) * 8 + jr)

    sf.sparse_info(blob, full_check=True)
    c0 = int(blob[count_at(0, 0, 2):count_at(0, 0, 2) + 2].view(torch.int16))
    assert c0 == int((q[2, :256] != 0).sum())
    with pytest.raises(ValueError, match="counts|ascending|zero"):  # row 2, window 0 claims one more: the stream shifts
        sf.sparse_info(corrupt(blob, count_at(0, 0, 2), c0 + 1), full_check=True)
    with pytest.raises(ValueError, match="exceeds the window"):  # window 1 is 44 columns wide
        sf.sparse_info(corrupt(blob, count_at(0, 1, 2), 45), full_check=True)
    with pytest.raises(ValueError, match="exceeds the window"):  # phantom row 12
        sf.sparse_info(corrupt(blob, count_at(1, 0, 4), 1), full_check=True)
    # row 0 is empty, row 1 dense: the stream starts with row 1's window 0 (offsets 0..63, then values)
    with pytest.raises(ValueError, match="ascending"):
        sf.sparse_info(corrupt(blob, values + 1, 0), full_check=True)
    with pytest.raises(ValueError, match="zero"):
        sf.sparse_info(corrupt(blob, values + 64, 0), full_check=True)
    with pytest.raises(ValueError, match="row sum"):
        sf.sparse_info(corrupt(blob, values + 64, int(blob[values + 64]) ^ 2), full_check=True)
    last = torch.zeros(8, 300, dtype=torch.int8)
    last[0, 299] = 3
    lb = sf.pack_sparse(last, "bitmap", scales=torch.ones(8), group_rows=8)
    with pytest.raises(ValueError, match="ascending inside the window"):  # offset 43 -> 44: past K
        sf.sparse_info(corrupt(lb, field(lb, "values"), 44), full_check=True)
    with pytest.raises(ValueError, match="counts hold|run past"):  # the last group pointer vs counts
        sf.sparse_info(corrupt(lb, field(lb, "masks") + 2 * 8, 0), full_check=True)
    # Kernels clamp the stream pointer: huge counts (light check passes) never read out of bounds.
    huge = blob.clone()
    huge[counts:values] = 0xFF
    sf.sparse_info(huge)
    runs_on_every_kernel(huge, 11, 300)


def test_fuzzed_blobs_never_crash():
    q, s = int8_weights(5, 130, 0.4)
    blob = sf.pack_sparse(q, "bitmap", scales=s)
    g = gen(3)
    x = torch.randn(3, 130)
    ran = 0
    for _ in range(200):
        b = blob.clone()
        pos = torch.randint(0, b.numel(), (3,), generator=g)
        b[pos] = torch.randint(0, 256, (3,), generator=g, dtype=torch.uint8)
        try:
            sf.sparse_info(b)
        except ValueError:
            continue
        for e in KERNELS:
            if e["available"]:
                try:  # a changed N or K is a clean mismatch error
                    sparse_ops.sparse_linear_with_kernel(x, b, None, 5, 130, kernel=e["name"])
                except ValueError as err:
                    assert "layer" in str(err)
                    continue
                ran += 1
    assert ran > 0


# ---------------------------------------------------------------------------------------------- kernels


@pytest.mark.parametrize("kernel", KERNELS, ids=lambda e: e["name"])
def test_kernel_dots_exact(kernel):
    available(kernel)
    for i, (n, k) in enumerate(SHAPES):
        for density, extreme, g in [(d, e, g) for d in (0.0, 0.08, 0.5, 1.0) for e in (False, True) for g in GROUPS]:
            if True:
                q, s = int8_weights(n, k, density, seed=i, extreme=extreme)
                blob = sf.pack_sparse(q, "bitmap", scales=s, group_rows=g)
                kx = -(-k // 256) * 256 if g == 8 else -(-k // 64) * 64
                for m in (0, 1, 2, 7, 8, 9, 17):
                    xq = torch.randint(0, 256, (m, kx), generator=gen(m), dtype=torch.uint8)
                    if m:
                        xq[0] = 255
                    dots = torch.full((m, n), 0x5EADBEEF, dtype=torch.int32)
                    _C.bitmap_dots(kernel["name"], blob.data_ptr(), blob.numel(), xq.data_ptr(), m, dots.data_ptr())
                    assert torch.equal(dots.long(), dots_ref(q, xq)), (kernel["name"], n, k, density, m, g)


def _dense_int8_portable(x, q, s, bias):
    blob = slimnn.formats.pack_q8(q, s[None, :], None)
    with slimnn.isa.forced("portable"):
        return slimnn.ops.q8_linear(x, blob, bias, "dynamic", q.shape[0])


@pytest.mark.parametrize("kernel", KERNELS, ids=lambda e: e["name"])
def test_op_matches_dense_int8_dynamic(kernel):
    """Same quantized activations, same integer products, same epilogue as the portable dense int8 kernel:
    bitwise equal; and within the W8A8 tolerance of the float reference."""
    available(kernel)
    for i, ((n, k), g) in enumerate([(sh, g) for sh in SHAPES for g in GROUPS]):
        q, s = int8_weights(n, k, 0.2, seed=i)
        blob = sf.pack_sparse(q, "bitmap", scales=s, group_rows=g)
        bias = torch.randn(n, generator=gen(i))
        for m in (0, 1, 3, 8, 10):
            x = torch.randn(m, k, generator=gen(100 + m)) * 3
            y, name = sparse_ops.sparse_linear_with_kernel(x, blob, bias, n, kernel=kernel["name"])
            assert name == kernel["name"]
            assert torch.equal(y, _dense_int8_portable(x, q, s, bias)), (n, k, m)
            ref = reference.q8_linear_dynamic(x, q, s[None, :], None, bias)
            if m:
                assert torch.allclose(y, ref, rtol=1e-4, atol=1e-4 * (1 + ref.abs().max().item()))


def test_reference_against_float_math():
    """The W8A8 result approximates x @ W^T in float: activations lose at most half a step per row."""
    q, s = int8_weights(16, 300, 0.2)
    w = q.float() * s[:, None]
    blob = sf.pack_sparse(q, "bitmap", scales=s)
    x = torch.randn(5, 300, generator=gen(1))
    y = sparse_ops.sparse_linear(x, blob, None, 16)
    step = (x.amax(1, keepdim=True).clamp(min=0) - x.amin(1, keepdim=True).clamp(max=0)) / 255
    bound = 0.5 * step * w.abs().sum(1)[None, :] + 1e-5
    assert ((y - x @ w.t()).abs() <= bound * 1.01).all()


def test_nonfinite_rows_give_nan_rows():
    q, s = int8_weights(6, 100, 0.3)
    blob = sf.pack_sparse(q, "bitmap", scales=s)
    x = torch.randn(4, 100)
    x[1, 5] = float("nan")
    x[2, 7] = float("inf")
    for e in KERNELS:
        if e["available"]:
            y, _ = sparse_ops.sparse_linear_with_kernel(x, blob, torch.ones(6), 6, kernel=e["name"])
            assert torch.isnan(y[1]).all() and torch.isnan(y[2]).all()
            assert torch.isfinite(y[0]).all() and torch.isfinite(y[3]).all()
            assert torch.equal(y[[0, 3]], _dense_int8_portable(x[[0, 3]], q, s, torch.ones(6)))


@pytest.mark.parametrize("g", GROUPS)
def test_isa_forcing_and_selector(g):
    q, s = int8_weights(9, 130, 0.2)
    blob = sf.pack_sparse(q, "bitmap", scales=s, group_rows=g)
    x = torch.randn(3, 130)
    results = {}
    for isa in slimnn.isa.available():
        with slimnn.isa.forced(isa):
            for m in (1, 3):
                name = _C.bitmap_select(m)
                want = "avx512vbmi2" if isa in ("avx512vbmi2", "amx", "amx_bf16") else "portable"
                assert name.endswith("__" + want), (isa, name)
                y, ran = sparse_ops.sparse_linear_with_kernel(x[:m], blob, None, 9)
                assert ran == name
                results[(isa, m)] = y
    # a CPU (or a ceiling) with VNNI but no VBMI2 takes the portable path
    with slimnn.isa.forced("avx512vnni"):
        assert _C.bitmap_select(1) == PORTABLE[1]
    first = {m: results[(slimnn.isa.available()[0], m)] for m in (1, 3)}
    for (isa, m), y in results.items():
        assert torch.equal(y, first[m]), isa  # consistent across ISAs, bit for bit
    if "avx512vbmi2" in slimnn.isa.detected():
        assert _C.bitmap_select(1) == "spmm_bitmap_i8_u8_m1__avx512vbmi2"
        assert slimnn.cpu_info()["ops"]["sparse_bitmap_i8"][1] == "spmm_bitmap_i8_u8_m1__avx512vbmi2"
    assert {k["name"] for k in KERNELS} <= {k["name"] for k in slimnn.kernels()}


@pytest.mark.parametrize("m", [1, 5, 16])
@pytest.mark.parametrize("g", GROUPS)
def test_threads_give_identical_results(m, g):
    q, s = int8_weights(301, 1000, 0.15)
    blob = sf.pack_sparse(q, "bitmap", scales=s, group_rows=g)
    x = torch.randn(m, 1000, generator=gen(m))
    outs = []
    for t in (1, 2, 3):
        slimnn.set_num_threads(t)
        outs.append(sparse_ops.sparse_linear(x, blob, None, 301))
    slimnn.set_num_threads(None)
    assert all(torch.equal(o, outs[0]) for o in outs)


def test_op_bad_input_and_opcheck():
    q, s = int8_weights(6, 10, 0.5)
    blob = sf.pack_sparse(q, "bitmap", scales=s)
    with pytest.raises(ValueError, match="10->6"):
        sparse_ops.sparse_linear(torch.randn(2, 10), blob, None, 7)
    with pytest.raises(ValueError, match="in_features"):
        sparse_ops.sparse_linear(torch.randn(2, 11), blob, None, 6)
    with pytest.raises(ValueError, match="unknown sparse kernel"):
        sparse_ops.sparse_linear_with_kernel(torch.randn(2, 10), blob, None, 6, kernel="spmm_csr_i8_f32_m1__portable")
    x = torch.randn(2, 3, 10, requires_grad=True)
    torch.library.opcheck(torch.ops.slimnn.sparse_linear.default, (x, blob, torch.randn(6), 6))
    y = torch.ops.slimnn.sparse_linear(x, blob, None, 6)
    y.sum().backward()
    assert torch.allclose(x.grad, torch.ones(2, 3, 6) @ (q.float() * s[:, None]), atol=1e-5)


# ---------------------------------------------------------------------------------------------- SparseLinear


def _lin(k=200, n=33, seed=0):
    torch.manual_seed(seed)
    return nn.Linear(k, n)


def test_config_index_choice():
    lin = _lin()
    auto = SparseLinear.from_linear(lin, SparseConfig(0.8, values="int8", int8_mode="dynamic", backend="sparse"))
    assert auto.format == "bitmap" and auto.kernel_name(1).startswith("spmm_bitmap")
    wo = SparseLinear.from_linear(lin, SparseConfig(0.8, values="int8", backend="sparse"))  # weight_only
    assert wo.format.startswith("csr")
    csr = SparseLinear.from_linear(lin, SparseConfig(0.8, values="int8", int8_mode="dynamic", index="csr",
                                                      backend="sparse"))
    assert csr.format.startswith("csr")
    bits = SparseLinear.from_linear(lin, SparseConfig(0.8, values="int8", int8_mode="dynamic", index_bits=8,
                                                       backend="sparse"))
    assert bits.format == "csr d8"
    with pytest.raises(ValueError, match="int8 values"):
        SparseLinear.from_linear(lin, SparseConfig(0.8, index="bitmap"))
    with pytest.raises(ValueError, match="index"):
        SparseConfig(0.5, index="coo")
    with pytest.raises(ValueError, match="unstructured"):
        SparseConfig(pattern="2:4", index="bitmap")
    with pytest.raises(ValueError, match="index_bits"):
        SparseConfig(index="bitmap", index_bits=4)
    c = SparseConfig(0.9, index="bitmap")
    assert slimnn.configs.config_from_json(c.to_json()) == c


def test_compose_with_int8_dynamic_gives_bitmap():
    model = nn.Sequential(_lin(256, 64), nn.ReLU(), _lin(64, 256, seed=1))
    x = torch.randn(4, 256)
    rep = slimnn.compress_(model, [SparseConfig(0.9, backend="sparse"), slimnn.Int8Config()])
    assert len(rep.converted) == 2
    assert all(m.format == "bitmap" for m in model if isinstance(m, SparseLinear))
    with torch.inference_mode():
        y = model(x)
    assert y.shape == (4, 256) and torch.isfinite(y).all()


def test_sparse_linear_matches_weights_and_state_dict():
    lin = _lin()
    mod = SparseLinear.from_linear(lin, SparseConfig(0.85, values="int8", index="bitmap", backend="sparse"))
    assert "format=bitmap" in repr(mod) and "spmm_bitmap" in repr(mod)
    x = torch.randn(5, 200)
    with torch.inference_mode():
        y = mod(x)
    ref = torch.nn.functional.linear(x, mod.dequantized_weight(), mod.bias)
    assert (y - ref).abs().max() < 0.05 * ref.abs().max()
    assert mod.last_kernel == "spmm_bitmap_i8_u8_m8__" + ("avx512vbmi2" if "avx512vbmi2" in slimnn.isa.available()
                                                         else "portable")
    assert abs(mod.sparsity() - 0.85) < 0.01
    br = mod.storage_breakdown()
    assert sum(br.values()) == mod.storage_bytes() and br["index"] >= 33 * 4 * 8
    # into a module built with another config: the blob decides
    other = SparseLinear(200, 33, config=SparseConfig(0.5))
    other.load_state_dict(mod.state_dict())
    assert other.format == "bitmap" and other.config.values == "int8" and other.config.index in ("auto", "bitmap")
    with torch.inference_mode():
        assert torch.equal(other(x), y)
    csr_cfg = SparseLinear(200, 33, config=SparseConfig(0.5, values="int8", index="csr"))
    csr_cfg.load_state_dict(mod.state_dict())
    assert csr_cfg.config.index == "bitmap"
    bad = mod.state_dict()
    bad["packed"] = corrupt(bad["packed"], field(bad["packed"], "values"), 0)
    with pytest.raises(RuntimeError, match="only zero values"):
        SparseLinear(200, 33, config=SparseConfig(0.5)).load_state_dict(bad)


def test_auto_backend_measures_bitmap_against_dense_int8():
    mod = SparseLinear.from_linear(_lin(512, 256), SparseConfig(0.9, values="int8", int8_mode="dynamic"))
    assert mod.choice["by"] == "auto" and mod.choice["dense"] == "slimnn int8 dynamic"
    assert mod.backend in ("sparse", "dense")
    if mod.backend == "sparse":
        assert mod.format == "bitmap"


def test_save_load_round_trip(tmp_path):
    model = nn.Sequential(_lin(200, 64), nn.ReLU(), _lin(64, 32, seed=1))
    slimnn.compress_(model, [SparseConfig(0.9, backend="sparse"), slimnn.Int8Config()])
    x = torch.randn(3, 200)
    with torch.inference_mode():
        y = model(x)
    path = tmp_path / "m.safetensors"
    slimnn.save(model, path)
    loaded = slimnn.load(path)
    assert loaded[0].format == "bitmap" and loaded[2].format == "bitmap"
    with torch.inference_mode():
        assert torch.equal(loaded(x), y)
