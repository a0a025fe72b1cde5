"""torch.compile of slimnn models: fullgraph, dynamic M without a recompile per batch size, Inductor calling
the kernels directly (slimnn/ops/inductor.py), outputs equal to eager, bad calls still raising.

Speed is measured in bench/bench_compile.py, never here.
"""

import pytest
import torch
from torch import nn
from torch._dynamo.utils import counters
from torch._inductor.utils import run_and_get_code

import slimnn

from helpers import COMMON_FORMATS

EXTERN = {
    "Int8Linear": "extern_kernels.slimnn_q8_linear",  # _v1, or _prequantized_v1 (dynamic, float32)
    "Int4Linear": "extern_kernels.slimnn_q4_linear_v1",
    "SparseLinear": "extern_kernels.slimnn_sparse_linear_v1",
    "LowRankLinear": "extern_kernels.slimnn_lowrank_linear_v1",
}

FORMATS = {
    "int8_dynamic_fused_gelu": slimnn.Int8Config(),
    "int4_g32_asym": slimnn.Int4Config(group_size=32, symmetric=False),
    "int4_per_channel_weight_only": slimnn.Int4Config(group_size=None, mode="weight_only"),
    "sparse_csr_fp32": slimnn.SparseConfig(0.8, backend="sparse"),
    "sparse_2:4_int8": [slimnn.SparseConfig(0.5, pattern="2:4", backend="sparse"), slimnn.Int8Config()],
    **COMMON_FORMATS,
}


class Block(nn.Module):
    """LayerNorm -> Linear -> GELU -> Linear + residual: what Inductor fuses around slimnn's kernels."""

    def __init__(self, d: int = 64, h: int = 96) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(d)
        self.fc1 = nn.Linear(d, h)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(h, d)

    def forward(self, x):
        return x + self.fc2(self.act(self.fc1(self.norm(x))))


def _rel(a, b):
    return float((a - b).norm() / b.norm().clamp_min(1e-12))


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


# The default run compiles one model per technique family; the rest of the matrix is behind the slow marker
# (each compile takes 5-15 s on the 2-core CI machine).
FAST = ("int8_dynamic_fused_gelu", "int4_g32_asym", "sparse_bitmap_int8", "lowrank_int8_residual")


@pytest.mark.parametrize("name", [n if n in FAST else pytest.param(n, marks=pytest.mark.slow) for n in sorted(FORMATS)])
def test_compiled_matches_eager_without_recompiles_and_calls_the_kernels(name):
    torch.manual_seed(0)
    model = nn.Sequential(Block()).eval()
    slimnn.compress_(model, FORMATS[name])
    kinds = {type(m).__name__ for m in model.modules()} & set(EXTERN)
    assert kinds, "nothing was compressed"
    compiled = torch.compile(model, fullgraph=True, dynamic=True)
    with torch.no_grad():
        x = torch.randn(5, 64)
        y, codes = run_and_get_code(compiled, x)
        code = "\n".join(codes)
        for k in kinds:
            assert EXTERN[k] in code, f"{k} was not lowered to its extern kernel"
        assert "torch.ops.slimnn" not in code, "a slimnn op took the dispatcher fallback"
        # Inductor computes LayerNorm/GELU with its own vectorized code: float rounding differs, and dynamic
        # activation quantization may round a few of those values to the neighbouring code.
        assert _rel(y, model(x)) < 1e-3
        graphs = counters["stats"]["unique_graphs"]
        for m in (2, 3, 7, 16, 33, 128):  # one graph for every M >= 2 (dynamo specializes only 0 and 1)
            xm = torch.randn(m, 64)
            assert _rel(compiled(xm), model(xm)) < 1e-3
        assert counters["stats"]["unique_graphs"] == graphs, "compiled again for another batch size"
        if name == "int8_dynamic_fused_gelu":
            x3 = torch.randn(2, 3, 64)  # leading dims other than one M (a new graph: another rank)
            assert _rel(compiled(x3), model(x3)) < 1e-3


def test_lowering_is_registered_once_inductor_is_imported():
    from slimnn.ops import inductor

    compiled = torch.compile(nn.Sequential(slimnn.nn.Int8Linear.from_linear(nn.Linear(8, 8))).eval(), fullgraph=True)
    with torch.no_grad():
        compiled(torch.randn(2, 8))
    assert inductor.STATUS == "registered"


