"""IO layer: :func:`save` and :func:`load` of whole models (one safetensors file with a JSON manifest),
reading the save formats every technique registers. See :mod:`.files` for the file layout and checks.
"""

from .files import (
    FORMAT,
    FORMAT_VERSION,
    MANIFEST_KEY,
    describe_architecture,
    load,
    manifest,
    read_header,
    register_module_format,
    registered_formats,
    save,
)
from ..formats.manifest import ModuleFormat, TensorSpec

__all__ = [
    "FORMAT", "FORMAT_VERSION", "MANIFEST_KEY", "ModuleFormat", "TensorSpec", "describe_architecture", "load",
    "manifest", "read_header", "register_module_format", "registered_formats", "save",
]
