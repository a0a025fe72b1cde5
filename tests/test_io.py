"""slimnn.save / slimnn.load: bit-identical round trips, meta-device skeletons, and clear errors for
truncated, corrupt and hostile files (never code execution, never a crash)."""

import copy
import hashlib
import json
import os
import pickle
import struct

import pytest
import torch
from torch import nn

import slimnn
from slimnn import io
from slimnn.nn import Int8Linear


def _model(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Linear(64, 96), nn.GELU(), nn.Linear(96, 80, bias=False), nn.LayerNorm(80), nn.ReLU(), nn.Linear(80, 10)
    ).eval()


def _compressed(seed=0):
    m = _model(seed)
    slimnn.compress_(m, slimnn.Int8Config(group_size=32), filter_fn=lambda mod, n: n == "0")
    slimnn.compress_(m, slimnn.Int8Config(mode="weight_only"), filter_fn=lambda mod, n: n == "2")
    slimnn.compress_(m, slimnn.Int8Config())
    return m


def _x():
    return torch.randn(7, 64, generator=torch.Generator().manual_seed(1))


def _same_model(a, b):
    x = _x()
    with torch.inference_mode():
        assert torch.equal(a(x), b(x))
    for (na, ma), (nb, mb) in zip(a.named_modules(), b.named_modules()):
        assert na == nb and type(ma) is type(mb)
        if isinstance(ma, Int8Linear):
            assert torch.equal(ma.packed, mb.packed)
            assert ma.config == mb.config


def test_round_trip_bit_identical_without_model(tmp_path):
    m = _compressed()
    p = tmp_path / "m.safetensors"
    slimnn.save(m, p)
    r = slimnn.load(p)
    _same_model(m, r)
    assert not any(t.is_meta for t in list(r.parameters()) + list(r.buffers()))


def test_round_trip_into_meta_skeleton(tmp_path):
    m = _compressed()
    p = tmp_path / "m.safetensors"
    slimnn.save(m, p)
    with torch.device("meta"):
        skeleton = _model()
    assert all(t.is_meta for t in skeleton.parameters())
    r = slimnn.load(p, skeleton)
    assert r is skeleton
    _same_model(m, r)


def test_round_trip_float_and_bf16_and_tied(tmp_path):
    shared = nn.Sequential(nn.Linear(8, 8), nn.Linear(8, 8))
    shared[1].weight = shared[0].weight  # tied parameters
    shared = shared.to(torch.bfloat16)
    p = tmp_path / "tied.safetensors"
    slimnn.save(shared, p)
    man = io.manifest(p)
    assert man["aliases"] == {"1.weight": "0.weight"}
    r = slimnn.load(p)
    assert r[0].weight.dtype == torch.bfloat16
    assert r[1].weight is r[0].weight
    x = torch.randn(3, 8, dtype=torch.bfloat16)
    assert torch.equal(shared(x), r(x))


