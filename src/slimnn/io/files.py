"""Save and load compressed models: one safetensors file with a JSON manifest inside.

File layout. A standard safetensors file (an 8-byte little-endian header length, a JSON header naming
every tensor's dtype, shape and byte range, then the raw bytes). The header's ``__metadata__`` holds two
entries: ``slimnn.manifest``, JSON with the format version (2), the slimnn and torch versions, and

- ``modules``: for every compressed module, its fully qualified name, its format name and version
  (``"int8_linear"`` v1, ...) and the metadata its format needs (shapes, config);
- ``tensors``: dtype, shape and sha256 digest of every tensor in the file, cross-checked against the
  safetensors header (and the bytes, when read);
- ``state``: the names of the ordinary (float) parameters and buffers, ``nonpersistent`` for
  non-persistent buffers, ``aliases`` for tied tensors;
- ``architecture``: the module tree when it is made only of allow-listed ``torch.nn`` building blocks
  (``nn.Sequential`` of ``Linear``, activations, ``LayerNorm``, ...), so :func:`load` can rebuild it
  without being handed a model; ``null`` otherwise;

and ``slimnn.manifest.sha256``, the digest of the manifest text.

Compressed modules are stored in their *canonical* form (for int8: the int8 matrix, float32 scales and
the bias), never as a CPU-specific packed blob: the file does not depend on the instruction set, and
packing for this CPU happens at load. Loading never executes code (no pickle; module classes come from
an allow-list of registered formats); it validates the header, the manifest digest, the manifest (every
field against the others it constrains, resource limits) and every tensor's dtype and shape before
reading data, checks each tensor's digest before using it, and turns a truncated, corrupt, inconsistent
or hostile file -- or an OS error on the path -- into a :class:`LoadError` (a ``ValueError``) that says
what is wrong (docs/reliability.md, "Model files"). Saving writes a temporary file beside the target and
renames it over the target, so a crash leaves either the old file or the new one, never half of one.

Formats: each technique lists the save formats of its module classes in its
:class:`slimnn.techniques.Technique` (a :class:`slimnn.formats.manifest.ModuleFormat`: a name and version
and three functions: to canonical tensors + metadata, the expected tensor specs for given metadata, and
back). ``save`` dispatches on the module's class, ``load`` on the format name in the manifest.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import stat
import struct
import tempfile
import warnings
from typing import Any, Callable, Optional, Union

import torch
from torch import Tensor, nn

from .._version import __version__
from ..formats.manifest import (
    DTYPE_NAMES,
    DTYPES,
    FUSABLE,
    ITEMSIZE,
    MAX_DIM,
    ModuleFormat,
    TensorSpec,  # noqa: F401  (re-exported: slimnn.io.TensorSpec)
    dict_field,
)
from ..nn.base import is_hf_conv1d
from ..nn.fused import FusedActivation
from ..techniques import add_save_format, run_model_hooks, save_format_for, save_formats
from ..techniques.fusion import activation_of

FORMAT = "slimnn"
# 2: a sha256 digest of every tensor's bytes (manifest "tensors") and of the manifest text (header
# metadata "slimnn.manifest.sha256"), checked before anything is used. Version 1 files (no digests) still
# load, with an UnverifiedFileWarning.
FORMAT_VERSION = 2
READ_VERSIONS = (1, 2)
MANIFEST_KEY = "slimnn.manifest"
DIGEST_KEY = "slimnn.manifest.sha256"
# Resource bounds, decided from the header before anything is allocated (a file that exceeds one is a
# LoadError naming it; raise them here for a legitimately larger model).
MAX_HEADER_BYTES = 100 * 2**20  # safetensors' own limit
MAX_NESTING = 64
MAX_MODULES = 100_000  # architecture nodes, and compressed modules (BERT-base: about 230 nodes)
MAX_PARAMETERS = 2**36  # all tensors plus every layer's dense-equivalent in x out (about 69 billion)


class LoadError(ValueError):
    """A model file that cannot be loaded: corrupt (a digest differs), truncated, inconsistent, over a
    resource limit, unreadable (missing, a directory, no permission) or not a slimnn file. The only
    exception :func:`load`, :func:`manifest` and :func:`read_header` raise for a bad file (a ``ValueError``,
    so ``except ValueError`` keeps working); the message names the file and what is wrong with it."""


class UnverifiedFileWarning(UserWarning):
    """The file predates content digests (format version 1): corruption of its tensor bytes goes unnoticed.
    Save it again to add them."""


PathLike = Union[str, "os.PathLike[str]"]


# ----------------------------------------------------------------------------------------------------
# Formats: each technique registers the save formats of its modules (slimnn.techniques)
# ----------------------------------------------------------------------------------------------------


def register_module_format(fmt: ModuleFormat) -> ModuleFormat:
    """Registers how a compressed module class is saved and loaded (see :class:`ModuleFormat`).
    Techniques list their formats in their :class:`slimnn.techniques.Technique`; this is for plug-ins."""
    return add_save_format(fmt)


def registered_formats() -> dict[str, type]:
    """Format name -> module class, for every registered compressed module format."""
    return {k: v.cls for k, v in save_formats().items()}


def _compressed_class(mod: nn.Module) -> bool:
    if type(mod).__name__ == "FusedActivation":  # no tensors; recorded in the manifest's fused_activations
        return False
    return type(mod).__module__.startswith("slimnn.nn") or hasattr(mod, "storage_bytes")


# ----------------------------------------------------------------------------------------------------
# Architecture description for allow-listed module trees
# ----------------------------------------------------------------------------------------------------

def _ln_args(m: nn.LayerNorm) -> dict:
    return {
        "normalized_shape": list(m.normalized_shape), "eps": m.eps,
        "elementwise_affine": m.elementwise_affine, "bias": m.bias is not None,
    }


# name -> (class, description of constructor arguments from a module, validators of arguments)
_ARCH: dict[str, tuple[type, Callable[[nn.Module], dict], dict[str, type]]] = {
    "Sequential": (nn.Sequential, lambda m: {}, {}),
    "ModuleList": (nn.ModuleList, lambda m: {}, {}),
    "Linear": (nn.Linear, lambda m: {"in_features": m.in_features, "out_features": m.out_features,
                                     "bias": m.bias is not None},
               {"in_features": int, "out_features": int, "bias": bool}),
    "ReLU": (nn.ReLU, lambda m: {}, {}),
    "GELU": (nn.GELU, lambda m: {"approximate": m.approximate}, {"approximate": str}),
    "Tanh": (nn.Tanh, lambda m: {}, {}),
    "Sigmoid": (nn.Sigmoid, lambda m: {}, {}),
    "SiLU": (nn.SiLU, lambda m: {}, {}),
    "Identity": (nn.Identity, lambda m: {}, {}),
    "FusedActivation": (None, lambda m: {"activation": m.activation, "into": m.into},
                        {"activation": str, "into": str}),
    "Dropout": (nn.Dropout, lambda m: {"p": m.p}, {"p": float}),
    "Flatten": (nn.Flatten, lambda m: {"start_dim": m.start_dim, "end_dim": m.end_dim},
                {"start_dim": int, "end_dim": int}),
    "Softmax": (nn.Softmax, lambda m: {"dim": m.dim}, {"dim": int}),
    "LogSoftmax": (nn.LogSoftmax, lambda m: {"dim": m.dim}, {"dim": int}),
    "LayerNorm": (nn.LayerNorm, _ln_args,
                  {"normalized_shape": list, "eps": float, "elementwise_affine": bool, "bias": bool}),
    "Embedding": (nn.Embedding, lambda m: {"num_embeddings": m.num_embeddings,
                                           "embedding_dim": m.embedding_dim},
                  {"num_embeddings": int, "embedding_dim": int}),
}
_ARCH["FusedActivation"] = (FusedActivation,) + _ARCH["FusedActivation"][1:]
_ARCH_BY_CLASS = {v[0]: k for k, v in _ARCH.items()}


def describe_architecture(model: nn.Module) -> Optional[dict]:
    """The module tree as JSON when every module is allow-listed (or compressed), else ``None``."""

    def walk(m: nn.Module, depth: int) -> Optional[dict]:
        if depth > MAX_NESTING:
            return None
        if save_format_for(type(m)) is not None:
            return {"type": "compressed"}
        name = _ARCH_BY_CLASS.get(type(m))
        if name is None:
            return None
        node: dict[str, Any] = {"type": name, "args": _ARCH[name][1](m)}
        if name in ("Sequential", "ModuleList"):
            kids = []
            for i, (cname, child) in enumerate(m.named_children()):
                if cname != str(i):
                    return None
                sub = walk(child, depth + 1)
                if sub is None:
                    return None
                kids.append(sub)
            node["children"] = kids
        elif any(True for _ in m.children()):
            return None
        return node

    return walk(model, 0)


class _Slot(nn.Module):
    """Placeholder for a compressed module while a saved architecture is rebuilt."""

    def forward(self, *args: Any) -> Any:
        raise RuntimeError("this compressed module was not loaded")


def _arch_args(typ: str, node: dict) -> dict:
    _, _, types = _ARCH[typ]
    args = dict_field(node.get("args", {}), f"{typ} arguments")
    if set(args) != set(types):
        raise ValueError(f"{typ} arguments must be {sorted(types)}, got {sorted(args)}")
    for k, t in types.items():
        v = args[k]
        ok = isinstance(v, (int, float)) and not isinstance(v, bool) if t is float else (
            isinstance(v, t) and not (t is int and isinstance(v, bool)))
        if not ok:
            raise ValueError(f"{typ} argument {k!r} must be {t.__name__}, got {v!r}")
        if t is float and not math.isfinite(v):
            raise ValueError(f"{typ} argument {k!r} must be finite, got {v!r}")
        if t is int and abs(v) > MAX_DIM:
            raise ValueError(f"{typ} argument {k!r} is out of range: {v}")
        if t is list and (len(v) > 8 or not all(
                isinstance(d, int) and not isinstance(d, bool) and 0 < d <= MAX_DIM for d in v)):
            raise ValueError(f"{typ} argument {k!r} must be a list of at most 8 positive integers, got {v!r}")
    if typ in ("Linear", "Embedding") and not all(args[k] > 0 for k in args if isinstance(args[k], int)
                                                    and not isinstance(args[k], bool)):
        raise ValueError(f"{typ} dimensions must be positive, got {args}")
    return args


def _build_architecture(node: Any, depth: int = 0) -> nn.Module:
    """Builds a checked architecture (see _check_architecture) on the current (meta) device."""
    node = dict_field(node, "architecture node")
    if depth > MAX_NESTING:
        raise ValueError("architecture is nested too deeply")
    typ = node.get("type")
    if typ == "compressed":
        return _Slot()
    if typ not in _ARCH:
        raise ValueError(f"architecture names module type {typ!r}, which is not on slimnn's allow-list")
    cls = _ARCH[typ][0]
    args = _arch_args(typ, node)
    if typ in ("Sequential", "ModuleList"):
        kids = node.get("children")
        if not isinstance(kids, list):
            raise ValueError(f"{typ} node needs a list of children")
        return cls(*[_build_architecture(c, depth + 1) for c in kids]) if typ == "Sequential" else cls(
            [_build_architecture(c, depth + 1) for c in kids])
    try:
        return cls(**args)
    except (TypeError, ValueError, RuntimeError) as e:
        raise ValueError(f"cannot build {typ}({args}): {e}") from None


# ----------------------------------------------------------------------------------------------------
# digests and the file writer
# ----------------------------------------------------------------------------------------------------

def tensor_digest(t: Tensor) -> str:
    """sha256 (hex) of a tensor's bytes in row-major order, as stored in the file."""
    t = t.detach().cpu().contiguous()
    if t.numel() == 0:
        return hashlib.sha256(b"").hexdigest()
    return hashlib.sha256(t.reshape(-1).view(torch.uint8).numpy()).hexdigest()


