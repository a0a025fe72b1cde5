"""Compression configs: dataclasses, validated on construction, JSON round-trippable."""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass
from typing import Any, Optional

KERNELS = ("auto", "reference")
"""``kernel`` values. ``"auto"``: the fastest kernel for this CPU (C++). ``"reference"``: the readable
torch float emulation in :mod:`slimnn.reference` (slow; for debugging and accuracy checks)."""


def _check_kernel(cfg: Any) -> None:
    if cfg.kernel not in KERNELS:
        raise ValueError(f"{type(cfg).__name__}.kernel must be one of {KERNELS}, got {cfg.kernel!r}")


def _check_version(cfg: Any) -> None:
    if cfg.version != 1:
        raise ValueError(f"{type(cfg).__name__}.version {cfg.version} is not supported (this slimnn reads 1)")


@dataclass(frozen=True)
class Int8Config:
    """int8 weights, per output channel or per group of ``group_size`` inputs (symmetric, round to nearest).

    mode:
        ``"dynamic"``: activations are quantized per row (per token) to uint8 at run time and multiplied
        with integer instructions (VNNI where present); fastest.
        ``"weight_only"``: activations stay float; weights are widened in registers. More accurate,
        for accuracy-sensitive layers and memory-bound batch-1 decoding.
    group_size: ``None`` for one scale per output channel, else a positive multiple of 4 (e.g. 32, 64, 128).
    method: ``"rtn"`` (default, no data): round to nearest (convolutions: their taps keep their sum, plus bias
        correction). ``"gptq"``: GPTQ error compensation (:func:`slimnn.math.gptq.gptq_quantize_int8`) of
        every conv and Linear, layer by layer in module order, each with the Hessian of the inputs it sees in
        the model as converted so far over ``calib_data``; per output channel only (``group_size=None``). A
        head tied to an embedding keeps round to nearest. Measured a win for convs, not for LLMs (docs/conv.md).
    calib_data: for ``method="gptq"``: an iterable of model inputs (a Tensor -> ``model(x)``, a tuple ->
        ``model(*x)``, a dict -> ``model(**x)``); not serialized, not compared.
    gptq_damp: GPTQ's damping, a fraction of the Hessian's mean diagonal.
    progress: show a progress bar while calibrating (``method="gptq"``).
    """

    mode: str = "dynamic"
    group_size: Optional[int] = None
    kernel: str = "auto"
    version: int = 1
    method: str = "rtn"
    calib_data: Any = dataclasses.field(default=None, compare=False, repr=False)
    gptq_damp: float = 0.01
    progress: bool = False

    def __post_init__(self) -> None:
        if self.mode not in ("dynamic", "weight_only"):
            raise ValueError(f"Int8Config.mode must be 'dynamic' or 'weight_only', got {self.mode!r}")
        gs = self.group_size
        if gs is not None and (isinstance(gs, bool) or not isinstance(gs, int) or gs < 4 or gs % 4):
            raise ValueError(f"Int8Config.group_size must be None or a positive multiple of 4, got {gs!r}")
        if self.method not in INT8_METHODS:
            raise ValueError(f"Int8Config.method must be one of {INT8_METHODS}, got {self.method!r}")
        if self.method == "gptq" and gs is not None:
            raise ValueError("Int8Config(method='gptq') is per output channel: group_size must be None")
        _check_calib(self)
        if not (isinstance(self.gptq_damp, (int, float)) and not isinstance(self.gptq_damp, bool)
                and 0 < self.gptq_damp < 1):
            raise ValueError(f"Int8Config.gptq_damp must be in (0, 1), got {self.gptq_damp!r}")
        if not isinstance(self.progress, bool):
            raise ValueError(f"Int8Config.progress must be a bool, got {self.progress!r}")
        _check_kernel(self)
        _check_version(self)

    def to_json(self) -> str:
        # Only what describes the stored weights: the calibration settings are dropped, and so is the method when
        # it is round to nearest, so round-to-nearest files read exactly as before ``method`` existed.
        d = json.loads(_json_without_data(self))
        d.pop("gptq_damp")
        d.pop("progress")
        if d["method"] == "rtn":
            d.pop("method")
        return json.dumps(d, sort_keys=True)


