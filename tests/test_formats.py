"""The q8 blob format: pack -> unpack round trips, the documented layout, and validation of corrupt blobs
(every one a ValueError naming the problem, never a crash or an out-of-bounds read)."""

from __future__ import annotations

import struct

import pytest
import torch

from slimnn import _C, formats, ops
from slimnn.nn import Int8Linear

from helpers import F32_DENORM, F32_MAX, kp_of, np_of, random_q, random_scales
from tolerances import assert_exact

# csrc/formats/header.h, little-endian: magic, version, format, header_bytes, flags, then int64 n, k, np,
# kp, group_size, n_groups, then uint64 off_weights, off_scales, off_colsum, off_comp, total_bytes.
HEADER = struct.Struct("<4sHHII6q5Q24s")
FIELDS = ["magic", "version", "format", "header_bytes", "flags", "n", "k", "np", "kp", "group_size", "n_groups",
          "off_weights", "off_scales", "off_colsum", "off_comp", "total_bytes", "reserved"]
FIELD_BYTES = 104  # everything before `reserved`
assert HEADER.size == 128


def header(blob: torch.Tensor) -> dict:
    return dict(zip(FIELDS, HEADER.unpack(bytes(blob[:128].tolist()))))


def with_header(blob: torch.Tensor, **changes) -> torch.Tensor:
    h = header(blob)
    h.update(changes)
    out = blob.clone()
    out[:128] = torch.frombuffer(bytearray(HEADER.pack(*[h[f] for f in FIELDS])), dtype=torch.uint8)
    return out