def _text_digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def write_file(path: PathLike, tensors: dict[str, Tensor], manifest: dict, digests: bool = True) -> None:
    """Writes ``tensors`` with ``manifest`` (its ``tensors`` entry is rewritten from them, with digests
    unless ``digests=False``) atomically: a temporary file beside ``path`` is renamed over it when complete.
    What :func:`save` uses; also how tests build hostile files whose digests are right."""
    from safetensors.torch import save_file

    man = dict(manifest)
    man["tensors"] = {
        k: {"dtype": DTYPE_NAMES[v.dtype], "shape": list(v.shape), **({"sha256": tensor_digest(v)} if digests else {})}
        for k, v in tensors.items()
    }
    text = json.dumps(man, sort_keys=True)
    meta = {MANIFEST_KEY: text}
    if digests:
        meta[DIGEST_KEY] = _text_digest(text)
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".slimnn-", suffix=".tmp", dir=directory)
    os.close(fd)
    try:
        save_file({k: v.contiguous() for k, v in tensors.items()}, tmp, metadata=meta)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        # mkstemp creates the file 0600; the result gets the mode a plain open() would give it (0666 minus
        # the umask, typically 0644), or keeps the mode of the file it replaces.
        os.chmod(tmp, _file_mode(path))
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


# ----------------------------------------------------------------------------------------------------
# save
# ----------------------------------------------------------------------------------------------------