INT8_METHODS = ("rtn", "gptq")
"""``Int8Config.method`` values: ``"rtn"`` (no data) and ``"gptq"`` (needs ``calib_data``)."""


def _json_without_data(cfg: Any) -> str:
    d = dataclasses.asdict(dataclasses.replace(cfg, calib_data=None))
    d.pop("calib_data")
    return json.dumps({"type": type(cfg).__name__, **d}, sort_keys=True)


def _check_calib(cfg: Any) -> None:
    data = cfg.calib_data
    if isinstance(data, (str, bytes)) or (data is not None and not hasattr(data, "__iter__")):
        raise ValueError(f"{type(cfg).__name__}.calib_data must be None or an iterable of model inputs")


INT4_METHODS = ("rtn", "gptq", "awq")
"""``Int4Config.method`` values. ``"rtn"``: round to nearest (no data). ``"gptq"``: GPTQ error compensation
with a Hessian from calibration inputs (Frantar et al., 2022). ``"awq"``: activation-aware per-input-channel
scaling searched on calibration inputs, plus a per-group clipping search (Lin et al., 2023)."""

INT4_SENSITIVITIES = ("weight_error", "output_error")
"""``Int4Config.sensitivity`` values (how ``bits_budget`` ranks Linears for int8)."""


@dataclass(frozen=True)
class Int4Config:
    """4-bit weights, group-wise along K (or per output channel), optionally calibrated on data.

    Default (issue 15): g32, asymmetric with float zero points, the least-squares scale/minimum search, heads
    int8: the best no-data recipe measured on SmolLM2 on and off its grid (docs/int4.md).

    group_size: ``None`` for one scale per output channel, else a positive multiple of 32 (32 default, 64, 128).
        K need not be a multiple of it: the last group is shorter (no padding cost beyond K rounded up to 8).
    method: one of :data:`INT4_METHODS`. ``"gptq"`` and ``"awq"`` need ``calib_data``.
    symmetric: ``True``: code 8 is zero, no zero points. ``False``: one integer zero point per group (unless
        ``float_zeros=True``). ``None`` (default): asymmetric, with float zero points (``float_zeros`` left None).
    scale_dtype: ``"float16"`` (default), ``"bfloat16"`` or ``"float32"``: how scales are stored (fp16 halves
        the scale bytes streamed per token next to fp32).
    mode: ``"dynamic"`` (W4A8: activations quantized per row to uint8 at run time, integer dot products;
        fastest) or ``"weight_only"`` (float activations; for accuracy-critical layers).
    calib_data: an iterable of model inputs (each a Tensor -> ``model(x)``, a tuple -> ``model(*x)`` or a
        dict -> ``model(**x)``), read once into a list. It is not part of the config's identity: it is left
        out of ``to_json``, equality and ``repr``.
    gptq_damp: GPTQ's dampening, as a fraction of the Hessian's mean diagonal. gptq_block: GPTQ's lazy-batch
        width. gptq_act_order: quantize columns in decreasing order of input energy, with group parameters
        fixed from the original weights (usually better; see :func:`slimnn.calibrate.gptq_quantize`).
    awq_grid: number of steps of AWQ's exponent search in [0, 1]. awq_clip: also search a clipping ratio per
        group. max_calib_rows: activation rows (tokens) kept per layer for AWQ's searches (sampled evenly).
    progress: show a progress bar over layers during calibration (needs tqdm).
    scale_search: ``method="rtn"`` or ``"gptq"`` (act order): per group, search the scale (and zero point) that minimises the
        group's squared error (:func:`slimnn.math.quantize.int4_params_search`, or with ``float_zeros``
        :func:`slimnn.math.quantize.int4_params_float_zero`) instead of the min/max rule.
    float_zeros: ``symmetric=False`` only: float zero points (w = scale * (q - z), z a float stored in the
        scale dtype: a group's minimum need not lie on a code; llama.cpp's Q4_1 / K-quants), instead of integer
        ones. Same kernels (the driver adds one term per group). ``method="rtn"`` or ``"gptq"`` (GPTQ then
        keeps the searched groups' scales and zero points and compensates the rounding error).
    head_int8: Linears shaped like a vocabulary head (at least 16384 outputs and 8x more outputs than inputs:
        ``lm_head``, and the embedding tied to it) are converted to int8 (``Int8Config(mode=...)``, per
        channel) instead of int4, as llama.cpp keeps its output tensor at 6-8 bits in its Q4 files: the head
        is the most sensitive layer of a small LM. ``False``: every Linear int4.
    importance: ``scale_search`` only: per-element weights of the searched squared error, without data:
        ``"none"``, ``"rms_abs"`` (rms of the group + |w|, llama.cpp's make_qkx2_quants) or ``"square"``
        (w ** 2) (:func:`slimnn.math.quantize.int4_importance`).
    int8_fraction: a size budget, without data: up to this fraction of the (non-head) Linear weights is kept
        at int8 per channel, the layers with the most int4 weight error (relative, times 2 in the first and
        last eighth of the layers in module order) first. 0 (default): every such Linear int4.
    bits_budget: a size budget in bits per weight (``None``: none): the (non-head) Linears average at most this
        many bits per weight, the rest int8 per channel (about 8 + 32/K bits; g32 float-zero int4 is 5.0), the
        Linears of highest ``sensitivity`` per extra bit first (small, sensitive tensors before large ones).
        Not together with ``int8_fraction``. E.g. ``bits_budget=5.5`` spends half a bit per weight on int8.
    sensitivity: how ``bits_budget`` ranks the Linears. ``"weight_error"`` (default, no data): the relative int4
        weight error, doubled in the first and last eighth of the layers. ``"output_error"``: the relative error
        of each Linear's output, tr(dW H dW^T) / tr(W H W^T), H = X^T X of its inputs on ``calib_data`` in one
        pass of the float model (with ``method="rtn"`` the data serve only this ranking; no data needed in the
        sense of text: uniformly random token ids work for an LM, see ``slimnn.app.llm.random_token_batches``).
    """

    group_size: Optional[int] = 32
    method: str = "rtn"
    symmetric: Optional[bool] = None
    scale_dtype: str = "float16"
    mode: str = "dynamic"
    kernel: str = "auto"
    calib_data: Any = dataclasses.field(default=None, compare=False, repr=False)
    gptq_damp: float = 0.01
    gptq_block: int = 128
    gptq_act_order: bool = True
    awq_grid: int = 20
    awq_clip: bool = True
    max_calib_rows: int = 2048
    progress: bool = True
    scale_search: bool = True
    float_zeros: Optional[bool] = None
    head_int8: bool = True
    importance: str = "none"
    int8_fraction: float = 0.0
    bits_budget: Optional[float] = None
    sensitivity: str = "weight_error"
    version: int = 1

    def __post_init__(self) -> None:
        # defaults (issue 15): asymmetric groups with float zero points, unless the symmetry is chosen: an explicit
        # symmetric=False keeps integer zero points, as it meant before float zero points existed
        sym_auto = self.symmetric is None
        if sym_auto:
            object.__setattr__(self, "symmetric", False)
        if self.float_zeros is None:
            object.__setattr__(self, "float_zeros", sym_auto and self.method != "awq")
        gs = self.group_size
        if gs is not None and (isinstance(gs, bool) or not isinstance(gs, int) or gs < 32 or gs % 32):
            raise ValueError(f"Int4Config.group_size must be None or a positive multiple of 32, got {gs!r}")
        if self.method not in INT4_METHODS:
            raise ValueError(f"Int4Config.method must be one of {INT4_METHODS}, got {self.method!r}")
        if not isinstance(self.symmetric, bool):
            raise ValueError(f"Int4Config.symmetric must be a bool, got {self.symmetric!r}")
        if self.scale_dtype not in ("float16", "bfloat16", "float32"):
            raise ValueError(
                f"Int4Config.scale_dtype must be 'float16', 'bfloat16' or 'float32', got {self.scale_dtype!r}"
            )
        if self.mode not in ("dynamic", "weight_only"):
            raise ValueError(f"Int4Config.mode must be 'dynamic' or 'weight_only', got {self.mode!r}")
        _check_kernel(self)
        _check_calib(self)
        for name in ("gptq_act_order", "awq_clip", "progress", "scale_search", "float_zeros", "head_int8"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"Int4Config.{name} must be a bool, got {getattr(self, name)!r}")
        if not (isinstance(self.gptq_damp, (int, float)) and 0 < self.gptq_damp < 1):
            raise ValueError(f"Int4Config.gptq_damp must be in (0, 1), got {self.gptq_damp!r}")
        for name in ("gptq_block", "awq_grid", "max_calib_rows"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"Int4Config.{name} must be a positive int, got {v!r}")
        if self.float_zeros and self.symmetric:
            raise ValueError("Int4Config.float_zeros needs symmetric=False (symmetric groups have no zero points)")
        if self.importance not in ("none", "rms_abs", "square"):
            raise ValueError(f"Int4Config.importance must be 'none', 'rms_abs' or 'square', got {self.importance!r}")
        f = self.int8_fraction
        if isinstance(f, bool) or not isinstance(f, (int, float)) or not 0.0 <= f <= 1.0:
            raise ValueError(f"Int4Config.int8_fraction must be a number in [0, 1], got {f!r}")
        b = self.bits_budget
        if b is not None and (isinstance(b, bool) or not isinstance(b, (int, float)) or not 4.0 <= b <= 16.0):
            raise ValueError(f"Int4Config.bits_budget must be None or a number of bits per weight in [4, 16], "
                             f"got {b!r}")
        if b is not None and f > 0:
            raise ValueError("Int4Config: give bits_budget or int8_fraction, not both")
        if self.sensitivity not in INT4_SENSITIVITIES:
            raise ValueError(f"Int4Config.sensitivity must be one of {INT4_SENSITIVITIES}, got {self.sensitivity!r}")
        if self.float_zeros and self.method == "awq":
            raise ValueError("Int4Config.float_zeros is implemented for method='rtn' and 'gptq', not 'awq'")
        if (self.float_zeros or self.scale_search) and self.method == "gptq" and not (
                self.gptq_act_order or self.group_size is None):
            raise ValueError("Int4Config(method='gptq') with scale_search / float_zeros needs gptq_act_order=True "
                             "(the searched groups are fixed before GPTQ updates any column)")
        _check_version(self)

    def to_json(self) -> str:
        return _json_without_data(self)