def pack(n, k, gs, seed=0, scale_mode="random"):
    g = torch.Generator().manual_seed(seed)
    q = random_q(n, k, g)
    ng = 1 if gs is None else -(-k // gs)
    scales = random_scales(ng, n, g)
    if scale_mode == "extreme":
        flat = scales.view(-1)
        for i, v in enumerate([F32_MAX, -F32_MAX, F32_DENORM, -0.0, 0.0, 1e-30, 3.0]):
            flat[i % flat.numel()] = v
    return q, scales, formats.pack_q8(q, scales, gs)


def expect_rejected(blob: torch.Tensor, match: str | None = None, n: int | None = None) -> None:
    """The full check refuses the blob with ValueError; so does every entry point that takes a blob when
    the header itself is wrong (the per-call O(1) check cannot see a change that keeps the header
    consistent, e.g. N moved inside its padding: the full check, run when a module takes a blob, does)."""
    with pytest.raises(ValueError, match=match):
        formats.q8_info(blob, full_check=True)
    try:
        formats.q8_info(blob)
    except ValueError:
        pass
    else:
        return
    with pytest.raises(ValueError, match=match):
        formats.unpack_q8(blob)
    if n is not None:  # the op, called as the layer the blob was made for (N = n, K = 37)
        for mode in ("dynamic", "weight_only"):
            with pytest.raises(ValueError):
                ops.q8_linear(torch.randn(2, 37), blob, None, mode, n)


SHAPES = [(1, 1), (1, 4), (3, 5), (16, 16), (17, 33), (33, 64), (64, 100), (100, 255), (5, 4096)]


@pytest.mark.parametrize("gs", [None, 4, 8, 32, 64, 128], ids=lambda g: f"gs{g}")
@pytest.mark.parametrize("n,k", SHAPES)
def test_pack_unpack_round_trip(n, k, gs):
    q, scales, blob = pack(n, k, gs, seed=n * 7 + k, scale_mode="extreme")
    assert blob.dtype == torch.uint8 and blob.dim() == 1 and blob.numel() % 64 == 0
    assert blob.numel() == _C.q8_blob_bytes(n, k, 0 if gs is None else gs)
    q2, s2, gs2 = formats.unpack_q8(blob)
    assert_exact(q2, q, "q")
    assert_exact(s2, scales, "scales")  # bit for bit: -0.0, subnormals and FLT_MAX survive
    single_group_of_kp = gs is not None and gs >= kp_of(k)  # one group: the per-channel format
    assert gs2 == (None if gs is None or single_group_of_kp else gs)
    # deterministic bytes: packing the canonical form again gives the same blob (no stray padding bytes)
    assert_exact(formats.pack_q8(q2, s2, gs2), blob, "re-packed blob")


@pytest.mark.parametrize("gs", [None, 8, 12])
def test_layout_matches_the_documented_format(gs):
    n, k = 21, 37
    q, scales, blob = pack(n, k, gs, seed=3)
    h = header(blob)
    kp, np_ = kp_of(k), np_of(n)
    ng = 1 if gs is None else -(-k // gs)
    assert (h["magic"], h["version"], h["format"], h["header_bytes"], h["flags"]) == (b"SLNN", 1, 1, 128, 0)
    assert (h["n"], h["k"], h["np"], h["kp"], h["n_groups"]) == (n, k, np_, kp, ng)
    assert h["group_size"] == (kp if gs is None else gs)
    assert h["total_bytes"] == blob.numel() and h["reserved"] == bytes(24)
    for off in ("off_weights", "off_scales", "off_colsum", "off_comp", "total_bytes"):
        assert h[off] % 64 == 0, off
    assert h["off_weights"] == 128
    assert h["off_scales"] >= h["off_weights"] + np_ * kp
    assert h["off_colsum"] >= h["off_scales"] + 4 * ng * np_
    assert h["off_comp"] >= h["off_colsum"] + 4 * ng * np_
    assert h["total_bytes"] >= h["off_comp"] + 4 * np_
    # weights: panels of 16 columns, K in steps of 4: [np/16][kp/4][16][4]
    w = blob[h["off_weights"] : h["off_weights"] + np_ * kp].view(torch.int8).view(np_ // 16, kp // 4, 16, 4)
    dense = w.permute(0, 2, 1, 3).reshape(np_, kp)
    assert_exact(dense[:n, :k], q, "panel layout")
    assert bool((dense[n:] == 0).all()) and bool((dense[:, k:] == 0).all()), "padding must be zero"
    s = blob[h["off_scales"] : h["off_scales"] + 4 * ng * np_].view(torch.float32).view(ng, np_)
    assert_exact(s[:, :n], scales, "scales section")
    cs = blob[h["off_colsum"] : h["off_colsum"] + 4 * ng * np_].view(torch.int32).view(ng, np_)
    gsz = kp if gs is None else gs
    want_cs = torch.stack([dense[:, g * gsz : (g + 1) * gsz].to(torch.int32).sum(1) for g in range(ng)])
    assert_exact(cs, want_cs, "column sums")
    comp = blob[h["off_comp"] : h["off_comp"] + 4 * np_].view(torch.float32)
    want = (s.double() * cs.double()).sum(0).float()
    assert_exact(comp, want, "zero-point compensation")


def test_q8_info():
    _, _, blob = pack(33, 100, 32)
    info = formats.q8_info(blob)
    assert info == formats.Q8Info(n=33, k=100, group_size=32, n_groups=4, np=48, kp=100)
    assert formats.q8_info(blob, full_check=True) == info
    _, _, blob = pack(5, 6, None)
    assert formats.q8_info(blob) == formats.Q8Info(n=5, k=6, group_size=None, n_groups=1, np=16, kp=8)
    # a group as large as the padded row is the per-channel format
    _, _, blob = pack(5, 6, 8)
    assert formats.q8_info(blob).group_size is None
    # a group larger than K is one group: stored as per-channel, so each layer has one encoding (and a
    # corrupt header cannot claim a "group" larger than K, issue 18)
    _, _, blob = pack(5, 6, 32)
    assert formats.q8_info(blob) == formats.Q8Info(n=5, k=6, group_size=None, n_groups=1, np=16, kp=8)
    bad = blob.clone()
    bad[48:56] = torch.tensor(list(struct.pack("<q", 32)), dtype=torch.uint8)  # PackedHeader::group_size
    with pytest.raises(ValueError, match="inconsistent"):
        formats.q8_info(bad)


def test_pack_rejects_bad_input():
    q = torch.zeros(4, 8, dtype=torch.int8)
    with pytest.raises(ValueError, match="int8"):
        formats.pack_q8(q.to(torch.int16), torch.ones(1, 4))
    with pytest.raises(ValueError, match="int8"):
        formats.pack_q8(torch.zeros(8, dtype=torch.int8), torch.ones(1, 4))
    with pytest.raises(ValueError, match="scales must have shape"):
        formats.pack_q8(q, torch.ones(4))
    with pytest.raises(ValueError, match="scales must have shape"):
        formats.pack_q8(q, torch.ones(1, 4), group_size=4)
    for bad in (float("nan"), float("inf"), float("-inf")):
        s = torch.ones(1, 4)
        s[0, 2] = bad
        with pytest.raises(ValueError, match="non-finite scale"):
            formats.pack_q8(q, s)
    with pytest.raises(ValueError, match="multiple of 4"):
        formats.pack_q8(q, torch.ones(2, 4), group_size=6)
    with pytest.raises(ValueError, match="positive"):
        formats.pack_q8(torch.zeros(0, 8, dtype=torch.int8), torch.ones(1, 0))
    with pytest.raises(ValueError, match="too large"):
        formats.pack_q8(torch.zeros(1, 65537, dtype=torch.int8), torch.ones(1, 1))
    with pytest.raises(ValueError, match="too large"):
        _C.q8_blob_bytes(2**24 + 1, 4, 0)
    for n, k, gs in [(0, 4, 0), (4, 0, 0), (-1, 4, 0), (4, 4, -4), (4, 4, 2), (2**62, 2**62, 0)]:
        with pytest.raises(ValueError):
            _C.q8_blob_bytes(n, k, gs)


def test_blob_type_checks():
    _, _, blob = pack(17, 33, None)
    with pytest.raises(TypeError):
        formats.q8_info(bytes(blob.tolist()))
    with pytest.raises(ValueError, match="1-D uint8"):
        formats.q8_info(blob.view(torch.int8))
    with pytest.raises(ValueError, match="1-D uint8"):
        formats.q8_info(blob.view(-1, 64))
    with pytest.raises(ValueError, match="contiguous"):
        formats.q8_info(torch.stack([blob, blob], 1)[:, 0])
    with pytest.raises(ValueError, match="CPU"):
        formats.q8_info(torch.empty(blob.numel(), dtype=torch.uint8, device="meta"))
    # a blob that starts at an odd address (a slice of a bigger buffer): refused, not read misaligned
    buf = torch.zeros(blob.numel() + 1, dtype=torch.uint8)
    buf[1:] = blob
    with pytest.raises(ValueError, match="aligned"):
        formats.q8_info(buf[1:])


def test_truncated_and_padded_blobs():
    _, _, blob = pack(20, 37, 8)
    size = blob.numel()
    for length in sorted({0, 1, 4, 64, 127, 128, 129, size // 2, size - 64, size - 4, size - 1}):
        expect_rejected(blob[:length].clone(), n=20)
    expect_rejected(torch.cat([blob, torch.zeros(64, dtype=torch.uint8)]), match="bytes", n=20)
    expect_rejected(torch.cat([blob, torch.zeros(1, dtype=torch.uint8)]), n=20)


BAD_FIELD_VALUES = {
    "magic": [b"SLNM", b"\0\0\0\0", b"NNLS"],
    "version": [0, 2, 0xFFFF],
    "format": [0, 2, 0xFFFF],
    "header_bytes": [0, 127, 129, 2**32 - 1],
    "flags": [1, 2**31],
    "n": [0, -1, 19, 33, 2**24 + 1, 2**63 - 1, -(2**63)],
    "k": [0, -1, 36, 41, 65537, 2**63 - 1],
    "np": [0, 16, 48, -32],
    "kp": [0, 36, 44, 37],
    "group_size": [0, 4, 7, 12, -8, 2**40, 2**63 - 4],
    "n_groups": [0, 4, 6, -5, 2**40],
    "off_weights": [0, 64, 192, 2**64 - 64],
    "off_scales": [0, 128, 2**63],
    "off_colsum": [0, 64, 2**64 - 1],
    "off_comp": [0, 128],
    "total_bytes": [0, 64, 2**64 - 1],
}


@pytest.mark.parametrize("field", list(BAD_FIELD_VALUES))
def test_bad_header_fields(field):
    _, _, blob = pack(20, 37, 8)  # np 32, kp 40, n_groups 5
    for value in BAD_FIELD_VALUES[field]:
        if field != "total_bytes":
            expect_rejected(with_header(blob, **{field: value}), n=20)
        else:
            expect_rejected(with_header(blob, total_bytes=value), match="bytes", n=20)


def test_specific_messages():
    _, _, blob = pack(20, 37, 8)
    expect_rejected(with_header(blob, magic=b"XXXX"), match="magic")
    expect_rejected(with_header(blob, version=2), match="version 2")
    expect_rejected(with_header(blob, format=7), match="format id 7")
    expect_rejected(with_header(blob, n=40), match="inconsistent")


def test_known_limit_n_grown_into_its_padding():
    """Documented limit (no checksum in format version 1): N raised within its 16-column padding keeps the
    header consistent and the padding column is all zeros with scale 0, so even the full check accepts it.
    It stays memory-safe: the extra output column is just the (zero) padding column."""
    _, _, blob = pack(20, 37, 8)
    b = with_header(blob, n=21)
    assert formats.q8_info(b, full_check=True).n == 21
    x = torch.randn(3, 37)
    y = ops.q8_linear(x, b, None, "dynamic", 21)
    assert_exact(y[:, :20], ops.q8_linear(x, blob, None, "dynamic", 20), "real columns")
    assert bool((y[:, 20] == 0).all())


def section(blob, name, dtype):
    h = header(blob)
    ends = {"off_weights": "off_scales", "off_scales": "off_colsum", "off_colsum": "off_comp", "off_comp": "total_bytes"}
    return blob[h[name] : h[ends[name]]].view(dtype)


@pytest.mark.parametrize("gs", [None, 8])
def test_corrupt_sections_caught_by_full_check(gs):
    n, k = 20, 37
    _, _, blob = pack(n, k, gs)
    ng = 1 if gs is None else 5
    np_ = 32

    def corrupt(name, dtype, index, value):
        b = blob.clone()
        section(b, name, dtype)[index] = value
        return b

    for value in (float("nan"), float("inf"), float("-inf")):
        b = corrupt("off_scales", torch.float32, np_ * (ng - 1) + 3, value)
        formats.q8_info(b)  # the O(1) header check does not read the sections...
        with pytest.raises(ValueError, match="non-finite scale"):
            formats.q8_info(b, full_check=True)  # ...the full check does
    b = corrupt("off_colsum", torch.int32, 2, 12345)
    with pytest.raises(ValueError, match="column sums"):
        formats.q8_info(b, full_check=True)
    w = section(blob, "off_weights", torch.int8)
    for pos in (k, kp_of(k) - 1):  # padding along K, column 0: byte (pos // 4) * 64 + pos % 4
        b = blob.clone()
        section(b, "off_weights", torch.int8)[(pos // 4) * 64 + pos % 4] = 1
        with pytest.raises(ValueError, match="padding"):
            formats.q8_info(b, full_check=True)
    b = blob.clone()  # padding along N: column n in its panel
    section(b, "off_weights", torch.int8)[(n // 16) * 16 * kp_of(k) + (n % 16) * 4] = -3
    with pytest.raises(ValueError, match="padding"):
        formats.q8_info(b, full_check=True)
    b = blob.clone()  # a real weight changed: its column sum no longer matches
    sw = section(b, "off_weights", torch.int8)
    sw[5] = 7 if int(w[5]) != 7 else 8
    with pytest.raises(ValueError, match="column sums"):
        formats.q8_info(b, full_check=True)
    b = corrupt("off_comp", torch.float32, 4, 1.5)
    with pytest.raises(ValueError, match="compensation"):
        formats.q8_info(b, full_check=True)


def canonical_and_outputs(blob, n, x):
    q, s, gs = formats.unpack_q8(blob)
    outs = [ops.q8_linear(x, blob, None, mode, n) for mode in ("dynamic", "weight_only")]
    return q, s, outs


@pytest.mark.parametrize("gs", [None, 16])
def test_every_header_bit_flip(gs):
    """Each of the 832 bits of the header's fields, flipped: refused by the full check, or (a few flips of
    the per-channel group size: a single group at least as large as K) accepted with the same weights,
    scales and outputs. N and K are multiples of the padding so that no flip hides in the padding."""
    n, k = 32, 64
    _, _, blob = pack(n, k, gs, seed=9)
    x = torch.randn(3, k)
    q0, s0, outs0 = canonical_and_outputs(blob, n, x)
    accepted = []
    for byte in range(FIELD_BYTES):
        for bit in range(8):
            b = blob.clone()
            b[byte] ^= 1 << bit
            try:
                formats.q8_info(b, full_check=True)
            except ValueError:
                continue
            accepted.append((byte, bit))
            q, s, outs = canonical_and_outputs(b, n, x)
            assert_exact(q, q0, f"q after flip {byte}:{bit}")
            assert_exact(s, s0, f"scales after flip {byte}:{bit}")
            for o, o0 in zip(outs, outs0):
                assert_exact(o, o0, f"output after flip {byte}:{bit}")
    fields = {FIELDS[[i for i, off in enumerate([0, 4, 6, 8, 12, 16, 24, 32, 40, 48, 56, 64, 72, 80, 88, 96, 104])
                      if off <= byte][-1]] for byte, _ in accepted}
    assert fields <= {"group_size"}, (fields, accepted)
    if gs is not None:
        assert not accepted


def test_reserved_bytes_must_be_zero():
    """Reserved header bytes are refused unless zero: a writer that needs them bumps the version."""
    _, _, blob = pack(20, 37, 8)
    b = blob.clone()
    b[FIELD_BYTES:128] = 0xFF
    with pytest.raises(ValueError, match="reserved header bytes"):
        formats.q8_info(b)


@pytest.mark.parametrize("gs", [None, 8])
def test_random_bit_flips_never_crash(gs):
    """Bounded fuzz over the whole blob: a flipped blob is refused with ValueError, or accepted and then
    safe to run (every read stays inside the blob; a flipped scale can change results, which no format
    without a checksum can detect)."""
    n, k = 20, 37
    _, _, blob = pack(n, k, gs, seed=1)
    g = torch.Generator().manual_seed(1234 + (gs or 0))
    x = torch.randn(2, k)
    refused = 0
    for _ in range(400):
        b = blob.clone()
        for _ in range(int(torch.randint(1, 4, (1,), generator=g))):
            pos = int(torch.randint(0, b.numel(), (1,), generator=g))
            b[pos] ^= 1 << int(torch.randint(0, 8, (1,), generator=g))
        try:
            info = formats.q8_info(b, full_check=True)
        except ValueError:
            refused += 1
            continue
        q, s, _ = formats.unpack_q8(b)
        assert q.shape == (info.n, info.k)
        for mode in ("dynamic", "weight_only"):
            y = ops.q8_linear(torch.randn(2, info.k), b, None, mode, info.n)
            assert y.shape == (2, info.n)
    assert refused > 0


def test_corrupt_blob_in_state_dict_is_refused():
    lin = torch.nn.Linear(37, 20)
    mod = Int8Linear.from_linear(lin)
    sd = mod.state_dict()
    bad = dict(sd)
    bad["packed"] = sd["packed"][:-64].clone()
    with pytest.raises(RuntimeError, match="packed"):
        mod.load_state_dict(bad)
    bad["packed"] = with_header(sd["packed"], magic=b"XXXX")
    with pytest.raises(RuntimeError, match="magic"):
        mod.load_state_dict(bad)
    b = sd["packed"].clone()
    section(b, "off_colsum", torch.int32)[0] += 1
    bad["packed"] = b
    with pytest.raises(RuntimeError, match="column sums"):
        mod.load_state_dict(bad)
    bad["packed"] = sd["packed"].to(torch.int8)
    with pytest.raises(RuntimeError, match="uint8"):
        mod.load_state_dict(bad)
    # the module still works with its own weights
    x = torch.randn(3, 37)
    assert torch.isfinite(mod(x)).all()
