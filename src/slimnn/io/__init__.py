"""IO layer: :func:`save` and :func:`load` of whole models (one safetensors file with a JSON manifest),
reading the save formats every technique registers. See :mod:`.files` for the file layout and checks; every
failure to load a file is a :class:`LoadError` (a ``ValueError``). The resource limits are constants of
:mod:`.files` (``slimnn.io.files.MAX_MODULES``, ``MAX_PARAMETERS``, ``MAX_NESTING``, ``MAX_HEADER_BYTES``).
"""

from .files import (
    DIGEST_KEY,
    FORMAT,
    FORMAT_VERSION,
    MANIFEST_KEY,
    READ_VERSIONS,
    LoadError,
    UnverifiedFileWarning,
    describe_architecture,
    load,
    manifest,
    read_header,
    register_module_format,
    registered_formats,
    save,
    tensor_digest,
    write_file,
)
from ..formats.manifest import ModuleFormat, TensorSpec

__all__ = [
    "DIGEST_KEY", "FORMAT", "FORMAT_VERSION", "LoadError", "MANIFEST_KEY", "READ_VERSIONS", "UnverifiedFileWarning",
    "ModuleFormat", "tensor_digest", "write_file", "TensorSpec", "describe_architecture", "load",
    "manifest", "read_header", "register_module_format", "registered_formats", "save",
]