_ALLOWED: dict[str, type] = {"Int8Config": Int8Config}
_ALLOWED["Int4Config"] = Int4Config


def config_from_json(text: str) -> Any:
    """Rebuilds a config from :meth:`to_json` output. Only known config classes load (an allow-list)."""
    data = json.loads(text)
    if not isinstance(data, dict) or data.get("type") not in _ALLOWED:
        raise ValueError(f"not a slimnn config: {text[:80]!r}")
    cls = _ALLOWED[data.pop("type")]
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - fields
    if unknown:
        raise ValueError(f"unknown fields for {cls.__name__}: {sorted(unknown)}")
    if cls is Int4Config:  # written before these fields existed: their values then (the defaults changed since)
        for name, then in _INT4_ABSENT.items():
            data.setdefault(name, then)
    return cls(**data)


_INT4_ABSENT = {"float_zeros": False, "scale_search": False, "importance": "none", "int8_fraction": 0.0,
                "head_int8": False, "bits_budget": None, "sensitivity": "weight_error"}
"""Int4Config fields a file may lack (written by an older slimnn), with the behaviour it had without them."""


@dataclass(frozen=True)
class LowRankConfig:
    """Low-rank factorization W ~ U V of each Linear (``slimnn.nn.LowRankLinear``), fused at run time.

    Rank, exactly one of (none given: ``rank_ratio=0.5``, half the parameters):
        ``rank``: a fixed rank r (capped at min(N, K)).
        ``rank_ratio``: the fraction of the layer's parameters kept, r = floor(ratio * N * K / (N + K)).
        ``energy``: the smallest r keeping that fraction of the squared singular values.
        ``max_error``: per-layer error budget, the smallest r with relative Frobenius error <= the budget
        (of the layer's output on the calibration data, for ``activation_aware``).
    method:
        ``"svd"``: truncated SVD of the weights.
        ``"activation_aware"``: SVD-LLM whitening with calibration inputs: minimizes the layer's output error;
        needs ``calib_data`` (an iterable of model inputs, run through the model by ``compress_``).
    factor_dtype:
        ``"float32"``: U and V as fp32 (nn.Linear layout). ``"int8"``: each factor quantized to int8 per
        output channel (q8), multiplied as ``int8_mode`` says (``"dynamic"``: W8A8 with VNNI where present;
        ``"weight_only"``: fp32 activations).
    sparse_residual: fraction of W's entries kept exactly in a sparse residual S (W ~ U V + S), chosen by
        |W - U V| (times the input RMS when calibrated); 0 disables it.
    min_saving: layers whose factors would not be at least this much smaller than dense (r (N + K) >
        (1 - min_saving) N K) are left as they are and listed in the report.
    damping: relative diagonal damping of the calibration Gram matrix (activation_aware).
    solver: ``"auto"`` | ``"full"`` | ``"randomized"`` SVD (see ``slimnn.lowrank``).
    progress: show a progress bar over layers (tqdm when installed).
    calib_data: not serialized, not compared.
    """

    rank: Optional[int] = None
    rank_ratio: Optional[float] = None
    energy: Optional[float] = None
    max_error: Optional[float] = None
    method: str = "svd"
    factor_dtype: str = "float32"
    int8_mode: str = "dynamic"
    sparse_residual: float = 0.0
    min_saving: float = 0.0
    damping: float = 0.01
    solver: str = "auto"
    progress: bool = True
    kernel: str = "auto"
    version: int = 1
    calib_data: Any = dataclasses.field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        name = "LowRankConfig"
        picks = [f for f in ("rank", "rank_ratio", "energy", "max_error") if getattr(self, f) is not None]
        if len(picks) > 1:
            raise ValueError(f"{name}: give one of rank, rank_ratio, energy, max_error, not {picks}")
        if not picks:
            object.__setattr__(self, "rank_ratio", 0.5)
        r = self.rank
        if r is not None and (isinstance(r, bool) or not isinstance(r, int) or r < 1):
            raise ValueError(f"{name}.rank must be a positive int, got {r!r}")
        for f, lo_open in (("rank_ratio", True), ("energy", True), ("max_error", False)):
            v = getattr(self, f)
            if v is None:
                continue
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not (
                (0 < v <= 1) if lo_open else (0 <= v < 1)
            ):
                rng = "(0, 1]" if lo_open else "[0, 1)"
                raise ValueError(f"{name}.{f} must be a number in {rng}, got {v!r}")
        if self.method not in ("svd", "activation_aware"):
            raise ValueError(f"{name}.method must be 'svd' or 'activation_aware', got {self.method!r}")
        if self.factor_dtype not in ("float32", "int8"):
            raise ValueError(f"{name}.factor_dtype must be 'float32' or 'int8', got {self.factor_dtype!r}")
        if self.int8_mode not in ("dynamic", "weight_only"):
            raise ValueError(f"{name}.int8_mode must be 'dynamic' or 'weight_only', got {self.int8_mode!r}")
        for f, hi in (("sparse_residual", 1.0), ("min_saving", 1.0), ("damping", float("inf"))):
            v = getattr(self, f)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not (0 <= v < hi or (f != "min_saving" and v == hi)):
                raise ValueError(f"{name}.{f} must be a number in [0, {hi}], got {v!r}")
        if self.solver not in ("auto", "full", "randomized"):
            raise ValueError(f"{name}.solver must be 'auto', 'full' or 'randomized', got {self.solver!r}")
        _check_kernel(self)
        _check_version(self)

    def to_json(self) -> str:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "calib_data"}
        return json.dumps({"type": type(self).__name__, **d}, sort_keys=True)


