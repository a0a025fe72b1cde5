"""torch.compile: Inductor lowers slimnn's linear ops to direct calls of their kernels.

Without this, Inductor keeps each ``torch.ops.slimnn.*_linear`` node as a fallback kernel: every call goes
through the dispatcher into the ``torch.library.custom_op`` Python wrapper (its autograd kernel, then the
eager checks), 15-40 us per layer (docs/ecosystem.md). With it, each node becomes an Inductor
``ExternKernelOut`` whose generated wrapper line calls the kernel binding directly, into an output buffer
Inductor allocates itself::

    buf0 = empty_strided_cpu((s77, 1536), (1536, 1), torch.float32)
    extern_kernels.slimnn_q8_linear(arg4_1, arg0_1, arg1_1, 'q8_dynamic', 1536, 0, out=buf0)

What the eager entry checks on every call is checked here once, at compile time, on the IR's static
dtypes and sizes (input float32 with a static last dimension, blobs 1-D uint8, bias / input scales float32
of the right length, residual index dtypes); a node that fails any of these is left to the ordinary
fallback, which raises the eager entry's ValueError at run time. At run time the extern function only
reads the blob's header (one C++ call) to check the output width, and the C++ binding validates the blob
against the sizes, as on the eager path.

The lowerings are registered in ``torch._inductor.lowering.user_lowerings`` (private API of torch 2.13;
torch's own ``register_custom_op_autotuning`` uses the same table) the first time
``torch._inductor.compile_fx`` is imported, so ``import slimnn`` does not import Inductor. If that table is
missing (another torch), nothing is registered and compiled models take the fallback: slower, same result.
``slimnn::q8_linear_prequantized`` (emitted only when ``slimnn.ops.q8.FUSE_QUANTIZATION`` is on: the row
quantization as torch ops, fused by Inductor into x's producer) is lowered the same way.

The extern functions' names carry a version (``_v1``): a change of their arguments gets a new name, so a
stale compiled-graph cache entry fails loudly instead of calling the kernel with the wrong arguments.

Attention: in a graph that holds a slimnn op (a compressed model), the post-grad pass also replaces torch's
CPU flash attention (``aten._scaled_dot_product_flash_attention_for_cpu``, what SDPA becomes after AOT
autograd) by ``torch.ops.slimnn.attention`` (csrc/kernels/attention), where its semantics are the same:
float32 or bfloat16 q/k/v of one dtype, 4-D, no dropout, a boolean or float mask or none, and only the output
used (not the log-sum-exp). ``ATTENTION`` chooses: ``"auto"`` (default: graphs with a slimnn op only, so an
uncompressed model compiled next to slimnn keeps torch's kernel), ``"always"``, ``"off"``. The setting is
part of the compiled-graph cache key. The one difference from torch: a query row whose keys are all masked
gives zeros (torch's flash kernel gives NaN there). ``slimnn.fast_attention_`` does the same in eager mode.
"""

from __future__ import annotations

from typing import Any, Optional

import torch
from torch import Tensor

from .. import _C
from ..runtime.threads import get_num_threads

STATUS = "not registered (Inductor not imported yet)"
"""Whether the lowerings are in place: for ``slimnn.cpu_info()`` and tests."""

ATTENTION = "auto"
"""Where compiled graphs take slimnn's attention kernel instead of torch's: "auto", "always" or "off"."""

_ATTENTION_CHOICES = ("auto", "always", "off")

_F32 = torch.float32
_KIND = {"dynamic": "q8_dynamic", "weight_only": "q8_weight_only"}
_KIND4 = {"dynamic": "q4_dynamic", "weight_only": "q4_weight_only"}
_ACT = {None: 0, "relu": 1, "gelu": 2, "gelu_tanh": 3, "silu": 4}  # == slimnn.ops.ACTIVATIONS


# ----------------------------------------------------------------------------------------------------
# Run-time entries, called by Inductor's generated wrapper. Tensors arrive first (absent optional ones are
# left out; ``has`` says which are there), then the constant arguments, then ``out``.
# ----------------------------------------------------------------------------------------------------

def _rows(x: Tensor, k: int) -> int:
    return x.numel() // k if k else 0


