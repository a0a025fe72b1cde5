"""ISA detection, forcing and kernel selection; and the covered-paths check (ruy): the session fails if this
CPU's best kernels never ran."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading

import pytest
import torch

import slimnn
from slimnn import _C

from helpers import COVERED, entries, make_layer, q8_linear

ORDER = list(slimnn.isa.NAMES)
MODES = {"dynamic": "q8_dynamic", "weight_only": "q8_weight_only"}
KIND_MODE = {v: k for k, v in MODES.items()}


def rank(isa: str) -> int:
    return ORDER.index(isa)


def expected_kernel(kind: str, m: int, available: list[str]) -> dict:
    """The selector's documented rule: among kernels of the best available ISA that has one for this kind
    and M (AMX kernels only from their min_m, the crossover), the GEMV entry for M = 1 if it has one, else
    its first entry (min_m -1: opt-in and off, never chosen). Weight-only from the measured crossover (_C.wo_panel_min_rows) on: the same rule over
    the panel kernels (kernels/wogemm)."""
    if kind == "q8_weight_only" and m >= _C.wo_panel_min_rows()[0]:
        kind = "q8_weight_only_panel"
        cands = [e for e in slimnn.kernels() if e["kind"] == kind and e["isa"] in available and 0 <= e["min_m"] <= m]
    else:
        cands = [e for e in entries(kind) if e["isa"] in available and 0 <= e["min_m"] <= m]
    best = max(rank(e["isa"]) for e in cands)
    tier = [e for e in cands if rank(e["isa"]) == best]
    for e in tier:
        if e["gemv"] == (m == 1):
            return e
    return tier[0]


def test_isa_names_and_masks():
    assert ORDER == ["portable", "avx2", "avxvnni", "avx512", "avx512vnni", "avx512vbmi2", "amx",
                     "amx_bf16", "neon", "dotprod", "i8mm"]
    det, built, avail = slimnn.isa.detected(), slimnn.isa.built(), slimnn.isa.available()
    assert "portable" in det and "portable" in built and "portable" in avail
    assert set(avail) == set(det) & set(built)
    assert slimnn.isa.best() == avail[-1]
    # the order of the mask words is the rank order
    assert avail == sorted(avail, key=rank)
    # implications of detection: each tier needs the one below it
    if "avx512vnni" in det:
        assert "avx512" in det
    if "avx512vbmi2" in det:
        assert "avx512vnni" in det
    if "avx512" in det:
        assert "avx2" in det
    if "amx" in det:
        assert "avx512" in det
    if "amx_bf16" in det:  # AMX-BF16 is only taken on top of AMX-TILE + AMX-INT8 (and the permission)
        assert "amx" in det
    if "amx" in built:  # the amx files are compiled with -mamx-bf16 as well
        assert "amx_bf16" in built


@pytest.mark.parametrize("m", [1, 2, 16, 100])
@pytest.mark.parametrize("mode", list(MODES))
def test_selector_picks_best_available(mode, m):
    kind = MODES[mode]
    want = expected_kernel(kind, m, slimnn.isa.available())
    assert _C.select_kernel(kind, m) == want["name"]
    _, _, _, blob = make_layer(40, 24, None, torch.Generator().manual_seed(0))
    y, name = q8_linear(torch.randn(m, 24), blob, None, mode, 40)
    assert name == want["name"]
    # the best ISA that has kernels of this kind on this CPU
    usable = [e["isa"] for e in slimnn.kernels() if e["kind"].startswith(kind) and e["available"]]
    assert want["isa"] == max(usable, key=rank)


def test_force_only_lowers():
    det = slimnn.isa.detected()
    built = slimnn.isa.built()
    for name in ORDER:
        with slimnn.isa.forced(name):
            avail = slimnn.isa.available()
            assert all(rank(a) <= rank(name) for a in avail), (name, avail)
            assert set(avail) == {a for a in det if a in built and rank(a) <= rank(name)}
            # never above what the CPU has
            assert rank(slimnn.isa.best()) <= rank(max(set(det) & set(built), key=rank))
            for mode, kind in MODES.items():
                for m in (1, 8):
                    k = _C.select_kernel(kind, m)
                    isa = next(e["isa"] for e in entries() if e["name"] == k)
                    assert rank(isa) <= rank(name)
                    assert k == expected_kernel(kind, m, avail)["name"]
        assert slimnn.isa.available() == [a for a in ORDER if a in det and a in built]
    # forcing the top word (i8mm, an Arm one: above every x86 word) keeps the detected best
    with slimnn.isa.forced(ORDER[-1]):
        assert slimnn.isa.best() == max(set(det) & set(built), key=rank)


def test_force_unknown_name():
    for bad in ("avx-512", "AVX2", "sse4", "", "portable "):
        with pytest.raises(ValueError, match="unknown ISA"):
            slimnn.isa.force(bad)
    with pytest.raises(ValueError):
        _C.force_isa("nope")
    assert slimnn.isa.available()[-1] == slimnn.isa.best()


def test_forced_restores_and_force_none():
    best = slimnn.isa.best()
    with slimnn.isa.forced("portable"):
        assert slimnn.isa.best() == "portable"
    assert slimnn.isa.best() == best
    with pytest.raises(RuntimeError):
        with slimnn.isa.forced("portable"):
            raise RuntimeError("inside")
    assert slimnn.isa.best() == best
    slimnn.isa.force("portable")
    slimnn.isa.force(None)
    assert slimnn.isa.best() == best


def test_force_applies_to_other_threads():
    _, _, _, blob = make_layer(16, 8, None, torch.Generator().manual_seed(0))
    names = []
    with slimnn.isa.forced("portable"):
        t = threading.Thread(target=lambda: names.append(q8_linear(torch.randn(3, 8), blob, None, "dynamic", 16)[1]))
        t.start()
        t.join()
    assert names == [next(e["name"] for e in entries("q8_dynamic") if e["isa"] == "portable")]


def run_python(code: str, env_isa: str | None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.pop("SLIMNN_ISA", None)
    if env_isa is not None:
        env["SLIMNN_ISA"] = env_isa
    env["PYTHONPATH"] = os.pathsep.join([os.path.dirname(os.path.dirname(slimnn.__file__)), env.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=240, env=env)


PROBE = """
import json, torch, slimnn
from slimnn import formats, ops
from slimnn.math import quantize
q, s = quantize.quantize_int8_symmetric(torch.randn(16, 8))
blob = formats.pack_q8(q, s)
used = {m: ops.q8_linear_with_kernel(torch.randn(4, 8), blob, None, m, 16)[1] for m in ("dynamic", "weight_only")}
slimnn.isa.force("avx512vnni")  # cannot raise the environment's ceiling
print(json.dumps({"available": slimnn.isa.available(), "used": used, "after_force": slimnn.isa.available()}))
"""


def test_env_var_lowers_in_a_subprocess():
    avail = slimnn.isa.available()
    lower = ["avx2" if "avx2" in avail and avail[-1] != "avx2" else "portable"]  # one subprocess: ~5 s
    for name in lower:
        out = run_python(PROBE, name)
        assert out.returncode == 0, out.stderr
        res = json.loads(out.stdout.strip().splitlines()[-1])
        assert res["available"][-1] == name
        assert res["after_force"] == res["available"]
        for mode, k in res["used"].items():
            isa = next(e["isa"] for e in entries() if e["name"] == k)
            assert rank(isa) <= rank(name), (mode, k)
    out = run_python("import slimnn", "avx-2")
    assert out.returncode != 0
    assert "SLIMNN_ISA='avx-2' is not an ISA" in out.stderr


def test_kernels_table():
    every = slimnn.kernels()
    names = [e["name"] for e in every]
    assert len(names) == len(set(names))
    det = slimnn.isa.detected()
    for e in every:
        assert e["isa"] in ORDER and e["available"] == (e["isa"] in det), e
    ks = [e for e in every if e["kind"] in MODES.values()]  # the q8 families' naming contract
    assert ks
    for e in ks:
        assert set(e) == {"name", "kind", "isa", "mr", "nr", "gemv", "available", "min_m"}
        # only AMX kernels wait for a crossover; the AMX-BF16 weight-only panels are opt-in (-1: off)
        assert e["min_m"] == 0 or e["isa"] in ("amx", "amx_bf16"), e
        assert e["isa"] in ORDER
        assert e["available"] == (e["isa"] in det)
        # <family>_<wfmt>_<afmt>_<MR>x<NR>__<isa>
        mt = re.fullmatch(r"qgemm_q8_(u8|f32)_(\d+)x(\d+)__([a-z0-9_]+)", e["name"])
        assert mt, e["name"]
        assert (mt.group(1) == "u8") == (e["kind"] == "q8_dynamic")
        assert (int(mt.group(2)), int(mt.group(3)), mt.group(4)) == (e["mr"], e["nr"], e["isa"])
        assert e["nr"] % 16 == 0 and e["mr"] >= 1
    for kind in MODES.values():
        ranks = [rank(e["isa"]) for e in ks if e["kind"] == kind]
        assert ranks == sorted(ranks, reverse=True), f"{kind} kernels are not best first"
        assert any(e["isa"] == "portable" for e in ks if e["kind"] == kind), "every kind needs a portable kernel"


def test_cpu_info():
    info = slimnn.cpu_info()
    assert {"vendor", "brand", "machine", "isa_detected", "isa_built", "isa_available", "isa_best", "amx_permission",
            "threads", "torch_threads", "torch_version", "ops"} <= set(info)
    assert info["isa_best"] == slimnn.isa.best()
    assert info["isa_available"] == slimnn.isa.available()
    assert info["isa_detected"] == slimnn.isa.detected()
    assert info["threads"] == slimnn.get_num_threads()
    assert info["torch_threads"] == torch.get_num_threads()
    assert info["amx_permission"] in ("granted", "refused", "not applicable")
    assert isinstance(info["brand"], str) and isinstance(info["vendor"], str)
    for mode, kind in MODES.items():
        assert info["ops"][f"int8_{mode}"] == {m: _C.select_kernel(kind, m) for m in (1, 16)}
    amx = info["amx"]
    assert amx["built"] == ("amx" in slimnn.isa.built())
    assert amx["detected"] == ("amx" in slimnn.isa.detected())
    assert amx["used"] == ("amx" in slimnn.isa.available())
    assert set(amx["kernels"]) == {e["name"] for e in [*entries(), *_C.q4_kernels()] if e["isa"] == "amx"}
    assert all(v["min_m"] >= 2 for v in amx["kernels"].values())
    assert amx["emulated_kernels"] == ["qgemm_q8_u8_32x64__amxemu", "qgemm_q8_f32_32x32__amxemu",
                                       "qgemm_q4_u8_32x64__amxemu", "qgemm_q4_f32_32x32__amxemu"]
    # W8A8 and W4A8 AMX-INT8, AMX-BF16 weight-only
    bf16 = amx["bf16"]
    assert bf16["detected"] == ("amx_bf16" in slimnn.isa.detected())
    assert bf16["used"] == ("amx_bf16" in slimnn.isa.available())
    assert bf16["from_m"] == _C.wo_amx_bf16_min_rows()
    assert set(bf16["kernels"]) == {e["name"] for e in slimnn.kernels() if e["isa"] == "amx_bf16"}
    if info["amx_permission"] == "refused":
        assert not amx["detected"]
    slimnn.set_num_threads(1)
    assert slimnn.cpu_info()["threads"] == 1
    with slimnn.isa.forced("portable"):
        info = slimnn.cpu_info()
        assert info["isa_best"] == "portable"
        assert all(v.endswith("__portable") for d in info["ops"].values() for v in d.values())


def test_module_reports_its_kernel():
    lin = torch.nn.Linear(24, 40)
    for mode in MODES:
        mod = slimnn.nn.Int8Linear.from_linear(lin, slimnn.Int8Config(mode=mode))
        assert mod.kernel_name(16) == _C.select_kernel(MODES[mode], 16)
        assert mod.last_kernel is None
        with torch.no_grad():
            mod(torch.randn(5, 24))
        assert mod.last_kernel == _C.select_kernel(MODES[mode], 5)
        assert f"kernel={mod.last_kernel}" in repr(mod)
        with slimnn.isa.forced("portable"):
            with torch.no_grad():
                mod(torch.randn(5, 24))
            assert mod.last_kernel.endswith("__portable")


@pytest.mark.parametrize("family", ["q8", "q4"])
@pytest.mark.parametrize("m", [1, 2, 3, 4, 16, 128])
def test_amx_kernel_from_its_crossover(m, family):
    """Where AMX is usable, the AMX kernel runs for M >= its crossover (min_m) and never below it; where it is
    not, the check is a skip that says why (the emulated twins are tested in test_qgemm_amx.py and
    test_q4gemm_amx.py either way)."""
    table = entries("q8_dynamic") if family == "q8" else [e for e in _C.q4_kernels() if e["kind"] == "q4_dynamic"]
    amx = [e for e in table if e["isa"] == "amx"]
    if not amx:
        pytest.skip("no AMX kernel in this build (SLIMNN_ENABLE_AMX off or not x86-64)")
    if "amx" not in slimnn.isa.available():
        info = slimnn.cpu_info()
        pytest.skip(f"AMX not usable here ({info['brand']}: permission {info['amx_permission']}, "
                    f"detected {slimnn.isa.detected()[-1]}): the real AMX kernel cannot be required")
    crossover = amx[0]["min_m"]
    if family == "q8":
        _, _, _, blob = make_layer(40, 24, None, torch.Generator().manual_seed(0))
        _, name = q8_linear(torch.randn(m, 24), blob, None, "dynamic", 40)
    else:
        from slimnn.formats import pack_q4
        from slimnn.math.quantize import quantize_int4

        blob = pack_q4(*quantize_int4(torch.randn(40, 64), 32, False), 32)
        x, y = torch.randn(m, 64), torch.empty(m, 40)
        name = _C.q4_linear("q4_dynamic", x.data_ptr(), False, m, 64, 0, blob.data_ptr(), blob.numel(), 0,
                            y.data_ptr(), 40, 1)
    if m >= crossover:
        assert name == amx[0]["name"], f"M={m} >= crossover {crossover} ran {name}"
    else:
        assert name != amx[0]["name"], f"M={m} < crossover {crossover} ran the AMX kernel"


def test_best_isa_paths_were_exercised(request):
    """Covered paths (ruy): this CPU's best kernel of each kind, for M = 1 and M > 1, ran through the op
    during this session; when test_qgemm.py ran too, so did every kernel the CPU can run. conftest moves
    this test to the end of the session."""
    missing = []
    for kind in MODES.values():
        for m in (1, 16):
            name = _C.select_kernel(kind, m)
            if name not in COVERED:
                missing.append(name)
    # when test_qgemm.py's per-kernel op test is in this session, every kernel the CPU can run must have run
    if any(getattr(it, "originalname", "") == "test_op_matches_reference" for it in request.session.items):
        # (q8 kernels only: the other families' tests check their own kernel lists)
        missing += [
            e["name"] for e in entries()
            if e["available"] and e["kind"] in MODES.values() and e["name"] not in COVERED
        ]
    assert not missing, f"never exercised in this session: {sorted(set(missing))} (covered: {sorted(COVERED)})"
    # the best ISA that has q8 kernels (avx512vbmi2 has only the bitmap sparse kernels, checked in their tests)
    best = max((e["isa"] for e in entries() if e["isa"] in slimnn.isa.available()), key=rank)
    assert any(e["isa"] == best and e["name"] in COVERED for e in entries()), f"no {best} kernel ran"
