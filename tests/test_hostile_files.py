"""Hostile and corrupt model files (issue 18): every reproducer of the outside probe, rebuilt from saved
int8, sparse and fused models, plus random byte flips anywhere in a saved file. Each must raise
``slimnn.io.LoadError`` (a ``ValueError``) naming the problem, quickly and without allocating what the file
merely declares. Figures (time and memory per case, 1,000 flips per model): scripts/hostile_probe.py."""

from __future__ import annotations

import copy
import json
import os
import random
import struct

import pytest
import torch
from torch import nn

import slimnn
from slimnn import io
from slimnn.formats.manifest import DTYPE_NAMES

LoadError = io.LoadError
FLIPS = int(os.environ.get("SLIMNN_FLIPS", "40"))  # per model in the default run; the slow test does 1,000


# ---------------------------------------------------------------- models and file surgery

def int8_model() -> nn.Module:
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(64, 96), nn.GELU(), nn.Linear(96, 80, bias=False), nn.LayerNorm(80), nn.ReLU(),
                      nn.Linear(80, 10)).eval()
    slimnn.compress_(m, slimnn.Int8Config(group_size=32), filter_fn=lambda mod, n: n == "0", fuse=False)
    slimnn.compress_(m, slimnn.Int8Config(mode="weight_only"), filter_fn=lambda mod, n: n == "2", fuse=False)
    slimnn.compress_(m, slimnn.Int8Config(), fuse=False)
    return m


def sparse_model() -> nn.Module:
    torch.manual_seed(1)
    m = nn.Sequential(nn.Linear(64, 96), nn.ReLU(), nn.Linear(96, 80), nn.ReLU(), nn.Linear(80, 16)).eval()
    slimnn.compress_(m, slimnn.SparseConfig(0.9, backend="sparse"), filter_fn=lambda mod, n: n == "0")
    slimnn.compress_(m, slimnn.SparseConfig(0.8, values="int8", int8_mode="dynamic", backend="sparse"),
                     filter_fn=lambda mod, n: n == "2")  # the bitmap format
    slimnn.compress_(m, slimnn.SparseConfig(0.5, values="int8", backend="dense"), filter_fn=lambda mod, n: n == "4")
    return m


def fused_model() -> nn.Module:
    torch.manual_seed(2)
    m = nn.Sequential(nn.Linear(64, 96), nn.GELU(), nn.Linear(96, 80), nn.ReLU(), nn.Linear(80, 10)).eval()
    slimnn.compress_(m, slimnn.Int8Config())  # fuses the GELU and the ReLU into their Linears
    assert io.describe_architecture(m) is not None
    return m


MODELS = {"int8": int8_model, "sparse": sparse_model, "fused": fused_model}


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    d = tmp_path_factory.mktemp("hostile")
    out = {}
    for name, make in MODELS.items():
        p = d / f"{name}.safetensors"
        slimnn.save(make(), p)
        out[name] = p
    return out


def parts(path):
    """(tensors, manifest) of a saved file, to tamper with and write back with valid digests."""
    from safetensors.torch import load_file

    return load_file(str(path)), copy.deepcopy(io.manifest(path))


def resign(path, tensors, man):
    """Writes tensors + manifest with correct digests: what is left to catch is the semantic check."""
    io.write_file(path, tensors, man)


def x_for(path):
    k = 64
    return torch.randn(3, k, generator=torch.Generator().manual_seed(0))


def rejects(path, match=None, model=None):
    with pytest.raises(LoadError, match=match) as e:
        slimnn.load(path, model)
    assert isinstance(e.value, ValueError)
    return str(e.value)


# ---------------------------------------------------------------- integrity: digests

def test_digests_are_written_and_checked(saved, tmp_path):
    man = io.manifest(saved["int8"])
    assert man["format_version"] == io.FORMAT_VERSION == 2
    assert all(len(d["sha256"]) == 64 for d in man["tensors"].values())
    slimnn.load(saved["int8"])  # clean file: loads


