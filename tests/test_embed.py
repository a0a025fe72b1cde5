"""QuantEmbedding and the gather kernel (csrc/kernels/embed): rows exactly the dequantized blob's rows."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from slimnn import _C
from slimnn.formats.packed import pack_q4, pack_q8
from slimnn.nn.embedding import QuantEmbedding
from slimnn.nn.int8 import Int8Linear
from slimnn.math.quantize import dequantize_int4, dequantize_int8, quantize_int4, quantize_int8_symmetric

from tolerances import assert_exact


@pytest.mark.parametrize("n,k", [(1, 4), (17, 5), (37, 70), (64, 128)])
@pytest.mark.parametrize("gs", [None, 8])
def test_gather_q8_exact(n, k, gs):
    w = torch.randn(n, k, generator=torch.Generator().manual_seed(n * k))
    q, s = quantize_int8_symmetric(w, gs)
    blob = pack_q8(q, s, gs)
    ids = torch.tensor([0, n - 1, n // 2, 0], dtype=torch.int64)
    out = torch.full((4, k), float("nan"))  # sentinel
    assert _C.embed_gather("q8", blob.data_ptr(), blob.numel(), ids.data_ptr(), 4, out.data_ptr(), out.numel(), 2) == -1
    assert_exact(out, dequantize_int8(q, s, gs)[ids])


@pytest.mark.parametrize("n,k", [(1, 8), (17, 40), (37, 70), (33, 128)])
@pytest.mark.parametrize("gs,sym,dt", [(None, True, torch.float32), (32, True, torch.float16), (64, False, torch.bfloat16)])
def test_gather_q4_exact(n, k, gs, sym, dt):
    w = torch.randn(n, k, generator=torch.Generator().manual_seed(n + k))
    codes, scales, zeros = quantize_int4(w, gs, sym, dt)
    blob = pack_q4(codes, scales, zeros, gs)
    ids = torch.arange(n - 1, -1, -1)
    out = torch.full((n, k), float("nan"))
    assert _C.embed_gather("q4", blob.data_ptr(), blob.numel(), ids.data_ptr(), n, out.data_ptr(), out.numel(), 1) == -1
    assert_exact(out, dequantize_int4(codes, scales, zeros, gs)[ids])


@pytest.mark.parametrize("fmt,gs,tol,ratio", [("q8", None, 0.01, 0.27), ("q8", 32, 0.01, 0.33), ("q4", 32, 0.12, 0.20)])
def test_quant_embedding_module(fmt, gs, tol, ratio):
    torch.manual_seed(0)
    emb = nn.Embedding(300, 256)
    q = QuantEmbedding.from_embedding(emb, fmt, gs)
    ids = torch.randint(0, 300, (4, 7))
    y, ref = q(ids), emb(ids).detach()
    assert y.shape == (4, 7, 256)
    assert ((y - ref).norm() / ref.norm()).item() < tol
    assert_exact(q(ids.to(torch.int32)), y)
    assert q.storage_bytes() < emb.weight.numel() * 4 * ratio  # q8 groups also store per-group column sums
    fresh = QuantEmbedding(300, 256, fmt, gs if gs else (32 if fmt == "q4" else None))
    fresh.load_state_dict(q.state_dict())
    assert_exact(fresh(ids), y)


def test_quant_embedding_rejects_bad_ids_and_modules():
    q = QuantEmbedding.from_embedding(nn.Embedding(10, 8))
    with pytest.raises(IndexError, match="out of range"):
        q(torch.tensor([3, 10]))
    with pytest.raises(IndexError, match="out of range"):
        q(torch.tensor([-1]))
    with pytest.raises(TypeError, match="integer"):
        q(torch.tensor([1.0]))
    with pytest.raises(ValueError, match="max_norm"):
        QuantEmbedding.from_embedding(nn.Embedding(10, 8, max_norm=1.0))


def test_tied_embedding_shares_the_head_blob():
    torch.manual_seed(1)
    emb = nn.Embedding(100, 32)
    head = nn.Linear(32, 100, bias=False)
    head.weight = emb.weight
    h = Int8Linear.from_linear(head)
    t = QuantEmbedding.tied(h, emb, "lm_head")
    assert t.packed is h.packed
    ids = torch.arange(100)
    assert_exact(t(ids), h.dequantized_weight())
