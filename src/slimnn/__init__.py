"""slimnn: compressed neural-network layers with fast CPU kernels, as drop-in ``torch.nn.Linear`` replacements.

    import slimnn
    slimnn.compress_(model, slimnn.Int8Config())   # every nn.Linear -> slimnn.nn.Int8Linear, in place

The package is layered (docs/architecture.md): ``runtime`` -> ``math`` -> ``formats`` -> ``ops`` -> ``nn`` ->
``techniques`` -> ``api`` -> ``io`` -> ``recipes`` -> ``app``, with ``configs`` a leaf every layer may use.
"""

from __future__ import annotations

from . import _compat
from ._version import __version__  # noqa: F401  (slimnn.__version__)

_compat.install(__name__)

# ``import slimnn`` imports torch and the whole API (and so registers the torch.library ops: a program
# saved by torch.export loads after a bare ``import slimnn``), except in the ``slimnn`` command itself: there
# it stays lazy, binding only __version__, and the first use of a public name imports everything at once.
# So ``slimnn --help`` and the CLI's argument errors answer without importing torch (docs/pipeline.md, "CLI").
_STATE = "lazy"  # -> "loading" -> "loaded"


def _load() -> None:
    global _STATE
    if _STATE != "lazy":
        return
    _STATE = "loading"
    try:
        import torch as _torch  # noqa: F401  (the ops below register with torch.library)

        from .runtime import isa
        from .runtime.info import cpu_info, kernels
        from .runtime.threads import get_num_threads, set_num_threads
        from .configs import Int4Config, Int8Config, LowRankConfig, SparseConfig
        from . import ops, nn, techniques  # noqa: F401
        from .math import prune
        from .api import CompressionReport, compress_
        from .techniques.fusion import fuse_activations_
        from .nn.conv import static_quantize_convs_
        from .io import LoadError, load, save
        from .recipes.pipeline import autocompress
        from .recipes.distill import distill
        from .recipes.mixed import mixed_int4_
        from .integrations.transformers import fast_attention_
        from .integrations.decode import Decoder, generate
        from .integrations.onnx import export_onnx
        from .integrations import hf_quantizer as _hf_quantizer, onnx as _onnx
        from .ops import inductor as _inductor

        # Registrations with libraries slimnn does not import itself (slimnn.runtime.hooks): Inductor's
        # lowering table once torch.compile imports Inductor, transformers' quantizer registry once
        # transformers is imported, the refusing ONNX translations once torch's ONNX exporter is.
        _inductor.install()
        _hf_quantizer.install()
        _onnx.install()
    except BaseException:
        _STATE = "lazy"
        raise
    globals().update({k: v for k, v in locals().items() if not k.startswith("_")})
    _compat.pin_shadowed(__name__)
    _STATE = "loaded"


__all__ = [
    "CompressionReport",
    "Decoder",
    "LoadError",
    "Int4Config",
    "Int8Config",
    "LowRankConfig",
    "SparseConfig",
    "autocompress",
    "compress_",
    "cpu_info",
    "distill",
    "export_onnx",
    "fast_attention_",
    "fuse_activations_",
    "generate",
    "get_num_threads",
    "isa",
    "kernels",
    "load",
    "mixed_int4_",
    "nn",
    "ops",
    "prune",
    "save",
    "set_num_threads",
    "static_quantize_convs_",
    "techniques",
]


def __getattr__(name: str):
    import importlib
    import importlib.util

    if name.startswith("__") or _STATE == "loading":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    if name == "SlimnnConfig":  # transformers' quantization config for slimnn; imports transformers on first use
        _load()
        from .integrations import hf_quantizer

        return hf_quantizer.config_class()
    if name in _compat.OLD_TO_NEW and name not in __all__:
        # slimnn.<module> names of the flat layout before 0.2 (slimnn.calibration, slimnn.reference, ...).
        return _compat.attribute(__name__, name)
    if importlib.util.find_spec(f"{__name__}.{name}") is not None:
        # A submodule (slimnn.nn, slimnn.isa, slimnn._C, ...): imported alone, as `from . import nn` in a
        # submodule expects while the package is still lazy.
        return importlib.import_module(f"{__name__}.{name}")
    _load()
    try:
        return globals()[name]
    except KeyError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None


def __dir__() -> list:
    _load()
    return sorted(set(globals()) | set(__all__))


def _invoked_as_the_cli() -> bool:
    # The console script (argv[0] ".../slimnn") or `python -m slimnn` (argv[0] is "-m" while the package that
    # holds the module is imported).
    import os
    import sys

    a0 = sys.argv[0] if sys.argv else ""
    return a0 == "-m" or os.path.basename(a0) in ("slimnn", "slimnn.exe")


if not _invoked_as_the_cli():
    _load()
