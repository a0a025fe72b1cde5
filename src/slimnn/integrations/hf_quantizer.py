"""slimnn as a Hugging Face transformers quantization method (``quant_method: "slimnn"``).

    import slimnn
    from transformers import AutoModel
    model = AutoModel.from_pretrained(path, quantization_config=slimnn.SlimnnConfig(slimnn.Int8Config()))
    model.save_pretrained(out)                  # compressed checkpoint; config.json records the quantization
    model = AutoModel.from_pretrained(out)      # rebuilt bit-identically (needs `import slimnn` first)

Loading with a ``SlimnnConfig`` compresses layer by layer while the checkpoint is read: each selected
``nn.Linear``'s weight (and bias) goes through a conversion op that builds the compressed module at once
and drops the float tensors, so the float weights of the whole model are never all in memory. The layers
skipped are transformers' usual ones (tied / output embeddings, the last module) plus
``modules_to_not_convert``; only methods that need no calibration data compress while loading (int8,
int4 round-to-nearest, magnitude pruning per layer, SVD low-rank): the others raise, naming the way out
(``slimnn.compress_`` after loading).

``save_pretrained`` writes every compressed module in its slimnn save format (the techniques' ``save_formats``: canonical,
CPU-independent tensors named ``<module>.<tensor>``), and records each module's format, version and
metadata, and the fused activations, in ``config.json``'s ``quantization_config``. A compressed module
without a save format makes ``save_pretrained`` raise: it never writes a checkpoint that would reload
random weights. ``from_pretrained`` of such a checkpoint puts placeholders with exactly the recorded
tensor names, dtypes and shapes where the Linear layers were, lets transformers fill them, then rebuilds
each module through its format's validating loader (``ModuleFormat.from_canonical``), so a tensor the
checkpoint lacks, or one of the wrong dtype or shape, is an error, never a random weight.

A model compressed with ``slimnn.compress_`` (not through ``from_pretrained``) gets the same quantizer
attached to each transformers ``PreTrainedModel`` inside it (:func:`attach`), so its ``save_pretrained``
(and sentence-transformers' ``save``) writes the same kind of checkpoint.

transformers is never imported by ``import slimnn``: :func:`register` runs once
``transformers.quantizers.auto`` is imported (slimnn.runtime.hooks), and ``slimnn.SlimnnConfig`` imports
transformers when first used.
"""

from __future__ import annotations

import copy
import json
import threading
from typing import Any, Optional

import torch
from torch import Tensor, nn

QUANT_METHOD = "slimnn"
CHECKPOINT_VERSION = 1

_classes: dict[str, type] = {}
_lock = threading.RLock()
_collect_lock = threading.Lock()  # the conversion ops of a load may run on transformers' loader threads


def _slimnn_config_json(cfg: Any) -> Any:
    if isinstance(cfg, (list, tuple)):
        return [_slimnn_config_json(c) for c in cfg]
    if isinstance(cfg, dict):
        return cfg
    if not hasattr(cfg, "to_json"):
        raise TypeError(f"SlimnnConfig needs a slimnn config (Int8Config, Int4Config, ...), got {type(cfg).__name__}")
    return json.loads(cfg.to_json())


def _slimnn_config(obj: Any) -> Any:
    from ..configs import config_from_json

    if isinstance(obj, list):
        return [_slimnn_config(o) for o in obj]
    if isinstance(obj, dict):
        return config_from_json(json.dumps(obj))
    return obj


def _no_calibration(cfg: Any) -> None:
    """Raises for configs that need data or the whole model, which a layer-by-layer load cannot give."""
    from ..configs import Int4Config, LowRankConfig, SparseConfig

    for c in cfg if isinstance(cfg, list) else [cfg]:
        why = None
        if isinstance(c, Int4Config) and c.method != "rtn":
            why = f"Int4Config(method={c.method!r}) calibrates on data"
        elif isinstance(c, LowRankConfig) and c.method != "svd":
            why = f"LowRankConfig(method={c.method!r}) calibrates on data"
        elif isinstance(c, SparseConfig) and (c.method != "magnitude" or c.scope != "layer" or c.pattern == "neurons"):
            why = "SparseConfig with wanda, global scope or neuron pruning needs the data or the whole model"
        if why:
            raise ValueError(f"slimnn compresses while loading only without calibration: {why}; load the float "
                             "model, then call slimnn.compress_(model, config) with calib_data")


