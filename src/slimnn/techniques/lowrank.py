"""lowrank: ``LowRankConfig`` -> :class:`slimnn.nn.LowRankLinear` (W ~ U V, SVD or activation-aware, fp32 or
int8 factors, optional sparse residual), factorized with one calibration pass over the model.
"""

from __future__ import annotations


from torch import nn

from ..configs import LowRankConfig
from ..math.calibration import capture_linear_inputs, progress_iter
from ..math.lowrank import rank_for_ratio
from ..nn.lowrank import LowRankLinear
from .registry import AutoStep, Technique, register


def convert(linear: nn.Module, config: LowRankConfig) -> nn.Module:
    return LowRankLinear.from_linear(linear, config)


def convert_batch(model: nn.Module, targets: list, config: LowRankConfig) -> dict:
    """Calibrates once over ``config.calib_data`` (activation_aware) on the original model, then factorizes
    layer by layer with a progress bar. Layers whose factors would not save ``min_saving`` are skipped."""
    stats: dict = {}
    if config.method == "activation_aware":
        if config.calib_data is None:
            raise ValueError("LowRankConfig(method='activation_aware') needs calib_data (an iterable of model inputs)")
        stats = capture_linear_inputs(model, targets, config.calib_data, progress=config.progress)
    out: dict = {}
    for fqn, mod in progress_iter(targets, "slimnn low-rank", config.progress):
        n, k = mod.out_features, mod.in_features
        if config.rank is not None or config.rank_ratio is not None:
            r = min(config.rank if config.rank is not None else rank_for_ratio(n, k, config.rank_ratio), n, k)
            if r * (n + k) > (1.0 - config.min_saving) * n * k:
                out[fqn] = f"rank {r} saves nothing on a {k}->{n} layer (r*(N+K) = {r * (n + k)} >= N*K = {n * k})"
                continue
        st = stats.get(fqn)
        if config.method == "activation_aware" and (st is None or st.n_rows == 0):
            out[fqn] = "no calibration inputs reached this layer"
            continue
        new = LowRankLinear.from_linear(mod, config, st)
        if new.rank * (n + k) > (1.0 - config.min_saving) * n * k:
            out[fqn] = f"rank {new.rank} chosen by the config saves nothing on a {k}->{n} layer"
            continue
        out[fqn] = new
    return out


TECHNIQUE = register(Technique(
    name="lowrank",
    config=LowRankConfig,
    modules=(LowRankLinear,),
    convert=convert,
    convert_batch=convert_batch,
    summary="low-rank factors U V (SVD or activation-aware), run as one fused kernel",
    cli_config=lambda args: LowRankConfig(),
    autocompress=AutoStep(lambda: [LowRankConfig()], order=30),
))
