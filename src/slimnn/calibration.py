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
from typing import Any, Iterable, Mapping, Optional, Sequence, Union

import torch
from torch import Tensor, nn


@dataclass
class LinearInputStats:
    """What one Linear layer saw: ``n_rows`` input rows; ``gram`` = X^T X (float64, K x K, or None when not
    requested); ``abs_sum`` = sum over rows of |x| per feature (float64, K); ``sq_sum`` = sum of x^2 per
    feature; ``rows``: up to ``keep_rows`` raw input rows (float32), for tests and error measurements."""

    n_rows: int = 0
    gram: Optional[Tensor] = None
    abs_sum: Optional[Tensor] = None
    sq_sum: Optional[Tensor] = None
    rows: list = field(default_factory=list)

    def abs_mean(self) -> Tensor:
        return self.abs_sum / max(self.n_rows, 1)

    def rms(self) -> Tensor:
        return (self.sq_sum / max(self.n_rows, 1)).sqrt()

    def inputs(self) -> Tensor:
        """The kept raw rows as one (rows x K) tensor."""
        return torch.cat(self.rows) if self.rows else torch.zeros(0)


def _call(model: nn.Module, batch: Any) -> None:
    if isinstance(batch, Mapping):
        model(**batch)
    elif isinstance(batch, (tuple, list)):
        model(*batch)
    else:
        model(batch)


def progress_iter(items: Sequence, desc: str, enabled: bool) -> Iterable:
    """Iterates ``items`` with a tqdm bar when tqdm is installed (a plain stderr counter otherwise);
    ``enabled=False`` is silent."""
    if not enabled:
        yield from items
        return
    try:
        from tqdm.auto import tqdm
    except ImportError:
        n = len(items)
        for i, it in enumerate(items):
            sys.stderr.write(f"\r{desc}: {i + 1}/{n}")
            sys.stderr.flush()
            yield it
        if n:
            sys.stderr.write("\n")
        return
    yield from tqdm(items, desc=desc)


def capture_linear_inputs(
    model: nn.Module,
    modules: Union[Mapping[str, nn.Module], Sequence[tuple[str, nn.Module]]],
    calib_data: Iterable[Any],
    gram: bool = True,
    keep_rows: int = 0,
    progress: bool = False,
) -> dict[str, LinearInputStats]:
    """Runs ``model`` over ``calib_data`` (an iterable of model inputs: a tensor, a tuple of positional
    arguments or a dict of keyword arguments per batch) under ``torch.no_grad`` and returns, per name in
    ``modules`` (fqn -> module, e.g. from ``model.named_modules()``), the :class:`LinearInputStats` of that
    module's input. Hooks are removed afterwards, even on error. The model is left in the training/eval mode
    it had."""
    items = list(modules.items()) if isinstance(modules, Mapping) else list(modules)
    stats = {name: LinearInputStats() for name, _ in items}
    handles = []

    def make_hook(name: str):  # noqa: ANN202
        def hook(mod: nn.Module, args: tuple, kwargs: dict) -> None:
            x = args[0] if args else next(iter(kwargs.values()))
            x2 = x.detach().reshape(-1, x.shape[-1]).to(torch.float64)
            st = stats[name]
            if st.abs_sum is None:
                k = x2.shape[1]
                st.abs_sum = torch.zeros(k, dtype=torch.float64)
                st.sq_sum = torch.zeros(k, dtype=torch.float64)
                if gram:
                    st.gram = torch.zeros(k, k, dtype=torch.float64)
            st.n_rows += x2.shape[0]
            st.abs_sum += x2.abs().sum(0)
            st.sq_sum += (x2 * x2).sum(0)
            if gram:
                st.gram += x2.t() @ x2
            have = sum(r.shape[0] for r in st.rows)
            if have < keep_rows:
                st.rows.append(x2[: keep_rows - have].to(torch.float32))

        return hook

    try:
        for name, mod in items:
            handles.append(mod.register_forward_pre_hook(make_hook(name), with_kwargs=True))
        batches = calib_data if isinstance(calib_data, Sequence) else list(calib_data)
        with torch.no_grad():
            for batch in progress_iter(batches, "slimnn calibration", progress):
                _call(model, batch)
    finally:
        for h in handles:
            h.remove()
    return stats
