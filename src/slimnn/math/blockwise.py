"""Sequential calibration block by block: GPTQ/AWQ-style quantization of a model's Linears, each on the inputs
it receives from the model as already quantized up to it, in O(L) block passes instead of O(L^2).

A transformer is a stack of identical blocks in one ``nn.ModuleList`` (``model.layers``, ``encoder.layer``,
``h``, ...). The inputs of the first block are caught once per calibration batch (its positional and keyword
arguments); then each block is replayed alone on them: its Linears are quantized in stages of those that read
the same input tensor (q/k/v, then o, then gate/up, then down), each stage calibrated by a replay of the block
as quantized so far, and the quantized block's outputs become the next block's inputs. Targets outside the
stack (an embedding projection before it, a head after it) go through the full model, one partial forward
pass each (:func:`capture_linear_inputs` with ``stop_early``), as before.

The replay must compute what the model computes: the first batch's real inputs of the second block are caught
from the model and compared with the replayed outputs of the first block; when they differ (something runs
between the blocks, or the blocks are not called in order), or the model has no such stack, every target goes
through the full model instead. Key/value caches handed to the blocks are dropped for the replay
(``use_cache=False``): calibration is one prefill per batch.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

import torch
from torch import Tensor, nn

from .calibration import LinearInputStats, call_model, capture_linear_inputs, progress_iter

# Keyword arguments of a block that hold a key/value cache (HF names across versions)
_CACHE_KWARGS = ("past_key_value", "past_key_values", "layer_past")

QuantizeOne = Callable[[str, nn.Module, LinearInputStats], nn.Module]


def find_block_stack(model: nn.Module, fqns: Sequence[str]) -> Optional[tuple[str, nn.ModuleList]]:
    """The ``nn.ModuleList`` of at least two modules holding the most of ``fqns`` (names in ``model``) inside its
    children, as (its name, it); None when no list holds any."""
    best, best_n = None, 0
    for name, mod in model.named_modules():
        if not isinstance(mod, nn.ModuleList) or len(mod) < 2:
            continue
        prefix = f"{name}." if name else ""
        n = sum(1 for f in fqns if _block_index(prefix, f) is not None)
        if n > best_n:
            best, best_n = (name, mod), n
    return best


def _block_index(prefix: str, fqn: str) -> Optional[int]:
    if not fqn.startswith(prefix):
        return None
    head = fqn[len(prefix):].split(".", 1)
    return int(head[0]) if len(head) == 2 and head[0].isdigit() else None


class _Catch(Exception):
    pass


class _StageEnd(Exception):
    pass


def _first_hidden(args: tuple, kwargs: dict) -> Optional[Tensor]:
    x = args[0] if args else kwargs.get("hidden_states")
    return x if isinstance(x, Tensor) else None


def _with_hidden(args: tuple, kwargs: dict, h: Tensor) -> tuple[tuple, dict]:
    if args:
        return (h,) + tuple(args[1:]), kwargs
    return args, {**kwargs, "hidden_states": h}


def _block_output(out: Any) -> Tensor:
    h = out[0] if isinstance(out, (tuple, list)) else out
    if not isinstance(h, Tensor):
        raise TypeError("block returned no tensor")
    return h


def _catch_inputs(model: nn.Module, block: nn.Module, data: list) -> list:
    """Per batch, the (args, kwargs) the model passes to ``block`` (the forward stops there)."""
    caught: list = []

    def hook(mod: nn.Module, args: tuple, kwargs: dict) -> None:
        kw = dict(kwargs)
        for k in _CACHE_KWARGS:
            if k in kw:
                kw[k] = None
        if "use_cache" in kw:
            kw["use_cache"] = False
        caught.append((tuple(args), kw))
        raise _Catch

    h = block.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        with torch.no_grad():
            for batch in data:
                n = len(caught)
                try:
                    call_model(model, batch)
                except _Catch:
                    pass
                if len(caught) != n + 1:
                    return []
    finally:
        h.remove()
    return caught


class _Replay(nn.Module):
    """Runs one block on the caught inputs of batch i: ``replay(i)``."""

    def __init__(self, block: nn.Module, inputs: list) -> None:
        super().__init__()
        self.block = block
        self.inputs = inputs

    def forward(self, i: int) -> Any:
        args, kwargs = self.inputs[i]
        return self.block(*args, **kwargs)


def _stage(replay: _Replay, remaining: list) -> list:
    """The modules of ``remaining`` (fqn, module) that the block calls, on batch 0, with the same input tensor as the
    first of them it calls, in call order."""
    seen: list = []
    leader: list = []

    def make(fqn: str, mod: nn.Module) -> Callable:
        def hook(m: nn.Module, args: tuple, kwargs: dict) -> None:
            x = args[0] if args else next(iter(kwargs.values()), None)
            if not leader:
                leader.append(x)
            elif x is not leader[0]:
                raise _StageEnd
            if all(f != fqn for f, _ in seen):
                seen.append((fqn, mod))

        return hook

    handles = [mod.register_forward_pre_hook(make(f, mod), with_kwargs=True) for f, mod in remaining]
    try:
        with torch.no_grad():
            try:
                replay(0)
            except _StageEnd:
                pass
    finally:
        for h in handles:
            h.remove()
    return seen


def _replay_matches(model: nn.Module, stack: nn.ModuleList, inputs: list, data: list) -> bool:
    """Whether the first block replayed on batch 0 gives the model's real input of the second block."""
    real = _catch_inputs(model, stack[1], data[:1])
    if not real:
        return False
    want = _first_hidden(*real[0])
    args, kwargs = inputs[0]
    with torch.no_grad():
        try:
            got = _block_output(stack[0](*args, **kwargs))
        except Exception:  # noqa: BLE001 - a block that cannot be replayed alone: use the full model
            return False
    return want is not None and got.shape == want.shape and torch.allclose(got, want, rtol=1e-5, atol=1e-6)


