"""``fuse_activations_``: let a compressed Linear apply the activation that follows it.

A pair is fused only when the model's code shows the Linear's output goes to the activation and nowhere
else, so the result is the same model up to float rounding (the kernel's activation formulas are within a
few ulp of torch's; docs/fusion.md). The evidence, per parent module:

- ``nn.Sequential``: consecutive children (Linear, activation);
- any other module: its ``forward`` traced by ``torch.fx`` with every child kept opaque, in train and in
  eval mode; the pair qualifies when the Linear is called exactly once, its only user is the activation
  module's only call, and that call takes the Linear's output alone. A forward fx cannot trace (data-
  dependent control flow, ``*args``) is left alone.

And for both: each module of the pair is reachable under one name only (not shared), has no hooks, and
the activation is one whose math slimnn knows: ``nn.ReLU``, ``nn.GELU`` (both ``approximate`` values),
``nn.SiLU`` and transformers' ``GELUActivation`` (both forms), ``GELUTanh``, ``NewGELUActivation``,
``SiLUActivation``. Activations written as function calls in ``forward`` (``F.gelu(self.fc(x))``) are
not rewritten.
"""

from __future__ import annotations

import warnings
from typing import Optional

import torch
from torch import nn

# Module-level, not inside the functions: a relative import run after an old-path alias of this module
# (``slimnn.fuse``, see _compat) was imported raises ImportWarning (__package__ != __spec__.parent).
from ..nn.fused import FusedActivation
from ..nn.int8 import Int8Linear

_TRANSFORMERS = {
    "SiLUActivation": "silu",
    "NewGELUActivation": "gelu_tanh",  # 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), written out
}


def activation_of(mod: nn.Module) -> Optional[str]:
    """The slimnn activation name ``mod`` computes exactly, or None if it is not one slimnn can fuse."""
    t = type(mod)
    if t is nn.ReLU:
        return "relu"
    if t is nn.GELU:
        return {"none": "gelu", "tanh": "gelu_tanh"}.get(mod.approximate)
    if t is nn.SiLU:
        return "silu"
    if t.__module__ != "transformers.activations" or t.forward is not t.__dict__.get("forward"):
        return None
    name = t.__name__
    if name in _TRANSFORMERS:
        return _TRANSFORMERS[name]
    act = getattr(mod, "act", None)
    if name == "GELUActivation":
        if act is torch.nn.functional.gelu or getattr(act, "__func__", None) is t.__dict__.get("_gelu_python"):
            return "gelu"
    if name == "GELUTanh":
        if getattr(act, "func", None) is torch.nn.functional.gelu and dict(act.keywords) == {"approximate": "tanh"}:
            return "gelu_tanh"
        if getattr(act, "__func__", None) is t.__dict__.get("_gelu_tanh_python"):
            return "gelu_tanh"
    return None


def _fusable_linear(mod: nn.Module) -> bool:

    return type(mod) is Int8Linear and mod.activation is None


def _no_hooks(*mods: nn.Module) -> bool:
    return not any(m._forward_hooks or m._forward_pre_hooks or m._backward_hooks for m in mods)


class _OpaqueChildren(torch.fx.Tracer):
    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:  # noqa: ARG002
        return True


def _pairs_in_graph(parent: nn.Module) -> Optional[set]:
    """{(linear child name, activation child name)} that qualify in ``parent``'s traced forward, or None."""
    found = None
    modes = {m: m.training for m in parent.modules()}
    try:
        for training in (True, False):
            parent.train(training)
            try:
                with warnings.catch_warnings():  # a forward fx dislikes is simply not fused
                    warnings.simplefilter("ignore")
                    graph = _OpaqueChildren().trace(parent)
            except Exception:  # noqa: BLE001  (fx raises many kinds; any of them means "cannot tell")
                return None
            calls: dict[str, list] = {}
            for node in graph.nodes:
                if node.op == "call_module":
                    calls.setdefault(node.target, []).append(node)
            pairs = set()
            for name, nodes in calls.items():
                if "." in name or len(nodes) != 1 or len(nodes[0].users) != 1:
                    continue
                user = next(iter(nodes[0].users))
                if (user.op == "call_module" and "." not in user.target and len(calls[user.target]) == 1
                        and user.args == (nodes[0],) and not user.kwargs):
                    pairs.add((name, user.target))
            found = pairs if found is None else found & pairs
    finally:
        for m, t in modes.items():
            m.training = t
    return found


def fuse_activations_(model: nn.Module) -> dict[str, str]:
    """Fuses, in place, every (compressed Linear -> activation) pair of ``model`` that provably feeds the
    Linear's output only to the activation (see the module docstring). The Linear gets ``activation`` set;
    the activation module is replaced by a :class:`slimnn.nn.FusedActivation`. Returns {linear fqn:
    "<activation> (from <activation module fqn>)"} for what it fused. Only ``slimnn.nn.Int8Linear`` fuses
    today; other modules are left as they are.
    """

    if not isinstance(model, nn.Module):
        raise TypeError(f"fuse_activations_ expects an nn.Module, got {type(model).__name__}")
    uses: dict[int, int] = {}
    for _, m in model.named_modules(remove_duplicate=False):
        uses[id(m)] = uses.get(id(m), 0) + 1
    fused: dict[str, str] = {}
    for pname, parent in list(model.named_modules()):
        kids = dict(parent.named_children())
        lin_names = [n for n, m in kids.items() if _fusable_linear(m) and uses[id(m)] == 1]
        act_names = [n for n, m in kids.items() if activation_of(m) is not None and uses[id(m)] == 1]
        if not lin_names or not act_names:
            continue
        if type(parent) is nn.Sequential:
            names = list(kids)
            pairs = {(a, b) for a, b in zip(names, names[1:])}
        else:
            pairs = _pairs_in_graph(parent) or set()
        for lin_name, act_name in sorted(pairs):
            if lin_name not in lin_names or act_name not in act_names:
                continue
            lin, act = kids[lin_name], kids[act_name]
            if not _no_hooks(lin, act):
                continue
            a = activation_of(act)
            lin.activation = a
            setattr(parent, act_name, FusedActivation(a, lin_name))
            prefix = f"{pname}." if pname else ""
            fused[prefix + lin_name] = f"{a} (from {prefix + act_name})"
    return fused