# ----------------------------------------------------------------------------------------------------
# Classes built on first use (they subclass transformers' bases)
# ----------------------------------------------------------------------------------------------------

def config_class() -> type:
    """``SlimnnConfig``: the transformers quantization config (imports transformers)."""
    with _lock:
        if "config" not in _classes:
            _build_classes()
        return _classes["config"]


def quantizer_class() -> type:
    with _lock:
        if "quantizer" not in _classes:
            _build_classes()
        return _classes["quantizer"]


def _build_classes() -> None:
    from transformers.core_model_loading import ConversionOps
    from transformers.quantizers.base import HfQuantizer
    from transformers.quantizers.quantizers_utils import get_module_from_name, should_convert_module
    from transformers.utils.quantization_config import QuantizationConfigMixin

    class SlimnnConfig(QuantizationConfigMixin):
        """transformers quantization config for slimnn: ``SlimnnConfig(slimnn.Int8Config())``.

        config: a slimnn config (``Int8Config``, ``Int4Config``, ``SparseConfig``, ``LowRankConfig``) or a
            list composing them (``[SparseConfig(...), Int8Config()]``).
        modules_to_not_convert: module name patterns left float, added to transformers' defaults (tied and
            output embeddings, the last module).
        fuse: let int8 layers apply the activation that follows them (``slimnn.fuse_activations_``).
        The remaining fields are written by ``save_pretrained`` and read back by ``from_pretrained``.
        """

        def __init__(self, config: Any = None, modules_to_not_convert: Optional[list] = None, fuse: bool = True,
                     modules: Optional[dict] = None, fused_activations: Optional[dict] = None,
                     checkpoint_version: int = CHECKPOINT_VERSION, slimnn_version: Optional[str] = None,
                     **kwargs: Any) -> None:
            kwargs.pop("quant_method", None)
            self.quant_method = QUANT_METHOD
            if config is None:
                from ..configs import Int8Config

                config = Int8Config()
            self.config = _slimnn_config(config)
            _slimnn_config_json(self.config)  # type check
            if modules_to_not_convert is not None and not (
                isinstance(modules_to_not_convert, list) and all(isinstance(s, str) for s in modules_to_not_convert)
            ):
                raise ValueError("SlimnnConfig.modules_to_not_convert must be a list of module name patterns")
            if not isinstance(fuse, bool):
                raise ValueError(f"SlimnnConfig.fuse must be a bool, got {fuse!r}")
            if checkpoint_version != CHECKPOINT_VERSION:
                raise ValueError(f"slimnn checkpoint version {checkpoint_version!r} is not supported (this slimnn "
                                 f"reads {CHECKPOINT_VERSION})")
            if modules is not None and not isinstance(modules, dict):
                raise ValueError("SlimnnConfig.modules must be a dict")
            if fused_activations is not None and not isinstance(fused_activations, dict):
                raise ValueError("SlimnnConfig.fused_activations must be a dict")
            self.modules_to_not_convert = modules_to_not_convert
            self.fuse = fuse
            self.modules = modules
            self.fused_activations = fused_activations
            self.checkpoint_version = checkpoint_version
            self.slimnn_version = slimnn_version
            if kwargs:
                raise ValueError(f"SlimnnConfig: unknown fields {sorted(kwargs)}")

        def to_dict(self) -> dict[str, Any]:
            from .._version import __version__

            return {
                "quant_method": QUANT_METHOD,
                "config": _slimnn_config_json(self.config),
                "modules_to_not_convert": self.modules_to_not_convert,
                "fuse": self.fuse,
                "modules": self.modules,
                "fused_activations": self.fused_activations,
                "checkpoint_version": self.checkpoint_version,
                "slimnn_version": self.slimnn_version or __version__,
            }

        def to_diff_dict(self) -> dict[str, Any]:
            return self.to_dict()

        def __repr__(self) -> str:
            return f"SlimnnConfig({json.dumps(self.to_dict(), indent=2, sort_keys=True)})"

    class _Placeholder(nn.Module):
        """Where a compressed module goes while transformers fills its canonical tensors (meta buffers)."""

        def __init__(self, fqn: str, fmt: Any, meta: dict, spec: dict) -> None:
            super().__init__()
            self.fqn, self.fmt, self.meta = fqn, fmt, meta
            for name, (dtype, shape) in spec.items():
                self.register_buffer(name, torch.empty(shape, dtype=dtype, device="meta"))

        def forward(self, *args: Any, **kwargs: Any) -> Any:
            raise RuntimeError(f"slimnn module {self.fqn!r} was not loaded")

    class _Quantize(ConversionOps):
        """Builds a compressed module from a Linear's weight (and bias) as soon as both are read."""

        def __init__(self, quantizer: Any) -> None:
            self.quantizer = quantizer

        def convert(self, input_dict: dict, model: Optional[nn.Module] = None, full_layer_name: Optional[str] = None,
                    missing_keys: Any = None, **kwargs: Any) -> dict:
            name, value = next(iter(input_dict.items()))
            value = value[0] if isinstance(value, list) else value
            full = full_layer_name or name
            self.quantizer._collect(model, full, value, missing_keys)
            return {}

    class SlimnnHfQuantizer(HfQuantizer):
        """transformers HfQuantizer for slimnn (see the module docstring)."""

        requires_calibration = False

        def __init__(self, quantization_config: Any, **kwargs: Any) -> None:
            super().__init__(quantization_config, **kwargs)
            self._targets: set = set()
            self._pending: dict[str, dict] = {}
            self.modules_to_not_convert: list = []  # no lock object here: models holding a quantizer deepcopy

        # --- environment ---
        def validate_environment(self, *args: Any, **kwargs: Any) -> None:
            device_map = kwargs.get("device_map")
            if isinstance(device_map, dict):
                bad = {str(v) for v in device_map.values() if str(v) not in ("cpu",)}
                if bad:
                    raise ValueError(f"slimnn models run on the CPU; device_map places modules on {sorted(bad)}")
            elif device_map not in (None, "cpu") and str(device_map) != "cpu":
                raise ValueError(f"slimnn models run on the CPU; got device_map={device_map!r}")
            if not self.pre_quantized:
                _no_calibration(self.quantization_config.config)

        def get_new_dtype(self, converter: Any, param: Any, dtype: Any) -> Any:
            # Canonical tensors keep the dtype they were saved in (the placeholders say which).
            return None if self.pre_quantized else super().get_new_dtype(converter, param, dtype)

        @property
        def is_trainable(self) -> bool:
            return False

        @property
        def is_compileable(self) -> bool:
            return True

        def is_serializable(self) -> bool:
            return True

        # --- before loading ---
        def _process_model_before_weight_loading(self, model: nn.Module, **kwargs: Any) -> None:
            qc = self.quantization_config
            self.modules_to_not_convert = self.get_modules_to_not_convert(
                model, qc.modules_to_not_convert, getattr(model, "_keep_in_fp32_modules", None), add_default_skips=True
            )
            if self.pre_quantized:
                self._place_holders(model)
                return
            self._targets = {
                fqn for fqn, m in model.named_modules()
                if type(m) is nn.Linear and should_convert_module(fqn, self.modules_to_not_convert)
            }

        def _place_holders(self, model: nn.Module) -> None:
            from ..techniques import save_formats

            known = save_formats()
            qc = self.quantization_config
            modules = qc.modules
            if not isinstance(modules, dict) or not modules:
                raise ValueError("this slimnn checkpoint's quantization_config lists no compressed modules; it was "
                                 "not written by slimnn's save_pretrained")
            for fqn, rec in modules.items():
                if not isinstance(fqn, str) or not fqn or not isinstance(rec, dict):
                    raise ValueError(f"quantization_config.modules: malformed entry {fqn!r}")
                fmt = known.get(rec.get("format"))
                if fmt is None:
                    raise ValueError(f"module {fqn!r} has format {rec.get('format')!r}, unknown to this slimnn "
                                     f"(known: {sorted(known)})")
                if rec.get("version") != fmt.version and rec.get("version") not in fmt.reads:
                    raise ValueError(f"module {fqn!r}: {fmt.name} version {rec.get('version')!r} is not supported")
                meta = rec.get("meta")
                if not isinstance(meta, dict):
                    raise ValueError(f"module {fqn!r}: metadata must be a JSON object")
                try:
                    spec = fmt.spec(meta)
                except ValueError as e:
                    raise ValueError(f"module {fqn!r}: {e}") from None
                try:
                    old = model.get_submodule(fqn)
                except AttributeError:
                    raise ValueError(f"the checkpoint compresses {fqn!r}, which this model does not have") from None
                if not isinstance(old, nn.Linear):
                    raise ValueError(f"the checkpoint compresses {fqn!r}, a {type(old).__name__} in this model")
                for attr in ("in_features", "out_features"):
                    if attr in meta and getattr(old, attr) != meta[attr]:
                        raise ValueError(f"module {fqn!r}: checkpoint has {attr}={meta[attr]}, model has "
                                         f"{getattr(old, attr)}")
                _set(model, fqn, _Placeholder(fqn, fmt, meta, spec))
            self._apply_fused(model)

        def _apply_fused(self, model: nn.Module) -> None:
            from ..nn import FusedActivation
            from ..techniques.fusion import activation_of

            for fqn, f in (self.quantization_config.fused_activations or {}).items():
                if not isinstance(f, dict) or not isinstance(f.get("into"), str):
                    raise ValueError(f"quantization_config.fused_activations: malformed entry {fqn!r}")
                try:
                    old = model.get_submodule(fqn)
                except AttributeError:
                    raise ValueError(f"the checkpoint fused an activation at {fqn!r}, not in this model") from None
                if not isinstance(old, FusedActivation) and activation_of(old) != f.get("activation"):
                    raise ValueError(f"{fqn!r} is a {type(old).__name__} here; the checkpoint fused a "
                                     f"{f.get('activation')} there")
                _set(model, fqn, FusedActivation(f["activation"], f["into"]))

        # --- quantize while loading ---
        def param_needs_quantization(self, model: nn.Module, param_name: str, **kwargs: Any) -> bool:
            if self.pre_quantized:
                return False
            fqn, _, tensor = param_name.rpartition(".")
            return fqn in self._targets and tensor in ("weight", "bias")

        def get_quantize_ops(self) -> Any:
            return _Quantize(self)

        def _collect(self, model: nn.Module, full_name: str, value: Tensor, missing_keys: Any) -> None:
            fqn, _, tensor = full_name.rpartition(".")
            with _collect_lock:
                parts = self._pending.setdefault(fqn, {})
                parts[tensor] = value
                linear = model.get_submodule(fqn)
                if not isinstance(linear, nn.Linear):
                    raise ValueError(f"slimnn: {fqn!r} received {tensor} twice or is not a Linear")
                need = {"weight"} | ({"bias"} if linear.bias is not None else set())
                if not need <= set(parts):
                    return
                del self._pending[fqn]
            self._compress_one(model, fqn, linear, parts)
            if missing_keys is not None:
                for t in need:
                    missing_keys.discard(f"{fqn}.{t}")

        def _compress_one(self, model: nn.Module, fqn: str, linear: nn.Linear, parts: dict) -> None:
            from ..api import compress_

            holder = nn.Module()
            with torch.device("cpu"):
                lin = nn.Linear(linear.in_features, linear.out_features, bias=linear.bias is not None)
            with torch.no_grad():
                lin.weight.copy_(parts["weight"].to(torch.float32))
                if linear.bias is not None:
                    lin.bias.copy_(parts["bias"].to(torch.float32))
            holder.layer = lin
            report = compress_(holder, copy.copy(self.quantization_config.config), fuse=False)
            if "layer" in report.skipped:
                _set(model, fqn, lin.to(parts["weight"].dtype))  # the handler declined: the float layer stays
                return
            _set(model, fqn, holder.layer)

        # --- after loading ---
        def _process_model_after_weight_loading(self, model: nn.Module, **kwargs: Any) -> nn.Module:
            if self.pre_quantized:
                self._rebuild(model)
            else:
                left = sorted(self._pending) + sorted(
                    f for f in self._targets if isinstance(_get(model, f), nn.Linear) and _get(model, f).weight.is_meta
                )
                if left:
                    raise ValueError(f"slimnn: the checkpoint lacks the weights of {left[:8]}; nothing was compressed "
                                     "there")
                if self.quantization_config.fuse:
                    from ..techniques.fusion import fuse_activations_

                    fuse_activations_(model)
            # The modules are recorded into the config by save_pretrained (get_state_dict_and_metadata); doing
            # it here would unpack every blob once more while loading, for nothing.
            return model

        def _rebuild(self, model: nn.Module) -> None:
            for fqn, ph in list((n, m) for n, m in model.named_modules() if isinstance(m, _Placeholder)):
                tensors = {}
                for name, t in ph._buffers.items():
                    # transformers marks every tensor it read from the checkpoint with _is_hf_initialized; one it
                    # had to make up (missing from the checkpoint) is uninitialized memory without the mark.
                    if t is None or t.is_meta or not getattr(t, "_is_hf_initialized", False):
                        raise ValueError(f"slimnn checkpoint: tensor {fqn}.{name} is missing; refusing to build "
                                         "the module from uninitialized memory")
                    tensors[name] = t
                try:
                    new = ph.fmt.from_canonical(tensors, ph.meta)
                except (ValueError, TypeError, RuntimeError) as e:
                    raise ValueError(f"slimnn checkpoint: module {fqn!r}: {e}") from None
                _set(model, fqn, new)

        # --- saving ---
        def get_state_dict_and_metadata(self, model: nn.Module) -> tuple[dict, dict]:
            return state_dict(model, self.quantization_config), {}

    for cls in (SlimnnConfig, SlimnnHfQuantizer, _Placeholder, _Quantize):
        cls.__qualname__ = cls.__name__
        cls.__module__ = __name__
    _classes.update(config=SlimnnConfig, quantizer=SlimnnHfQuantizer, placeholder=_Placeholder)


