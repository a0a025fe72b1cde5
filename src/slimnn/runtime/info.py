"""What this machine offers and what slimnn will run on it."""

from __future__ import annotations

import platform
from typing import Any

import torch

from .. import _C
from . import isa
from .threads import get_num_threads


def kernels() -> list[dict[str, Any]]:
    """Every kernel in this build, best first per kind: name, kind, isa, tile (mr x nr), availability."""
    return list(_C.all_kernels())  # each family's kernels.inc, as the extension binds them


def _amx_info() -> dict[str, Any]:
    """Whether AMX kernels are built, usable here (CPU + OS + permission, under any forced ceiling), from
    which M the selector takes them (their crossovers, unmeasured: csrc/kernels/qgemm/select.cc and
    csrc/kernels/q4gemm/select.cc), and the test-only emulations of them that this build holds (never selected)."""
    amx = [e for e in [*_C.kernels(), *_C.q4_kernels()] if e["isa"] == "amx"]
    return {
        "built": "amx" in isa.built(),
        "detected": "amx" in isa.detected(),
        "used": "amx" in isa.available(),
        "kernels": {e["name"]: {"min_m": e["min_m"]} for e in amx},
        "emulated_kernels": [e["name"] for e in [*_C.q8_emulated_kernels(), *_C.q4_emulated_kernels()]],
        # AMX-BF16 weight-only panels: opt-in (SLIMNN_WO_AMX_BF16=<rows> or _C.wo_amx_bf16_min_rows(rows)),
        # from_m 0 = off; crossover unmeasured (docs/amx.md)
        "bf16": {
            "detected": "amx_bf16" in isa.detected(),
            "used": "amx_bf16" in isa.available(),
            "from_m": _C.wo_amx_bf16_min_rows(),
            "kernels": [e["name"] for e in [*_C.kernels(), *_C.q4_kernels()] if e["isa"] == "amx_bf16"],
        },
    }


def cpu_info() -> dict[str, Any]:
    """CPU, detected and usable ISAs, threads, and which kernel each op takes now (M=1 and M=16)."""
    cid = _C.cpu_id()
    return {
        "vendor": cid["vendor"],
        "brand": cid["brand"] or platform.processor(),
        "machine": platform.machine(),
        "isa_detected": isa.detected(),
        "isa_built": isa.built(),
        "isa_available": isa.available(),
        "isa_best": isa.best(),
        "amx_permission": (
            "granted" if cid["amx_permission_granted"]
            else ("refused" if cid["amx_permission_requested"] else "not applicable")
        ),
        "cpu_features": cid["features"].split(),  # Arm only: asimd asimddp i8mm bf16 sve sve2 found
        "amx": _amx_info(),
        "threads": get_num_threads(),
        "torch_threads": torch.get_num_threads(),
        "torch_version": torch.__version__,
        "ops": {
            f"int8_{mode}": {m: _C.select_kernel(kind, m) for m in (1, 16)}
            for mode, kind in (("dynamic", "q8_dynamic"), ("weight_only", "q8_weight_only"))
        }
        | {"lowrank_float32": {m: _C.lowrank_select_kernel(m) for m in (1, 16)}}
        | {
            f"int4_{mode}": {m: _C.q4_select_kernel(kind, m) for m in (1, 16)}
            for mode, kind in (("dynamic", "q4_dynamic"), ("weight_only", "q4_weight_only"))
        }
        | {f"sparse_{kind}": {m: _C.spmm_select(kind, m) for m in (1, 16)}
           for kind in ("csr_f32", "csr_i8", "bsr_f32", "bsr_i8", "nm_f32", "nm_i8")}
        | {"sparse_bitmap_i8": {m: _C.bitmap_select(m) for m in (1, 16)}}
        | {"attention_float32": {m: _C.attention_select_kernel() for m in (1, 16)}},
    }
