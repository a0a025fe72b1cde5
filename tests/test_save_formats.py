"""Every slimnn module type saves and loads bit-identically (int4, low-rank, bitmap sparse + int8, fused
activations next to the int8 and sparse formats), files honour the umask, and the CLI compresses to every
format it lists."""

import itertools
import os
import stat
import subprocess
import sys

import pytest
import torch
from torch import nn

import slimnn
from slimnn import io

_SRC = os.path.dirname(os.path.dirname(os.path.abspath(slimnn.__file__)))


def _mlp():
    return nn.Sequential(nn.Linear(100, 72), nn.GELU(), nn.Linear(72, 40, bias=False)).eval()


def _round_trip(model, tmp_path, name="m.safetensors"):
    p = tmp_path / name
    slimnn.save(model, p)
    back = slimnn.load(p)
    x = torch.randn(3, 100)
    with torch.no_grad():
        assert torch.equal(back(x), model(x))
    sd, sd2 = model.state_dict(), back.state_dict()
    assert sorted(sd) == sorted(sd2)
    for k in sd:
        assert torch.equal(sd[k], sd2[k]), k
    return back, p


INT4 = [slimnn.Int4Config(group_size=gs, symmetric=sym, mode=mode, scale_dtype=sd)
        for gs, sym, mode, sd in itertools.product([None, 32, 64, 128], [True, False], ["dynamic", "weight_only"],
                                                   ["float16", "bfloat16", "float32"])]


@pytest.mark.parametrize("cfg", INT4, ids=lambda c: f"g{c.group_size}-{'sym' if c.symmetric else 'asym'}-{c.mode}-{c.scale_dtype}")
def test_int4_every_variant_round_trips(cfg, tmp_path):
    torch.manual_seed(0)
    m = _mlp()
    slimnn.compress_(m, cfg)
    back, _ = _round_trip(m, tmp_path)
    assert back[0].config.group_size == cfg.group_size and back[0].config.symmetric == cfg.symmetric
    assert back[0].config.mode == cfg.mode


def test_int4_with_awq_input_scale_round_trips(tmp_path):
    torch.manual_seed(0)
    lin = nn.Linear(64, 32)
    from slimnn.math.quantize import quantize_int4

    codes, scales, zeros = quantize_int4(lin.weight, 32, False, torch.float16)
    mod = slimnn.nn.Int4Linear.from_quantized(codes, scales, zeros, 32, lin.bias, torch.rand(64) + 0.5)
    m = nn.Sequential(nn.Linear(100, 64), nn.ReLU(), mod).eval()
    p = tmp_path / "awq.safetensors"
    slimnn.save(m, p)
    back = slimnn.load(p)
    assert torch.equal(back[2].in_mul, mod.in_mul)
    x = torch.randn(2, 100)
    assert torch.equal(back(x), m(x))


@pytest.mark.parametrize("factors,residual,mode", list(itertools.product(["float32", "int8"], [0.0, 0.05],
                                                                          ["dynamic", "weight_only"])))
def test_lowrank_every_variant_round_trips(factors, residual, mode, tmp_path):
    torch.manual_seed(0)
    m = _mlp()
    slimnn.compress_(m, slimnn.LowRankConfig(rank_ratio=0.3, factor_dtype=factors, sparse_residual=residual,
                                             int8_mode=mode, progress=False))
    back, _ = _round_trip(m, tmp_path)
    assert back[0].factors == m[0].factors and back[0].rank == m[0].rank


@pytest.mark.parametrize("cfg", [
    [slimnn.SparseConfig(0.9, backend="sparse"), slimnn.Int8Config()],  # bitmap
    [slimnn.SparseConfig(0.5, pattern="2:4", backend="sparse"), slimnn.Int8Config(mode="weight_only")],
    slimnn.SparseConfig(0.8, pattern="1x4", backend="sparse"),
], ids=["bitmap_int8", "2:4_int8", "1x4_fp32"])
def test_sparse_formats_round_trip(cfg, tmp_path):
    torch.manual_seed(0)
    m = _mlp()
    slimnn.compress_(m, cfg)
    _round_trip(m, tmp_path)


def test_fused_activations_round_trip(tmp_path):
    torch.manual_seed(0)
    m = _mlp()
    rep = slimnn.compress_(m, slimnn.Int8Config())
    assert rep.fused
    back, _ = _round_trip(m, tmp_path)
    assert type(back[1]).__name__ == "FusedActivation" and back[0].activation == "gelu"


def test_corrupt_int4_and_lowrank_files_raise(tmp_path):
    from safetensors import safe_open

    torch.manual_seed(0)
    for cfg, victim, value in ((slimnn.Int4Config(), "0.codes", 77),
                               (slimnn.LowRankConfig(rank=8, factor_dtype="int8", progress=False), "0.u_q", -128)):
        m = _mlp()
        slimnn.compress_(m, cfg)
        p = tmp_path / "x.safetensors"
        slimnn.save(m, p)
        with safe_open(p, "pt") as f:
            meta = f.metadata()
            tensors = {k: f.get_tensor(k) for k in f.keys()}
        tensors[victim].view(-1)[0] = value
        from safetensors.torch import save_file

        save_file(tensors, p, metadata=meta)
        with pytest.raises(ValueError):
            slimnn.load(p)


def test_every_technique_has_a_save_format():
    """Every module class of every registered technique is saved by a registered format (and FusedActivation,
    which holds no tensors, is recorded in the manifest)."""
    from slimnn import techniques

    missing = [f"{name}: {cls.__name__}" for name, t in techniques.techniques().items() for cls in t.modules
               if techniques.save_format_for(cls) is None]
    assert not missing, f"no save format for {missing}"
    for name, t in techniques.techniques().items():
        assert t.save_formats, f"technique {name} registers no save format"


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_saved_files_honour_the_umask(umask, tmp_path):
    m = _mlp()
    slimnn.compress_(m, slimnn.Int8Config())
    old = os.umask(umask)
    try:
        p = tmp_path / f"u{umask:o}.safetensors"
        slimnn.save(m, p)
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(p).st_mode) == 0o666 & ~umask
    assert not [f for f in os.listdir(tmp_path) if f != p.name]  # no temporary file left behind


def test_overwriting_keeps_the_file_atomic_and_its_mode(tmp_path):
    m = _mlp()
    p = tmp_path / "m.safetensors"
    slimnn.save(m, p)
    os.chmod(p, 0o640)
    slimnn.compress_(m, slimnn.Int8Config())
    slimnn.save(m, p)
    assert stat.S_IMODE(os.stat(p).st_mode) == 0o640  # an existing file keeps the mode its owner gave it
    assert isinstance(slimnn.load(p)[0], slimnn.nn.Int8Linear)


@pytest.mark.parametrize("fmt", ["int4", "lowrank", pytest.param("sparse", marks=pytest.mark.slow)])
def test_cli_compresses_to_every_listed_format(fmt, tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 96), nn.ReLU(), nn.Linear(96, 32)).eval()
    src, dst = tmp_path / "float.safetensors", tmp_path / f"{fmt}.safetensors"
    slimnn.save(model, src)
    env = dict(os.environ, PYTHONPATH=_SRC + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, "-m", "slimnn", "compress", str(src), str(dst), "--format", fmt],
                         capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stderr
    back = slimnn.load(dst)
    assert type(back[0]).__module__.startswith("slimnn.nn")
