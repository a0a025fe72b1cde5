"""torch.export of compressed models (saved, loaded in a fresh process after `import slimnn`), and ONNX:
torch.onnx.export raises a clear error, slimnn.export_onnx writes int8 layers as DequantizeLinear + MatMul
that ONNX Runtime runs."""

import os
import subprocess
import sys
import warnings

import pytest
import torch
from torch import nn

import slimnn

_SRC = os.path.dirname(os.path.dirname(os.path.abspath(slimnn.__file__)))

FORMATS = {
    "int8": slimnn.Int8Config(),
    "int4": slimnn.Int4Config(group_size=32, symmetric=True),
    "sparse": slimnn.SparseConfig(0.8, backend="sparse"),
    "bitmap_int8": [slimnn.SparseConfig(0.9, backend="sparse"), slimnn.Int8Config()],
    "lowrank_residual": slimnn.LowRankConfig(rank_ratio=0.5, sparse_residual=0.01, progress=False),
}


def _mlp():
    return nn.Sequential(nn.Linear(64, 96), nn.GELU(), nn.Linear(96, 32)).eval()


def _python(code, expect_ok=True):
    env = dict(os.environ, PYTHONPATH=_SRC + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    if expect_ok:
        assert out.returncode == 0, out.stderr
    return out


@pytest.mark.parametrize("names", [("int8", "lowrank_residual"),
                                   pytest.param(("int4", "sparse", "bitmap_int8"), marks=pytest.mark.slow)],
                         ids=["int8+lowrank", "int4+sparse+bitmap"])
def test_torch_export_saved_and_loaded_in_a_fresh_process(names, tmp_path):
    torch.manual_seed(0)
    paths = []
    for name in names:
        cfg = FORMATS[name]
        m = _mlp()
        slimnn.compress_(m, cfg)
        x = torch.randn(5, 64)
        ep = torch.export.export(m, (x,), dynamic_shapes=({0: torch.export.Dim("m")},))
        p = tmp_path / f"{name}.pt2"
        torch.export.save(ep, p)
        x7 = torch.randn(7, 64)
        with torch.no_grad():
            torch.save({"x": x7, "y": m(x7)}, tmp_path / f"{name}.io")
        paths.append((name, str(p), str(tmp_path / f"{name}.io")))
    code = "import torch, slimnn\n" + "".join(
        f"ep = torch.export.load({p!r}); d = torch.load({io_!r})\n"
        f"assert torch.equal(ep.module()(d['x']), d['y']), {name!r}\n" for name, p, io_ in paths)
    _python(code)
    # Without `import slimnn` the custom ops are unknown: loading fails (documented), it does not run wrongly.
    out = _python(f"import torch; torch.export.load({paths[0][1]!r})", expect_ok=False)
    assert out.returncode != 0


@pytest.mark.parametrize("dynamo", [False, True])
@pytest.mark.parametrize("name", ["int8", "int4", pytest.param("sparse", marks=pytest.mark.slow),
                                  pytest.param("lowrank_residual", marks=pytest.mark.slow)])
def test_torch_onnx_export_raises_instead_of_exporting_a_constant(name, dynamo, tmp_path):
    pytest.importorskip("onnxscript" if dynamo else "onnx")
    m = _mlp()
    slimnn.compress_(m, FORMATS[name])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(Exception) as e:
            torch.onnx.export(m, (torch.randn(2, 64),), str(tmp_path / "m.onnx"), dynamo=dynamo)
    text = "".join(str(x) for x in (e.value, e.value.__cause__, e.value.__context__))
    assert "slimnn" in text and ("export_onnx" in text or "no ONNX export" in text), text[:2000]


def test_torch_jit_trace_raises():
    m = _mlp()
    slimnn.compress_(m, slimnn.Int8Config())
    with pytest.raises(ValueError, match="jit.trace"):
        torch.jit.trace(m, (torch.randn(2, 64),))


def _ort_run(path, feeds):
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]
    return torch.from_numpy(sess.run(None, dict(zip(names, [f.numpy() for f in feeds])))[0])


@pytest.mark.parametrize("cfg", [slimnn.Int8Config(), slimnn.Int8Config(mode="weight_only", group_size=32)],
                         ids=["dynamic_fused_gelu", "weight_only_g32"])
