"""The ``slimnn`` command: ``info``, ``bench``, ``compress``, ``demo`` (also ``python -m slimnn``)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any, Callable, Optional

import torch
from torch import nn

# ----------------------------------------------------------------------------------------------------
# info
# ----------------------------------------------------------------------------------------------------


def cmd_info(args: argparse.Namespace) -> int:
    import slimnn

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


def cmd_bench(args: argparse.Namespace) -> int:
    shapes = [tuple(int(v) for v in s.split("x")) for s in args.shapes.split(",")]
    ms = [int(v) for v in args.m.split(",")]
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
# compress
# ----------------------------------------------------------------------------------------------------

def _config_builders() -> dict[str, Callable[[argparse.Namespace], Any]]:
    """CLI format names -> config builders: every registered technique that has a CLI name."""
    from ..techniques import techniques

    return {name: t.cli_config for name, t in techniques().items() if t.cli_config is not None}


def _load_input(path: str) -> tuple[nn.Module, str]:
    """A model from a slimnn file (rebuildable architecture) or a sentence-transformers / HF folder."""
    import slimnn

    if os.path.isdir(path):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        try:
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()
        except ImportError:
            pass
        if os.path.exists(os.path.join(path, "modules.json")):
            from sentence_transformers import SentenceTransformer

            return SentenceTransformer(path, device="cpu").eval(), "sentence-transformers"
        if os.path.exists(os.path.join(path, "config.json")):
            from transformers import AutoModel

            return AutoModel.from_pretrained(path).eval(), "transformers"
        raise SystemExit(f"{path}: a folder without config.json or modules.json; not a model slimnn can read")
    try:
        return slimnn.load(path), "slimnn"
    except ValueError as e:
        raise SystemExit(f"cannot load {path}: {e}") from None


def cmd_compress(args: argparse.Namespace) -> int:
    import re

    import slimnn
    from ..recipes.pipeline import is_linear_like, layer_bytes, layer_format, layer_kernel, linear_bytes, model_bytes
    from ..recipes.report import LayerRow, Report, StepResult

    builders = _config_builders()
    if args.format not in builders:
        raise SystemExit(f"unknown format {args.format!r}; this slimnn offers {sorted(builders)}")
    model, kind = _load_input(args.input)
    target = model[0].model if kind == "sentence-transformers" and hasattr(model[0], "model") else model
    lb0, b0 = linear_bytes(target), model_bytes(target)
    ref_w = {n: m.weight.detach().clone() for n, m in target.named_modules() if type(m) is nn.Linear}
    cfg = builders[args.format](args)
    excl = re.compile(args.exclude) if args.exclude else None
    t0 = time.perf_counter()
    rep = slimnn.compress_(target, cfg, filter_fn=(lambda m, n: not excl.search(n)) if excl else None)
    secs = time.perf_counter() - t0
    slimnn.save(target, args.output, metadata={"source": os.path.basename(args.input.rstrip("/")), "source_kind": kind,
                                               "config": json.loads(cfg.to_json()) if hasattr(cfg, "to_json") else str(cfg)})
    rows = []
    for n, m in target.named_modules():
        if not n or not is_linear_like(m):
            continue
        note = ""
        if n in ref_w and hasattr(m, "dequantized_weight"):
            w0 = ref_w[n]
            err = (m.dequantized_weight() - w0).norm() / w0.norm().clamp_min(1e-30)
            note = f"weight SQNR {-20 * torch.log10(err.clamp_min(1e-12)).item():.1f} dB"
        elif n in rep.skipped:
            note = rep.skipped[n]
        rows.append(LayerRow(n, layer_format(m), layer_kernel(m), layer_bytes(m), note=note))
    lb, b = linear_bytes(target), model_bytes(target)
    report = Report(metric_name="-", objective="size", machine=slimnn.cpu_info(), threads=slimnn.get_num_threads())
    report.steps = [
        StepResult("input", float("nan"), float("nan"), b0, linear_bytes=lb0),
        StepResult(args.format, float("nan"), float("nan"), b, size_ratio=b0 / b, linear_bytes=lb,
                   linear_ratio=lb0 / max(lb, 1), layers=rows, seconds=secs),
    ]
    report.chosen = args.format
    report.notes.append(f"{len(rep.converted)} layers converted, {len(rep.skipped)} skipped; file {args.output} "
                        f"({os.path.getsize(args.output) / 2**20:.2f} MB)")
    if kind != "slimnn":
        report.notes.append(f"load it with slimnn.load({args.output!r}, model=skeleton) where skeleton is the {kind} "
                            "transformer built on the meta device (see docs/pipeline.md)")
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
    from slimnn import demo

    return demo.main(args=args)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="slimnn", description="Compressed neural-network layers with fast CPU kernels.")
    sub = p.add_subparsers(dest="command", required=True)

    pi = sub.add_parser("info", help="CPU, ISA paths, threads and kernels")
    pi.add_argument("--json", action="store_true", help="print JSON")
    pi.set_defaults(fn=cmd_info)

    pb = sub.add_parser("bench", help="quick kernel table vs PyTorch on this machine (interleaved medians)")
    pb.add_argument("--shapes", default="384x1536,1536x384,768x3072", help="K x N list, e.g. 384x1536,768x3072")
    pb.add_argument("--m", default="1,16,128", help="rows of activations, e.g. 1,16,128")
    pb.add_argument("--threads", type=int, default=None, help="threads (default: torch's)")
    pb.add_argument("--reps", type=int, default=30)
    pb.add_argument("--json", default=None, help="also write the rows to this JSON file")
    pb.set_defaults(fn=cmd_bench)

    pc = sub.add_parser("compress", help="compress a model file; write a slimnn file and a report")
    pc.add_argument("input", help="a slimnn .safetensors file, or a sentence-transformers / transformers folder")
    pc.add_argument("output", help="the compressed model (.safetensors with a slimnn manifest)")
    pc.add_argument("--format", default="int8", help="int8 (and int4, sparse, lowrank when available)")
    pc.add_argument("--mode", default=None, help="int8: dynamic (default) or weight_only")
    pc.add_argument("--group-size", type=int, default=None, help="int8: group size (default per channel)")
    pc.add_argument("--exclude", default=None, help="regex of layer names to keep in float")
    pc.add_argument("--report", default=None, help="directory for report.md / report.json")
    pc.set_defaults(fn=cmd_compress)

    from slimnn import demo

    pd = sub.add_parser("demo", help="compress all-MiniLM-L6-v2 and report size, latency and fidelity")
    demo.build_parser(pd)
    pd.set_defaults(fn=cmd_demo)
    return p


def main(argv: Optional[list[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.fn(args) or 0)
    except BrokenPipeError:  # `slimnn info | head`
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