def q8_linear_v1(*args: Any, out: Tensor) -> Tensor:
    *tensors, kind, n, act, has_bias = args
    x, packed = tensors[0], tensors[1]
    bias = tensors[2] if has_bias else None
    k = x.shape[-1]
    hn, hk = _C.q8_header(packed.data_ptr(), packed.numel(), False)[:2]
    if hn != n or hk != k:
        raise ValueError(f"q8_linear: the call is {k}->{n}, the packed weights are {hk}->{hn}")
    _C.q8_linear(kind, x.data_ptr(), False, _rows(x, k), k, packed.data_ptr(), packed.numel(),
                 0 if bias is None else bias.data_ptr(), out.data_ptr(), n, get_num_threads(), act)
    return out


def q4_linear_v1(*args: Any, out: Tensor) -> Tensor:
    *tensors, kind, n, has_bias, has_in_mul = args
    x, packed, rest = tensors[0], tensors[1], list(tensors[2:])
    bias = rest.pop(0) if has_bias else None
    in_mul = rest.pop(0) if has_in_mul else None
    k = x.shape[-1]
    hn, hk = _C.q4_header(packed.data_ptr(), packed.numel(), False)[:2]
    if hn != n or hk != k or (in_mul is not None and in_mul.numel() != k):
        raise ValueError(f"q4_linear: the call is {k}->{n}, the packed weights are {hk}->{hn}")
    _C.q4_linear(kind, x.data_ptr(), False, _rows(x, k), k, 0 if in_mul is None else in_mul.data_ptr(),
                 packed.data_ptr(), packed.numel(), 0 if bias is None else bias.data_ptr(), out.data_ptr(), n,
                 get_num_threads())
    return out


def sparse_linear_v1(*args: Any, out: Tensor) -> Tensor:
    # The binding checks the blob's K and N against the call's (csr, bsr, nm and bitmap alike).
    *tensors, n, has_bias = args
    x, packed = tensors[0], tensors[1]
    bias = tensors[2] if has_bias else None
    k = x.shape[-1]
    _C.sparse_linear(x.data_ptr(), _rows(x, k), k, k, packed.data_ptr(), packed.numel(),
                     0 if bias is None else bias.data_ptr(), out.data_ptr(), n, n, get_num_threads(), "")
    return out


def lowrank_linear_v1(*args: Any, out: Tensor) -> Tensor:
    *tensors, factors, n, has_bias, has_residual = args
    x, u, v, rest = tensors[0], tensors[1], tensors[2], list(tensors[3:])
    bias = rest.pop(0) if has_bias else None
    res = (0, 0, 0, 0)
    if has_residual:
        rowptr, col, val = rest
        _C.lowrank_check_csr(n, x.shape[-1], col.numel(), rowptr.data_ptr(), col.data_ptr(), val.data_ptr())
        res = (rowptr.data_ptr(), col.data_ptr(), val.data_ptr(), col.numel())
    k = x.shape[-1]
    b = 0 if bias is None else bias.data_ptr()
    if factors == "float32":
        if u.shape[0] != n or v.shape[1] != k or u.shape[1] != v.shape[0]:
            raise ValueError(f"lowrank_linear: factors {tuple(u.shape)} x {tuple(v.shape)} for a {k}->{n} call")
        _C.lowrank_f32_linear(x.data_ptr(), _rows(x, k), k, n, k, u.shape[1], u.data_ptr(), v.data_ptr(), b,
                              out.data_ptr(), n, get_num_threads(), "", *res)
    else:
        un, vk = _C.q8_header(u.data_ptr(), u.numel(), False)[0], _C.q8_header(v.data_ptr(), v.numel(), False)[1]
        if un != n or vk != k:
            raise ValueError(f"lowrank_linear: factors are {vk}->{un}, the call is {k}->{n}")
        _C.lowrank_q8_linear(factors, x.data_ptr(), _rows(x, k), k, v.data_ptr(), v.numel(), u.data_ptr(), u.numel(),
                             b, out.data_ptr(), n, get_num_threads(), *res)
    return out


