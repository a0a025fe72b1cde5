"""Calibration: run a model over sample inputs and record what its Linear layers see.

Every data-aware technique needs statistics of each layer's inputs X (rows = tokens): activation-aware
low-rank (SVD-LLM whitening) and GPTQ-style int4 need the Gram matrix X^T X, AWQ-style scaling needs the
mean |x| per input feature. :func:`capture_linear_inputs` collects them for many layers in one pass over the
data, with forward hooks on the original (uncompressed) model, and never keeps the raw activations unless
asked (``keep_rows``), so memory is O(K^2) per layer whatever the amount of calibration data.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass
class LinearInputStats:
    """What one Linear layer saw: ``n_rows`` input rows; ``gram`` = X^T X (K x K, in the requested dtype, or
    None when not requested); ``abs_sum`` = sum over rows of |x| per feature (float64, K); ``sq_sum`` = sum of
    x^2 per feature; ``rows``: up to ``keep_rows`` raw input rows (float32)."""

    n_rows: int = 0
    gram: Optional[Tensor] = None
    abs_sum: Optional[Tensor] = None
    sq_sum: Optional[Tensor] = None
    rows: list = field(default_factory=list)

    def abs_mean(self) -> Tensor:
        return self.abs_sum / max(self.n_rows, 1)

    def rms(self) -> Tensor:
        return (self.sq_sum / max(self.n_rows, 1)).sqrt()

    def hessian(self) -> Tensor:
        """GPTQ's Hessian of the layer's squared output error, 2/n X^T X (float32)."""
        return (self.gram * (2.0 / max(self.n_rows, 1))).to(torch.float32)

    def inputs(self) -> Tensor:
        """The kept raw rows as one (rows x K) tensor."""
        return torch.cat(self.rows) if self.rows else torch.zeros(0)


def _fresh(inputs: Any) -> Any:
    # Some models (sentence-transformers) add keys to the dict they are given: pass shallow copies.
    if isinstance(inputs, Mapping):
        return dict(inputs)
    if isinstance(inputs, (tuple, list)):
        return type(inputs)(_fresh(i) for i in inputs)
    return inputs


def call_model(model: nn.Module, batch: Any) -> Any:
    """``model(**b)`` for a mapping, ``model(*b)`` for a tuple or list, else ``model(b)``; containers are
    shallow-copied first, so a model that adds keys to its input dict does not change the caller's."""
    batch = _fresh(batch)
    if isinstance(batch, dict):
        return model(**batch)
    if isinstance(batch, (tuple, list)):
        return model(*batch)
    return model(batch)


class _Stop(Exception):
    """Raised by a hook to end the forward pass once every hooked module has run."""


def progress_iter(items: Sequence, desc: str, enabled: bool, total: Optional[int] = None,
                  leave: bool = True) -> Iterable:
    """Iterates ``items`` with a tqdm bar when tqdm is installed (a plain stderr counter otherwise);
    ``enabled=False`` is silent."""
    if not enabled:
        yield from items
        return
    try:
        from tqdm.auto import tqdm
    except ImportError:
        n = total if total is not None else len(items)
        for i, it in enumerate(items):
            sys.stderr.write(f"\r{desc}: {i + 1}/{n}")
            sys.stderr.flush()
            yield it
        if n:
            sys.stderr.write("\n")
        return
    yield from tqdm(items, desc=desc, total=total, leave=leave)


def capture_inputs(
    model: nn.Module,
    modules: Sequence[tuple[str, nn.Module]],
    calib_data: Iterable[Any],
    on_input: Callable[[str, Tensor], Optional[bool]],
    stop_early: bool = False,
    progress: bool = False,
    forward_fn: Optional[Callable[[nn.Module, Any], Any]] = None,
) -> None:
    """The one hook-and-stop capture: runs ``model`` over ``calib_data`` (``forward_fn(model, batch)``,
    default :func:`call_model`) under ``torch.no_grad`` with a forward pre-hook on each (name, module) of
    ``modules`` that calls ``on_input(name, x)`` with the module's input tensor x (detached; the first
    positional argument, else the first keyword argument; TypeError if it is no tensor).

    stop_early: end each forward pass once every hooked module has run (a module called several times per
    pass is then only seen at its first call). ``on_input`` returning True ends the whole run: that forward
    pass and the batches after it. Hooks are removed afterwards, even on error."""
    fwd = forward_fn or call_model
    fired: set[str] = set()
    done = [False]
    handles = []

    def make_hook(name: str):  # noqa: ANN202
        def hook(mod: nn.Module, args: tuple, kwargs: dict) -> None:
            x = args[0] if args else next(iter(kwargs.values()), None)
            if not isinstance(x, Tensor):
                raise TypeError(f"calibration: {name} was called without a tensor input")
            if on_input(name, x.detach()):
                done[0] = True
                raise _Stop
            fired.add(name)
            if stop_early and len(fired) == len(modules):
                raise _Stop

        return hook

    try:
        for name, mod in modules:
            handles.append(mod.register_forward_pre_hook(make_hook(name), with_kwargs=True))
        with torch.no_grad():
            for batch in progress_iter(calib_data, "slimnn calibration", progress):
                fired.clear()
                try:
                    fwd(model, batch)
                except _Stop:
                    pass
                if done[0]:
                    break
    finally:
        for h in handles:
            h.remove()


