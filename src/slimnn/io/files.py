"""Save and load compressed models: one safetensors file with a JSON manifest inside.

File layout. A standard safetensors file (an 8-byte little-endian header length, a JSON header naming
every tensor's dtype, shape and byte range, then the raw bytes). The header's ``__metadata__`` holds one
entry, ``slimnn.manifest``: JSON with the format version, the slimnn and torch versions, and

- ``modules``: for every compressed module, its fully qualified name, its format name and version
  (``"int8_linear"`` v1, ...) and the metadata its format needs (shapes, config);
- ``tensors``: dtype and shape of every tensor in the file, cross-checked against the safetensors header;
- ``state``: the names of the ordinary (float) parameters and buffers, ``aliases`` for tied tensors;
- ``architecture``: the module tree when it is made only of allow-listed ``torch.nn`` building blocks
  (``nn.Sequential`` of ``Linear``, activations, ``LayerNorm``, ...), so :func:`load` can rebuild it
  without being handed a model; ``null`` otherwise.

Compressed modules are stored in their *canonical* form (for int8: the int8 matrix, float32 scales and
the bias), never as a CPU-specific packed blob: the file does not depend on the instruction set, and
packing for this CPU happens at load. Loading never executes code (no pickle; module classes come from
an allow-list of registered formats), validates the header, the manifest and every tensor's dtype and
shape before reading data, and turns a truncated, corrupt or hostile file into a ``ValueError`` that
says what is wrong. Saving writes a temporary file beside the target and renames it over the target,
so a crash leaves either the old file or the new one, never half of one.

Formats: each technique lists the save formats of its module classes in its
:class:`slimnn.techniques.Technique` (a :class:`slimnn.formats.manifest.ModuleFormat`: a name and version
and three functions: to canonical tensors + metadata, the expected tensor specs for given metadata, and
back). ``save`` dispatches on the module's class, ``load`` on the format name in the manifest.
"""

from __future__ import annotations

import json
import math
import os
import struct
import tempfile
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
from ..nn.fused import FusedActivation
from ..techniques import add_save_format, save_format_for, save_formats
from ..techniques.fusion import activation_of

FORMAT = "slimnn"
FORMAT_VERSION = 1
MANIFEST_KEY = "slimnn.manifest"
MAX_HEADER_BYTES = 100 * 2**20  # safetensors' own limit
MAX_NESTING = 64

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


def _build_architecture(node: Any, depth: int = 0) -> nn.Module:
    node = dict_field(node, "architecture node")
    if depth > MAX_NESTING:
        raise ValueError("architecture is nested too deeply")
    typ = node.get("type")
    if typ == "compressed":
        return _Slot()
    if typ not in _ARCH:
        raise ValueError(f"architecture names module type {typ!r}, which is not on slimnn's allow-list")
    cls, _, types = _ARCH[typ]
    args = dict_field(node.get("args", {}), f"{typ} arguments")
    if set(args) != set(types):
        raise ValueError(f"{typ} arguments must be {sorted(types)}, got {sorted(args)}")
    for k, t in types.items():
        v = args[k]
        ok = isinstance(v, (int, float)) and not isinstance(v, bool) if t is float else (
            isinstance(v, t) and not (t is int and isinstance(v, bool)))
        if not ok:
            raise ValueError(f"{typ} argument {k!r} must be {t.__name__}, got {v!r}")
        if t is int and abs(v) > MAX_DIM:
            raise ValueError(f"{typ} argument {k!r} is out of range: {v}")
        if t is list and not all(isinstance(d, int) and not isinstance(d, bool) and 0 < d <= MAX_DIM for d in v):
            raise ValueError(f"{typ} argument {k!r} must be a list of positive integers, got {v!r}")
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
    from safetensors.torch import save_file


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
        "tensors": {k: {"dtype": DTYPE_NAMES[v.dtype], "shape": list(v.shape)} for k, v in tensors.items()},
        "architecture": describe_architecture(model),
        # activation modules replaced by a FusedActivation (their Linear applies them): load does the same
        # to a skeleton. Absent in files written before fusion existed.
        "fused_activations": {fqn: {"activation": m.activation, "into": m.into}
                              for fqn, m in model.named_modules() if isinstance(m, FusedActivation)},
        "user": metadata if metadata is not None else {},
    }
    text = json.dumps(manifest, sort_keys=True)
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".slimnn-", suffix=".tmp", dir=directory)
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata={MANIFEST_KEY: text})
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


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