def q8_linear_prequantized_v1(*args: Any, out: Tensor) -> Tensor:
    *tensors, n, act, has_bias = args
    a, a_scale, a_zp, x, packed = tensors[:5]
    bias = tensors[5] if has_bias else None
    k = x.shape[-1]
    hn, hk, _, _, _, kp = _C.q8_header(packed.data_ptr(), packed.numel(), False)
    m = _rows(x, k)
    if hn != n or hk != k or a.numel() != m * kp or a_scale.numel() != m or a_zp.numel() != m:
        raise ValueError(f"q8_linear_prequantized: the call is {k}->{n} over {m} rows of {a.numel() // max(m, 1)} "
                         f"codes, the packed weights are {hk}->{hn} with rows of {kp}")
    _C.q8_linear_prequantized(a.data_ptr(), a_scale.data_ptr(), a_zp.data_ptr(), x.data_ptr(), m, k, packed.data_ptr(),
                              packed.numel(), 0 if bias is None else bias.data_ptr(), out.data_ptr(), n,
                              get_num_threads(), act)
    return out


_EXTERNS = {
    "slimnn_q8_linear_prequantized_v1": q8_linear_prequantized_v1,
    "slimnn_q8_linear_v1": q8_linear_v1,
    "slimnn_q4_linear_v1": q4_linear_v1,
    "slimnn_sparse_linear_v1": sparse_linear_v1,
    "slimnn_lowrank_linear_v1": lowrank_linear_v1,
}


# ----------------------------------------------------------------------------------------------------
# Lowerings: compile-time checks on the IR, then one ExternKernelOut. Returning None leaves the node to
# Inductor's ordinary fallback (the custom op, with the eager checks).
# ----------------------------------------------------------------------------------------------------

def _static(v: Any) -> Optional[int]:
    try:
        return int(v)
    except (TypeError, ValueError):  # a symbolic size
        return None


def _is(t: Any, dtype: torch.dtype, shape: Optional[tuple] = None) -> bool:
    if t is None:
        return False
    try:
        if t.get_dtype() != dtype or t.get_device().type != "cpu":
            return False
        size = [_static(s) for s in t.get_size()]
    except (AttributeError, NotImplementedError):
        return False
    if shape is None:
        return True
    return len(size) == len(shape) and all(a == b for a, b in zip(size, shape) if isinstance(b, int))


def _input(x: Any) -> Optional[Any]:
    """K (an int, or a symbolic size under dynamic shapes) for an input the kernels take as is (float32 on
    the CPU), else None. A symbolic K is checked against the blob's header at run time."""
    try:
        if x.get_dtype() != _F32 or x.get_device().type != "cpu" or len(x.get_size()) < 1:
            return None
        k = x.get_size()[-1]
        return k if _static(k) is None else _static(k)
    except (AttributeError, NotImplementedError):
        return None


def _blob(t: Any) -> bool:
    # A symbolic size (a blob passed as a graph input under dynamic=True) is checked by the C++ header parse.
    if not (_is(t, torch.uint8) and len(t.get_size()) == 1):
        return False
    size = _static(t.get_size()[0])
    return size is None or size >= 128


def _make(ir: Any, name: str, x: Any, tensors: list, consts: tuple, n: int, x_first: bool = True) -> Any:
    # x_first=False: x goes after the first three tensors (the prequantized op's argument order).
    x = ir.ExternKernel.require_contiguous(x)
    tensors = [ir.ExternKernel.require_contiguous(t) for t in tensors]
    layout = ir.FixedLayout(x.get_device(), _F32, [*x.get_size()[:-1], n])
    inputs = [x, *tensors] if x_first else [*tensors[:3], x, *tensors[3:]]
    node = ir.ExternKernelOut(layout=layout, inputs=inputs, constant_args=consts,
                              python_kernel_name=f"extern_kernels.{name}")
    return ir.TensorBox.create(node)


