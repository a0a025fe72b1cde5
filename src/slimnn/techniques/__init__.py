"""Techniques layer: one file per compression technique (``int8``, ``int4``, ``sparse``, ``lowrank``), each
registering a :class:`~.registry.Technique` with everything the rest of slimnn needs of it; ``fusion`` is
the activation-fusion pass ``compress_`` runs afterwards. Every module here but ``registry`` and ``fusion``
is imported (and so registered) when the package is. See :mod:`.registry`.
"""

from .registry import (
    AutoStep,
    Done,
    Technique,
    Trainable,
    add_save_format,
    for_config,
    gaps,
    register,
    save_format_for,
    save_formats,
    techniques,
    trainable_for,
)

def _register_builtin() -> None:
    # Every module of this package but the registry and the fusion pass is a technique that registers itself
    # on import: adding a technique is adding its file, nothing else to edit here.
    import importlib
    import pkgutil

    for m in sorted(pkgutil.iter_modules(__path__), key=lambda m: (m.name != "int8", m.name)):
        if m.name not in ("registry", "fusion"):
            importlib.import_module(f"{__name__}.{m.name}")


_register_builtin()

__all__ = [
    "AutoStep", "Done", "Technique", "Trainable", "add_save_format", "for_config", "gaps", "register",
    "save_format_for", "save_formats", "techniques", "trainable_for",
]