def test_compiled_call_with_a_mismatched_blob_raises():
    lin = slimnn.nn.Int8Linear.from_linear(nn.Linear(32, 48))

    def wrong_width(x, packed):
        return torch.ops.slimnn.q8_linear(x, packed, None, "dynamic", 40)

    def wrong_k(x, packed):
        return torch.ops.slimnn.q8_linear(x, packed, None, "dynamic", 48)

    with torch.no_grad():
        with pytest.raises(ValueError, match="48"):
            torch.compile(wrong_width, fullgraph=True)(torch.randn(4, 32), lin.packed)
        with pytest.raises(ValueError, match="32"):
            torch.compile(wrong_k, fullgraph=True, dynamic=True)(torch.randn(4, 24), lin.packed)


def test_bf16_and_training_take_the_checked_fallback():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(32, 48), nn.ReLU(), nn.Linear(48, 16))
    slimnn.compress_(model, slimnn.Int8Config(mode="weight_only"))
    model.eval()
    compiled = torch.compile(model, fullgraph=True, dynamic=True)
    xb = torch.randn(4, 32, dtype=torch.bfloat16)
    with torch.no_grad():
        y = compiled(xb)
        assert y.dtype == torch.bfloat16 and _rel(y.float(), model(xb).float()) < 1e-2
    x = torch.randn(4, 32, requires_grad=True)
    compiled(x).sum().backward()
    g = x.grad.clone()
    x.grad = None
    model(x).sum().backward()
    assert _rel(g, x.grad) < 1e-4


def _convnet():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU6(),
                      nn.Conv2d(16, 16, 3, padding=1, groups=16), nn.Hardswish(),
                      nn.Conv2d(16, 24, 1, stride=2),
                      nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(24, 10)).eval()
    bn = m[1]
    with torch.no_grad():
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
    return m


@pytest.mark.parametrize("mode", ["dynamic", "weight_only"])
def test_compiled_convnet_is_one_graph_and_matches_eager(mode):
    # The int8 convs (dense, depthwise, pointwise) are torch.library ops under tracing: one graph, no breaks,
    # the same kernels' results (the ops run the eager kernels; only the float glue is Inductor's).
    model = _convnet()
    slimnn.compress_(model, slimnn.Int8Config(mode=mode))
    assert {"Conv2dInt8"} <= {type(m).__name__ for m in model.modules()}
    with torch.no_grad():
        x = torch.randn(2, 8, 12, 12)
        expl = torch._dynamo.explain(model)(x)
        assert expl.graph_count == 1 and expl.graph_break_count == 0, expl.break_reasons
        compiled = torch.compile(model, fullgraph=True)
        code = "\n".join(run_and_get_code(compiled, x)[1])
        assert "slimnn.conv2d_q8" in code and "slimnn.conv2d_dw" in code
        assert _rel(compiled(x), model(x)) < 1e-4
        x1 = torch.randn(1, 8, 7, 9)  # another batch and spatial size
        assert _rel(compiled(x1), model(x1)) < 1e-4