def _lowerings(ir: Any) -> dict:
    def q8(x, packed, bias=None, mode="dynamic", out_features=0, activation=None):  # noqa: ANN001, ANN202
        k, n = _input(x), out_features
        if k is None or mode not in _KIND or activation not in _ACT or not _blob(packed) or n <= 0:
            return None
        if bias is not None and not _is(bias, _F32, (n,)):
            return None
        tensors = [packed] + ([bias] if bias is not None else [])
        return _make(ir, "slimnn_q8_linear_v1", x, tensors, (_KIND[mode], n, _ACT[activation], bias is not None), n)

    def q8_pre(a, a_scale, a_zp, x, packed, bias=None, out_features=0, activation=None):  # noqa: ANN001, ANN202
        k, n = _input(x), out_features
        if k is None or activation not in _ACT or not _blob(packed) or n <= 0 or len(x.get_size()) != 2:
            return None
        if not (_is(a, torch.uint8) and _is(a_scale, _F32) and _is(a_zp, torch.int32)):
            return None
        if bias is not None and not _is(bias, _F32, (n,)):
            return None
        tensors = [a, a_scale, a_zp, packed] + ([bias] if bias is not None else [])
        return _make(ir, "slimnn_q8_linear_prequantized_v1", x, tensors, (n, _ACT[activation], bias is not None), n,
                     x_first=False)

    def q4(x, packed, bias=None, in_mul=None, mode="dynamic", out_features=0):  # noqa: ANN001, ANN202
        k, n = _input(x), out_features
        if k is None or mode not in _KIND4 or not _blob(packed) or n <= 0:
            return None
        if (bias is not None and not _is(bias, _F32, (n,))) or (in_mul is not None and not _is(in_mul, _F32, (k,))):
            return None
        tensors = [packed] + [t for t in (bias, in_mul) if t is not None]
        return _make(ir, "slimnn_q4_linear_v1", x, tensors, (_KIND4[mode], n, bias is not None, in_mul is not None), n)

    def sparse(x, packed, bias=None, out_features=0):  # noqa: ANN001, ANN202
        k, n = _input(x), out_features
        if k is None or not _blob(packed) or n <= 0 or (bias is not None and not _is(bias, _F32, (n,))):
            return None
        tensors = [packed] + ([bias] if bias is not None else [])
        return _make(ir, "slimnn_sparse_linear_v1", x, tensors, (n, bias is not None), n)

    def lowrank(x, u, v, bias, rowptr, col, val, factors, out_features):  # noqa: ANN001, ANN202
        k, n = _input(x), out_features
        if k is None or n <= 0 or (bias is not None and not _is(bias, _F32, (n,))):
            return None
        if factors == "float32":
            if not (_is(u, _F32, (n, None)) and _is(v, _F32, (None, k))):
                return None
            if _static(u.get_size()[1]) != _static(v.get_size()[0]) or _static(u.get_size()[1]) in (None, 0):
                return None
        elif factors in ("q8_dynamic", "q8_weight_only"):
            if not (_blob(u) and _blob(v)):
                return None
        else:
            return None
        residual = [rowptr, col, val]
        if any(t is not None for t in residual):
            if not (_is(rowptr, torch.int64, (n + 1,)) and _is(col, torch.int32, (None,)) and _is(val, _F32, (None,))):
                return None
            if _static(col.get_size()[0]) != _static(val.get_size()[0]):
                return None
        else:
            residual = []
        tensors = [u, v] + ([bias] if bias is not None else []) + residual
        return _make(ir, "slimnn_lowrank_linear_v1", x, tensors, (factors, n, bias is not None, bool(residual)), n)

    ops = torch.ops.slimnn
    return {ops.q8_linear.default: q8, ops.q8_linear_prequantized.default: q8_pre, ops.q4_linear.default: q4, ops.sparse_linear.default: sparse,
            ops.lowrank_linear.default: lowrank}


def register(_module: Any = None) -> None:
    """Puts the extern kernels and lowerings in place (idempotent); called when Inductor is imported."""
    global STATUS
    try:
        from torch._inductor import ir
        from torch._inductor.lowering import user_lowerings
        from torch._inductor.select_algorithm import extern_kernels
    except ImportError as e:  # another torch: compiled models take the fallback
        STATUS = f"not available in torch {torch.__version__}: {e}"
        return
    for name, fn in _EXTERNS.items():
        if getattr(extern_kernels, name, None) is not fn:
            setattr(extern_kernels, name, fn)
    # Import order: the ops must exist before their OpOverloads can key the table.
    from . import attn, lowrank, q4, q8, sparse  # noqa: F401

    user_lowerings.update(_lowerings(ir))
    _tag_cache_key()
    STATUS = "registered"


LOWERING_VERSION = 3