_ALLOWED["LowRankConfig"] = LowRankConfig
SPARSE_VALUES = ("fp32", "int8")
SPARSE_BACKENDS = ("auto", "sparse", "dense")


# ----- the sparsity pattern grammar (SparseConfig.pattern), shared with slimnn.math.prune -----

METHODS = ("magnitude", "wanda", "existing")
"""``SparseConfig.method`` values."""
BLOCKS = ((1, 4), (1, 8), (4, 1), (16, 1))
_NM = re.compile(r"^(\d+):(\d+)$")
_BLOCK = re.compile(r"^(\d+)x(\d+)$")


@dataclasses.dataclass(frozen=True)
class Pattern:
    kind: str  # "unstructured" | "nm" | "block" | "neurons"
    a: int = 0  # N (nm) or R (block)
    b: int = 0  # M (nm) or C (block)

    @property
    def format(self) -> str:
        """The packed format that stores this pattern (see slimnn.sparse_formats)."""
        if self.kind == "nm":
            return f"nm{self.a}:{self.b}"
        if self.kind == "block":
            return f"bsr{self.a}x{self.b}"
        return "csr"

    @property
    def fixed_sparsity(self) -> Optional[float]:
        return 1.0 - self.a / self.b if self.kind == "nm" else None


def parse_pattern(pattern: str) -> Pattern:
    """``"unstructured"``, ``"neurons"``, ``"N:M"`` (M in 4, 8, 16) or ``"RxC"`` (a shape in :data:`BLOCKS`)."""
    if not isinstance(pattern, str):
        raise ValueError(f"pattern must be a string, got {pattern!r}")
    if pattern in ("unstructured", "neurons"):
        return Pattern(pattern)
    m = _NM.match(pattern)
    if m:
        n_, m_ = int(m.group(1)), int(m.group(2))
        if m_ not in (4, 8, 16) or not 1 <= n_ < m_:
            raise ValueError(f"N:M pattern needs M in (4, 8, 16) and 1 <= N < M, got {pattern!r}")
        return Pattern("nm", n_, m_)
    m = _BLOCK.match(pattern)
    if m:
        r, c = int(m.group(1)), int(m.group(2))
        if (r, c) not in BLOCKS:
            raise ValueError(f"block pattern {pattern!r} has no kernel; use one of "
                             f"{', '.join(f'{a}x{b}' for a, b in BLOCKS)}")
        return Pattern("block", r, c)
    raise ValueError(f"unknown pattern {pattern!r}; expected 'unstructured', 'N:M' (e.g. '2:4'), 'RxC' (e.g. '1x4') "
                     "or 'neurons'")