def _adversarial_rows(m, k, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(m, k, generator=g) * 3
    special = [torch.zeros(k), torch.full((k,), -2.5), torch.full((k,), 7.0),
               torch.full((k,), float("nan")), torch.full((k,), 1e36)]
    special[3][1:] = 1.0  # one NaN in a row
    if k > 1:
        special.append(torch.tensor([float("inf")] + [0.5] * (k - 1)))
    for i, row in enumerate(special[:m]):
        x[i] = row
    return x


def _same(a, b):
    return torch.equal(torch.isnan(a), torch.isnan(b)) and torch.equal(torch.nan_to_num(a), torch.nan_to_num(b))


@pytest.mark.parametrize("k,n,bias,activation", [(37, 19, True, None), (64, 48, False, "gelu"), (1, 16, True, "relu")])
def test_prequantized_op_is_bit_identical_to_the_kernels_own_quantization(k, n, bias, activation):
    # The torch-ops quantizer (what torch.compile emits) gives the kernel's codes and scales exactly, so the
    # GEMM over them is the eager q8 dynamic op bit for bit, non-finite and overflow-sized rows included.
    from slimnn.ops import q8 as q8ops

    torch.manual_seed(1)
    lin = slimnn.nn.Int8Linear.from_linear(nn.Linear(k, n, bias=bias), activation=activation)
    kp = -(-k // 4) * 4
    for m in (0, 1, 3, 7, 17):
        x = _adversarial_rows(m, k, seed=m)
        a, s, z = q8ops.quantize_rows_for_kernel(x, kp)
        y = torch.ops.slimnn.q8_linear_prequantized(a, s, z, x, lin.packed, lin.bias, n, activation)
        ref = q8ops.q8_linear(x, lin.packed, lin.bias, "dynamic", n, activation)
        assert y.shape == (m, n) and _same(y, ref), f"M={m}"


def test_prequantized_op_rejects_bad_codes():
    lin = slimnn.nn.Int8Linear.from_linear(nn.Linear(10, 16))
    x = torch.randn(3, 10)
    from slimnn.ops import q8 as q8ops

    a, s, z = q8ops.quantize_rows_for_kernel(x, 12)
    op = torch.ops.slimnn.q8_linear_prequantized
    with pytest.raises(ValueError, match="codes"):
        op(a[:, :10].contiguous(), s, z, x, lin.packed, lin.bias, 16)
    with pytest.raises(ValueError, match="zero points"):
        op(a, s, z.float(), x, lin.packed, lin.bias, 16)
    with pytest.raises(ValueError, match="out_features"):
        op(a, s, z, x, lin.packed, lin.bias, 8)


@pytest.fixture
def fused_quantization(monkeypatch):
    from slimnn.ops import q8 as q8ops

    monkeypatch.setattr(q8ops, "FUSE_QUANTIZATION", True)


@pytest.mark.parametrize("activation", [None, "gelu"])
def test_compiled_dynamic_int8_quantizes_in_the_graph_bit_identically(activation, fused_quantization):
    # Under torch.compile a dynamic Int8Linear emits its row quantization as torch ops (Inductor fuses them
    # into the producer of x) and a GEMM over the codes: outputs equal eager bit for bit where the input is
    # the same (here the graph input itself), one graph for every M >= 2, no graph break.
    torch.manual_seed(2)
    model = nn.Sequential(slimnn.nn.Int8Linear.from_linear(nn.Linear(37, 29), activation=activation)).eval()
    compiled = torch.compile(model, fullgraph=True, dynamic=True)
    with torch.no_grad():
        x = _adversarial_rows(9, 37)
        y, codes = run_and_get_code(compiled, x)
        code = "\n".join(codes)
        assert "extern_kernels.slimnn_q8_linear_prequantized_v1" in code and "torch.ops.slimnn" not in code
        assert _same(y, model(x))
        graphs = counters["stats"]["unique_graphs"]
        for m in (2, 5, 33, 130):
            xm = _adversarial_rows(m, 37, seed=m)
            assert _same(compiled(xm), model(xm)), f"M={m}"
        assert counters["stats"]["unique_graphs"] == graphs, "compiled again for another batch size"
        x3 = torch.randn(2, 3, 37)
        assert _same(compiled(x3), model(x3))


def test_fused_quantization_in_a_block_fuses_into_the_layernorm_and_matches_eager(fused_quantization):
    # LayerNorm -> dynamic int8 -> GELU (fused) -> dynamic int8 + residual: both layers take the prequantized
    # op, the first layer's quantization lands in the LayerNorm's kernel, the output is eager's within the
    # tolerance of Inductor's own LayerNorm rounding (test above), one graph for every M.
    torch.manual_seed(3)
    model = nn.Sequential(Block()).eval()
    slimnn.compress_(model, slimnn.Int8Config())
    compiled = torch.compile(model, fullgraph=True, dynamic=True)
    with torch.no_grad():
        x = torch.randn(6, 64)
        y, codes = run_and_get_code(compiled, x)
        code = "\n".join(codes)
        assert code.count("extern_kernels.slimnn_q8_linear_prequantized_v1(") == 2
        fused = [ln for ln in code.splitlines() if "cpp_fused" in ln and "native_layer_norm" in ln and "amax" in ln]
        assert fused, "the first layer's row quantization was not fused into the LayerNorm kernel"
        assert _rel(y, model(x)) < 1e-3
        graphs = counters["stats"]["unique_graphs"]
        for m in (2, 9, 64):
            xm = torch.randn(m, 64)
            assert _rel(compiled(xm), model(xm)) < 1e-3
        assert counters["stats"]["unique_graphs"] == graphs


# ----------------------------------------------------------------------------------------------------
# Attention under compile: in a graph with a slimnn op, torch's CPU flash attention becomes slimnn's kernel.
# ----------------------------------------------------------------------------------------------------

class AttnBlock(nn.Module):
    """q/k/v projections, SDPA (with the mask or causal flag given), output projection."""

    def __init__(self, d=64, heads=4):
        super().__init__()
        self.h = heads
        self.q, self.k, self.v, self.o = (nn.Linear(d, d) for _ in range(4))

    def forward(self, x, mask=None, causal=False):
        b, t, d = x.shape
        q, k, v = (p(x).view(b, t, self.h, d // self.h).transpose(1, 2) for p in (self.q, self.k, self.v))
        a = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal)
        return self.o(a.transpose(1, 2).reshape(b, t, d))


def _calls_torch_flash(code):
    # A call, not the "Source Nodes" comments Inductor writes above each kernel.
    return "_scaled_dot_product_flash_attention_for_cpu.default(" in code


@pytest.fixture
def attention_setting():
    from slimnn.ops import inductor

    prev = inductor.ATTENTION
    yield inductor
    inductor.ATTENTION = prev


def _attn_case(compress, mask_kind, causal):
    torch.manual_seed(1)
    model = AttnBlock().eval()
    if compress:
        slimnn.compress_(model, slimnn.Int8Config())
    x = torch.randn(3, 7, 64)
    mask = None
    if mask_kind == "bool":
        mask = torch.rand(3, 1, 7, 7) > 0.3
        mask[..., 0] = True  # no fully masked row: torch's flash kernel gives NaN there, slimnn zeros
    elif mask_kind == "float":
        mask = torch.randn(3, 1, 1, 7)
    return model, x, mask


@pytest.mark.parametrize("mask_kind,causal", [(None, False), ("bool", False), ("float", False), (None, True)])
def test_compiled_compressed_model_runs_slimnn_attention(mask_kind, causal, attention_setting):
    model, x, mask = _attn_case(True, mask_kind, causal)
    compiled = torch.compile(model, fullgraph=True, dynamic=True)
    with torch.no_grad():
        y, codes = run_and_get_code(compiled, x, mask, causal)
        code = "\n".join(codes)
        assert "torch.ops.slimnn.attention" in code, "the flash-attention node was not replaced"
        assert not _calls_torch_flash(code)
        ref = model(x, mask, causal)  # eager: torch's SDPA around the int8 layers
        assert _rel(y, ref) < 1e-3
        x2 = torch.randn(2, 11, 64)  # another batch and length: the same graph, still right
        m2 = None if mask is None else (torch.ones(2, 1, 11, 11, dtype=torch.bool) if mask_kind == "bool"
                                        else torch.randn(2, 1, 1, 11))
        assert _rel(compiled(x2, m2, causal), model(x2, m2, causal)) < 1e-3


def test_attention_setting_off_and_uncompressed_models_keep_torch_attention(attention_setting):
    for compress, setting in ((True, "off"), (False, "auto")):
        torch._dynamo.reset()
        attention_setting.ATTENTION = setting
        model, x, mask = _attn_case(compress, "float", False)
        compiled = torch.compile(model, fullgraph=True, dynamic=True)
        with torch.no_grad():
            y, codes = run_and_get_code(compiled, x, mask)
        code = "\n".join(codes)
        assert "torch.ops.slimnn.attention" not in code, (compress, setting)
        assert _calls_torch_flash(code), (compress, setting)
        with torch.no_grad():
            assert _rel(y, model(x, mask)) < 1e-3


def test_attention_setting_always_replaces_it_in_float_models(attention_setting):
    attention_setting.ATTENTION = "always"
    model, x, mask = _attn_case(False, None, False)
    compiled = torch.compile(model, fullgraph=True, dynamic=True)
    with torch.no_grad():
        y, codes = run_and_get_code(compiled, x)
        assert "torch.ops.slimnn.attention" in "\n".join(codes)
        assert _rel(y, model(x)) < 1e-4


def test_bad_attention_setting_is_refused(attention_setting):
    attention_setting.ATTENTION = "sometimes"
    model, x, _ = _attn_case(True, None, False)
    with pytest.raises(Exception, match="ATTENTION must be one of"):
        with torch.no_grad():
            torch.compile(model, fullgraph=True, dynamic=True)(x)