def sequential_quantize_(model: nn.Module, targets: list, data: list, quantize_one: QuantizeOne, *,
                         capture: dict, desc: str, progress: bool, blockwise: bool = True) -> int:
    """Quantizes every (fqn, module) of ``targets`` (in ``model.named_modules()`` order) in place:
    ``model.set_submodule(fqn, quantize_one(fqn, module, stats))`` with ``stats`` the module's input statistics
    (:func:`capture_linear_inputs` keyword arguments ``capture``, e.g. ``gram=True``) on the model as quantized so
    far. Block by block when the model's Linears sit in a stack of blocks that can be replayed (module docstring),
    else one partial full-model pass per target (``blockwise=False`` forces that). Returns the number of targets
    calibrated block by block."""
    capture = {**capture, "require_called": True}

    def through_model(items: list) -> None:
        for fqn, mod in progress_iter(items, desc, progress):
            st = capture_linear_inputs(model, {fqn: mod}, data, stop_early=True, **capture)[fqn]
            model.set_submodule(fqn, quantize_one(fqn, mod, st))

    found = find_block_stack(model, [f for f, _ in targets]) if blockwise else None
    if found is None:
        through_model(targets)
        return 0
    name, stack = found
    prefix = f"{name}." if name else ""
    where = [_block_index(prefix, f) for f, _ in targets]
    inside = [i for i, b in enumerate(where) if b is not None]
    first, last = inside[0], inside[-1]
    # targets before the stack's first / after its last are calibrated through the model; stray ones in between
    # (not in a block) would see replayed inputs that skip them: the full-model path then
    if any(where[i] is None for i in range(first, last + 1)):
        through_model(targets)
        return 0
    through_model(targets[:first])
    inputs = _catch_inputs(model, stack[0], data)
    if not inputs or not _replay_matches(model, stack, inputs, data):
        through_model(targets[first:])
        return 0
    by_block: dict[int, list] = {}
    for i in inside:
        by_block.setdefault(where[i], []).append(targets[i])
    steps = sum(len(v) for v in by_block.values())
    bar = iter(progress_iter(range(steps), desc, progress))
    for b in range(max(by_block) + 1):
        block = stack[b]
        replay = _Replay(block, inputs)
        remaining = [(f[len(f"{prefix}{b}."):], m) for f, m in by_block.get(b, [])]
        while remaining:
            stage = _stage(replay, remaining)
            if not stage:
                names = ", ".join(f"{prefix}{b}.{f}" for f, _ in remaining)
                raise ValueError(f"calibration: layer(s) {names} were never called by the model on the calibration data")
            stats = capture_linear_inputs(replay, stage, list(range(len(inputs))), stop_early=True, **capture)
            for f, m in stage:
                block.set_submodule(f, quantize_one(f"{prefix}{b}.{f}", m, stats[f]))
                next(bar, None)
            done = {f for f, _ in stage}
            remaining = [(f, m) for f, m in remaining if f not in done]
        if b + 1 < len(stack):
            with torch.no_grad():
                inputs = [_with_hidden(a, k, _block_output(block(*a, **k))) for a, k in inputs]
    for _ in bar:
        pass
    through_model(targets[last + 1:])
    return steps