def _get(model: nn.Module, fqn: str) -> nn.Module:
    return model.get_submodule(fqn)


def _set(model: nn.Module, fqn: str, new: nn.Module) -> None:
    parent, _, child = fqn.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, new)


# ----------------------------------------------------------------------------------------------------
# What save_pretrained writes
# ----------------------------------------------------------------------------------------------------

def _compressed(model: nn.Module) -> dict[str, nn.Module]:
    """fqn -> module for every compressed module (a registered save format's class or any slimnn.nn module
    but FusedActivation, which holds no tensors and is recorded apart)."""
    from ..nn import FusedActivation
    from ..techniques import save_format_for, techniques

    kinds = tuple(c for t in techniques().values() for c in t.modules)  # subclasses count too (plug-ins)
    out = {}
    for fqn, m in model.named_modules():
        if isinstance(m, FusedActivation):
            continue
        if save_format_for(type(m)) is not None or type(m).__module__.startswith("slimnn.nn") or isinstance(
            m, kinds
        ):
            out[fqn] = m
    return out


def record(model: nn.Module, qc: Any) -> None:
    """Writes each compressed module's format, version and metadata (and the fused activations) into
    ``qc`` (the model's quantization_config); raises if a compressed module has no save format."""
    from ..techniques import save_format_for

    modules, fused = {}, {}
    for fqn, m in _compressed(model).items():
        fmt = save_format_for(type(m))
        if fmt is None:
            raise ValueError(f"slimnn: {fqn} is a {type(m).__name__}, which has no save format; save_pretrained would "
                             "write a checkpoint that cannot be reloaded")
        _tensors, meta = fmt.to_canonical(m)
        version = fmt.version_for(m) if fmt.version_for else fmt.version
        modules[fqn] = {"format": fmt.name, "version": version, "meta": meta}
    for fqn, m in model.named_modules():
        if type(m).__name__ == "FusedActivation":
            fused[fqn] = {"activation": m.activation, "into": m.into}
    qc.modules = modules
    qc.fused_activations = fused