def read_header(path: PathLike) -> tuple[dict[str, dict], dict]:
    """Reads and validates the safetensors header and the slimnn manifest; reads no tensor data.

    Returns ``(entries, manifest)``, entries mapping each tensor name to its dtype, shape and offsets.
    """
    path = os.fspath(path)
    try:
        size = os.path.getsize(path)
    except OSError as e:
        raise ValueError(f"{path}: cannot read: {e.strerror}") from None
    if size < 8:
        raise ValueError(f"{path}: truncated or not a slimnn file ({size} bytes)")
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        if n > MAX_HEADER_BYTES:
            raise ValueError(f"{path}: header length {n} is implausible; not a slimnn file or corrupt")
        if 8 + n > size:
            raise ValueError(f"{path}: truncated: header claims {n} bytes, file has {size - 8} after the length")
        raw = f.read(n)
    header = dict_field(_json(raw, f"{path}: safetensors header"), f"{path}: safetensors header")
    meta = header.pop("__metadata__", None)
    if not isinstance(meta, dict) or not isinstance(meta.get(MANIFEST_KEY), str):
        raise ValueError(f"{path}: a safetensors file without a slimnn manifest (not saved by slimnn.save)")
    data_len = size - 8 - n
    entries: dict[str, dict] = {}
    spans = []
    for name, e in header.items():
        e = dict_field(e, f"{path}: header entry {name!r}")
        dt, shape, offs = e.get("dtype"), e.get("shape"), e.get("data_offsets")
        if dt not in DTYPES:
            raise ValueError(f"{path}: tensor {name!r} has unsupported dtype {dt!r}")
        if not isinstance(shape, list) or len(shape) > 8 or not all(
            isinstance(d, int) and not isinstance(d, bool) and 0 <= d <= MAX_DIM for d in shape
        ):
            raise ValueError(f"{path}: tensor {name!r} has an invalid shape {shape!r}")
        if not isinstance(offs, list) or len(offs) != 2 or not all(
            isinstance(o, int) and not isinstance(o, bool) for o in offs
        ):
            raise ValueError(f"{path}: tensor {name!r} has invalid data offsets {offs!r}")
        a, b = offs
        nbytes = math.prod(shape) * ITEMSIZE[dt]
        if not 0 <= a <= b or b - a != nbytes:
            raise ValueError(f"{path}: tensor {name!r}: byte range {offs} does not match {dt} {shape}")
        if b > data_len:
            raise ValueError(f"{path}: truncated: tensor {name!r} ends at byte {b}, data has {data_len}")
        entries[name] = {"dtype": dt, "shape": tuple(shape), "offsets": (a, b)}
        spans.append((a, b, name))
    spans.sort()
    pos = 0
    for a, b, name in spans:
        if a != pos:
            raise ValueError(f"{path}: tensor {name!r} overlaps another or leaves a gap (corrupt header)")
        pos = b
    if pos != data_len:
        raise ValueError(f"{path}: {data_len - pos} trailing bytes after the last tensor (corrupt or not ours)")
    manifest = dict_field(_json(meta[MANIFEST_KEY], f"{path}: manifest"), f"{path}: manifest")
    _check_manifest(path, manifest, entries)
    return entries, manifest


