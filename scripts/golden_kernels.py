"""Golden outputs of every kernel of the extension, to prove that a refactor of csrc/ changed no bit.

    PYTHONPATH=src python3 scripts/golden_kernels.py dump  DIR   # before the change: DIR/golden.npz
    PYTHONPATH=src python3 scripts/golden_kernels.py check DIR   # after it: every output bit-identical

Every family runs on fixed seeded inputs over shapes with tails (odd K and N, M around the tile heights),
once per ISA this CPU has (kernels forced by name where the binding takes a name, else by lowering the ISA
ceiling), through `slimnn._C` directly, so the script does not depend on the Python package's layout.
`check` also fails if a kernel of `kernels()` / `act_kernels()` was never run.
"""

from __future__ import annotations

import math
import os
import sys

import numpy as np
import torch

from slimnn import _C

ISAS = [n for i, n in enumerate(_C.isa_names()) if _C.detected_isa_mask() & _C.built_isa_mask() & (1 << i)]
OUT: dict[str, np.ndarray] = {}
RAN: set[str] = set()


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def put(key: str, t: torch.Tensor, name: str = "") -> None:
    assert key not in OUT, key
    OUT[key] = t.detach().contiguous().numpy().copy()
    if name:
        RAN.add(name)


def fvals(shape, g, specials: bool = True) -> torch.Tensor:
    x = torch.randn(*shape, generator=g)
    if specials and x.numel() > 8:
        f = x.view(-1)
        f[0], f[1], f[2], f[3] = 0.0, -0.0, 1e-39, -3e3
    return x


def forced(isa: str):
    class _F:
        def __enter__(self):
            _C.force_isa(isa)

        def __exit__(self, *a):
            _C.force_isa("")

    return _F()