# Float layers a compressed module may stand in for in a skeleton, besides nn.Linear (convs, the BatchNorm a
# conv absorbed, the activation it applies, embeddings).
_FLOAT_TWINS = (nn.Conv1d, nn.Conv2d, nn.BatchNorm1d, nn.BatchNorm2d, nn.Embedding, nn.ReLU, nn.ReLU6, nn.SiLU,
                nn.Hardswish, nn.GELU)


def save(model: nn.Module, path: PathLike, metadata: Optional[dict] = None) -> None:
    """Saves ``model`` (compressed or not) to ``path`` as safetensors with a slimnn manifest.

    Compressed modules are stored in their canonical, CPU-independent form; every other parameter and
    buffer as it is (tied tensors once). ``metadata``: optional JSON-able user data kept in the manifest.
    The write is atomic: a temporary file beside ``path`` is renamed over it when complete.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"save expects an nn.Module, got {type(model).__name__}")
    tensors: dict[str, Tensor] = {}
    modules: dict[str, dict] = {}
    compressed_prefixes: list[str] = []
    for fqn, mod in model.named_modules():
        if any(fqn.startswith(p) for p in compressed_prefixes):
            continue
        fmt = save_format_for(type(mod))
        if fmt is None:
            if _compressed_class(mod) and type(mod).__module__.startswith("slimnn"):
                raise ValueError(
                    f"{fqn or 'the model'} is a {type(mod).__name__}, which has no saved format; "
                    "register one with slimnn.io.register_module_format"
                )
            continue
        prefix = f"{fqn}." if fqn else ""
        compressed_prefixes.append(prefix)
        ts, meta = fmt.to_canonical(mod)
        json.dumps(meta)  # fail early on non-JSON metadata
        for k, t in ts.items():
            tensors[prefix + k] = t.detach().cpu().contiguous()
        version = fmt.version if fmt.version_for is None else fmt.version_for(mod)
        modules[fqn] = {"format": fmt.name, "version": version, "meta": meta}

    state: list[str] = []
    nonpersistent: list[str] = []
    aliases: dict[str, str] = {}
    seen: dict[tuple, str] = {}

    def add(name: str, t: Tensor) -> None:
        t = t.detach()
        if t.device.type == "meta":
            raise ValueError(f"{name} is on the meta device (no data); cannot save it")
        if t.dtype not in DTYPE_NAMES:
            raise ValueError(f"{name} has dtype {t.dtype}, which slimnn files do not store")
        key = (t.data_ptr(), t.dtype, tuple(t.shape), tuple(t.stride()), t.storage_offset()) if t.numel() else None
        if key is not None and key in seen:
            aliases[name] = seen[key]
            return
        if key is not None:
            seen[key] = name
        tensors[name] = t.cpu().contiguous().clone() if _shares_storage(t, tensors) else t.cpu().contiguous()

    sd = model.state_dict(keep_vars=True)
    for name, t in sd.items():
        if any(name.startswith(p) for p in compressed_prefixes) or t is None:
            continue
        add(name, t)
        if name not in aliases:
            state.append(name)
    for name, t in model.named_buffers(remove_duplicate=False):
        if name in sd or t is None or any(name.startswith(p) for p in compressed_prefixes):
            continue
        add(name, t)
        if name not in aliases:
            nonpersistent.append(name)

    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "slimnn_version": __version__,
        "torch_version": torch.__version__,
        "modules": modules,
        "state": state,
        "nonpersistent": nonpersistent,
        "aliases": aliases,
        "architecture": describe_architecture(model),
        # activation modules replaced by a FusedActivation (their Linear applies them): load does the same
        # to a skeleton. Absent in files written before fusion existed.
        "fused_activations": {fqn: {"activation": m.activation, "into": m.into}
                              for fqn, m in model.named_modules() if isinstance(m, FusedActivation)},
        "user": metadata if metadata is not None else {},
    }
    write_file(path, tensors, manifest)


def _umask() -> int:
    # Read without changing it where Linux says it (os.umask can only be read by setting it, which races
    # with other threads creating files).
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _file_mode(path: str) -> int:
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        return 0o666 & ~_umask()


def _shares_storage(t: Tensor, tensors: dict[str, Tensor]) -> bool:
    # safetensors refuses tensors that share memory; views into one storage are copied apart.
    if not t.numel():
        return False
    base = t.untyped_storage().data_ptr()
    return any(o.numel() and o.untyped_storage().data_ptr() == base for o in tensors.values())


# ----------------------------------------------------------------------------------------------------
# load
# ----------------------------------------------------------------------------------------------------

def _reject_duplicates(pairs: list) -> dict:
    d: dict = {}
    for k, v in pairs:
        if k in d:
            raise ValueError(f"duplicate key {k!r} in JSON")
        d[k] = v
    return d


def _parse_constant(name: str) -> Any:
    raise ValueError(f"invalid JSON number {name}")


def _json(text: Union[str, bytes], what: str) -> Any:
    try:
        return json.loads(text, object_pairs_hook=_reject_duplicates, parse_constant=_parse_constant)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise ValueError(f"{what} is not valid JSON: {e}") from None


def _fail(path: str, msg: str) -> LoadError:
    return LoadError(msg if msg.startswith(path) else f"{path}: {msg}")


def _as_load_error(path: str, fn: Callable[..., Any], *args: Any, safety_net: tuple = ()) -> Any:
    """``fn(*args)``, its ValueErrors and OS errors (and the ``safety_net`` exception types) raised again as a
    :class:`LoadError` naming ``path``."""
    try:
        return fn(*args)
    except LoadError:
        raise
    except ValueError as e:
        raise _fail(path, str(e)) from None
    except OSError as e:
        raise _fail(path, f"cannot read: {e.strerror or e}") from None
    except safety_net as e:
        raise _fail(path, f"cannot load: {type(e).__name__}: {e}") from e


def read_header(path: PathLike) -> tuple[dict[str, dict], dict]:
    """Reads and validates the safetensors header and the slimnn manifest; reads no tensor data.

    Returns ``(entries, manifest)``, entries mapping each tensor name to its dtype, shape and offsets.
    Raises :class:`LoadError` for any problem, OS errors on the path included.
    """
    path = os.fspath(path)
    return _as_load_error(path, _read_header, path)


def _read_header(path: str) -> tuple[dict[str, dict], dict]:
    try:
        st = os.stat(path)
    except OSError as e:
        raise _fail(path, f"cannot read: {e.strerror}") from None
    if stat.S_ISDIR(st.st_mode):
        raise _fail(path, "cannot read: it is a directory, not a slimnn file")
    if not stat.S_ISREG(st.st_mode):
        raise _fail(path, "cannot read: not a regular file")
    size = st.st_size
    if size < 8:
        raise _fail(path, f"truncated or not a slimnn file ({size} bytes)")
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        if n > MAX_HEADER_BYTES:
            raise _fail(path, f"header length {n} is implausible; not a slimnn file or corrupt")
        if 8 + n > size:
            raise _fail(path, f"truncated: header claims {n} bytes, file has {size - 8} after the length")
        raw = f.read(n)
    # safetensors writes compact JSON padded with spaces: a tab or line break anywhere (valid JSON
    # whitespace, and invalid inside JSON strings) is a changed byte that parsing alone would not notice.
    if b"\t" in raw or b"\n" in raw or b"\r" in raw:
        raise _fail(path, "safetensors header holds a tab or line break (corrupt, or not written by safetensors)")
    # Bounded before parsing: every architecture node and module entry of the manifest (a string inside this
    # JSON, so its quotes are escaped) has a "type" or "format" key; counting them bounds the modules it makes.
    if raw.count(b'\\"type\\"') > 2 * MAX_MODULES + 1 or raw.count(b'\\"format\\"') > MAX_MODULES + 1:
        raise _fail(path, f"the manifest declares more than {MAX_MODULES} modules (slimnn.io.files.MAX_MODULES)")
    header = dict_field(_json(raw, f"{path}: safetensors header"), f"{path}: safetensors header")
    meta = header.pop("__metadata__", None)
    if not isinstance(meta, dict) or not isinstance(meta.get(MANIFEST_KEY), str):
        raise _fail(path, "a safetensors file without a slimnn manifest (not saved by slimnn.save)")
    if set(meta) - {MANIFEST_KEY, DIGEST_KEY}:
        raise _fail(path, f"unknown header metadata keys {sorted(set(meta) - {MANIFEST_KEY, DIGEST_KEY})[:5]}")
    text = meta[MANIFEST_KEY]
    digest = meta.get(DIGEST_KEY)
    if digest is not None and (not isinstance(digest, str) or _text_digest(text) != digest):
        raise _fail(path, "the manifest's sha256 digest does not match its text: the file is corrupt")
    if text.count('"type"') > 2 * MAX_MODULES + 1 or text.count('"format"') > MAX_MODULES + 1:
        raise _fail(path, f"the manifest declares more than {MAX_MODULES} modules (slimnn.io.files.MAX_MODULES)")
    data_len = size - 8 - n
    entries: dict[str, dict] = {}
    spans = []
    for name, e in header.items():
        e = dict_field(e, f"{path}: header entry {name!r}")
        dt, shape, offs = e.get("dtype"), e.get("shape"), e.get("data_offsets")
        if set(e) != {"dtype", "shape", "data_offsets"}:
            raise _fail(path, f"tensor {name!r}: header entry has fields {sorted(e)}")
        if dt not in DTYPES:
            raise _fail(path, f"tensor {name!r} has unsupported dtype {dt!r}")
        if not isinstance(shape, list) or len(shape) > 8 or not all(
            isinstance(d, int) and not isinstance(d, bool) and 0 <= d <= MAX_DIM for d in shape
        ):
            raise _fail(path, f"tensor {name!r} has an invalid shape {shape!r}")
        if not isinstance(offs, list) or len(offs) != 2 or not all(
            isinstance(o, int) and not isinstance(o, bool) for o in offs
        ):
            raise _fail(path, f"tensor {name!r} has invalid data offsets {offs!r}")
        a, b = offs
        nbytes = math.prod(shape) * ITEMSIZE[dt]
        if not 0 <= a <= b or b - a != nbytes:
            raise _fail(path, f"tensor {name!r}: byte range {offs} does not match {dt} {shape}")
        if b > data_len:
            raise _fail(path, f"truncated: tensor {name!r} ends at byte {b}, data has {data_len}")
        entries[name] = {"dtype": dt, "shape": tuple(shape), "offsets": (a, b)}
        spans.append((a, b, name))
    spans.sort()
    pos = 0
    for a, b, name in spans:
        if a != pos:
            raise _fail(path, f"tensor {name!r} overlaps another or leaves a gap (corrupt header)")
        pos = b
    if pos != data_len:
        raise _fail(path, f"{data_len - pos} trailing bytes after the last tensor (corrupt or not ours)")
    manifest = dict_field(_json(text, f"{path}: manifest"), f"{path}: manifest")
    ver = manifest.get("format_version")
    if ver == 2 and digest is None:
        raise _fail(path, "format version 2 without the manifest digest (stripped or corrupt)")
    if ver == 1 and digest is not None:
        raise _fail(path, "format version 1 with a manifest digest (inconsistent header)")
    _check_manifest(path, manifest, entries)
    return entries, manifest


def _under(name: str, prefixes: set[str]) -> Optional[str]:
    """The compressed module whose prefix ``name`` falls under, if any."""
    parts = name.split(".")
    for i in range(1, len(parts) + 1):
        p = ".".join(parts[:i]) + "."
        if p in prefixes:
            return p[:-1]
    return None


def _check_manifest(path: str, man: dict, entries: dict) -> None:
    if man.get("format") != FORMAT:
        raise _fail(path, f"manifest format is {man.get('format')!r}, expected {FORMAT!r}")
    ver = man.get("format_version")
    if ver not in READ_VERSIONS:
        raise _fail(path, f"format version {ver!r} is not supported (this slimnn reads {list(READ_VERSIONS)})")
    for key, typ in (("modules", dict), ("state", list), ("nonpersistent", list), ("aliases", dict),
                     ("tensors", dict)):
        if not isinstance(man.get(key), typ):
            raise _fail(path, f"manifest field {key!r} must be a {typ.__name__}")
    if len(man["modules"]) > MAX_MODULES:
        raise _fail(path, f"{len(man['modules'])} compressed modules: more than {MAX_MODULES} (slimnn.io.files.MAX_MODULES)")
    fused = man.get("fused_activations", {})
    if not isinstance(fused, dict):
        raise _fail(path, "manifest field 'fused_activations' must be a dict")
    for fqn, f in fused.items():
        f = dict_field(f, f"{path}: fused activation {fqn!r}")
        if not fqn or set(f) != {"activation", "into"} or f.get("activation") not in FUSABLE or not isinstance(
                f.get("into"), str):
            raise _fail(path, f"fused activation {fqn!r} is malformed: {f}")
    declared = man["tensors"]
    if set(declared) != set(entries):
        extra, missing = sorted(set(entries) - set(declared)), sorted(set(declared) - set(entries))
        raise _fail(path, f"manifest and file disagree on tensors (undeclared {extra[:5]}, absent {missing[:5]})")
    want_digest = ver >= 2
    for name, d in declared.items():
        d = dict_field(d, f"{path}: manifest tensor {name!r}")
        if d.get("dtype") != entries[name]["dtype"] or d.get("shape") != list(entries[name]["shape"]):
            raise _fail(path, f"tensor {name!r}: manifest says {d}, file holds {entries[name]}")
        h = d.get("sha256")
        if want_digest:
            if set(d) != {"dtype", "shape", "sha256"} or not isinstance(h, str) or len(h) != 64:
                raise _fail(path, f"tensor {name!r} has no valid sha256 digest in the manifest (format version 2)")
            entries[name]["sha256"] = h
        elif set(d) != {"dtype", "shape"}:
            raise _fail(path, f"tensor {name!r}: unexpected manifest fields {sorted(d)}")
    # Every tensor is claimed exactly once: by a compressed module, by state or by a non-persistent buffer.
    claimed: dict[str, str] = {}

    def claim(name: str, by: str) -> None:
        if name in claimed:
            raise _fail(path, f"tensor {name!r} is claimed twice ({claimed[name]} and {by})")
        claimed[name] = by

    prefixes = set()
    for fqn, m in man["modules"].items():
        if not isinstance(fqn, str) or not fqn or "" in fqn.split("."):
            raise _fail(path, f"compressed module name {fqn!r} is not a module path")
        prefixes.add(fqn + ".")
    total = sum(math.prod(e["shape"]) for e in entries.values())
    for fqn, m in man["modules"].items():
        m = dict_field(m, f"{path}: module {fqn!r}")
        if set(m) != {"format", "version", "meta"}:
            raise _fail(path, f"module {fqn!r} has fields {sorted(m)}, expected format, version, meta")
        inner = _under(fqn.rpartition(".")[0], prefixes) if "." in fqn else None
        if inner is not None:
            raise _fail(path, f"module {fqn!r} sits inside compressed module {inner!r}")
        fmt = save_formats().get(m.get("format"))
        if fmt is None:
            raise _fail(path, f"module {fqn!r} has format {m.get('format')!r}, unknown to this slimnn "
                              f"(known: {sorted(save_formats())})")
        if m.get("version") != fmt.version and m.get("version") not in fmt.reads:
            raise _fail(path, f"module {fqn!r}: {fmt.name} version {m.get('version')!r} is not supported "
                              f"(this slimnn reads {fmt.version})")
        meta = dict_field(m.get("meta"), f"{path}: module {fqn!r} metadata")
        if fmt.name == "int8_linear" and m["version"] == 1 and "activation" in meta:
            raise _fail(path, f"module {fqn!r}: int8_linear version 1 has no activation (version 2 added it)")
        try:
            spec = fmt.spec(meta)
        except ValueError as e:
            raise _fail(path, f"module {fqn!r}: {e}") from None
        total += meta.get("in_features", 0) * meta.get("out_features", 0)
        prefix = f"{fqn}."
        for tname, (dt, shape) in spec.items():
            e = entries.get(prefix + tname)
            if e is None:
                raise _fail(path, f"module {fqn!r} lacks tensor {tname!r}")
            if DTYPES[e["dtype"]] != dt or e["shape"] != tuple(shape):
                raise _fail(path, f"module {fqn!r} tensor {tname!r} is {e['dtype']} {list(e['shape'])}, "
                                  f"expected {DTYPE_NAMES[dt]} {list(shape)}")
            claim(prefix + tname, f"module {fqn!r}")
    if total > MAX_PARAMETERS:
        raise _fail(path, f"the file declares {total} parameters: more than {MAX_PARAMETERS} (slimnn.io.files.MAX_PARAMETERS)")
    for key in ("state", "nonpersistent"):
        for name in man[key]:
            if not isinstance(name, str) or name not in entries:
                raise _fail(path, f"{key} entry {name!r} has no tensor in the file")
            owner = _under(name, prefixes)
            if owner is not None:
                raise _fail(path, f"{key} entry {name!r} would overwrite a tensor of compressed module {owner!r}, "
                                  "which only its validated format may set")
            claim(name, key)
    for a, b in man["aliases"].items():
        if not isinstance(b, str) or b not in entries:
            raise _fail(path, f"alias {a!r} points to {b!r}, which is not in the file")
        if a in claimed or a in entries:
            raise _fail(path, f"alias {a!r} is also a stored tensor")
        for x in (a, b):
            owner = _under(x, prefixes)
            if owner is not None:
                raise _fail(path, f"alias {a!r} -> {b!r} reaches into compressed module {owner!r}")
        if claimed.get(b) not in ("state", "nonpersistent"):
            raise _fail(path, f"alias {a!r} points to {b!r}, which is not a state tensor")
    unclaimed = sorted(set(entries) - set(claimed))
    if unclaimed:
        raise _fail(path, f"tensors {unclaimed[:5]} are in the file but nothing in the manifest uses them")
    for fqn, f in fused.items():
        parent = fqn.rpartition(".")[0]
        target = f"{parent}.{f['into']}" if parent else f["into"]
        m = man["modules"].get(target)
        if m is None:
            raise _fail(path, f"fused activation {fqn!r} says it went into {target!r}, which is not a compressed "
                              "module of the file")
        if m["meta"].get("activation") != f["activation"]:
            raise _fail(path, f"fused activation {fqn!r}: the file removed a {f['activation']} there, but module "
                              f"{target!r} applies activation {m['meta'].get('activation')!r} (they must agree, or "
                              "the activation is lost)")
        if fqn in man["modules"] or _under(fqn, prefixes):
            raise _fail(path, f"fused activation {fqn!r} is inside a compressed module")
    arch = man.get("architecture")
    if arch is not None:
        slots = _check_architecture(arch)
        if slots != set(man["modules"]):
            raise _fail(path, "the architecture and the compressed modules disagree: compressed in the architecture "
                              f"only {sorted(slots - set(man['modules']))[:5]}, in modules only "
                              f"{sorted(set(man['modules']) - slots)[:5]}")


def _arch_params(typ: str, args: dict) -> int:
    if typ == "Linear":
        return args["in_features"] * args["out_features"] + args["out_features"]
    if typ == "Embedding":
        return args["num_embeddings"] * args["embedding_dim"]
    if typ == "LayerNorm":
        return 2 * math.prod(args["normalized_shape"])
    return 0


def _check_architecture(arch: Any) -> set[str]:
    """Validates the whole architecture description without building anything: node count, nesting,
    types, argument types and ranges, and the parameters it implies. Returns the compressed slots' names."""
    nodes, params, slots = 0, 0, set()
    stack = [(arch, "", 0)]
    while stack:
        node, fqn, depth = stack.pop()
        nodes += 1
        if nodes > MAX_MODULES:
            raise ValueError(f"the architecture has more than {MAX_MODULES} modules (slimnn.io.files.MAX_MODULES)")
        if depth > MAX_NESTING:
            raise ValueError("architecture is nested too deeply")
        node = dict_field(node, "architecture node")
        typ = node.get("type")
        if typ == "compressed":
            if set(node) != {"type"} or not fqn:
                raise ValueError(f"architecture: compressed slot {fqn!r} is malformed")
            slots.add(fqn)
            continue
        if typ not in _ARCH:
            raise ValueError(f"architecture names module type {typ!r}, which is not on slimnn's allow-list")
        args = _arch_args(typ, node)
        params += _arch_params(typ, args)
        if params > MAX_PARAMETERS:
            raise ValueError(f"the architecture implies more than {MAX_PARAMETERS} parameters "
                             "(slimnn.io.files.MAX_PARAMETERS)")
        if typ in ("Sequential", "ModuleList"):
            kids = node.get("children")
            if not isinstance(kids, list):
                raise ValueError(f"{typ} node needs a list of children")
            if set(node) != {"type", "args", "children"}:
                raise ValueError(f"{typ} node has fields {sorted(node)}")
            for i, c in enumerate(kids):
                stack.append((c, f"{fqn}.{i}" if fqn else str(i), depth + 1))
        elif set(node) - {"type", "args"}:
            raise ValueError(f"{typ} node has fields {sorted(node)}")
    return slots


