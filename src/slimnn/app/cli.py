"""The ``slimnn`` command: ``info``, ``bench``, ``compress``, ``demo`` (also ``python -m slimnn``).

Nothing heavy is imported at module level (no torch, no demo): ``slimnn --help`` and argument errors answer
at once; each command imports what it needs when it runs. User errors (a file that is not a model, a format
that cannot be saved, a missing extra) end in one line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any, Optional

from . import demo_options


class UserError(Exception):
    """A problem with what the user asked for: printed as one line, exit status 2."""


# ----------------------------------------------------------------------------------------------------
# info
# ----------------------------------------------------------------------------------------------------


def cmd_info(args: argparse.Namespace) -> int:
    import slimnn
    from ..recipes.report import isa_words

    info = slimnn.cpu_info()
    if args.json:
        info["kernels"] = slimnn.kernels()
        print(json.dumps(info, indent=1, default=str))
        return 0
    print(f"slimnn {slimnn.__version__}, torch {info['torch_version']}")
    print(f"CPU:        {info['brand']} ({info['vendor']}, {info['machine']})")
    print(f"ISA:        detected {' '.join(info['isa_detected'])}")
    print(f"            built    {' '.join(info['isa_built'])}")
    print(f"            in use   {' '.join(info['isa_available'])} (best: {info['isa_best']})")
    print(f"            i.e.     {isa_words(info)}")
    print(f"AMX:        {info['amx_permission']}")
    print(f"threads:    slimnn {info['threads']}, torch {info['torch_threads']}, cores {os.cpu_count()}")
    print("kernel each op takes now (M=1 / M=16 rows):")
    for op, by_m in info["ops"].items():
        print(f"  {op:22} {by_m[1]} / {by_m[16]}")
    print("kernels in this build (best first per kind):")
    for k in slimnn.kernels():
        mark = "" if k.get("available", True) else "  (not on this CPU)"
        print(f"  {k['name']}{mark}")
    return 0


# ----------------------------------------------------------------------------------------------------
# bench
# ----------------------------------------------------------------------------------------------------


def _bench_rows(shapes: list[tuple[int, int]], ms: list[int], threads: int, reps: int) -> list[dict]:
    import warnings

    import torch
    from torch import nn

    import slimnn
    from ..recipes.pipeline import measure_latency

    rows = []
    torch.manual_seed(0)
    for k, n in shapes:
        lin = nn.Linear(k, n).eval()
        peers: list[tuple[str, nn.Module]] = [("torch fp32", lin)]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            best_engine = None
            for engine in torch.backends.quantized.supported_engines:
                if engine in ("none", "qnnpack"):
                    continue
                torch.backends.quantized.engine = engine
                best_engine = best_engine or engine
                peers.append((f"torch int8 ({engine})",
                              torch.ao.quantization.quantize_dynamic(nn.Sequential(lin), {nn.Linear}, torch.qint8)))
        ours = []
        for mode in ("dynamic", "weight_only"):
            ours.append((f"slimnn int8 {mode}", slimnn.nn.Int8Linear.from_linear(lin, slimnn.Int8Config(mode=mode))))
        for m in ms:
            x = torch.randn(m, k)
            mods = peers + ours
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                engine_of = {name: name[name.find("(") + 1: -1] for name, _ in peers if "(" in name}

                def fwd(mod: nn.Module, inp: Any, _names: dict = {id(mm): nm for nm, mm in mods}) -> Any:
                    nm = _names[id(mod)]
                    if nm in engine_of:
                        torch.backends.quantized.engine = engine_of[nm]
                    return mod(inp)

                times = measure_latency([mm for _, mm in mods], x, threads, reps, forward_fn=fwd)
                with torch.inference_mode():
                    ref = lin(x)
                    for _name, mod in ours:
                        err = (mod(x) - ref).norm() / ref.norm().clamp_min(1e-30)
                        if not float(err) < 0.05:
                            raise RuntimeError(f"{_name} output is off by {float(err):.3g} relative error")
            t_fp = times[0]
            t_peer = min(times[1:len(peers)]) if len(peers) > 1 else float("nan")
            for (name, mod), t in zip(mods, times):
                rows.append({
                    "K": k, "N": n, "M": m, "threads": threads, "impl": name, "us": 1e6 * t,
                    "GFLOP/s": 2 * m * k * n / t / 1e9, "vs fp32": t_fp / t,
                    "vs best torch int8": (t_peer / t) if name.startswith("slimnn") else None,
                    "kernel": getattr(mod, "last_kernel", None) or "",
                })
    return rows


def _int_list(text: str, what: str, sep: str = ",") -> list[int]:
    try:
        vals = [int(v) for v in text.split(sep)]
    except ValueError:
        raise UserError(f"{what}: expected integers separated by {sep!r}, got {text!r}") from None
    if not vals or min(vals) < 1:
        raise UserError(f"{what}: every value must be a positive integer, got {text!r}")
    return vals


def cmd_bench(args: argparse.Namespace) -> int:
    shapes = []
    for s in args.shapes.split(","):
        kn = _int_list(s, f"--shapes entry {s!r} (K x N, e.g. 768x3072)", sep="x")
        if len(kn) != 2:
            raise UserError(f"--shapes entry {s!r}: expected K x N, e.g. 768x3072")
        shapes.append((kn[0], kn[1]))
    ms = _int_list(args.m, "--m")
    if args.reps < 1:
        raise UserError(f"--reps must be at least 1, got {args.reps}")
    import torch

    threads = args.threads or torch.get_num_threads()
    rows = _bench_rows(shapes, ms, threads, args.reps)
    print(f"interleaved medians of {args.reps} rounds, {threads} thread(s); K x N = in x out features")
    print(f"{'K':>5} {'N':>5} {'M':>4} {'impl':26} {'us':>9} {'GFLOP/s':>8} {'vs fp32':>8} {'vs torch int8':>13}  kernel")
    for r in rows:
        vp = "" if r["vs best torch int8"] is None else f"{r['vs best torch int8']:.2f}x"
        print(f"{r['K']:5} {r['N']:5} {r['M']:4} {r['impl']:26} {r['us']:9.1f} {r['GFLOP/s']:8.1f} "
              f"{r['vs fp32']:7.2f}x {vp:>13}  {r['kernel']}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


# ----------------------------------------------------------------------------------------------------
# compress: inputs
# ----------------------------------------------------------------------------------------------------

HOW_TO_MAKE_AN_INPUT = """\
What IN can be (slimnn never unpickles a file: loading a pickle can run code):
  - a slimnn file, written in Python by  slimnn.save(model, "model.safetensors")
    (models made of torch.nn blocks rebuild themselves from it; others need --config or --arch);
  - a transformers or sentence-transformers model folder (config.json + model.safetensors, as
    save_pretrained() writes it);
  - a plain safetensors state dict, written by
        from safetensors.torch import save_file; save_file(model.state_dict(), "model.safetensors")
    together with the architecture: --config (a transformers config.json, or the folder holding it) or
    --arch MODULE:FUNCTION (your Python function that returns the float model, e.g. mymodels:build).