@dataclass(frozen=True)
class SparseConfig:
    """Pruning, stored and multiplied sparse. See :mod:`slimnn.prune` for the criteria and patterns.

    sparsity: fraction of weights removed, in [0, 1] (of blocks for block patterns, of hidden units for
        ``"neurons"``; ignored for N:M, whose sparsity is 1 - N/M).
    pattern: ``"unstructured"``, ``"N:M"`` (``"2:4"``, ``"4:8"``, ...), ``"RxC"`` blocks (``"1x4"``,
        ``"1x8"``, ``"4x1"``, ``"16x1"``) or ``"neurons"`` (structured: smaller dense MLP layer pairs).
    method: ``"magnitude"``, ``"wanda"`` (activation-aware; run ``slimnn.prune.calibrate_`` first) or
        ``"existing"`` (keep the current nonzeros, e.g. after ``slimnn.prune.GradualPruner``).
    scope: ``"layer"`` (every layer at ``sparsity``) or ``"global"`` (one threshold across the layers).
    skip: fnmatch patterns of layer names left dense (reported as skipped).
    layer_sparsity: (fnmatch pattern, sparsity) pairs overriding ``sparsity``; the first match wins.
    values: ``"fp32"``, or ``"int8"`` (one scale per output row; also what ``[SparseConfig, Int8Config]``
        composes to).
    int8_mode: the dense int8 kernel (Int8Config.mode) used where ``backend`` picks dense for int8 values.
    backend: ``"auto"`` (time the sparse and the dense kernel for this layer on this machine, at M = 1 and
        M = 16, and keep the faster; the module says which), ``"sparse"`` or ``"dense"``.
    index_bits: csr column-delta width, 4 or 8; ``None`` picks the smaller blob.
    kernel: ``"auto"`` or ``"reference"`` (torch float math; slow, for checking).
    index: storage of unstructured sparsity: ``"csr"`` (delta-coded columns, fp32 activations), ``"bitmap"``
        (int8 values only: a 64-bit mask per row and 64 columns, activations quantized to u8 per row: the
        W8A8 numerics of ``Int8Config(mode="dynamic")``), or ``"auto"``: bitmap for int8 values with
        ``int8_mode="dynamic"`` (what ``[SparseConfig(s), Int8Config()]`` composes to) and no
        ``index_bits``, csr otherwise.
    """

    sparsity: float = 0.5
    pattern: str = "unstructured"
    method: str = "magnitude"
    scope: str = "layer"
    skip: tuple = ()
    layer_sparsity: tuple = ()
    values: str = "fp32"
    int8_mode: str = "weight_only"
    backend: str = "auto"
    index_bits: Optional[int] = None
    kernel: str = "auto"
    index: str = "auto"
    version: int = 1

    def __post_init__(self) -> None:
        s = self.sparsity
        if isinstance(s, bool) or not isinstance(s, (int, float)) or not 0.0 <= float(s) <= 1.0:
            raise ValueError(f"SparseConfig.sparsity must be a number in [0, 1], got {s!r}")
        parse_pattern(self.pattern)
        if self.method not in METHODS:
            raise ValueError(f"SparseConfig.method must be one of {METHODS}, got {self.method!r}")
        if self.scope not in ("layer", "global"):
            raise ValueError(f"SparseConfig.scope must be 'layer' or 'global', got {self.scope!r}")
        skip = (self.skip,) if isinstance(self.skip, str) else self.skip
        if not isinstance(skip, (tuple, list)) or not all(isinstance(p, str) for p in skip):
            raise ValueError(f"SparseConfig.skip must be a sequence of fnmatch patterns, got {self.skip!r}")
        object.__setattr__(self, "skip", tuple(skip))
        ls = self.layer_sparsity
        if isinstance(ls, dict):
            ls = tuple(ls.items())
        try:
            ls = tuple((str(p), float(v)) for p, v in ls)
        except (TypeError, ValueError):
            raise ValueError(f"SparseConfig.layer_sparsity must be (pattern, sparsity) pairs, got {self.layer_sparsity!r}")
        if any(not 0.0 <= v <= 1.0 for _, v in ls):
            raise ValueError("SparseConfig.layer_sparsity values must be in [0, 1]")
        object.__setattr__(self, "layer_sparsity", ls)
        if self.values not in SPARSE_VALUES:
            raise ValueError(f"SparseConfig.values must be one of {SPARSE_VALUES}, got {self.values!r}")
        if self.int8_mode not in ("dynamic", "weight_only"):
            raise ValueError(f"SparseConfig.int8_mode must be 'dynamic' or 'weight_only', got {self.int8_mode!r}")
        if self.backend not in SPARSE_BACKENDS:
            raise ValueError(f"SparseConfig.backend must be one of {SPARSE_BACKENDS}, got {self.backend!r}")
        if self.index_bits not in (None, 4, 8) or isinstance(self.index_bits, bool):
            raise ValueError(f"SparseConfig.index_bits must be 4, 8 or None, got {self.index_bits!r}")
        if self.index_bits is not None and self.pattern != "unstructured":
            raise ValueError("SparseConfig.index_bits is for pattern 'unstructured' (the csr format) only")
        if self.index not in ("auto", "csr", "bitmap"):
            raise ValueError(f"SparseConfig.index must be 'auto', 'csr' or 'bitmap', got {self.index!r}")
        if self.index != "auto" and self.pattern != "unstructured":
            raise ValueError("SparseConfig.index is for pattern 'unstructured' only")
        if self.index == "bitmap" and self.index_bits is not None:
            raise ValueError("SparseConfig.index_bits is for the csr index, not 'bitmap'")
        _check_kernel(self)
        _check_version(self)

    def to_json(self) -> str:
        return json.dumps({"type": type(self).__name__, **dataclasses.asdict(self)}, sort_keys=True)


_ALLOWED["SparseConfig"] = SparseConfig
