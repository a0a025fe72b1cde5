"""The technique registry: one :class:`Technique` object per compression technique, holding every piece
of it that the rest of slimnn needs (config type, converters, planner, save formats, trainable shadows,
CLI name, autocompress step).

``compress_``, ``autocompress``, ``save``/``load``, ``distill`` and the CLI read only this registry, so a
technique's missing piece (no save format, not trainable) shows in one place: :func:`gaps`.

Adding a technique is one file under ``slimnn/techniques/`` that builds a ``Technique`` and calls
:func:`register` (see docs/architecture.md).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Optional, Union

from torch import Tensor, nn

from ..formats.manifest import ModuleFormat

# fn(layer, config) -> compressed module, or a str: the reason this layer is skipped.
Convert = Callable[[nn.Module, Any], Union[nn.Module, str]]
# fn(model, [(fqn, layer)], config, report) -> True when it converted the targets itself (calibration passes
# that run the model layer by layer, e.g. GPTQ), False to fall back to per-layer conversion.
ConvertModel = Callable[[nn.Module, list, Any, Any], bool]
# fn(model, [(fqn, layer)], config) -> {fqn: module | reason}: every layer at once (one calibration pass for all).
ConvertBatch = Callable[[nn.Module, list, Any], dict]
# fn(model, [(fqn, layer)], config) -> {fqn: per-layer config | reason (str) | Done}, run before converting.
Plan = Callable[[nn.Module, list, Any], dict]
# fn(layer, config, inputs) -> module: conversion given the layer's captured float32 input rows (autocompress).
Calibrate = Callable[[nn.Module, Any, Tensor], nn.Module]


@dataclasses.dataclass(frozen=True)
class Done:
    """A planner's answer for a layer it already converted itself (e.g. structured pruning of a pair)."""

    what: str


@dataclasses.dataclass(frozen=True)
class Trainable:
    """How a compressed module class trains during :func:`slimnn.distill`.

    to_shadow(module) -> (weight, bias, fake_quant, mask): float32 weight (N x K) and bias to start from,
        ``fake_quant(w) -> w`` (the format's quantize-dequantize, or None) and a 0/1 ``mask`` (or None).
    from_shadow(module, weight, bias) -> module: the compressed module rebuilt from trained weights.
    """

    cls: type
    to_shadow: Callable[[nn.Module], tuple]
    from_shadow: Callable[[nn.Module, Tensor, Optional[Tensor]], nn.Module]


@dataclasses.dataclass(frozen=True)
class AutoStep:
    """The step :func:`slimnn.autocompress` runs for a technique by default.

    choices() -> configs, most aggressive first. candidates: ``"all"`` layers or only those an earlier
    step ``"compressed"``. order: steps run by increasing order.
    """

    choices: Callable[[], list]
    candidates: str = "compressed"
    order: int = 100


@dataclasses.dataclass(frozen=True)
class Technique:
    """Everything slimnn knows about one compression technique.

    name: the CLI's ``--format`` word and the autocompress step name.
    config: the config dataclass that selects it in ``compress_``.
    modules: the module classes it produces (each needs a save format and a trainable shadow; see gaps()).
    convert: converts one layer. targets: the layer classes it converts (exact types).
    summary: one line for help texts.
    """

    name: str
    config: type
    modules: tuple
    convert: Convert
    summary: str = ""
    targets: tuple = (nn.Linear,)
    convert_model: Optional[ConvertModel] = None
    convert_batch: Optional[ConvertBatch] = None
    plan: Optional[Plan] = None
    calibrate: Optional[Calibrate] = None
    save_formats: tuple = ()
    trainable: tuple = ()
    cli_config: Optional[Callable[[Any], Any]] = None
    autocompress: Optional[AutoStep] = None
    # accepts(layer) -> bool: a subclass of a target type whose forward the technique has proved it can run
    # (e.g. the EfficientNet ports' static-same-padding Conv2d); other subclasses stay skipped.
    accepts: Optional[Callable[[nn.Module], bool]] = None
    # prepare(model, [(fqn, layer)], config) -> {fqn: note}: rewrites the float model before conversion
    # without changing what it computes (BatchNorm folding); the notes go to the report.
    prepare: Optional[Callable[[nn.Module, list, Any], dict]] = None
    # fuse(model) -> {fqn: what}: after conversion, when compress_(fuse=True), like fuse_activations_.
    fuse: Optional[Callable[[nn.Module], dict]] = None

    def __post_init__(self) -> None:
        for f in self.save_formats:
            if not isinstance(f, ModuleFormat):
                raise TypeError(f"technique {self.name!r}: save_formats must be ModuleFormat objects, got {f!r}")
        for t in self.trainable:
            if not isinstance(t, Trainable):
                raise TypeError(f"technique {self.name!r}: trainable must be Trainable objects, got {t!r}")