def _check_manifest(path: str, man: dict, entries: dict) -> None:
    if man.get("format") != FORMAT:
        raise ValueError(f"{path}: manifest format is {man.get('format')!r}, expected {FORMAT!r}")
    ver = man.get("format_version")
    if ver != FORMAT_VERSION:
        raise ValueError(f"{path}: format version {ver!r} is not supported (this slimnn reads {FORMAT_VERSION})")
    for key, typ in (("modules", dict), ("state", list), ("nonpersistent", list), ("aliases", dict),
                     ("tensors", dict)):
        if not isinstance(man.get(key), typ):
            raise ValueError(f"{path}: manifest field {key!r} must be a {typ.__name__}")
    fused = man.get("fused_activations", {})
    if not isinstance(fused, dict):
        raise ValueError(f"{path}: manifest field 'fused_activations' must be a dict")
    for fqn, f in fused.items():
        f = dict_field(f, f"{path}: fused activation {fqn!r}")
        if not fqn or f.get("activation") not in FUSABLE or not isinstance(f.get("into"), str):
            raise ValueError(f"{path}: fused activation {fqn!r} is malformed: {f}")
    declared = man["tensors"]
    if set(declared) != set(entries):
        extra, missing = sorted(set(entries) - set(declared)), sorted(set(declared) - set(entries))
        raise ValueError(f"{path}: manifest and file disagree on tensors (undeclared {extra[:5]}, absent {missing[:5]})")
    for name, d in declared.items():
        d = dict_field(d, f"{path}: manifest tensor {name!r}")
        if d.get("dtype") != entries[name]["dtype"] or d.get("shape") != list(entries[name]["shape"]):
            raise ValueError(f"{path}: tensor {name!r}: manifest says {d}, file holds {entries[name]}")
    for name in man["state"] + man["nonpersistent"]:
        if not isinstance(name, str) or name not in entries:
            raise ValueError(f"{path}: state entry {name!r} has no tensor in the file")
    for a, b in man["aliases"].items():
        if not isinstance(b, str) or b not in entries:
            raise ValueError(f"{path}: alias {a!r} points to {b!r}, which is not in the file")
    for fqn, m in man["modules"].items():
        m = dict_field(m, f"{path}: module {fqn!r}")
        fmt = save_formats().get(m.get("format"))
        if fmt is None:
            raise ValueError(f"{path}: module {fqn!r} has format {m.get('format')!r}, unknown to this slimnn "
                             f"(known: {sorted(save_formats())})")
        if m.get("version") != fmt.version and m.get("version") not in fmt.reads:
            raise ValueError(f"{path}: module {fqn!r}: {fmt.name} version {m.get('version')!r} is not supported "
                             f"(this slimnn reads {fmt.version})")
        meta = dict_field(m.get("meta"), f"{path}: module {fqn!r} metadata")
        try:
            spec = fmt.spec(meta)
        except ValueError as e:
            raise ValueError(f"{path}: module {fqn!r}: {e}") from None
        prefix = f"{fqn}." if fqn else ""
        for tname, (dt, shape) in spec.items():
            e = entries.get(prefix + tname)
            if e is None:
                raise ValueError(f"{path}: module {fqn!r} lacks tensor {tname!r}")
            if DTYPES[e["dtype"]] != dt or e["shape"] != tuple(shape):
                raise ValueError(f"{path}: module {fqn!r} tensor {tname!r} is {e['dtype']} {list(e['shape'])}, "
                                 f"expected {DTYPE_NAMES[dt]} {list(shape)}")


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
    """
    path = os.fspath(path)
    entries, man = read_header(path)
    from safetensors import safe_open

    try:
        handle = safe_open(path, framework="pt", device="cpu")
    except Exception as e:  # safetensors raises its own error type  # noqa: BLE001
        raise ValueError(f"{path}: cannot open as safetensors: {e}") from None

    def get(name: str) -> Tensor:
        try:
            t = handle.get_tensor(name)
        except Exception as e:  # noqa: BLE001
            raise ValueError(f"{path}: cannot read tensor {name!r}: {e}") from None
        e = entries[name]
        if t.dtype != DTYPES[e["dtype"]] or tuple(t.shape) != e["shape"]:
            raise ValueError(f"{path}: tensor {name!r} read back as {t.dtype} {tuple(t.shape)}")
        return t

    with handle:
        if model is None:
            arch = man.get("architecture")
            if arch is None:
                raise ValueError(
                    f"{path}: this model's architecture is not one slimnn rebuilds by itself; pass the float "
                    "architecture: slimnn.load(path, model=skeleton) (build the skeleton on the meta device)"
                )
            with torch.device("meta"):
                model = _build_architecture(arch)
        if not isinstance(model, nn.Module):
            raise TypeError(f"load: model must be an nn.Module or None, got {type(model).__name__}")

        prefixes = []
        for fqn, m in man["modules"].items():
            fmt = save_formats()[m["format"]]
            prefix = f"{fqn}." if fqn else ""
            prefixes.append(prefix)
            if not fqn:
                raise ValueError(f"{path}: the whole model is one compressed module; wrap it in a container")
            try:
                target = model.get_submodule(fqn)
            except AttributeError:
                raise ValueError(f"{path}: module {fqn!r} is in the file but not in the given model") from None
            meta = m["meta"]
            if not isinstance(target, (nn.Linear, fmt.cls, _Slot, *_FLOAT_TWINS)) and not hasattr(target, "in_features"):
                raise ValueError(f"{path}: module {fqn!r} is a {type(target).__name__} in the given model; the file "
                                 f"holds a compressed Linear there")
            for attr in ("in_features", "out_features"):
                if attr in meta and getattr(target, attr, meta[attr]) != meta[attr]:
                    raise ValueError(f"{path}: module {fqn!r}: file has {attr}={meta[attr]}, model has "
                                     f"{getattr(target, attr)}")
            spec = fmt.spec(meta)
            new = fmt.from_canonical({k: get(prefix + k) for k in spec}, meta)
            parent_name, _, child = fqn.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            setattr(parent, child, new)

        for fqn in man["modules"]:  # modules that share another's tensors (a tied embedding) take them now
            resolve = getattr(model.get_submodule(fqn), "resolve", None)
            if callable(resolve):
                resolve(model)

        for fqn, f in man.get("fused_activations", {}).items():
            parent_name, _, child = fqn.rpartition(".")
            try:
                old = model.get_submodule(fqn)
            except AttributeError:
                raise ValueError(f"{path}: fused activation {fqn!r} is in the file but not in the given model") from None
            if not isinstance(old, (FusedActivation, nn.Identity)) and old is not None:
                if activation_of(old) != f["activation"]:
                    raise ValueError(f"{path}: {fqn!r} is a {type(old).__name__} in the given model; the file fused "
                                     f"a {f['activation']} there")
            parent = model.get_submodule(parent_name) if parent_name else model
            setattr(parent, child, FusedActivation(f["activation"], f["into"]))

        sd_names = set(model.state_dict(keep_vars=True).keys())
        expected = {n for n in sd_names if not any(n.startswith(p) for p in prefixes)}
        have = set(man["state"]) | set(man["aliases"])
        have -= set(man["nonpersistent"])
        if strict:
            missing, unexpected = sorted(expected - have), sorted(have - expected)
            if missing or unexpected:
                raise ValueError(f"{path}: file and model disagree: missing from file {missing[:8]}, "
                                 f"not in model {unexpected[:8]}")
        cache: dict[str, Tensor] = {}

        def value(name: str) -> Tensor:
            src = man["aliases"].get(name, name)
            if src not in cache:
                cache[src] = get(src)
            return cache[src]

        sd = {n: value(n) for n in (have & expected)}
        current = model.state_dict(keep_vars=True)
        for n, t in sd.items():
            cur = current[n]
            if cur is not None and tuple(cur.shape) != tuple(t.shape):
                raise ValueError(f"{path}: {n}: file holds shape {tuple(t.shape)}, model expects {tuple(cur.shape)}")
        model.load_state_dict(sd, strict=False, assign=True)
        for alias, src in man["aliases"].items():  # re-tie: one tensor object, as when saved
            if alias in sd and src in sd:
                _retie(model, alias, src)
        for name in man["nonpersistent"]:
            modname, _, bname = name.rpartition(".")
            try:
                owner = model.get_submodule(modname) if modname else model
            except AttributeError:
                continue
            if bname in owner._buffers:
                old = owner._buffers[bname]
                t = get(name)
                if old is not None and tuple(old.shape) != tuple(t.shape):
                    raise ValueError(f"{path}: buffer {name}: shape {tuple(t.shape)} vs model {tuple(old.shape)}")
                owner._buffers[bname] = t
    slots = [n for n, m in model.named_modules() if isinstance(m, _Slot)]
    if slots:
        raise ValueError(f"{path}: the architecture has compressed modules the file does not hold: {slots[:8]}")
    left = [n for n, t in list(model.named_parameters()) + list(model.named_buffers()) if t is not None and t.is_meta]
    if left:
        raise ValueError(f"{path}: these tensors of the model were not in the file and are still on the meta "
                         f"device: {left[:8]}")
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
