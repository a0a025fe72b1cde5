"""The outside probe of issue 18, as a script with figures: every hostile-file case rebuilt from saved int8,
sparse and fused models, and N random byte flips anywhere in each saved file. For each case: did it raise
slimnn.io.LoadError, how long did the rejection take, how much did the peak RSS grow (VmHWM, reset before
each case) and how much did Python allocate (tracemalloc peak). Targets: all rejected, each in < 2 s and
< 300 MB.

    PYTHONPATH=src python scripts/hostile_probe.py --flips 1000 [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import random
import struct
import sys
import tempfile
import time
import tracemalloc

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import torch  # noqa: E402

import slimnn  # noqa: E402
from slimnn import io  # noqa: E402
import test_hostile_files as H  # noqa: E402  (the models and the file surgery the tests use)


def _status(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1]) * 1024
    raise KeyError(field)


def measure(fn):
    """(outcome, seconds, peak RSS growth bytes, tracemalloc peak bytes) of fn()."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    base = _status("VmRSS:")
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        fn()
        outcome = "LOADED"
    except io.LoadError as e:
        outcome = "LoadError: " + str(e).split(".safetensors: ", 1)[-1][:90]
    except Exception as e:  # noqa: BLE001
        outcome = f"WRONG TYPE {type(e).__name__}: {e}"[:120]
    dt = time.perf_counter() - t0
    _, py_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return outcome, dt, _status("VmHWM:") - base, py_peak


def cases(saved: dict, d: pathlib.Path):
    """(name, path or callable) for every reproducer of the issue."""
    out = []

    def file(name, kind, tamper):
        tensors, man = H.parts(saved[kind])
        tamper(tensors, man)
        p = d / f"{name}.safetensors"
        H.resign(p, tensors, man)
        out.append((name, p))

    raw = saved["int8"].read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    for tname, e in header.items():
        if tname == "__metadata__":
            continue
        a, b = e["data_offsets"]
        bad = bytearray(raw)
        bad[8 + n + (a + b) // 2] ^= 0x04
        p = d / f"flip-{tname}.safetensors"
        p.write_bytes(bytes(bad))
        out.append((f"bit flip in tensor {tname}", p))

    def nonpersistent(tensors, man):
        blob = slimnn.load(saved["int8"])[5].packed.clone()
        blob[200] ^= 0x10
        tensors["5.packed"] = blob
        man["nonpersistent"].append("5.packed")

    file("corrupt q8 blob via nonpersistent", "int8", nonpersistent)

    def unfuse(tensors, man):
        del man["modules"]["0"]["meta"]["activation"]
        man["modules"]["0"]["version"] = 1

    file("fused activation without its module's activation", "fused", unfuse)
    for dim in (20000, 60000):
        file(f"sparse layer declared {dim} x {dim}", "sparse",
             lambda t, m, dim=dim: (m["modules"]["0"]["meta"].update(in_features=dim, out_features=dim, bias=False),
                                    t.pop("0.bias")))
    file("10^6 Identity children (40 MB header)", "int8",
         lambda t, m: m["architecture"]["children"].extend([{"type": "Identity", "args": {}}] * 1_000_000))

    def i32(tensors, man):
        tensors["3.weight"] = tensors["3.weight"].to(torch.int32)

    file("I32 state tensor", "int8", i32)
    out.append(("directory as the path", d))
    for arch in ({"type": "Embedding", "args": {"num_embeddings": 2**31 - 1, "embedding_dim": 2**31 - 1}},
                 {"type": "Linear", "args": {"in_features": 2**31 - 1, "out_features": 2**31 - 1, "bias": True}}):
        file(f"{arch['type']} with dims 2^31-1", "int8", lambda t, m, a=arch: m["architecture"]["children"].append(a))

    def gs_flip(tensors, man):
        blob = tensors["4.packed"].clone()
        gs = struct.unpack("<q", bytes(blob[48:56].tolist()))[0]  # PackedHeader::group_size
        blob[48:56] = torch.tensor(list(struct.pack("<q", gs | 0x8000)), dtype=torch.uint8)
        tensors["4.packed"] = blob

    file("q8 header bit: group_size per-channel -> > K (digests recomputed)", "sparse", gs_flip)
    raw = saved["sparse"].read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    # a scale's mantissa bit in the dense q8 blob: only the digest can see it
    from slimnn import formats

    blob = slimnn.load(saved["sparse"])[4].packed
    info = formats.q8_info(blob)
    off_scales = 128 + ((info.np * info.kp + 63) // 64) * 64  # header, then the weights, 64-byte aligned
    a, _ = header["4.packed"]["data_offsets"]
    bad = bytearray(raw)
    bad[8 + n + a + off_scales + 1] ^= 0x01
    p = d / "scale-mantissa.safetensors"
    p.write_bytes(bytes(bad))
    out.append(("scale mantissa bit in a q8 blob", p))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--flips", type=int, default=1000, help="random byte flips per model")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    slimnn.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        d = pathlib.Path(tmp)
        saved = {}
        for name, make in H.MODELS.items():
            p = d / f"{name}.safetensors"
            slimnn.save(make(), p)
            saved[name] = p
        slimnn.load(saved["int8"])  # warm-up: imports and first-call costs out of the figures
        rows, failed = [], False
        print(f"{'case':66} {'s':>6} {'RSS MB':>7} {'py MB':>6}  outcome")
        for name, p in cases(saved, d):
            outcome, dt, rss, py = measure(lambda p=p: slimnn.load(p))
            ok = outcome.startswith("LoadError") and dt < 2 and rss < 300 * 2**20
            failed |= not ok
            rows.append({"case": name, "seconds": dt, "rss_growth_mb": rss / 2**20, "python_peak_mb": py / 2**20,
                         "outcome": outcome, "ok": ok})
            print(f"{name[:66]:66} {dt:6.2f} {rss / 2**20:7.1f} {py / 2**20:6.1f}  {'' if ok else 'FAIL '}{outcome}")
        flips = {}
        rng = random.Random(args.seed)
        for kind, p in saved.items():
            raw = p.read_bytes()
            silent, worst_t, worst_rss, kinds = [], 0.0, 0, {}
            q = d / "flip.safetensors"
            for _ in range(args.flips):
                pos = rng.randrange(len(raw))
                bad = bytearray(raw)
                bad[pos] ^= rng.randrange(1, 256)
                q.write_bytes(bytes(bad))
                outcome, dt, rss, _ = measure(lambda: slimnn.load(q))
                worst_t, worst_rss = max(worst_t, dt), max(worst_rss, rss)
                if not outcome.startswith("LoadError"):
                    silent.append((pos, outcome))
                key = "digest" if "digest" in outcome else "header/JSON" if pos < 8 + struct.unpack(
                    "<Q", raw[:8])[0] else "other"
                kinds[key] = kinds.get(key, 0) + 1
            flips[kind] = {"flips": args.flips, "file_bytes": len(raw), "silent": len(silent),
                           "max_seconds": worst_t, "max_rss_growth_mb": worst_rss / 2**20, "by": kinds,
                           "silent_examples": silent[:5]}
            failed |= bool(silent) or worst_t >= 2 or worst_rss >= 300 * 2**20
            print(f"{args.flips} byte flips in the {kind} file ({len(raw)} bytes): {len(silent)} loaded silently, "
                  f"slowest rejection {worst_t:.3f} s, peak RSS growth {worst_rss / 2**20:.1f} MB; caught by {kinds}")
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps({"cases": rows, "flips": flips}, indent=1))
    print("FAILED" if failed else "OK: every case rejected with LoadError, each under 2 s and 300 MB")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