_TECHNIQUES: dict[str, Technique] = {}
_BY_CONFIG: dict[type, Technique] = {}
_FORMATS_BY_NAME: dict[str, ModuleFormat] = {}
_FORMATS_BY_CLASS: dict[type, ModuleFormat] = {}
_TRAINABLE_BY_CLASS: dict[type, Trainable] = {}


def register(t: Technique) -> Technique:
    """Adds a technique (a second registration under the same name replaces the first)."""
    if not isinstance(t, Technique):
        raise TypeError(f"register expects a Technique, got {type(t).__name__}")
    old = _TECHNIQUES.get(t.name)
    if old is not None:
        _BY_CONFIG.pop(old.config, None)
    _TECHNIQUES[t.name] = t
    _BY_CONFIG[t.config] = t
    for f in t.save_formats:
        add_save_format(f)
    for tr in t.trainable:
        _TRAINABLE_BY_CLASS[tr.cls] = tr
    return t


def single_module_technique(
    name: str,
    config: type,
    module: type,
    convert: Convert,
    save_format: tuple,
    *,
    summary: str,
    order: int,
    **fields: Any,
) -> Technique:
    """The usual shape of a technique: layers become one module class, saved under one format (version 1);
    the CLI and autocompress use the config's defaults. save_format: ``(name, to_canonical, spec,
    from_canonical)`` (see :class:`~slimnn.formats.manifest.ModuleFormat`); ``fields``: the other
    :class:`Technique` fields (convert_model, plan, ...). Register the result with :func:`register`."""
    fmt_name, to_canonical, spec, from_canonical = save_format
    return Technique(
        name=name,
        config=config,
        modules=(module,),
        convert=convert,
        summary=summary,
        save_formats=(ModuleFormat(fmt_name, 1, module, to_canonical, spec, from_canonical),),
        cli_config=lambda args: config(),
        autocompress=AutoStep(lambda: [config()], order=order),
        **fields,
    )


def add_save_format(fmt: ModuleFormat) -> ModuleFormat:
    """Registers a save format for a module class outside any technique (e.g. fused modules, plug-ins)."""
    if not isinstance(fmt, ModuleFormat):
        raise TypeError(f"expected a ModuleFormat, got {type(fmt).__name__}")
    _FORMATS_BY_NAME[fmt.name] = fmt
    _FORMATS_BY_CLASS[fmt.cls] = fmt
    return fmt


def techniques() -> dict[str, Technique]:
    """Name -> technique, in registration order."""
    return dict(_TECHNIQUES)


def for_config(config_type: type) -> Optional[Technique]:
    """The technique a config type selects, or None."""
    return _BY_CONFIG.get(config_type)


def save_formats() -> dict[str, ModuleFormat]:
    """Format name -> :class:`ModuleFormat`, for every registered compressed module format."""
    return dict(_FORMATS_BY_NAME)


def save_format_for(cls: type) -> Optional[ModuleFormat]:
    """The save format of a module class, or None."""
    return _FORMATS_BY_CLASS.get(cls)


def trainable_for(cls: type) -> Optional[Trainable]:
    """How a compressed module class trains in distillation, or None."""
    return _TRAINABLE_BY_CLASS.get(cls)


def gaps() -> dict[str, list[str]]:
    """Technique name -> the pieces it lacks ("save format for X", "trainable X"); techniques with none are
    left out. Tests pin this, so a new gap is a deliberate, visible change."""
    out: dict[str, list[str]] = {}
    for name, t in _TECHNIQUES.items():
        miss = []
        for cls in t.modules:
            if cls not in _FORMATS_BY_CLASS:
                miss.append(f"save format for {cls.__name__}")
            if cls not in _TRAINABLE_BY_CLASS:
                miss.append(f"trainable {cls.__name__}")
        if t.cli_config is None:
            miss.append("CLI name")
        if miss:
            out[name] = miss
    return out


_MODEL_HOOKS: list[Callable[[nn.Module, Any], None]] = []


def add_model_hook(fn: Callable[[nn.Module, Any], None]) -> Callable[[nn.Module, Any], None]:
    """Registers ``fn(model, config)``, run after ``compress_`` converted layers of ``model`` and after
    ``slimnn.load`` built compressed modules into it (``config`` None then). Integrations use it: the
    transformers models inside get slimnn's quantizer, so their ``save_pretrained`` writes a slimnn
    checkpoint instead of packed buffers transformers cannot reload. Idempotent per function."""
    if fn not in _MODEL_HOOKS:
        _MODEL_HOOKS.append(fn)
    return fn


def run_model_hooks(model: nn.Module, config: Any) -> None:
    for fn in list(_MODEL_HOOKS):
        fn(model, config)


def add_trainable(tr: Trainable) -> Trainable:
    """Registers how a compressed module class trains, outside any technique (plug-ins)."""
    if not isinstance(tr, Trainable):
        raise TypeError(f"expected a Trainable, got {type(tr).__name__}")
    _TRAINABLE_BY_CLASS[tr.cls] = tr
    return tr