def state_dict(model: nn.Module, qc: Any) -> dict[str, Tensor]:
    """The checkpoint's tensors: canonical tensors for compressed modules, the rest of the state dict as is."""
    from ..techniques import save_format_for

    record(model, qc)
    comp = _compressed(model)
    prefixes = tuple(f"{fqn}." for fqn in comp)
    out = {k: v for k, v in model.state_dict().items() if not k.startswith(prefixes)}
    for fqn, m in comp.items():
        tensors, _meta = save_format_for(type(m)).to_canonical(m)
        for name, t in tensors.items():
            out[f"{fqn}.{name}"] = t.detach().contiguous()
    return out


def attach(model: nn.Module, config: Any = None) -> list:
    """Gives every transformers ``PreTrainedModel`` inside ``model`` that holds compressed modules a slimnn
    quantizer (``model.hf_quantizer``) and ``config.quantization_config``, so ``save_pretrained`` writes a
    slimnn checkpoint. Does nothing when transformers is not imported. Returns the models it attached to."""
    import sys

    if "transformers" not in sys.modules:
        return []
    try:
        from transformers import PreTrainedModel
    except ImportError:
        return []
    done = []
    for m in model.modules():
        if not isinstance(m, PreTrainedModel) or not _compressed(m):
            continue
        register()
        prev = getattr(m, "hf_quantizer", None)
        if prev is not None and not isinstance(prev, quantizer_class()):
            raise ValueError(f"{type(m).__name__} is already quantized with {type(prev).__name__}")
        # Nested PreTrainedModels (LlamaForCausalLM > LlamaModel) share one config object: they share one
        # SlimnnConfig too, and each save_pretrained records the modules relative to the model it saves.
        qc = getattr(m.config, "quantization_config", None)
        if not isinstance(qc, config_class()):
            qc = config_class()(config=list(config) if isinstance(config, (list, tuple)) else config)  # None: int8
            m.config.quantization_config = qc
        m.hf_quantizer = quantizer_class()(qc, pre_quantized=False)
        m.is_quantized = True
        m.quantization_method = QUANT_METHOD
        done.append(m)  # the modules are recorded when saving (a module without save format raises there)
    return done


_registered = False


def register(_module: Any = None) -> None:
    """Registers ``"slimnn"`` with transformers' quantization config and quantizer tables (idempotent)."""
    global _registered
    with _lock:
        if _registered:
            return
        from transformers.quantizers.auto import (
            AUTO_QUANTIZATION_CONFIG_MAPPING,
            AUTO_QUANTIZER_MAPPING,
            register_quantization_config,
            register_quantizer,
        )

        if QUANT_METHOD not in AUTO_QUANTIZATION_CONFIG_MAPPING:
            register_quantization_config(QUANT_METHOD)(config_class())
        if QUANT_METHOD not in AUTO_QUANTIZER_MAPPING:
            register_quantizer(QUANT_METHOD)(quantizer_class())
        _registered = True


def install() -> None:
    """Registers with transformers once it is imported (now, if it already is), and has ``compress_`` attach
    the quantizer to the transformers models it compresses."""
    from ..runtime.hooks import when_imported
    from ..techniques import add_model_hook

    when_imported("transformers.quantizers.auto", register)
    add_model_hook(attach)


__all__ = ["QUANT_METHOD", "attach", "config_class", "install", "quantizer_class", "record", "register", "state_dict"]
