"""ONNX Runtime as a peer of slimnn's int8 and int4 linear layers: one-node graphs built with onnx.helper.

- int8: ``DynamicQuantizeMatMul`` (com.microsoft): fp32 activations quantized per call by ORT (uint8,
  per tensor), int8 weights [K, N] with one scale per output column (the same symmetric per-channel
  quantization slimnn's Int8Config uses), bias fused.
- int4: ``MatMulNBits`` (com.microsoft, bits=4, block_size 32): weights [N][K/32][16] (two codes a byte, low
  nibble first), one fp32 scale per block, no zero-point input (ORT then uses 8), at ``accuracy_level``
  0 (fp32 compute, the default), 1 (fp32) or 4 (int8 activations, ORT's fastest CPU path).

Each session is built with ``intra_op_num_threads`` = the thread count asked (one session per count),
``inter_op_num_threads`` = 1 and the default optimization level; inputs and the output are bound once
(IOBinding on the caller's buffers), so a timed call is ``run_with_iobinding`` alone.
"""

from __future__ import annotations

from typing import Callable, Optional

import numpy as np
import torch
from torch import Tensor

try:
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper
except ImportError:  # the peer is optional: tables print without it
    ort = None

ACCURACY_LEVELS = (0, 1, 4)


def available() -> bool:
    return ort is not None


def version() -> str:
    return "not installed" if ort is None else ort.__version__


def _session(nodes, inits, k: int, n: int, threads: int):
    graph = helper.make_graph(
        nodes, "linear",
        [helper.make_tensor_value_info("A", TensorProto.FLOAT, ["M", k])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["M", n])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)])
    model.ir_version = 8
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


def int8_session(w: Tensor, bias: Optional[Tensor], threads: int):
    """DynamicQuantizeMatMul over w (N x K fp32), per-column symmetric int8."""
    w = w.detach().to(torch.float32)
    n, k = w.shape
    scale = (w.abs().amax(dim=1) / 127.0).clamp_min(1e-12)
    q = torch.round(w / scale[:, None]).clamp(-127, 127).to(torch.int8)
    inits = [
        numpy_helper.from_array(np.ascontiguousarray(q.t().numpy()), "B"),
        numpy_helper.from_array(scale.numpy().astype(np.float32), "b_scale"),
        numpy_helper.from_array(np.zeros(n, dtype=np.int8), "b_zp"),
    ]
    inputs = ["A", "B", "b_scale", "b_zp"]
    if bias is not None:
        inits.append(numpy_helper.from_array(bias.detach().to(torch.float32).numpy(), "bias"))
        inputs.append("bias")
    node = helper.make_node("DynamicQuantizeMatMul", inputs, ["Y"], domain="com.microsoft")
    return _session([node], inits, k, n, threads)


def int4_weights(w: Tensor, block: int = 32) -> tuple[np.ndarray, np.ndarray, Tensor]:
    """(B uint8 [N][K/block][block/2], scales fp32 [N * K/block], the dequantized N x K fp32 weight)."""
    w = w.detach().to(torch.float32)
    n, k = w.shape
    nb = -(-k // block)
    wp = torch.zeros(n, nb * block)
    wp[:, :k] = w
    blocks = wp.view(n, nb, block)
    scale = (blocks.abs().amax(dim=2) / 7.0).clamp_min(1e-12)
    codes = (torch.round(blocks / scale[:, :, None]) + 8).clamp(0, 15).to(torch.uint8)
    packed = (codes[:, :, 0::2] | (codes[:, :, 1::2] << 4)).contiguous()
    wd = ((codes.to(torch.float32) - 8) * scale[:, :, None]).view(n, nb * block)[:, :k]
    return packed.numpy(), scale.reshape(-1).numpy().astype(np.float32), wd


def int4_session(w: Tensor, accuracy_level: int, threads: int, block: int = 32):
    n, k = w.shape
    packed, scales, _ = int4_weights(w, block)
    inits = [numpy_helper.from_array(packed, "B"), numpy_helper.from_array(scales, "scales")]
    node = helper.make_node("MatMulNBits", ["A", "B", "scales"], ["Y"], domain="com.microsoft", K=k, N=n, bits=4,
                            block_size=block, accuracy_level=accuracy_level)
    return _session([node], inits, k, n, threads)


def bind(sess, x: Tensor, n: int) -> tuple[Callable[[], Tensor], Tensor]:
    """A no-argument call of sess on x with input and output bound once; returns (call, output tensor)."""
    xa = np.ascontiguousarray(x.detach().to(torch.float32).numpy())
    y = np.empty((xa.shape[0], n), dtype=np.float32)
    io = sess.io_binding()
    io.bind_input("A", "cpu", 0, np.float32, list(xa.shape), xa.ctypes.data)
    io.bind_output("Y", "cpu", 0, np.float32, list(y.shape), y.ctypes.data)
    yt = torch.from_numpy(y)
    keep = (xa, y)  # the bound buffers must outlive the binding

    def call() -> Tensor:
        sess.run_with_iobinding(io)
        return yt

    call.keep = keep  # type: ignore[attr-defined]
    return call, yt