class _WithBuffer(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(16, 16)
        self.register_buffer("offset", torch.zeros(16), persistent=False)

    def forward(self, x):
        return self.fc(x) + self.offset


def test_custom_architecture_needs_skeleton_and_nonpersistent_buffers_load(tmp_path):
    m = _WithBuffer()
    m.offset.fill_(0.5)
    slimnn.compress_(m, slimnn.Int8Config())
    p = tmp_path / "c.safetensors"
    slimnn.save(m, p)
    with pytest.raises(ValueError, match="skeleton"):
        slimnn.load(p)
    with torch.device("meta"):
        sk = _WithBuffer()
    r = slimnn.load(p, sk)
    x = torch.randn(2, 16)
    assert torch.equal(m(x), r(x))
    assert float(r.offset[0]) == 0.5


def test_skeleton_mismatch_is_a_clear_error(tmp_path):
    p = tmp_path / "m.safetensors"
    slimnn.save(_compressed(), p)
    wrong = nn.Sequential(nn.Linear(64, 96), nn.GELU(), nn.Linear(96, 81, bias=False))
    with pytest.raises(ValueError, match="out_features|missing|not in"):
        slimnn.load(p, wrong)
    with pytest.raises(ValueError, match="not in the given model"):
        slimnn.load(p, nn.Sequential(nn.Linear(64, 96)))
    with pytest.raises(ValueError, match="is a Identity"):
        slimnn.load(p, nn.Sequential(nn.Identity()))


def test_load_never_unpickles(tmp_path, monkeypatch):
    p = tmp_path / "m.safetensors"
    m = _compressed()
    slimnn.save(m, p)
    raw = p.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    assert raw[8:9] == b"{"  # safetensors: a JSON header, then raw tensor bytes
    json.loads(raw[8: 8 + n])

    def boom(*a, **k):
        raise AssertionError("load must not unpickle")

    monkeypatch.setattr(pickle, "loads", boom)
    monkeypatch.setattr(pickle, "load", boom)
    monkeypatch.setattr(pickle, "Unpickler", boom)
    monkeypatch.setattr(torch, "load", boom)
    _same_model(m, slimnn.load(p))


def test_stored_form_is_canonical_not_packed(tmp_path):
    p = tmp_path / "m.safetensors"
    m = _compressed()
    slimnn.save(m, p)
    man = io.manifest(p)
    assert {k: v for k, v in man["tensors"]["0.q"].items() if k != "sha256"} == {"dtype": "I8", "shape": [96, 64]}
    assert {k: v for k, v in man["tensors"]["0.scales"].items() if k != "sha256"} == {"dtype": "F32", "shape": [2, 96]}
    assert all(len(t["sha256"]) == 64 for t in man["tensors"].values())
    assert not any(k.endswith("packed") for k in man["tensors"])
    assert man["modules"]["2"]["meta"]["config"]["mode"] == "weight_only"
    assert man["modules"]["0"]["meta"]["config"]["group_size"] == 32


def test_truncated_files(tmp_path):
    p = tmp_path / "m.safetensors"
    slimnn.save(_compressed(), p)
    raw = p.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    for cut in (0, 3, 8, 9, 8 + n // 2, 8 + n, 8 + n + 10, len(raw) - 1):
        q = tmp_path / f"cut{cut}.safetensors"
        q.write_bytes(raw[:cut])
        with pytest.raises(ValueError, match="truncated|not a slimnn|JSON|corrupt"):
            slimnn.load(q)


def test_missing_file_and_not_safetensors(tmp_path):
    with pytest.raises(ValueError, match="cannot read"):
        slimnn.load(tmp_path / "nope.safetensors")
    q = tmp_path / "junk.safetensors"
    q.write_bytes(b"\xff" * 64)
    with pytest.raises(ValueError):
        slimnn.load(q)
    plain = tmp_path / "plain.safetensors"
    from safetensors.torch import save_file

    save_file({"a": torch.zeros(3)}, str(plain))
    with pytest.raises(ValueError, match="without a slimnn manifest"):
        slimnn.load(plain)


# ---------- hostile files: written byte by byte ----------

def _write(path, header, data=b""):
    h = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(h)) + h + data)


def _parts(tmp_path):
    """(header dict, manifest dict, data bytes) of a valid saved file, to tamper with."""
    p = tmp_path / "ok.safetensors"
    slimnn.save(_compressed(), p)
    raw = p.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8: 8 + n])
    man = json.loads(header["__metadata__"][io.MANIFEST_KEY])
    return header, man, raw[8 + n:]


def _with_manifest(header, man):
    """The header with a tampered manifest whose digest is right: what is left to catch it is the check the
    test is about (tests/test_hostile_files.py covers the digests themselves)."""
    h = copy.deepcopy(header)
    text = json.dumps(man)
    h["__metadata__"] = {io.MANIFEST_KEY: text, io.DIGEST_KEY: hashlib.sha256(text.encode()).hexdigest()}
    return h