def test_export_onnx_int8_runs_in_onnxruntime(cfg, tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    import onnx

    torch.manual_seed(0)
    m = _mlp()
    slimnn.compress_(m, cfg)
    p = tmp_path / "m.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        slimnn.export_onnx(m, (torch.randn(3, 64),), str(p), dynamic_shapes=({0: "batch"},))
    g = onnx.load(str(p))
    ops = [n.op_type for n in g.graph.node]
    assert ops.count("DequantizeLinear") >= 2 and ("MatMul" in ops or "Gemm" in ops)
    assert {i.name for i in g.graph.input}, "the graph has no input"
    int8_inits = [t for t in g.graph.initializer if t.data_type == onnx.TensorProto.INT8]
    assert len(int8_inits) >= 2  # the weights stay int8 in the file
    x = torch.randn(9, 64)
    y = _ort_run(p, [x])
    with torch.no_grad():
        ref = m(x)
    assert float((y - ref).norm() / ref.norm()) < 0.02  # ORT: float activations; slimnn dynamic: uint8 rows
    assert type(m[0]).__name__ == "Int8Linear"  # the model is restored after the export


def test_export_onnx_names_the_layers_it_cannot_export(tmp_path):
    m = _mlp()
    slimnn.compress_(m, slimnn.Int4Config(group_size=32, symmetric=True))
    with pytest.raises(ValueError, match=r"no ONNX export.*Int4Linear"):
        slimnn.export_onnx(m, (torch.randn(2, 64),), str(tmp_path / "m.onnx"))


@pytest.mark.slow
def test_export_onnx_minilm_int8_cosine(tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    from slimnn.app.demo import SENTENCES, load_minilm

    st = load_minilm()
    if st is None:
        pytest.skip("all-MiniLM-L6-v2 is not installed")
    bert = st[0].auto_model
    slimnn.compress_(bert, slimnn.Int8Config())

    class Embed(nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, ids, mask, types):
            return self.m(input_ids=ids, attention_mask=mask, token_type_ids=types).last_hidden_state

    w = Embed(bert).eval()
    f = st.tokenize(list(SENTENCES)[:4])
    args = (f["input_ids"], f["attention_mask"], f["token_type_ids"])
    p = tmp_path / "minilm.onnx"
    dims = {0: "batch", 1: "tokens"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        slimnn.export_onnx(w, args, str(p), dynamic_shapes=(dims, dims, dims))
    f2 = st.tokenize(list(SENTENCES))
    feeds = [f2["input_ids"], f2["attention_mask"], f2["token_type_ids"]]
    y = _ort_run(p, feeds)
    with torch.no_grad():
        ref = w(*feeds)
    mask = f2["attention_mask"].unsqueeze(-1).float()
    e1, e2 = (y * mask).sum(1) / mask.sum(1), (ref * mask).sum(1) / mask.sum(1)
    cos = torch.nn.functional.cosine_similarity(e1, e2)
    assert float(cos.mean()) >= 0.995, cos


@pytest.mark.parametrize("mode", ["dynamic", "weight_only", "static"])
def test_export_onnx_int8_convnet_runs_in_onnxruntime(mode, tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    import onnx

    torch.manual_seed(0)
    # dense 3x3 + folded BN + fused ReLU6, depthwise 3x3 + fused hard-swish, strided pointwise
    m = nn.Sequential(nn.Conv2d(4, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU6(),
                      nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.Hardswish(), nn.Conv2d(8, 12, 1, stride=2),
                      nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(12, 5)).eval()
    with torch.no_grad():
        m[1].running_mean.uniform_(-1, 1)
        m[1].running_var.uniform_(0.5, 2)
    slimnn.compress_(m, slimnn.Int8Config(mode="dynamic" if mode == "static" else mode))
    if mode == "static":  # calibrated input grids, uint8 between the first two convs
        slimnn.static_quantize_convs_(m, [torch.randn(4, 4, 10, 10)])
        assert m[0].out_q is not None
    p = tmp_path / "conv.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        slimnn.export_onnx(m, (torch.randn(2, 4, 10, 10),), str(p), dynamic_shapes=({0: "batch"},))
    g = onnx.load(str(p))
    ops = [n.op_type for n in g.graph.node]
    assert ops.count("Conv") == 3 and ops.count("DequantizeLinear") >= 3, ops
    assert (ops.count("QuantizeLinear") >= 3) == (mode == "static"), ops
    assert sum(t.data_type == onnx.TensorProto.INT8 for t in g.graph.initializer) >= 3  # int8 in the file
    x = torch.randn(3, 4, 10, 10)
    y = _ort_run(p, [x])
    with torch.no_grad():
        ref = m(x)
    # weight_only: the same arithmetic (float rounding only); dynamic: slimnn also quantizes activations;
    # static: the same grids in the graph (a code may differ at a rounding tie)
    tol = {"weight_only": 1e-5, "dynamic": 0.02, "static": 0.005}[mode]
    assert float((y - ref).norm() / ref.norm()) < tol
    assert type(m[0]).__name__ == "Conv2dInt8"  # restored after the export


def test_export_onnx_conv1d_with_asymmetric_padding(tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    from slimnn.nn.conv import Conv1dInt8

    torch.manual_seed(0)
    conv = nn.Conv1d(6, 10, 4, stride=2, dilation=1, padding=0)
    mod = Conv1dInt8.from_conv(conv, mode="weight_only")
    mod.padding = (0, 0, 1, 2)  # TF "same": one left, two right
    m = nn.Sequential(mod, nn.ReLU()).eval()
    p = tmp_path / "c1.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        slimnn.export_onnx(m, (torch.randn(2, 6, 15),), str(p))
    x = torch.randn(2, 6, 15)
    y = _ort_run(p, [x])
    with torch.no_grad():
        ref = m(x)
    assert y.shape == ref.shape and float((y - ref).norm() / ref.norm()) < 1e-5


def test_torch_export_of_int8_convs_saved_and_loaded_in_a_fresh_process(tmp_path):
    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(4, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1, groups=8),
                      nn.Conv2d(8, 6, 1)).eval()
    slimnn.compress_(m, slimnn.Int8Config())
    ep = torch.export.export(m, (torch.randn(2, 4, 9, 9),), dynamic_shapes=({0: torch.export.Dim("n")},))
    p = tmp_path / "conv.pt2"
    torch.export.save(ep, p)
    x3 = torch.randn(3, 4, 9, 9)
    with torch.no_grad():
        torch.save({"x": x3, "y": m(x3)}, tmp_path / "conv.io")
    _python(f"import torch, slimnn\nep = torch.export.load({str(p)!r}); d = torch.load({str(tmp_path / 'conv.io')!r})\n"
            "assert torch.equal(ep.module()(d['x']), d['y'])\n")