# ----------------------------------------------------------------- q8 (qgemm)
def q8_blob(n: int, k: int, gs: int, g) -> torch.Tensor:
    q = torch.randint(-128, 128, (n, k), generator=g, dtype=torch.int16).to(torch.int8)
    ng = 1 if gs == 0 else -(-k // gs)
    s = (torch.rand(ng, n, generator=g) * 0.05 + 1e-3).float()
    out = torch.empty(_C.q8_blob_bytes(n, k, gs), dtype=torch.uint8)
    _C.q8_pack(q.data_ptr(), s.data_ptr(), n, k, gs, out.data_ptr(), out.numel())
    return out


def run_q8() -> None:
    shapes = [(1, 1), (17, 33), (64, 256), (100, 300), (130, 64)]
    for si, (n, k) in enumerate(shapes):
        for gs in (0, 32, 128):
            if gs and gs > k:
                continue
            blob = q8_blob(n, k, gs, gen(100 + si * 7 + gs))
            for m in (1, 2, 3, 5, 9, 17):
                x = fvals((m, k), gen(200 + m + si))
                bias = torch.randn(n, generator=gen(300 + si))
                for kind in ("q8_dynamic", "q8_weight_only"):
                    for isa in ISAS:
                        for xbf in (False, True):
                            xx = x.to(torch.bfloat16) if xbf else x
                            for act, split, nt in ((0, 0, 1), (2, 0, 2), (1, 1, 2), (4, 2, 2), (3, 0, 1)):
                                if xbf and act not in (0, 2):
                                    continue
                                y = torch.full((m, n), -7.0)
                                with forced(isa):
                                    name = _C.q8_linear(kind, xx.data_ptr(), xbf, m, k, blob.data_ptr(), blob.numel(),
                                                        bias.data_ptr() if act != 1 else 0, y.data_ptr(), n, nt, act, split)
                                put(f"q8/{kind}/{n}x{k}/g{gs}/m{m}/{isa}/bf{int(xbf)}/a{act}s{split}t{nt}", y, name)
    # the weight-only panel path (kernels/wogemm) from its crossover on: forced from 2 rows for these cases
    try:
        _C.wo_panel_min_rows(2)
        for si, (n, k) in enumerate(shapes):
            blob = q8_blob(n, k, 32 if k >= 32 else 0, gen(700 + si))
            for m in (2, 9, 17, 33):
                x = fvals((m, k), gen(800 + m + si))
                bias = torch.randn(n, generator=gen(900 + si))
                for isa in ISAS:
                    for act, nt in ((0, 1), (2, 2)):
                        y = torch.full((m, n), -7.0)
                        with forced(isa):
                            name = _C.q8_linear("q8_weight_only", x.data_ptr(), False, m, k, blob.data_ptr(),
                                                blob.numel(), bias.data_ptr(), y.data_ptr(), n, nt, act, 0)
                        put(f"q8panel/{n}x{k}/m{m}/{isa}/a{act}t{nt}", y, name)
    finally:
        _C.wo_panel_min_rows(0)  # back to the measured crossovers
    # hooks: integer dots and the row quantizer, per kernel
    for e in _C.kernels():
        if not e["available"]:
            continue
        for si, (n, k) in enumerate([(17, 33), (64, 256), (33, 100)]):
            for gs in (0, 32):
                blob = q8_blob(n, k, gs, gen(400 + si + gs))
                _, _, _, _, np_, kp = _C.q8_header(blob.data_ptr(), blob.numel(), False)
                for m in (1, 3, 5):
                    a = torch.randint(0, 256, (m, kp), generator=gen(500 + m), dtype=torch.int16).to(torch.uint8)
                    out = torch.full((m, np_), 0x5EAD, dtype=torch.int32)
                    try:
                        _C.q8_dot_i32(e["name"], a.data_ptr(), m, kp, blob.data_ptr(), blob.numel(), out.data_ptr())
                        put(f"q8dot/{e['name']}/{n}x{k}/g{gs}/m{m}", out, e["name"])
                    except ValueError:
                        pass
        for k in (1, 7, 33, 64, 300):
            kp = -(-k // 4) * 4
            rows = 6
            x = fvals((rows, k), gen(600 + k))
            x[3] = 0.0
            if k > 2:
                x[4, 1] = float("nan")
                x[5, 0] = 3e38
            q = torch.full((rows, kp), 0xA5, dtype=torch.uint8)
            sc = torch.zeros(rows)
            zp = torch.zeros(rows, dtype=torch.int32)
            try:
                fin = _C.quantize_rows_u8(e["name"], x.data_ptr(), rows, k, kp, q.data_ptr(), sc.data_ptr(), zp.data_ptr())
            except ValueError:
                continue
            put(f"q8quant/{e['name']}/k{k}/q", q, e["name"])
            put(f"q8quant/{e['name']}/k{k}/s", sc)
            put(f"q8quant/{e['name']}/k{k}/z", zp)
            put(f"q8quant/{e['name']}/k{k}/f", torch.tensor(fin))


# ----------------------------------------------------------------- q4
def q4_blob(n: int, k: int, gs: int, sd: int, asym: bool, g) -> torch.Tensor:
    codes = torch.randint(0, 16, (n, k), generator=g, dtype=torch.int16).to(torch.uint8)
    ng = 1 if gs == 0 else -(-k // gs)
    s = (torch.rand(ng, n, generator=g) * 0.05 + 1e-3).float()
    s = s if sd == 0 else s.half() if sd == 1 else s.bfloat16()
    z = torch.randint(0, 16, (ng, n), generator=g, dtype=torch.int16).to(torch.uint8) if asym else None
    out = torch.empty(_C.q4_blob_bytes(n, k, gs, sd, asym), dtype=torch.uint8)
    _C.q4_pack(codes.data_ptr(), s.data_ptr(), 0 if z is None else z.data_ptr(), 0, n, k, gs, sd, out.data_ptr(), out.numel())
    return out


def run_q4() -> None:
    shapes = [(1, 32), (17, 96), (64, 256), (100, 320)]
    for si, (n, k) in enumerate(shapes):
        for gs, sd, asym in ((0, 0, False), (32, 1, True), (64, 2, False), (32, 0, True)):
            if gs > k:
                continue
            blob = q4_blob(n, k, gs, sd, asym, gen(700 + si * 5 + gs + sd))
            for m in (1, 2, 3, 8, 9, 17):
                x = fvals((m, k), gen(800 + m + si))
                bias = torch.randn(n, generator=gen(900 + si))
                in_mul = torch.rand(k, generator=gen(901 + si)) + 0.5
                for kind in ("q4_dynamic", "q4_weight_only"):
                    for isa in ISAS:
                        for xbf, use_mul, nt in ((False, False, 1), (True, False, 2), (False, True, 2)):
                            xx = x.to(torch.bfloat16) if xbf else x
                            y = torch.full((m, n), -7.0)
                            with forced(isa):
                                name = _C.q4_linear(kind, xx.data_ptr(), xbf, m, k, in_mul.data_ptr() if use_mul else 0,
                                                    blob.data_ptr(), blob.numel(), bias.data_ptr(), y.data_ptr(), n, nt)
                            put(f"q4/{kind}/{n}x{k}/g{gs}s{sd}a{int(asym)}/m{m}/{isa}/bf{int(xbf)}mul{int(use_mul)}t{nt}", y, name)
    for e in _C.q4_kernels():
        if not e["available"]:
            continue
        for si, (n, k) in enumerate([(17, 96), (64, 256)]):
            for gs, asym in ((0, False), (32, True)):
                blob = q4_blob(n, k, gs, 0, asym, gen(1000 + si + gs))
                hdr = _C.q4_header(blob.data_ptr(), blob.numel(), False)
                ng, np_, kp = hdr[3], hdr[4], hdr[5]
                for m in (1, 3):
                    a = torch.randint(0, 256, (m, kp), generator=gen(1100 + m), dtype=torch.int16).to(torch.uint8)
                    out = torch.full((m, ng, np_), 0x5EAD, dtype=torch.int32)
                    try:
                        _C.q4_dot_i32(e["name"], a.data_ptr(), m, kp, blob.data_ptr(), blob.numel(), out.data_ptr())
                    except ValueError:
                        continue
                    put(f"q4dot/{e['name']}/{n}x{k}/g{gs}a{int(asym)}/m{m}", out, e["name"])


# ----------------------------------------------------------------- lowrank
def csr_of(n: int, k: int, g) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    d = torch.randn(n, k, generator=g) * (torch.rand(n, k, generator=g) < 0.05)
    rowptr = torch.zeros(n + 1, dtype=torch.int64)
    rowptr[1:] = (d != 0).sum(1).cumsum(0)
    nz = d.nonzero()
    return rowptr, nz[:, 1].to(torch.int32).contiguous(), d[d != 0].contiguous()


def run_lowrank() -> None:
    names = [e["name"] for e in _C.lowrank_kernels() if e["available"]]
    for si, (n, k, r) in enumerate([(1, 1, 1), (17, 33, 5), (64, 200, 16), (100, 77, 9)]):
        g = gen(1200 + si)
        u, v = torch.randn(n, r, generator=g), torch.randn(r, k, generator=g)
        bias = torch.randn(n, generator=g)
        rp, col, val = csr_of(n, k, g)
        for m in (1, 2, 3, 4, 5, 13):
            x = fvals((m, k), gen(1300 + m))
            for name in names:
                for res, nt in ((False, 1), (True, 2)):
                    y = torch.full((m, n), -7.0)
                    ran = _C.lowrank_f32_linear(x.data_ptr(), m, k, n, k, r, u.data_ptr(), v.data_ptr(), bias.data_ptr(),
                                                y.data_ptr(), n, nt, name, rp.data_ptr() if res else 0, col.data_ptr(),
                                                val.data_ptr(), int(val.numel()) if res else 0)
                    put(f"lr/{name}/{n}x{k}r{r}/m{m}/res{int(res)}t{nt}", y, ran)
        vb, ub = q8_blob(r, k, 0, gen(1400 + si)), q8_blob(n, r, 0, gen(1500 + si))
        for m in (1, 3, 7):
            x = fvals((m, k), gen(1600 + m))
            for kind in ("q8_dynamic", "q8_weight_only"):
                for isa in ISAS:
                    y = torch.full((m, n), -7.0)
                    with forced(isa):
                        _C.lowrank_q8_linear(kind, x.data_ptr(), m, k, vb.data_ptr(), vb.numel(), ub.data_ptr(), ub.numel(),
                                             bias.data_ptr(), y.data_ptr(), n, 2, rp.data_ptr(), col.data_ptr(), val.data_ptr(),
                                             int(val.numel()))
                    put(f"lrq8/{kind}/{n}x{k}r{r}/m{m}/{isa}", y)


# ----------------------------------------------------------------- sparse (spmm) and bitmap
def nm_weights(n: int, k: int, nn: int, mm: int, g) -> torch.Tensor:
    w = torch.randn(n, k, generator=g)
    kk = -(-k // mm) * mm
    wp = torch.zeros(n, kk)
    wp[:, :k] = w
    grp = wp.view(n, -1, mm)
    idx = grp.abs().topk(mm - nn, dim=2, largest=False).indices
    grp.scatter_(2, idx, 0.0)
    return wp[:, :k].contiguous()


def sparse_blob(fmt: str, w: torch.Tensor, int8: bool) -> torch.Tensor:
    n, k = w.shape
    if int8:
        s = (w.abs().amax(1).clamp_min(1e-6) / 127).float()
        wv = (w / s[:, None]).round().clamp(-127, 127).to(torch.int8).contiguous()
    else:
        s, wv = torch.ones(1), w.contiguous()
    vals = "int8" if int8 else "fp32"
    wp = wv.data_ptr()
    if fmt.startswith("csr"):
        bits = int(fmt[3:])
        size = _C.sparse_csr_bytes(wp, vals, n, k, bits)
        out = torch.empty(size, dtype=torch.uint8)
        _C.sparse_csr_pack(wp, s.data_ptr(), vals, n, k, bits, out.data_ptr(), size)
    elif fmt.startswith("bsr"):
        r, c = map(int, fmt[3:].split("x"))
        size = _C.sparse_bsr_bytes(wp, vals, n, k, r, c)
        out = torch.empty(size, dtype=torch.uint8)
        _C.sparse_bsr_pack(wp, s.data_ptr(), vals, n, k, r, c, out.data_ptr(), size)
    elif fmt.startswith("nm"):
        nn, mm = map(int, fmt[2:].split(":"))
        size = _C.sparse_nm_bytes(vals, n, k, nn, mm)
        out = torch.empty(size, dtype=torch.uint8)
        _C.sparse_nm_pack(wp, s.data_ptr(), vals, n, k, nn, mm, out.data_ptr(), size)
    else:
        gr = int(fmt[6:])
        size = _C.sparse_bitmap_bytes(wp, n, k, gr)
        out = torch.empty(size, dtype=torch.uint8)
        _C.sparse_bitmap_pack(wp, s.data_ptr(), n, k, gr, out.data_ptr(), size)
    return out


def run_sparse() -> None:
    spmm = [e for e in _C.spmm_kernels() if e["available"]]
    bitmap = [e for e in _C.bitmap_kernels() if e["available"]]
    fmts = ["csr4", "csr8", "bsr16x1", "bsr4x1", "bsr1x4", "bsr1x8", "nm2:4", "nm4:8", "nm1:4", "nm3:16",
            "bitmap1", "bitmap2", "bitmap8"]
    for si, (n, k) in enumerate([(5, 7), (33, 70), (64, 256), (130, 300)]):
        for fmt in fmts:
            g = gen(1700 + si * 31 + len(fmt) + sum(map(ord, fmt)))
            if fmt.startswith("nm"):
                nn, mm = map(int, fmt[2:].split(":"))
                w = nm_weights(n, k, nn, mm, g)
            else:
                w = torch.randn(n, k, generator=g) * (torch.rand(n, k, generator=g) < 0.2)
                if fmt.startswith("bsr"):  # some whole blocks
                    w[: n // 2] = torch.randn(n // 2, k, generator=g) * (torch.rand(n // 2, k, generator=g) < 0.6)
            for int8 in ((True,) if fmt.startswith("bitmap") else (False, True)):
                if fmt == "bitmap8" and n < 8:
                    continue
                blob = sparse_blob(fmt, w, int8)
                kind = _C.sparse_info(blob.data_ptr(), blob.numel(), True)["kind"]
                table = bitmap if kind == "bitmap_i8" else [e for e in spmm if e["kind"] == "sparse_" + kind]
                bias = torch.randn(n, generator=g)
                for m in (1, 2, 8, 9, 16, 17, 33):
                    x = fvals((m, k), gen(1800 + m))
                    for e in table:
                        for nt in (1, 2):
                            y = torch.full((m, n), -7.0)
                            ran = _C.sparse_linear(x.data_ptr(), m, k, k, blob.data_ptr(), blob.numel(),
                                                   bias.data_ptr() if nt == 2 else 0, y.data_ptr(), n, n, nt, e["name"])
                            put(f"sp/{fmt}/i8{int(int8)}/{n}x{k}/m{m}/{e['name']}/t{nt}", y, ran)
                if kind == "bitmap_i8":
                    info = _C.sparse_info(blob.data_ptr(), blob.numel(), False)
                    xs = info["entries"] * 64 if info["group_rows"] != 8 else -(-k // 256) * 256
                    for m in (1, 3):
                        xq = torch.randint(0, 256, (m, xs), generator=gen(1900 + m), dtype=torch.int16).to(torch.uint8)
                        for e in bitmap:
                            dots = torch.full((m, n), 0x5EAD, dtype=torch.int32)
                            _C.bitmap_dots(e["name"], blob.data_ptr(), blob.numel(), xq.data_ptr(), m, dots.data_ptr())
                            put(f"bmdots/{fmt}/{n}x{k}/m{m}/{e['name']}", dots, e["name"])


# ----------------------------------------------------------------- attention
def run_attention() -> None:
    names = [e["name"] for e in _C.attention_kernels() if e["available"]]
    for si, (b, hq, hkv, lq, lk, d, dv) in enumerate(
            [(1, 1, 1, 1, 1, 1, 1), (1, 2, 1, 5, 7, 8, 8), (2, 4, 2, 17, 33, 64, 64), (1, 2, 2, 40, 70, 24, 40),
             (1, 1, 1, 3, 300, 80, 16)]):
        g = gen(2000 + si)
        q = torch.randn(b, hq, lq, d, generator=g)
        k = torch.randn(b, hkv, lk, d, generator=g)
        v = torch.randn(b, hkv, lk, dv, generator=g)
        bmask = torch.rand(b, 1, lq, lk, generator=g) < 0.8
        bmask[..., 0] = True
        fmask = torch.randn(b, hq, lq, lk, generator=g)
        for mk, causal in ((0, False), (0, True), (1, False), (2, True)):
            m = None if mk == 0 else (bmask.expand(b, hq, lq, lk) if mk == 1 else fmask)
            for name in names:
                for nt in (1, 2):
                    out = torch.full((b, hq, lq, dv), -7.0)
                    ran = _C.attention_f32(
                        [b, hq, hkv, lq, lk, d, dv], q.data_ptr(), list(q.stride()[:3]), k.data_ptr(),
                        list(k.stride()[:3]), v.data_ptr(), list(v.stride()[:3]), out.data_ptr(), list(out.stride()[:3]),
                        mk, 0 if m is None else m.data_ptr(), [0, 0, 0] if m is None else list(m.stride()[:3]), causal,
                        1.0 / math.sqrt(d), nt, name)
                    put(f"attn/{si}/mk{mk}c{int(causal)}/{name}/t{nt}", out, ran)
    x = torch.cat([torch.linspace(-120, 100, 3001), torch.tensor([float("nan"), float("inf"), -float("inf"), 0.0, -0.0])])
    for name in names:
        for n in (1, 7, 16, 17, x.numel()):
            y = torch.full((n,), -7.0)
            _C.attention_exp(x.data_ptr(), y.data_ptr(), n, name)
            put(f"attnexp/{name}/n{n}", y, name)


# ----------------------------------------------------------------- act
def run_act() -> None:
    base = torch.cat([torch.linspace(-30, 30, 4001), torch.randn(999, generator=gen(2100)) * 4,
                      torch.tensor([float("nan"), float("inf"), -float("inf"), 0.0, -0.0, 1e-40, -1e-40, 3e38, -3e38])])
    for e in _C.act_kernels():
        if not e["available"]:
            continue
        for act in range(5):
            for n in (0, 1, 7, 8, 15, 16, 17, 31, base.numel()):
                y = base[:n].clone()
                _C.act_apply(e["name"], act, y.data_ptr(), n)
                put(f"act/{e['name']}/a{act}/n{n}", y, e["name"])


def collect() -> None:
    torch.manual_seed(0)
    run_q8()
    run_q4()
    run_lowrank()
    run_sparse()
    run_attention()
    run_act()


def all_kernels() -> set[str]:
    lists = [_C.kernels(), _C.q4_kernels(), _C.lowrank_kernels(), _C.spmm_kernels(), _C.bitmap_kernels(),
             _C.attention_kernels(), _C.act_kernels()]
    return {e["name"] for lst in lists for e in lst if e["available"]}


def main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[1] not in ("dump", "check"):
        print(__doc__)
        return 2
    path = os.path.join(argv[2], "golden.npz")
    collect()
    missing = all_kernels() - RAN
    if missing:
        print("kernels never run:", sorted(missing))
        return 1
    if argv[1] == "dump":
        os.makedirs(argv[2], exist_ok=True)
        np.savez_compressed(path, **{k.replace("/", "|"): v for k, v in OUT.items()})
        print(f"wrote {len(OUT)} outputs of {len(RAN)} kernels to {path}")
        return 0
    ref = {k.replace("|", "/"): v for k, v in np.load(path).items()}
    bad = [k for k in ref if k not in OUT or ref[k].dtype != OUT[k].dtype or ref[k].shape != OUT[k].shape
           or ref[k].tobytes() != OUT[k].tobytes()]
    extra = [k for k in OUT if k not in ref]
    for k in bad[:20]:
        print("DIFFERS:", k)
    print(f"{len(ref) - len(bad)}/{len(ref)} outputs bit-identical ({len(RAN)} kernels); {len(extra)} new")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