@pytest.mark.parametrize("kind", sorted(MODELS))
def test_a_flipped_bit_in_any_tensor_is_an_error_naming_it(saved, tmp_path, kind):
    raw = saved[kind].read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    for name, e in header.items():
        if name == "__metadata__" or e["data_offsets"][0] == e["data_offsets"][1]:
            continue
        a, b = e["data_offsets"]
        for pos in (a, (a + b) // 2, b - 1):
            bad = bytearray(raw)
            bad[8 + n + pos] ^= 0x01 << (pos % 8)
            p = tmp_path / "flip.safetensors"
            p.write_bytes(bytes(bad))
            msg = rejects(p)
            assert repr(name) in msg and "digest" in msg, msg


def _flip_cases(raw: bytes, count: int, seed: int):
    rng = random.Random(seed)
    for _ in range(count):
        pos = rng.randrange(len(raw))
        bad = bytearray(raw)
        bad[pos] ^= rng.randrange(1, 256)
        yield pos, bytes(bad)


def _all_flips_rejected(saved, tmp_path, count):
    silent = []
    for kind in sorted(MODELS):
        raw = saved[kind].read_bytes()
        for pos, bad in _flip_cases(raw, count, seed=hash(kind) & 0xFFFF):
            p = tmp_path / "f.safetensors"
            p.write_bytes(bad)
            try:
                slimnn.load(p)
            except LoadError:
                continue
            silent.append((kind, pos))
    assert not silent, f"{len(silent)} flips loaded silently: {silent[:10]}"


def test_random_byte_flips_anywhere_are_rejected(saved, tmp_path):
    _all_flips_rejected(saved, tmp_path, FLIPS)


@pytest.mark.slow
def test_a_thousand_random_byte_flips_per_model_are_rejected(saved, tmp_path):
    _all_flips_rejected(saved, tmp_path, 1000)


def test_header_whitespace_and_padding_are_checked(saved, tmp_path):
    raw = saved["int8"].read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    head = raw[8 : 8 + n]
    # A tab in place of a padding space, or inside the JSON, would be valid JSON: the reader refuses both.
    for i, c in enumerate(head):
        if c == 0x2C:  # the first ',' between two entries
            break
    p = tmp_path / "ws.safetensors"
    p.write_bytes(raw[:8] + head[:i] + b"\t" + head[i + 1 :] + raw[8 + n :])
    rejects(p)
    pad = head + b"   "
    p.write_bytes(struct.pack("<Q", len(pad)) + pad[:-1] + b"\n" + raw[8 + n :])
    rejects(p, "header")


def test_files_without_digests_load_with_a_warning(saved, tmp_path):
    """Files of format version 1 (slimnn before digests) still load; the warning says they are unverified."""
    tensors, man = parts(saved["int8"])
    man["format_version"] = 1
    for d in man["tensors"].values():
        d.pop("sha256")
    p = tmp_path / "v1.safetensors"
    io.write_file(p, tensors, man, digests=False)
    with pytest.warns(io.UnverifiedFileWarning, match="no content digests"):
        r = slimnn.load(p)
    with torch.inference_mode():
        assert torch.equal(r(x_for(p)), slimnn.load(saved["int8"])(x_for(p)))
    # a version-2 file whose digests were stripped is an error, not a downgrade
    man["format_version"] = 2
    io.write_file(p, tensors, man, digests=False)
    rejects(p, "digest")


# ---------------------------------------------------------------- second paths into module state

def test_nonpersistent_cannot_overwrite_a_validated_blob(saved, tmp_path):
    """The probe's bypass: a corrupt q8 blob stored as an extra tensor listed in `nonpersistent` was copied
    over the module's validated blob (only its shape was compared)."""
    tensors, man = parts(saved["int8"])
    m = slimnn.load(saved["int8"])
    blob = m[5].packed.clone()
    blob[200] ^= 0x10  # a weight byte: the column sums no longer match
    tensors["5.packed"] = blob
    man["nonpersistent"].append("5.packed")
    man["tensors"]["5.packed"] = {"dtype": "U8", "shape": list(blob.shape)}
    p = tmp_path / "np.safetensors"
    resign(p, tensors, man)
    rejects(p, "5.packed")


class _WithBuffer(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(16, 16)
        self.register_buffer("offset", torch.zeros(16), persistent=False)
        self.register_buffer("ids", torch.arange(16), persistent=False)

    def forward(self, x):
        return self.fc(x) + self.offset


def test_nonpersistent_buffers_are_validated_like_state(tmp_path):
    m = _WithBuffer()
    slimnn.compress_(m, slimnn.Int8Config())
    p = tmp_path / "b.safetensors"
    slimnn.save(m, p)
    tensors, man = parts(p)
    for name, bad in (("offset", torch.zeros(16, dtype=torch.int32)), ("ids", torch.zeros(16)),
                      ("offset", torch.zeros(17))):
        t2 = dict(tensors)
        t2[name] = bad
        man2 = copy.deepcopy(man)
        man2["tensors"][name] = {"dtype": DTYPE_NAMES[bad.dtype], "shape": list(bad.shape)}
        q = tmp_path / "b2.safetensors"
        resign(q, t2, man2)
        with torch.device("meta"):
            sk = _WithBuffer()
        rejects(q, name, model=sk)
    # a nonpersistent name that is not a non-persistent buffer of the model
    man2 = copy.deepcopy(man)
    man2["nonpersistent"].append("fc.bias")
    tensors2 = dict(tensors)
    tensors2["fc.bias"] = torch.zeros(16)
    man2["tensors"]["fc.bias"] = {"dtype": "F32", "shape": [16]}
    resign(tmp_path / "b3.safetensors", tensors2, man2)
    with torch.device("meta"):
        sk = _WithBuffer()
    rejects(tmp_path / "b3.safetensors", "fc.bias", model=sk)


def test_state_tensor_of_the_wrong_dtype(saved, tmp_path):
    """The probe's I32 state tensor (a LayerNorm weight) used to load and fail later with RuntimeError."""
    tensors, man = parts(saved["int8"])
    tensors["3.weight"] = tensors["3.weight"].to(torch.int32)
    man["tensors"]["3.weight"]["dtype"] = "I32"
    p = tmp_path / "i32.safetensors"
    resign(p, tensors, man)
    rejects(p, "3.weight")
    # floating state may change precision (a bf16 file into a float32 skeleton is how bf16 models load)
    tensors, man = parts(saved["int8"])
    tensors["3.weight"] = tensors["3.weight"].to(torch.bfloat16)
    man["tensors"]["3.weight"]["dtype"] = "BF16"
    resign(p, tensors, man)
    assert slimnn.load(p)[3].weight.dtype == torch.bfloat16


def test_alias_into_a_compressed_module_is_refused(saved, tmp_path):
    tensors, man = parts(saved["int8"])
    man["aliases"]["3.weight"] = "0.scales"
    man["state"].remove("3.weight")
    del tensors["3.weight"]
    del man["tensors"]["3.weight"]
    p = tmp_path / "alias.safetensors"
    resign(p, tensors, man)
    rejects(p, "3.weight|0.scales")


# ---------------------------------------------------------------- cross-field consistency

def test_fused_activation_without_its_module_activation(saved, tmp_path):
    """The probe dropped a Linear's `activation` but kept `fused_activations` for it: the GELU silently
    vanished (output difference 1.75)."""
    tensors, man = parts(saved["fused"])
    assert man["fused_activations"]["1"] == {"activation": "gelu", "into": "0"}
    del man["modules"]["0"]["meta"]["activation"]
    man["modules"]["0"]["version"] = 1
    p = tmp_path / "fused.safetensors"
    resign(p, tensors, man)
    rejects(p, "fused|activation")
    # and the other way round: a different activation in the module than the one recorded as fused
    tensors, man = parts(saved["fused"])
    man["modules"]["0"]["meta"]["activation"] = "relu"
    resign(p, tensors, man)
    rejects(p, "fused|activation")
    # a fused entry pointing to a module that is not compressed in the file
    tensors, man = parts(saved["fused"])
    man["fused_activations"]["1"]["into"] = "nothing"
    resign(p, tensors, man)
    rejects(p, "fused|into")


def test_group_size_against_k(saved, tmp_path):
    tensors, man = parts(saved["int8"])
    man["modules"]["0"]["meta"]["config"]["group_size"] = 128  # > K = 64: would be one group
    p = tmp_path / "gs.safetensors"
    resign(p, tensors, man)
    rejects(p, "group_size")


def test_sparse_blob_header_flips_are_refused_even_with_valid_digests(saved, tmp_path):
    """The probe's q8 header bit (group_size per-channel -> 32832 > K) in the dense-int8 SparseLinear blob;
    and a sparse blob whose dims disagree with the manifest."""
    tensors, man = parts(saved["sparse"])
    blob = tensors["4.packed"].clone()
    off = 48  # PackedHeader::group_size (csrc/formats/header.h)
    gs = struct.unpack("<q", bytes(blob[off : off + 8].tolist()))[0]
    assert gs == 80  # per-channel: group_size = kp
    blob[off : off + 8] = torch.tensor(list(struct.pack("<q", gs | 0x8000)), dtype=torch.uint8)
    tensors["4.packed"] = blob
    p = tmp_path / "sp.safetensors"
    resign(p, tensors, man)
    rejects(p, "(?s)'4'.*inconsistent")
    # the blob of a sparse layer whose declared shape differs from the blob's
    tensors, man = parts(saved["sparse"])
    man["modules"]["2"]["meta"].update(in_features=97)
    man["architecture"]["children"][2] = {"type": "compressed"}
    resign(p, tensors, man)
    rejects(p, "blob is for a 96->80 layer")


def test_manifest_fields_constrain_each_other(saved, tmp_path):
    p = tmp_path / "x.safetensors"
    cases = [
        ("int8", lambda m: m["modules"]["0"]["meta"].update(bias=False), "bias"),
        ("sparse", lambda m: m["modules"]["0"]["meta"].update(backend="dense"), "backend"),
        ("sparse", lambda m: m["modules"]["0"]["meta"].update(out_features=95), "out_features|95"),
        ("sparse", lambda m: m["modules"]["2"]["meta"]["config"].update(values="fp32"), "values|int8"),
        ("int8", lambda m: m["architecture"]["children"].__setitem__(0, {"type": "Linear", "args": {
            "in_features": 64, "out_features": 96, "bias": True}}), "architecture and the compressed"),
        ("int8", lambda m: m["modules"].update({"1": m["modules"]["0"]}), "1"),
    ]
    for kind, tamper, match in cases:
        tensors, man = parts(saved[kind])
        tamper(man)
        resign(p, tensors, man)
        rejects(p, match)


# ---------------------------------------------------------------- resource bounds

def _peak_rss_growth(fn) -> int:
    """Peak RSS growth while fn() runs, in bytes (Linux: VmHWM reset through clear_refs)."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")

    def field(name):
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(name):
                    return int(line.split()[1]) * 1024
        raise KeyError(name)

    base = field("VmRSS:")
    fn()
    return field("VmHWM:") - base


def _rejected_cheaply(p, match=None, model=None):
    try:
        growth = _peak_rss_growth(lambda: rejects(p, match, model))
    except (OSError, KeyError):  # no clear_refs (not Linux): the error is still checked
        rejects(p, match, model)
        return
    assert growth < 300 * 2**20, f"{growth >> 20} MiB to reject {p.name}"


def test_huge_sparse_layer_in_a_tiny_file(saved, tmp_path):
    """6.9 KB declaring 20000 x 20000 made SparseLinear allocate a dense zeros(out, in) first (1.5 GB)."""
    tensors, man = parts(saved["sparse"])
    man["modules"]["0"]["meta"].update(in_features=20000, out_features=20000, bias=False)
    del tensors["0.bias"]  # so that the declared shape reaches the module, whose blob is 64 -> 96
    p = tmp_path / "huge.safetensors"
    resign(p, tensors, man)
    _rejected_cheaply(p, "blob is for a 64->96 layer")
    man["modules"]["0"]["meta"].update(in_features=60000, out_features=60000)
    resign(p, tensors, man)
    _rejected_cheaply(p, "blob is for a 64->96 layer")


def test_many_modules_and_deep_nesting(saved, tmp_path):
    tensors, man = parts(saved["int8"])
    man["architecture"]["children"] += [{"type": "Identity", "args": {}}] * 100_005  # past the node count
    p = tmp_path / "many.safetensors"
    resign(p, tensors, man)
    _rejected_cheaply(p, "modules")
    tensors, man = parts(saved["int8"])
    fake = man["modules"]["5"]
    man["modules"].update({f"x{i}": fake for i in range(100_000)})
    resign(p, tensors, man)
    _rejected_cheaply(p, "modules")


@pytest.mark.parametrize("arch", [
    {"type": "Embedding", "args": {"num_embeddings": 2**31 - 1, "embedding_dim": 2**31 - 1}},
    {"type": "Linear", "args": {"in_features": 2**31 - 1, "out_features": 2**31 - 1, "bias": True}},
    {"type": "LayerNorm", "args": {"normalized_shape": [2**31 - 1, 2**31 - 1], "eps": 1e-5,
                                   "elementwise_affine": True, "bias": True}},
])
def test_huge_dims_in_the_architecture(saved, tmp_path, arch):
    """dims of 2^31-1 used to reach torch (RuntimeError: storage size overflow)."""
    tensors, man = parts(saved["int8"])
    man["architecture"]["children"].append(arch)
    p = tmp_path / "dims.safetensors"
    resign(p, tensors, man)
    _rejected_cheaply(p)


def test_declared_sizes_against_bytes_present(saved, tmp_path):
    tensors, man = parts(saved["sparse"])
    man["modules"]["0"]["meta"]["packed_bytes"] = 2**40
    p = tmp_path / "pb.safetensors"
    resign(p, tensors, man)
    rejects(p, "packed")


# ---------------------------------------------------------------- one exception type, OS errors included

def test_os_errors_are_load_errors(saved, tmp_path):
    rejects(tmp_path, "directory|cannot read")
    rejects(tmp_path / "missing.safetensors", "cannot read|No such file")
    (tmp_path / "empty.safetensors").write_bytes(b"")
    rejects(tmp_path / "empty.safetensors", "truncated")
    if os.geteuid() != 0:  # root reads anything
        p = tmp_path / "noperm.safetensors"
        p.write_bytes(saved["int8"].read_bytes())
        p.chmod(0)
        try:
            rejects(p, "ermission")
        finally:
            p.chmod(0o600)
    with pytest.raises(LoadError):
        io.manifest(tmp_path)


def test_load_error_is_exported_and_a_value_error():
    assert issubclass(slimnn.LoadError, ValueError) and slimnn.LoadError is io.LoadError