def _tag_cache_key() -> None:
    # Inductor's compiled-graph cache key does not cover user lowerings; a no-op post-grad pass whose uuid
    # names this module's version does, so graphs compiled before (fallback calls) or by another slimnn are
    # not reused. A user's own pass in that slot is kept (the slot takes a tuple).
    try:
        from torch._inductor import config
        from torch._inductor.custom_graph_pass import CustomGraphPass
    except ImportError:
        return

    class SlimnnCacheTag(CustomGraphPass):
        def __call__(self, graph: Any) -> None:
            use_slimnn_attention(graph)

        def uuid(self) -> Any:
            return ("slimnn.inductor", LOWERING_VERSION, _attention_setting())

    cur = config.post_grad_custom_post_pass
    items = () if cur is None else tuple(cur) if isinstance(cur, (list, tuple)) else (cur,)
    if any(type(p).__name__ == "SlimnnCacheTag" for p in items):
        return
    config.post_grad_custom_post_pass = (*items, SlimnnCacheTag()) if items else SlimnnCacheTag()


def _attention_setting() -> str:
    if ATTENTION not in _ATTENTION_CHOICES:
        raise ValueError(f"slimnn.ops.inductor.ATTENTION must be one of {_ATTENTION_CHOICES}, got {ATTENTION!r}")
    return ATTENTION


def _val(a: Any) -> Any:
    return a.meta.get("val") if isinstance(a, torch.fx.Node) else a


def _attention_args(node: Any) -> Optional[tuple]:
    """(q, k, v, mask, scale, is_causal) of a CPU flash-attention node slimnn's kernel computes the same way,
    else None."""
    names = ("query", "key", "value", "dropout_p", "is_causal")
    args = dict(zip(names, node.args))
    args.update({k: v for k, v in node.kwargs.items()})  # noqa: C416
    q, k, v = args.get("query"), args.get("key"), args.get("value")
    mask, scale = args.get("attn_mask"), args.get("scale")
    vals = [_val(t) for t in (q, k, v)]
    if not all(isinstance(t, Tensor) for t in vals):
        return None
    if float(args.get("dropout_p", 0.0) or 0.0) != 0.0:
        return None
    if vals[0].dtype not in (torch.float32, torch.bfloat16) or any(t.dtype != vals[0].dtype for t in vals):
        return None
    if any(t.dim() != 4 for t in vals) or vals[0].shape[1] != vals[1].shape[1]:
        return None
    if mask is not None:
        m = _val(mask)
        if not isinstance(m, Tensor) or m.dim() > 4 or not (m.dtype == torch.bool or m.dtype.is_floating_point):
            return None
    if not (scale is None or isinstance(scale, (int, float))):
        return None
    # Only the output may be used: the log-sum-exp (backward) is not computed by slimnn's kernel.
    for u in node.users:
        if not (u.target is _getitem() and len(u.args) > 1 and u.args[1] == 0):
            return None
    return q, k, v, mask, scale, bool(args.get("is_causal", False))


def _getitem() -> Any:
    import operator

    return operator.getitem


def _has_slimnn_op(graph: Any) -> bool:
    return any(n.op == "call_function" and getattr(n.target, "namespace", None) == "slimnn" for n in graph.nodes)


def use_slimnn_attention(graph: Any) -> int:
    """The post-grad rewrite described in the module docstring; returns how many nodes it replaced."""
    setting = _attention_setting()
    if setting == "off" or (setting == "auto" and not _has_slimnn_op(graph)):
        return 0
    flash = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu.default
    done = 0
    for node in list(graph.nodes):
        if node.op != "call_function" or node.target is not flash:
            continue
        args = _attention_args(node)
        if args is None:
            continue
        out_val = node.meta["val"][0]
        with graph.inserting_before(node):
            new = graph.call_function(torch.ops.slimnn.attention.default, args)
        new.meta.update({k: v for k, v in node.meta.items() if k != "val"})
        new.meta["val"] = out_val
        for u in list(node.users):
            u.replace_all_uses_with(new)
            graph.erase_node(u)
        graph.erase_node(node)
        done += 1
    return done


def install() -> None:
    """Registers :func:`register` to run once ``torch._inductor.compile_fx`` is imported."""
    from ..runtime.hooks import when_imported

    when_imported("torch._inductor.compile_fx", register)
