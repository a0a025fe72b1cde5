"""Checks shared by every op entry point (the activation input, the packed blob's header fields), and the call of the q8 / q4 linear bindings.

Each op validates what it is handed before a pointer reaches the kernels; the C++ side re-validates the blob.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from ..runtime.threads import get_num_threads

_F32 = torch.float32
_BF16 = torch.bfloat16
INPUT_DTYPES = (torch.float32, torch.bfloat16, torch.float16, torch.float64)


def check_cpu_tensor(t: Tensor, op: str, what: str) -> None:
    """Raises unless ``t`` (the argument ``what`` of ``op``) is a torch.Tensor (TypeError) on the CPU (ValueError)."""
    if not isinstance(t, Tensor):
        raise TypeError(f"{op}: {what} must be a torch.Tensor, got {type(t).__name__}")
    if t.device.type != "cpu":
        raise ValueError(f"{op}: {what} is on {t.device}; slimnn kernels run on the CPU")


def check_input(x: Tensor, k: int, op: str) -> Tensor:
    """Raises unless ``x`` is a CPU float tensor whose last dimension is ``k``; returns it unchanged."""
    check_cpu_tensor(x, op, "input")
    if x.dtype not in INPUT_DTYPES:
        raise TypeError(f"{op}: input dtype must be float32, bfloat16, float16 or float64, got {x.dtype}")
    if x.dim() == 0 or x.shape[-1] != k:
        raise ValueError(f"{op}: input's last dimension must be in_features={k}, got shape {tuple(x.shape)}")
    return x


def prepare_input(x: Tensor, k: int, op: str) -> tuple[Tensor, torch.dtype]:
    """:func:`check_input`, then float16/float64 converted to float32. Returns (x, the caller's dtype)."""
    check_input(x, k, op)
    dt = x.dtype
    if dt is not _F32 and dt is not _BF16:
        x = x.to(_F32)
    return x, dt


def blob_shape(packed: Tensor, op: str = "q8_linear") -> tuple[int, int]:
    """Header fields N and K of a packed blob (byte offsets 16 and 24, csrc/formats/header.h)."""
    if not isinstance(packed, Tensor):
        raise TypeError(f"{op}: packed weights must be a torch.Tensor, got {type(packed).__name__}")
    if packed.dtype != torch.uint8 or packed.dim() != 1 or packed.numel() < 128 or not packed.is_contiguous():
        raise ValueError(f"{op}: packed weights must be a contiguous 1-D uint8 blob with a slimnn header")
    if packed.device.type != "cpu":
        raise ValueError(f"{op}: packed weights are on {packed.device}; slimnn kernels run on the CPU")
    n, k = packed[16:32].view(torch.int64).tolist()
    return int(n), int(k)


def check_bias(bias: Optional[Tensor], n: int, op: str) -> None:
    """Raises unless ``bias`` is None or a contiguous float32 CPU tensor of shape (n,)."""
    if bias is not None and (
        not isinstance(bias, Tensor) or bias.dtype is not _F32 or bias.shape != (n,) or not bias.is_contiguous()
        or bias.device.type != "cpu"
    ):
        got = f"{bias.dtype} {tuple(bias.shape)} on {bias.device}" if isinstance(bias, Tensor) else type(bias).__name__
        raise ValueError(f"{op}: bias must be a contiguous float32 CPU tensor of shape ({n},), got {got}")


def as_rows(x: Tensor, k: int, to_float32: bool = False) -> tuple[Tensor, int, int, tuple]:
    """``x`` (..., K) as a matrix of evenly spaced rows with unit column stride, copied only when it is not
    already one. Returns (rows, M, row stride, leading shape)."""
    lead = x.shape[:-1]
    x2 = x.reshape(-1, k)
    if to_float32 and x2.dtype is not _F32:
        x2 = x2.to(_F32)
    m = x2.shape[0]
    if x2.stride(-1) != 1 or (m > 1 and x2.stride(0) < k):
        x2 = x2.contiguous()
    return x2, m, (x2.stride(0) if m > 1 else k), lead


def run_linear(binding, kind: str, x: Tensor, k: int, packed: Tensor, bias: Optional[Tensor], n: int, op: str,
               before_packed: tuple = (), after: tuple = ()) -> tuple[Tensor, str]:
    """One call of a q8 / q4 linear binding, which share a calling convention: (kind, x rows, is-bf16, M,
    row stride, *before_packed, packed, its size, bias, y, N, threads, *after). ``x`` is checked and
    converted (:func:`prepare_input`) and taken as rows (:func:`as_rows`); returns (y shaped (..., N) in
    x's dtype, the kernel name)."""
    x, dt = prepare_input(x, k, op)
    x2, m, ldx, lead = as_rows(x, k)
    y = torch.empty((m, n), dtype=_F32)
    name = binding(
        kind,
        x2.data_ptr(),
        x2.dtype is _BF16,
        m,
        ldx,
        *before_packed,
        packed.data_ptr(),
        packed.numel(),
        0 if bias is None else bias.data_ptr(),
        y.data_ptr(),
        n,
        get_num_threads(),
        *after,
    )
    y = y.view(*lead, n)
    return (y if dt is _F32 else y.to(dt)), name


def untraceable(module: object) -> None:
    """Raises the ValueError a slimnn module gives under ``torch.onnx.export`` or ``torch.jit.trace``.

    The kernels read packed weights through raw pointers, which neither the TorchScript tracer nor the ONNX
    exporters see: a trace would record the layer's output as a constant (a graph that ignores its input),
    and the dynamo ONNX exporter finds no ONNX function for the op. So both refuse, naming the way out."""
    kind = type(module).__name__
    if torch.onnx.is_in_onnx_export():
        if kind in ("Int8Linear", "Conv2dInt8", "Conv1dInt8"):
            raise ValueError(
                "torch.onnx.export cannot see slimnn's packed int8 weights (the kernels read them through raw "
                "pointers): export with slimnn.export_onnx(model, args, path), which writes these layers as "
                "DequantizeLinear + MatMul (or + Conv)"
            )
        raise ValueError(f"slimnn.nn.{kind} has no ONNX export (only Int8Linear and the int8 convs do, through "
                         "slimnn.export_onnx); keep this layer float or int8 in the model you export")
    raise ValueError(f"torch.jit.trace cannot record slimnn.nn.{kind} (its kernel reads the packed weights through "
                     "raw pointers, so the trace would hold a constant); use torch.compile or torch.export instead")


def rows_uniform(x: Tensor, ldx: int) -> bool:
    """Whether the rows of a (..., K) tensor sit at one constant stride ``ldx`` (then they are one (M, K)
    matrix for the kernels): each leading stride must be the next one times its size."""
    step = ldx
    for d in range(x.dim() - 2, -1, -1):
        if x.size(d) > 1 and x.stride(d) != step:
            return False
        step *= x.size(d)
    return True


def module_rows(x: Tensor, k: int) -> Optional[tuple[int, int]]:
    """(M, row stride) when x is the modules' fast case (CPU, float32/bf16, last dim k and unit stride, rows
    at one constant stride: any leading dims form one (M, K) matrix, no reshape); None otherwise."""
    dt = x.dtype
    if x.is_cpu and (dt is torch.float32 or dt is torch.bfloat16) and x.dim() >= 2 and x.size(-1) == k \
            and x.stride(-1) == 1:
        m = x.numel() // k if k else 0
        ldx = x.stride(-2) if x.size(-2) > 1 else k
        if ldx >= k and (x.dim() == 2 or x.is_contiguous() or rows_uniform(x, ldx)):
            return m, ldx
    return None