def load(path: PathLike, model: Optional[nn.Module] = None, strict: bool = True) -> nn.Module:
    """Loads a model saved by :func:`save`.

    ``model=None``: rebuilds the model from the manifest's architecture (allow-listed ``torch.nn``
    module trees only, e.g. an ``nn.Sequential`` MLP). Otherwise ``model`` is the float architecture
    (a "skeleton"), best built on the meta device so no float copy of the weights is ever allocated::

        with torch.device("meta"):
            skeleton = MyModel(config)
        model = slimnn.load("model.slimnn.safetensors", skeleton)

    The compressed modules are built from their canonical tensors (packed for this CPU) and swapped in
    at their names; the other parameters and buffers are assigned from the file. ``strict``: the file
    and the skeleton must hold the same parameter and buffer names. Returns the model (in eval mode).

    Every tensor's sha256 digest is checked before the tensor is used, and every manifest field against
    the others it constrains; any problem with the file, OS errors on the path included, is a
    :class:`LoadError` (a ``ValueError``). A wrong type for ``model`` is a ``TypeError``.
    """
    path = os.fspath(path)
    if model is not None and not isinstance(model, nn.Module):
        raise TypeError(f"load: model must be an nn.Module or None, got {type(model).__name__}")
    # A safety net: every check in _load is meant to come first; what raises these is still a bad file.
    net = (RuntimeError, TypeError, KeyError, IndexError, AttributeError, OverflowError, MemoryError)
    return _as_load_error(path, _load, path, model, strict, safety_net=net)


