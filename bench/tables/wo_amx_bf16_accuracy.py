#!/usr/bin/env python
"""Accuracy of the AMX-BF16 weight-only path (csrc/kernels/wogemm/amx_bf16.h) next to the fp32 panel path,
on a 768 -> 3072 layer at M = 64, through the emulated twin (any CPU; on an AMX-BF16 CPU pass --real to run
the real kernel instead). Errors are against the float64 product of the same dequantized weights, plus the
quantization error itself for scale. No timing (the twin is an emulation). docs/amx.md has the figures.

    PYTHONPATH=src python bench/tables/wo_amx_bf16_accuracy.py [--real]
"""

from __future__ import annotations

import sys

import torch

import slimnn
from slimnn import _C, formats
from slimnn.math.quantize import dequantize_int4, quantize_int4

K, N, M = 768, 3072, 64


def best_fp32_panel(fmt: str) -> str:
    kind = f"{fmt}_weight_only_panel"
    rows = [e for e in [*_C.kernels(), *_C.q4_kernels()] if e["kind"] == kind and e["available"]]
    return next(e["name"] for e in rows if e["isa"] != "amx_bf16")


def run(fmt: str, name: str, x: torch.Tensor, blob: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    y = torch.empty(M, N)
    if fmt == "q8":
        _C.q8_linear_forced(name, x.data_ptr(), False, M, K, blob.data_ptr(), blob.numel(), bias.data_ptr(),
                            y.data_ptr(), N, 2, 0, 0)
    else:
        _C.q4_linear_forced(name, x.data_ptr(), False, M, K, 0, blob.data_ptr(), blob.numel(), bias.data_ptr(),
                            y.data_ptr(), N, 2)
    return y.double()


def sqnr(want: torch.Tensor, got: torch.Tensor) -> float:
    return float(10 * torch.log10((want**2).sum() / ((got - want) ** 2).sum()))


def main() -> None:
    real = "--real" in sys.argv
    g = torch.Generator().manual_seed(0)
    wf = torch.randn(N, K, generator=g) / K**0.5
    x = torch.randn(M, K, generator=g)
    bias = torch.randn(N, generator=g) * 0.1
    s = wf.abs().amax(1) / 127
    q = torch.clamp(torch.round(wf / s[:, None]), -127, 127).to(torch.int8)
    codes, sc, z = quantize_int4(wf, 64, False, torch.float16)
    cases = {
        "q8 per channel": ("q8", formats.pack_q8(q, s[None, :].contiguous(), None), q.double() * s.double()[:, None]),
        "q4 asym g64 fp16": ("q4", formats.pack_q4(codes, sc, z, 64), dequantize_int4(codes, sc, z, 64).double()),
    }
    float_y = x.double() @ wf.double().T + bias.double()
    print(f"cpu: {slimnn.cpu_info()['brand']}  {K}->{N} M={M}  bf16 kernel: {'real' if real else 'emulated twin'}")
    for label, (fmt, blob, wd) in cases.items():
        exact = x.double() @ wd.T + bias.double()
        yf = run(fmt, best_fp32_panel(fmt), x, blob, bias)
        yb = run(fmt, f"qgemm_{fmt}_f32_32x32__{'amx_bf16' if real else 'amxemu'}", x, blob, bias)
        mag = x.double().abs() @ wd.abs().T + bias.double().abs()
        print(f"{label}: fp32 path SQNR {sqnr(exact, yf):.1f} dB | bf16 SQNR {sqnr(exact, yb):.1f} dB, "
              f"max|err|/max|y| {float((yb - exact).abs().max() / exact.abs().max()):.2e}, "
              f"max |bf16 - fp32| / sum|x||w| {float(((yb - yf).abs() / mag).max()):.2e} | "
              f"quantization alone SQNR {sqnr(float_y, yf):.1f} dB")


if __name__ == "__main__":
    main()