def capture_linear_inputs(
    model: nn.Module,
    modules: Union[Mapping[str, nn.Module], Sequence[tuple[str, nn.Module]]],
    calib_data: Iterable[Any],
    gram: bool = True,
    keep_rows: int = 0,
    progress: bool = False,
    gram_dtype: torch.dtype = torch.float64,
    sample: str = "head",
    stop_early: bool = False,
    require_called: bool = False,
) -> dict[str, LinearInputStats]:
    """Runs ``model`` over ``calib_data`` (an iterable of model inputs: a tensor, a tuple of positional
    arguments or a dict of keyword arguments per batch) under ``torch.no_grad`` and returns, per name in
    ``modules`` (fqn -> module, e.g. from ``model.named_modules()``), the :class:`LinearInputStats` of that
    module's input.

    gram: accumulate X^T X in ``gram_dtype``. keep_rows: keep up to that many raw input rows, the first ones
    (``sample="head"``) or evenly strided rows of every batch (``"strided"``, ceil(keep_rows / batches) per
    batch, so every batch is represented). stop_early: end each forward pass once every hooked module has
    run (the later layers are not needed; a module called several times per pass is then only seen at its
    first call). require_called: a module the model never called raises ValueError.
    Hooks are removed afterwards, even on error (:func:`capture_inputs`). The model is left in the
    training/eval mode it had."""
    if sample not in ("head", "strided"):
        raise ValueError(f"sample must be 'head' or 'strided', got {sample!r}")
    items = list(modules.items()) if isinstance(modules, Mapping) else list(modules)
    stats = {name: LinearInputStats() for name, _ in items}
    batches = calib_data if isinstance(calib_data, Sequence) else list(calib_data)
    per_batch = -(-keep_rows // max(1, len(batches))) if sample == "strided" else keep_rows

    def add(name: str, x: Tensor) -> None:
        x2 = x.reshape(-1, x.shape[-1])
        xd = x2.to(torch.float64)
        st = stats[name]
        if st.abs_sum is None:
            k = x2.shape[1]
            st.abs_sum = torch.zeros(k, dtype=torch.float64)
            st.sq_sum = torch.zeros(k, dtype=torch.float64)
            if gram:
                st.gram = torch.zeros(k, k, dtype=gram_dtype)
        st.n_rows += x2.shape[0]
        st.abs_sum += xd.abs().sum(0)
        st.sq_sum += (xd * xd).sum(0)
        if gram:
            xg = x2.to(gram_dtype)
            st.gram += xg.t() @ xg
        have = sum(r.shape[0] for r in st.rows)
        if sample == "head" and have < keep_rows:
            st.rows.append(x2[: keep_rows - have].to(torch.float32).clone())
        elif sample == "strided" and per_batch and x2.shape[0] and have < keep_rows:
            idx = torch.linspace(0, x2.shape[0] - 1, min(per_batch, x2.shape[0])).round().long()
            st.rows.append(x2[idx][: keep_rows - have].to(torch.float32).clone())

    capture_inputs(model, items, batches, add, stop_early=stop_early, progress=progress)
    if require_called:
        for name, st in stats.items():
            if st.n_rows == 0:
                raise ValueError(f"calibration: layer {name!r} was never called by the model on the calibration data")
    return stats


def conv_patches(x: Tensor, kernel: tuple[int, int], stride: tuple[int, int], pads: tuple[int, int, int, int],
                 dilation: tuple[int, int], groups: int) -> Tensor:
    """The rows a 2-d convolution multiplies with its weight: ``x`` (N, C, H, W), zero ``pads`` (top, bottom,
    left, right); returns (groups, N * out_pixels, C/groups * kh * kw) with each row ordered as the weight's
    (c, kh, kw) flattening, so conv2d(x, W) for group g is ``patches[g] @ W_g.reshape(oc_g, -1).T``."""
    n, c = x.shape[0], x.shape[1]
    cg = c // groups
    if tuple(kernel) == (1, 1) and tuple(stride) == (1, 1) and not any(pads):
        rows = x.permute(0, 2, 3, 1).reshape(-1, groups, cg)
        return rows.permute(1, 0, 2)
    top, bottom, left, right = pads
    xp = F.pad(x, (left, right, top, bottom)) if any(pads) else x
    p = F.unfold(xp, tuple(kernel), dilation=tuple(dilation), stride=tuple(stride))  # (N, C*kh*kw, L)
    t = cg * kernel[0] * kernel[1]
    return p.reshape(n, groups, t, -1).permute(1, 0, 3, 2).reshape(groups, -1, t)


def capture_patch_grams(model: nn.Module, module: nn.Module, calib_data: Sequence[Any],
                        patches: Callable[[Tensor], Tensor]) -> tuple[Tensor, int]:
    """Runs ``model`` over ``calib_data`` (model inputs, as :func:`capture_linear_inputs` takes them) and
    returns (sum over rows of P^T P as (G, T, T) float64, rows) for ``patches(x) -> (G, rows, T)`` of
    ``module``'s input x, one image at a time (memory O(G T^2 + one image's patches)). Each forward stops once
    the module has run (:func:`capture_inputs`). ValueError if the model never calls it."""
    acc: list = [None, 0]

    def add(_name: str, x: Tensor) -> None:
        x = x.to(torch.float32)
        for i in range(x.shape[0] if x.dim() == 4 else 1):  # images one at a time (their patches are large)
            p = patches(x[i:i + 1] if x.dim() == 4 else x)
            g = torch.bmm(p.transpose(1, 2), p).to(torch.float64)
            acc[0] = g if acc[0] is None else acc[0] + g
            acc[1] += p.shape[1]

    capture_inputs(model, [("the layer", module)], calib_data, add, stop_early=True)
    if acc[0] is None:
        raise ValueError("calibration: the layer was never called by the model on the calibration data")
    return acc[0], acc[1]