def _same_kind(file_dtype: torch.dtype, model_dtype: torch.dtype) -> bool:
    # floating state may change precision (a bf16 file into a float32 skeleton); anything else must match
    return file_dtype == model_dtype or (file_dtype.is_floating_point and model_dtype.is_floating_point)


def _load(path: str, model: Optional[nn.Module], strict: bool) -> nn.Module:
    entries, man = read_header(path)
    if man["format_version"] < 2:
        warnings.warn(f"{path}: format version {man['format_version']} has no content digests; corrupt tensor "
                      "bytes cannot be detected. Save it again with this slimnn to add them.",
                      UnverifiedFileWarning, stacklevel=3)
    from safetensors import safe_open

    try:
        handle = safe_open(path, framework="pt", device="cpu")
    except Exception as e:  # safetensors raises its own error type  # noqa: BLE001
        raise _fail(path, f"cannot open as safetensors: {e}") from None

    def get(name: str) -> Tensor:
        try:
            t = handle.get_tensor(name)
        except Exception as e:  # noqa: BLE001
            raise _fail(path, f"cannot read tensor {name!r}: {e}") from None
        e = entries[name]
        if t.dtype != DTYPES[e["dtype"]] or tuple(t.shape) != e["shape"]:
            raise _fail(path, f"tensor {name!r} read back as {t.dtype} {tuple(t.shape)}")
        want = e.get("sha256")
        if want is not None and tensor_digest(t) != want:
            raise _fail(path, f"tensor {name!r}: sha256 digest mismatch, its bytes were changed (corrupt file)")
        return t

    with handle:
        if model is None:
            arch = man.get("architecture")
            if arch is None:
                raise _fail(
                    path, "this model's architecture is not one slimnn rebuilds by itself; pass the float "
                    "architecture: slimnn.load(path, model=skeleton) (build the skeleton on the meta device)"
                )
            with torch.device("meta"):
                model = _build_architecture(arch)

        prefixes = []
        for fqn, m in man["modules"].items():
            fmt = save_formats()[m["format"]]
            prefix = f"{fqn}."
            prefixes.append(prefix)
            try:
                target = model.get_submodule(fqn)
            except AttributeError:
                raise _fail(path, f"module {fqn!r} is in the file but not in the given model") from None
            meta = m["meta"]
            if is_hf_conv1d(target):  # compress_ converts GPT-2's Conv1D as the Linear it is (W transposed)
                have = {"in_features": int(target.weight.shape[0]), "out_features": int(target.nf)}
            elif isinstance(target, (nn.Linear, fmt.cls, _Slot, *_FLOAT_TWINS)) or hasattr(target, "in_features"):
                have = {a: getattr(target, a) for a in ("in_features", "out_features") if hasattr(target, a)}
            else:
                raise _fail(path, f"module {fqn!r} is a {type(target).__name__} in the given model; the file "
                                  f"holds a compressed Linear there")
            for attr in ("in_features", "out_features"):
                if attr in meta and have.get(attr, meta[attr]) != meta[attr]:
                    raise _fail(path, f"module {fqn!r}: file has {attr}={meta[attr]}, model has {have[attr]}")
            spec = fmt.spec(meta)
            try:
                new = fmt.from_canonical({k: get(prefix + k) for k in spec}, meta)
            except LoadError:
                raise
            except ValueError as e:
                raise _fail(path, f"module {fqn!r}: {e}") from None
            model.set_submodule(fqn, new)

        for fqn in man["modules"]:  # modules that share another's tensors (a tied embedding) take them now
            resolve = getattr(model.get_submodule(fqn), "resolve", None)
            if callable(resolve):
                resolve(model)

        for fqn, f in man.get("fused_activations", {}).items():
            parent_name, _, child = fqn.rpartition(".")
            try:
                old = model.get_submodule(fqn)
            except AttributeError:
                raise _fail(path, f"fused activation {fqn!r} is in the file but not in the given model") from None
            if not isinstance(old, (FusedActivation, nn.Identity)) and old is not None:
                if activation_of(old) != f["activation"]:
                    raise _fail(path, f"{fqn!r} is a {type(old).__name__} in the given model; the file fused "
                                      f"a {f['activation']} there")
            parent = model.get_submodule(parent_name) if parent_name else model
            setattr(parent, child, FusedActivation(f["activation"], f["into"]))

        current = model.state_dict(keep_vars=True)
        sd_names = set(current)
        expected = {n for n in sd_names if not any(n.startswith(p) for p in prefixes)}
        have = set(man["state"]) | set(man["aliases"])
        have -= set(man["nonpersistent"])
        if strict:
            missing, unexpected = sorted(expected - have), sorted(have - expected)
            if missing or unexpected:
                raise _fail(path, f"file and model disagree: missing from file {missing[:8]}, "
                                  f"not in model {unexpected[:8]}")
        cache: dict[str, Tensor] = {}

        def check_against(name: str, t: Tensor, cur: Optional[Tensor]) -> None:
            if cur is None:
                return
            if tuple(cur.shape) != tuple(t.shape):
                raise _fail(path, f"{name}: file holds shape {tuple(t.shape)}, model expects {tuple(cur.shape)}")
            if not _same_kind(t.dtype, cur.dtype):
                raise _fail(path, f"{name}: file holds {t.dtype}, the model's tensor is {cur.dtype}")

        def value(name: str) -> Tensor:
            src = man["aliases"].get(name, name)
            if src not in cache:
                cache[src] = get(src)
            return cache[src]

        sd = {n: value(n) for n in (have & expected)}
        for n, t in sd.items():
            check_against(n, t, current[n])
        model.load_state_dict(sd, strict=False, assign=True)
        for alias, src in man["aliases"].items():  # re-tie: one tensor object, as when saved
            if alias in sd and src in sd:
                _retie(model, alias, src)
        for name in man["nonpersistent"]:
            modname, _, bname = name.rpartition(".")
            try:
                owner = model.get_submodule(modname) if modname else model
            except AttributeError:
                owner = None
            if owner is None or bname not in owner._buffers or bname not in owner._non_persistent_buffers_set:
                if strict:
                    raise _fail(path, f"{name} is listed as a non-persistent buffer, which the model does not have")
                continue
            t = get(name)
            check_against(name, t, owner._buffers[bname])
            owner._buffers[bname] = t
    slots = [n for n, m in model.named_modules() if isinstance(m, _Slot)]
    if slots:
        raise _fail(path, f"the architecture has compressed modules the file does not hold: {slots[:8]}")
    left = [n for n, t in list(model.named_parameters()) + list(model.named_buffers()) if t is not None and t.is_meta]
    if left:
        raise _fail(path, f"these tensors of the model were not in the file and are still on the meta "
                          f"device: {left[:8]}")
    if man["modules"]:
        run_model_hooks(model, None)  # e.g. transformers models inside get slimnn's quantizer (integrations)
    return model.eval()


def _retie(model: nn.Module, alias: str, src: str) -> None:
    a_mod, _, a_name = alias.rpartition(".")
    s_mod, _, s_name = src.rpartition(".")
    a_owner = model.get_submodule(a_mod) if a_mod else model
    s_owner = model.get_submodule(s_mod) if s_mod else model
    for table in ("_parameters", "_buffers"):
        sa, ss = getattr(a_owner, table), getattr(s_owner, table)
        if a_name in sa and s_name in ss and sa[a_name] is not None and ss[s_name] is not None:
            sa[a_name] = ss[s_name]
            return


def manifest(path: PathLike) -> dict:
    """The validated manifest of a saved file (reads no tensor data)."""
    return read_header(path)[1]