@pytest.mark.parametrize(
    "tamper, message",
    [
        (lambda m: m.update(format_version=99), "format version"),
        (lambda m: m.update(format="other"), "format"),
        (lambda m: m["modules"]["0"].update(format="evil_module"), "unknown"),
        (lambda m: m["modules"]["0"].update(version=7), "version"),
        (lambda m: m["modules"]["0"]["meta"].update(in_features=2**40), "in_features"),
        (lambda m: m["modules"]["0"]["meta"].update(in_features="64"), "in_features"),
        (lambda m: m["modules"]["0"]["meta"].update(out_features=True), "out_features"),
        (lambda m: m["modules"]["0"]["meta"].update(in_features=65), "tensor 'q'|expected"),
        (lambda m: m["modules"]["0"]["meta"]["config"].update(type="os.system"), "not a slimnn config"),
        (lambda m: m["modules"]["0"]["meta"]["config"].update(group_size=3), "group_size"),
        (lambda m: m["modules"]["0"]["meta"]["config"].update(evil=1), "unknown fields"),
        (lambda m: m["modules"]["0"]["meta"].update(bias="yes"), "bias"),
        (lambda m: m.update(modules=[]), "modules"),
        (lambda m: m["tensors"]["0.q"].update(shape=[2**31, 2**31]), "manifest says"),
        (lambda m: m["state"].append("ghost.weight"), "no tensor"),
        (lambda m: m["aliases"].update({"x": "ghost"}), "not in the file"),
        (lambda m: m["architecture"].update(type="Evil"), "allow-list"),
        (lambda m: m["architecture"]["children"][1].update(type="__import__"), "allow-list"),
        (lambda m: m["architecture"]["children"][3]["args"].update(eps="1e-5"), "eps"),
        (lambda m: m["architecture"]["children"][3]["args"].update(normalized_shape=[-1]), "normalized_shape"),
    ],
)
def test_hostile_manifest(tmp_path, tamper, message):
    header, man, data = _parts(tmp_path)
    tamper(man)
    p = tmp_path / "bad.safetensors"
    _write(p, _with_manifest(header, man), data)
    with pytest.raises(ValueError, match=message):
        slimnn.load(p)


@pytest.mark.parametrize(
    "tamper, message",
    [
        (lambda h: h["0.q"].update(dtype="F8_E4M3"), "dtype"),
        (lambda h: h["0.q"].update(shape=[2**40, 2**40]), "shape|byte range"),
        (lambda h: h["0.q"].update(shape=[-1, 64]), "shape"),
        (lambda h: h["0.q"].update(data_offsets=[0, 10**15]), "byte range|truncated"),
        (lambda h: h["0.q"].update(data_offsets="0"), "offsets"),
        (lambda h: h.update({"0.q": 5}), "JSON object"),
    ],
)
def test_hostile_safetensors_header(tmp_path, tamper, message):
    header, man, data = _parts(tmp_path)
    tamper(header)
    p = tmp_path / "bad.safetensors"
    _write(p, header, data)
    with pytest.raises(ValueError, match=message):
        slimnn.load(p)


def test_huge_header_length_and_duplicate_keys(tmp_path):
    p = tmp_path / "h.safetensors"
    p.write_bytes(struct.pack("<Q", 2**62) + b"{}")
    with pytest.raises(ValueError, match="implausible"):
        slimnn.load(p)
    p.write_bytes(struct.pack("<Q", 19) + b'{"a": 1, "a": 2}   ')
    with pytest.raises(ValueError, match="duplicate"):
        slimnn.load(p)
    p.write_bytes(struct.pack("<Q", 5) + b"[1,2]")
    with pytest.raises(ValueError, match="JSON object"):
        slimnn.load(p)
    p.write_bytes(struct.pack("<Q", 3) + b"NaN")
    with pytest.raises(ValueError, match="JSON"):
        slimnn.load(p)


def _replace_tensor_bytes(tmp_path, name, fn):
    """Changes a tensor's bytes and its digest, so that the value checks (not the digest) must catch it."""
    header, man, data = _parts(tmp_path)
    a, b = header[name]["data_offsets"]
    new = bytes(fn(bytearray(data[a:b])))
    data = data[:a] + new + data[b:]
    man["tensors"][name]["sha256"] = hashlib.sha256(new).hexdigest()
    p = tmp_path / "bad.safetensors"
    _write(p, _with_manifest(header, man), data)
    return p