A torch.save file (.pt, .pth, .bin, .ckpt) is a pickle: load it in your own code, in an environment you
trust, then write one of the above."""


def sniff(path: str) -> tuple[str, str]:
    """What a file is, by its first bytes, never by unpickling: (kind, detail) with kind one of
    ``slimnn``, ``safetensors``, ``torch-zip``, ``pickle``, ``gguf``, ``empty``, ``unknown``."""
    with open(path, "rb") as f:
        head = f.read(8)
        if not head:
            return "empty", "the file is empty"
        if head[:4] == b"PK\x03\x04":
            return "torch-zip", "a zip archive, as torch.save writes it (the model inside is a pickle)"
        if head[0] == 0x80 and len(head) > 1 and 2 <= head[1] <= 5:
            return "pickle", f"a Python pickle (protocol {head[1]}), as older torch.save or pickle.dump writes it"
        if head[:4] == b"GGUF":
            return "gguf", "a GGUF file (llama.cpp)"
        if len(head) < 8:
            return "unknown", f"{len(head)} bytes, too short for any model file"
        n = int.from_bytes(head, "little")
        size = os.fstat(f.fileno()).st_size
        if n < 2 or n > min(size - 8, 100 * 2**20):
            return "unknown", "not a safetensors file (its first 8 bytes are no plausible header length)"
        raw = f.read(n)
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return "unknown", "not a safetensors file (its header is not JSON)"
    if not isinstance(header, dict):
        return "unknown", "not a safetensors file (its header is not a JSON object)"
    meta = header.get("__metadata__") or {}
    if isinstance(meta, dict) and "slimnn.manifest" in meta:
        return "slimnn", "a slimnn file"
    return "safetensors", f"a plain safetensors file ({len([k for k in header if k != '__metadata__'])} tensors)"


def _quiet_hf() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()
    except ImportError:
        pass


def _need(module: str, extra: str, what: str) -> None:
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise UserError(f"{what} needs the {module} package: pip install {extra}")


def _safetensors_weights(folder: str) -> None:
    names = set(os.listdir(folder))
    if "model.safetensors" in names or "model.safetensors.index.json" in names:
        return
    pickles = sorted(n for n in names if n.endswith((".bin", ".pt", ".pth", ".ckpt")))
    if pickles:
        raise UserError(f"{folder}: its weights are {', '.join(pickles)}: pickles, which slimnn never loads. "
                        "Convert them once, in an environment you trust: model = AutoModel.from_pretrained(folder); "
                        "model.save_pretrained(folder, safe_serialization=True)")
    raise UserError(f"{folder}: no model.safetensors in this folder")


def _transformers_model(config_path: str, state: Optional[dict] = None, folder: Optional[str] = None) -> Any:
    """A transformers model: from a folder (``from_pretrained``, safetensors weights only), or built from a
    config (the class its ``architectures`` names, else AutoModel) and filled from ``state`` if given."""
    _need("transformers", "transformers", "a transformers model")
    _quiet_hf()
    import transformers
    from transformers import AutoConfig, AutoModel

    try:
        cfg = AutoConfig.from_pretrained(config_path)
    except (OSError, ValueError) as e:
        raise UserError(f"{config_path}: not a transformers config: {str(e).splitlines()[0]}") from None
    arch = (getattr(cfg, "architectures", None) or [None])[0]
    cls = getattr(transformers, arch, None) if arch else None
    if folder is not None:
        return (cls or AutoModel).from_pretrained(folder, use_safetensors=True).eval()
    model = cls(cfg) if cls is not None else AutoModel.from_config(cfg)
    return model.eval() if state is None else _fill(model, state, f"the {type(model).__name__} of {config_path}")


def _fill(model: Any, state: dict, what: str) -> Any:
    own = model.state_dict()
    # Buffers the model keeps out of its state dict (e.g. transformers' position_ids, persistent in older
    # versions, so present in older files) are not an error.
    transient = {k for k, _ in model.named_buffers()} - set(own)
    state = {k: v for k, v in state.items() if k not in transient}
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        raise UserError(f"the state dict does not fit {what}: {len(missing)} missing "
                        f"(e.g. {missing[:3]}), {len(unexpected)} unexpected (e.g. {unexpected[:3]})")
    bad = [k for k in own if tuple(own[k].shape) != tuple(state[k].shape)]
    if bad:
        k = bad[0]
        raise UserError(f"the state dict does not fit {what}: {k} is {tuple(state[k].shape)} in the file, "
                        f"{tuple(own[k].shape)} in the model ({len(bad)} such tensors)")
    model.load_state_dict(state, strict=True)
    return model.eval()


def _arch_model(spec: str, state: Optional[dict] = None) -> Any:
    import importlib

    from torch import nn

    mod_name, sep, fn_name = spec.partition(":")
    if not sep or not mod_name or not fn_name:
        raise UserError(f"--arch {spec!r}: expected MODULE:FUNCTION, e.g. mymodels:build_mlp")
    sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(mod_name)
    except ImportError as e:
        raise UserError(f"--arch {spec!r}: cannot import {mod_name!r} ({e}); run from the folder that holds it "
                        "or put it on PYTHONPATH") from None
    finally:
        sys.path.pop(0)
    fn = getattr(module, fn_name, None)
    if not callable(fn):
        raise UserError(f"--arch {spec!r}: {mod_name} has no function {fn_name!r}")
    model = fn()
    if not isinstance(model, nn.Module):
        raise UserError(f"--arch {spec!r}: {fn_name}() returned a {type(model).__name__}, not a torch.nn.Module")
    return model.eval() if state is None else _fill(model, state, f"the model {spec} builds")


def load_input(args: argparse.Namespace) -> tuple[Any, str]:
    """The float (or already compressed) model named on the command line, and its kind."""
    path = args.input
    if not os.path.exists(path):
        raise UserError(f"{path}: no such file or folder")
    if os.path.isdir(path):
        if os.path.exists(os.path.join(path, "modules.json")):
            _need("sentence_transformers", "'slimnn[demo]'", "a sentence-transformers folder")
            _safetensors_weights(path)
            _quiet_hf()
            from sentence_transformers import SentenceTransformer

            return SentenceTransformer(path, device="cpu", model_kwargs={"use_safetensors": True}).eval(), \
                "sentence-transformers"
        if os.path.exists(os.path.join(path, "config.json")):
            _safetensors_weights(path)
            return _transformers_model(path, folder=path), "transformers"
        raise UserError(f"{path}: a folder without config.json or modules.json, so not a transformers or "
                        "sentence-transformers model; see `slimnn compress --help` for what IN can be")
    try:
        kind, detail = sniff(path)
    except OSError as e:
        raise UserError(f"{path}: cannot read: {e.strerror}") from None
    if kind in ("torch-zip", "pickle"):
        raise UserError(f"{path} is {detail}; slimnn never unpickles files (that can run code). Load it in your "
                        "own code, where you trust it, and write a safetensors file: slimnn.save(model, "
                        "'model.safetensors'), or save_file(model.state_dict(), 'model.safetensors') with --config "
                        "or --arch (see `slimnn compress --help`)")
    if kind != "slimnn" and kind != "safetensors":
        raise UserError(f"{path} is {detail}, not a model slimnn reads; see `slimnn compress --help`")
    import slimnn

    if kind == "slimnn":
        if not (args.config or args.arch):
            try:
                return slimnn.load(path), "slimnn"
            except ValueError as e:
                msg = str(e)
                hint = ("; name its architecture with --config or --arch" if "skeleton" in msg or "architecture" in msg
                        else "")
                raise UserError(f"cannot load {msg}{hint}") from None
        skeleton = _transformers_model(args.config) if args.config else _arch_model(args.arch)
        try:
            return slimnn.load(path, skeleton), ("transformers" if args.config else "torch")
        except ValueError as e:
            raise UserError(f"cannot load {e}") from None
    if not (args.config or args.arch):
        raise UserError(f"{path} is {detail} without slimnn's manifest, so it does not say which model it is: "
                        "name the architecture with --config CONFIG (a transformers config.json or its folder) or "
                        "--arch MODULE:FUNCTION (your function that builds the float model)")
    from safetensors.torch import load_file

    try:
        state = load_file(path)
    except Exception as e:  # safetensors raises its own error type  # noqa: BLE001
        raise UserError(f"{path}: cannot read as safetensors: {e}") from None
    if args.config:
        return _transformers_model(args.config, state=state), "transformers"
    return _arch_model(args.arch, state), "torch"


# ----------------------------------------------------------------------------------------------------
# compress: formats
# ----------------------------------------------------------------------------------------------------

def formats() -> dict[str, Any]:
    """CLI ``--format`` words -> techniques: every registered technique with a CLI name (imports torch)."""
    from ..techniques import techniques

    return {name: t for name, t in techniques().items() if t.cli_config is not None}


# CLI options -> the config field each sets, where the technique's config has that field. The technique's
# own cli_config builds the config; these options then adjust it (dataclasses.replace re-validates).
OPTION_FIELDS = {"mode": "mode", "group_size": "group_size", "sparsity": "sparsity", "rank_ratio": "rank_ratio",
                 "values": "values"}


def build_config(name: str, args: argparse.Namespace) -> Any:
    import dataclasses

    cfg = formats()[name].cli_config(args)
    fields = {f.name for f in dataclasses.fields(cfg)} if dataclasses.is_dataclass(cfg) else set()
    changes = {fld: getattr(args, opt) for opt, fld in OPTION_FIELDS.items()
               if getattr(args, opt, None) is not None and fld in fields}
    if "backend" in fields and getattr(cfg, "backend", None) == "auto":
        # "auto" times the sparse and the dense kernel per layer and may keep a dense copy where dense is
        # faster: the file would then be as large as the input. The CLI writes what --format names.
        changes["backend"] = "sparse"
    if changes.get("values") == "int8" and "int8_mode" in fields:
        changes["int8_mode"] = args.mode or "dynamic"  # int8 values + dynamic activations: the bitmap format
        changes.pop("mode", None)
    unused = [f"--{opt.replace('_', '-')}" for opt, fld in OPTION_FIELDS.items()
              if getattr(args, opt, None) is not None and fld not in fields]
    if unused:
        raise UserError(f"--format {name} takes no {', '.join(unused)}")
    return dataclasses.replace(cfg, **changes) if changes else cfg


def _config_json(cfg: Any) -> Any:
    if isinstance(cfg, list):
        return [_config_json(c) for c in cfg]
    return json.loads(cfg.to_json()) if hasattr(cfg, "to_json") else str(cfg)


def _float_weight(m: Any) -> Any:
    """A copy of the float weight of a layer slimnn compresses (Linear layout for GPT-2's Conv1D), else None."""
    from torch import nn

    from ..nn.base import is_hf_conv1d

    if type(m) in (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Embedding):
        return m.weight.detach().clone()
    if is_hf_conv1d(m):
        return m.weight.detach().t().clone()
    return None


def cmd_compress(args: argparse.Namespace) -> int:
    if os.path.isdir(args.output):
        raise UserError(f"{args.output}: is a folder; OUT is the file to write")
    out_dir = os.path.dirname(os.path.abspath(args.output))
    if not os.path.isdir(out_dir):
        raise UserError(f"{args.output}: the folder {out_dir} does not exist")
    import re

    try:
        excl = re.compile(args.exclude) if args.exclude else None
    except re.error as e:
        raise UserError(f"--exclude {args.exclude!r} is not a regular expression: {e}") from None
    offered = formats()
    if args.format not in offered:
        raise UserError(f"unknown format {args.format!r}; this slimnn offers {', '.join(offered)}")
    cfg = build_config(args.format, args)
    from ..techniques import save_format_for

    unsaved = [c.__name__ for c in offered[args.format].modules if save_format_for(c) is None]
    if unsaved:  # say so before the work, not after it
        raise UserError(f"--format {args.format}: the compressed model cannot be saved by this slimnn: no save "
                        f"format for {', '.join(unsaved)} yet, so OUT cannot be written (in Python, "
                        f"slimnn.compress_ still gives the model in memory); choose another --format")

    import torch
    from torch import nn

    import slimnn
    from ..recipes.pipeline import is_linear_like, layer_bytes, layer_format, layer_kernel, linear_bytes, model_bytes
    from ..recipes.report import LayerRow, Report, StepResult

    model, kind = load_input(args)
    target = model
    if kind == "sentence-transformers":  # the transformer inside (its Linear layers), saved on its own
        target = getattr(model[0], "model", None) or getattr(model[0], "auto_model", None) or model
    lb0, b0 = linear_bytes(target), model_bytes(target)
    in_size = os.path.getsize(args.input) if os.path.isfile(args.input) else None
    ref_w = {n: w for n, m in target.named_modules() if (w := _float_weight(m)) is not None}
    if not ref_w:
        raise UserError(f"{args.input}: the model has no layer slimnn compresses (torch.nn.Linear, Conv1d, Conv2d, "
                        f"Embedding, transformers' Conv1D)")
    t0 = time.perf_counter()
    from torch import nn

    def keep(m: Any, n: str) -> bool:  # --exclude alone must not opt the embeddings in (any filter_fn would)
        return not (excl and excl.search(n)) and (args.embeddings or not isinstance(m, nn.Embedding))

    rep = slimnn.compress_(target, cfg, filter_fn=keep)
    secs = time.perf_counter() - t0
    try:
        slimnn.save(target, args.output, metadata={"source": os.path.basename(args.input.rstrip("/")),
                                                   "source_kind": kind, "config": _config_json(cfg)})
    except ValueError as e:
        raise UserError(f"--format {args.format}: the compressed model cannot be saved by this slimnn: {e}") from None
    rows = []
    for n, m in target.named_modules():
        if not n or not (is_linear_like(m) or n in rep.converted or n in rep.skipped):
            continue
        note = ""
        w0 = ref_w.get(n)
        if w0 is not None and hasattr(m, "dequantized_weight") and n not in rep.prepared:
            wq = m.dequantized_weight()
            if wq.shape == w0.shape:
                err = (wq - w0).norm() / w0.norm().clamp_min(1e-30)
                note = f"weight SQNR {-20 * torch.log10(err.clamp_min(1e-12)).item():.1f} dB"
        elif n in rep.skipped:
            note = rep.skipped[n]
            if note == "rejected by filter_fn":  # keep()'s two reasons, in the CLI's words
                note = ("excluded by --exclude" if excl and excl.search(n) else
                        "embedding: kept in float (--embeddings compresses it; a tied head then shares its table)")
        if n in rep.prepared:  # e.g. a BatchNorm folded in: the float weight it is compared with changed
            note = rep.prepared[n]
        rows.append(LayerRow(n, layer_format(m), layer_kernel(m), layer_bytes(m), note=note))
    lb, b = linear_bytes(target), model_bytes(target)
    nan = float("nan")
    report = Report(metric_name="", objective="size", machine=slimnn.cpu_info(), threads=slimnn.get_num_threads())
    report.steps = [
        StepResult("input", nan, nan, b0, linear_bytes=lb0),
        StepResult(args.format, nan, nan, b, size_ratio=b0 / b, linear_bytes=lb,
                   linear_ratio=lb0 / max(lb, 1), layers=rows, seconds=secs),
    ]
    report.chosen = args.format
    out_size = os.path.getsize(args.output)
    report.notes.append(f"{len(rep.converted)} layers converted, {len(rep.skipped)} skipped; wrote {args.output} "
                        f"({out_size / 2**20:.2f} MB" + (f", {in_size / out_size:.2f}x smaller than the input file)"
                                                       if in_size else ")"))
    dense = [r.name for r in rows if r.format.startswith(("float", "sparse")) and "dense" in r.format]
    if in_size and out_size >= 0.95 * in_size:
        report.notes.append(f"WARNING: the output is not smaller than the input ({in_size / out_size:.2f}x)"
                            + (f"; layers kept dense: {', '.join(dense[:5])}" if dense else ""))
    if kind not in ("slimnn", "torch"):
        report.notes.append(f"load it with slimnn.load({args.output!r}, skeleton) where skeleton is the "
                            f"{type(target).__name__} (transformers) built from its config.json on the meta device "
                            "(README: 'Loading a compressed transformer')")
    elif kind == "torch":
        report.notes.append(f"load it with slimnn.load({args.output!r}, skeleton), skeleton = what --arch "
                            f"{args.arch} builds (on the meta device: with torch.device('meta'): ...)")
    print(report.steps_table())
    print()
    print(report.layers_table())
    for n in report.notes:
        print(f"- {n}")
    if args.report:
        paths = report.save(args.report, plot=False)
        print(f"report: {paths['markdown']}, {paths['json']}")
    return 0


# ----------------------------------------------------------------------------------------------------
# demo
# ----------------------------------------------------------------------------------------------------


def cmd_demo(args: argparse.Namespace) -> int:
    from . import demo

    return demo.main(args=args)


def cmd_llm(args: argparse.Namespace) -> int:
    from . import llm

    return llm.main(args)


# ----------------------------------------------------------------------------------------------------


def build_parser(format_help: Optional[dict[str, str]] = None) -> argparse.ArgumentParser:
    """The argument parser. ``format_help`` ({--format word: summary}, from the technique registry) gives
    ``compress`` its list of formats; without it (every command but ``compress``: the registry imports
    torch) ``--format`` is checked when ``compress`` runs."""
    raw = argparse.RawDescriptionHelpFormatter
    p = argparse.ArgumentParser(prog="slimnn", description="Compressed neural-network layers with fast CPU kernels.",
                                epilog="`slimnn COMMAND --help` for each command's options.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    pi = sub.add_parser("info", help="CPU, ISA paths, threads and kernels",
                        description="This CPU, the instruction sets slimnn detected, built and uses, the thread "
                                    "counts and the kernel each operation takes.")
    pi.add_argument("--json", action="store_true", help="print JSON")
    pi.set_defaults(fn=cmd_info)

    pb = sub.add_parser("bench", help="quick kernel table vs PyTorch on this machine (interleaved medians)",
                        description="Times slimnn's int8 Linear (dynamic and weight-only) against torch fp32 and "
                                    "torch's dynamic int8 (every quantized engine), one call of each per round, "
                                    "interleaved; prints medians, GFLOP/s and ratios. Each slimnn output is "
                                    "checked against fp32 first.")
    pb.add_argument("--shapes", default="384x1536,1536x384,768x3072", help="K x N list, e.g. 384x1536,768x3072")
    pb.add_argument("--m", default="1,16,128", help="rows of activations, e.g. 1,16,128")
    pb.add_argument("--threads", type=int, default=None, help="threads (default: torch's)")
    pb.add_argument("--reps", type=int, default=30,
                    help="timed rounds per shape; each round calls every implementation once (default 30)")
    pb.add_argument("--json", default=None, help="also write the rows to this JSON file")
    pb.set_defaults(fn=cmd_bench)

    if format_help:
        fmts = "\n".join(f"  {k:12} {v}" for k, v in format_help.items())
    else:
        fmts = "  (the technique registry lists them: slimnn compress --help)"
    pc = sub.add_parser("compress", help="compress a model file; write a slimnn file and a report",
                        formatter_class=raw,
                        description="Replaces every torch.nn.Linear of the model in IN by a compressed one and "
                                    "writes OUT (a slimnn file:\nsafetensors + manifest; slimnn.load reads it).\n\n"
                                    f"{HOW_TO_MAKE_AN_INPUT}\n\nFormats (--format):\n{fmts}",
                        epilog="example:\n  python -c \"import torch, slimnn; slimnn.save(torch.nn.Sequential("
                               "torch.nn.Linear(256, 1024), torch.nn.ReLU(), torch.nn.Linear(1024, 256)), "
                               "'mlp.safetensors')\"\n  slimnn compress mlp.safetensors mlp-int8.safetensors "
                               "--report mlp-report")
    pc.add_argument("input", metavar="IN", help="the model: a slimnn file, a safetensors state dict (with --config "
                    "or --arch), or a transformers / sentence-transformers folder")
    pc.add_argument("output", metavar="OUT", help="the compressed model to write (.safetensors with a slimnn manifest)")
    pc.add_argument("--format", default="int8", choices=list(format_help) if format_help else None,
                    help="the compressed format (default int8; the list above)")
    pc.add_argument("--config", default=None, help="for a plain safetensors state dict of a transformers model: its "
                    "config.json, or the folder holding it")
    pc.add_argument("--arch", default=None, metavar="MODULE:FUNCTION", help="for a plain safetensors state dict: "
                    "a Python function (in MODULE, importable from here) that returns the float model")
    pc.add_argument("--mode", default=None, choices=["dynamic", "weight_only"],
                    help="int8 / int4: dynamic (default; activations quantized per row) or weight_only")
    pc.add_argument("--group-size", type=int, default=None, help="int8: group size (default per channel); "
                    "int4: group size (default 64)")
    pc.add_argument("--sparsity", type=float, default=None, help="sparse: fraction of weights removed "
                    "(default 0.5)")
    pc.add_argument("--values", default=None, choices=["fp32", "int8"], help="sparse: the kept values in float "
                    "(csr storage, default) or int8 (the bitmap sparse + int8 format, dynamic int8 activations)")
    pc.add_argument("--rank-ratio", type=float, default=None, help="lowrank: fraction of parameters kept "
                    "(default 0.5)")
    pc.add_argument("--exclude", default=None, help="regex of layer names to keep in float")
    pc.add_argument("--embeddings", action="store_true", help="int8 / int4: also compress nn.Embedding tables "
                    "(kept in float by default: quantizing a lookup table changes every token's input)")
    pc.add_argument("--report", default=None, help="directory for report.md / report.json")
    pc.set_defaults(fn=cmd_compress)

    pd = sub.add_parser("demo", help="compress all-MiniLM-L6-v2 and report size, latency and fidelity",
                        description=demo_options.DESCRIPTION, formatter_class=raw)
    demo_options.add_arguments(pd)
    pd.set_defaults(fn=cmd_demo)

    from . import llm  # stdlib only at import: --help stays fast

    pl = sub.add_parser("llm", help="SmolLM2-135M: size, prefill/decode tok/s, perplexity, float vs compressed",
                        description=llm.__doc__, formatter_class=raw)
    llm.add_arguments(pl)
    pl.set_defaults(fn=cmd_llm)
    return p


def _one_line(e: BaseException) -> str:
    text = str(e).strip() or type(e).__name__
    return " ".join(text.split())


def main(argv: Optional[list[str]] = None) -> int:
    """Runs one command. A user error ends in one line on stderr and exit status 2; an unexpected error in
    one line and status 1 (SLIMNN_TRACEBACK=1 shows the traceback)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    fmt_help = None
    if argv[:1] == ["compress"]:  # only compress needs the registry (and so torch) to parse its arguments
        try:
            fmt_help = {name: t.summary for name, t in formats().items()}
        except Exception as e:  # noqa: BLE001
            print(f"slimnn compress: cannot list the formats: {_one_line(e)}", file=sys.stderr)
            return 1
    args = build_parser(fmt_help).parse_args(argv)
    where = f"slimnn {args.command}"
    try:
        return int(args.fn(args) or 0)
    except BrokenPipeError:  # `slimnn info | head`
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print(f"{where}: interrupted", file=sys.stderr)
        return 130
    except SystemExit:
        raise
    except (UserError, ValueError, OSError) as e:
        if os.environ.get("SLIMNN_TRACEBACK"):
            raise
        print(f"{where}: {_one_line(e)}", file=sys.stderr)
        return 2
    except ImportError as e:
        if os.environ.get("SLIMNN_TRACEBACK"):
            raise
        name = getattr(e, "name", None) or "a package"
        extra = "'slimnn[demo]'" if args.command == "demo" else "'slimnn[report]'" if name == "matplotlib" else name
        print(f"{where}: {name} is not installed: pip install {extra} ({_one_line(e)})", file=sys.stderr)
        return 2
    except Exception as e:  # noqa: BLE001  a bug of ours: still one line, with a way to see more
        if os.environ.get("SLIMNN_TRACEBACK"):
            raise
        print(f"{where}: internal error: {type(e).__name__}: {_one_line(e)} (SLIMNN_TRACEBACK=1 shows where; "
              "please report it)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