def test_bad_tensor_values(tmp_path):
    p = _replace_tensor_bytes(tmp_path, "0.q", lambda b: bytes([0x80]) + bytes(b[1:]))  # int8 -128
    with pytest.raises(ValueError, match="-128"):
        slimnn.load(p)
    nan = struct.pack("<f", float("nan"))
    p = _replace_tensor_bytes(tmp_path, "0.scales", lambda b: nan + bytes(b[4:]))
    with pytest.raises(ValueError, match="scales"):
        slimnn.load(p)
    zero = struct.pack("<f", 0.0)
    p = _replace_tensor_bytes(tmp_path, "0.scales", lambda b: zero + bytes(b[4:]))
    with pytest.raises(ValueError, match="scales"):
        slimnn.load(p)


def test_gap_or_overlap_in_data(tmp_path):
    header, man, data = _parts(tmp_path)
    p = tmp_path / "extra.safetensors"
    _write(p, header, data + b"\0" * 16)
    with pytest.raises(ValueError, match="trailing"):
        slimnn.load(p)
    first = min(header[k]["data_offsets"][0] for k in header if k != "__metadata__")
    assert first == 0
    k = next(k for k in header if k != "__metadata__" and header[k]["data_offsets"][0] > 0)
    a, b = header[k]["data_offsets"]
    header[k]["data_offsets"] = [a - 4, b - 4]
    _write(p, header, data)
    with pytest.raises(ValueError, match="overlaps|gap"):
        slimnn.load(p)


# ---------- atomic write ----------

def test_atomic_write_keeps_old_file_on_failure(tmp_path, monkeypatch):
    p = tmp_path / "m.safetensors"
    old = _compressed(0)
    slimnn.save(old, p)
    before = p.read_bytes()
    import safetensors.torch as st

    real = st.save_file

    def crash(tensors, filename, metadata=None):
        real(tensors, filename, metadata=metadata)
        with open(filename, "r+b") as f:
            f.truncate(100)  # half written ...
        raise OSError("disk full")  # ... and the writer dies

    monkeypatch.setattr(st, "save_file", crash)
    with pytest.raises(OSError, match="disk full"):
        slimnn.save(_compressed(1), p)
    assert p.read_bytes() == before
    assert os.listdir(tmp_path) == ["m.safetensors"]  # no temporary left behind
    monkeypatch.setattr(st, "save_file", real)
    slimnn.save(_compressed(1), p)
    _same_model(_compressed(1), slimnn.load(p))


def test_save_rejects_meta_and_non_modules(tmp_path):
    with pytest.raises(TypeError):
        slimnn.save(torch.zeros(3), tmp_path / "x.safetensors")
    with torch.device("meta"):
        m = _model()
    with pytest.raises(ValueError, match="meta"):
        slimnn.save(m, tmp_path / "x.safetensors")
    assert os.listdir(tmp_path) == []


def test_user_metadata_and_registry(tmp_path):
    p = tmp_path / "m.safetensors"
    slimnn.save(_compressed(), p, metadata={"task": "digits", "n": 3})
    assert io.manifest(p)["user"] == {"task": "digits", "n": 3}
    assert io.registered_formats()["int8_linear"] is Int8Linear


def test_deeply_nested_json_and_architecture(tmp_path):
    header, man, data = _parts(tmp_path)
    node = {"type": "ReLU", "args": {}}
    for _ in range(100):
        node = {"type": "Sequential", "args": {}, "children": [node]}
    man["architecture"] = node
    p = tmp_path / "deep.safetensors"
    _write(p, _with_manifest(header, man), data)
    with pytest.raises(ValueError, match="nested too deeply"):
        slimnn.load(p)
    h = copy.deepcopy(header)
    h["__metadata__"] = {io.MANIFEST_KEY: "[" * 200000 + "]" * 200000}
    _write(p, h, data)
    with pytest.raises(ValueError, match="JSON"):
        slimnn.load(p)
