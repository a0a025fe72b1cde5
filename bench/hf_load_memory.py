"""Peak memory of loading a transformers model into slimnn int8, three ways, each in a fresh process:

    PYTHONPATH=src python bench/hf_load_memory.py [--hidden 1024 --layers 8]

1. float ``from_pretrained``, then ``slimnn.compress_`` (the float model is whole in memory first);
2. ``from_pretrained(path, quantization_config=slimnn.SlimnnConfig(slimnn.Int8Config()))``: compressed layer
   by layer while the checkpoint is read;
3. ``from_pretrained`` of the compressed checkpoint that (2) wrote with ``save_pretrained``.

The model is a random Llama-architecture config (no download), saved once as float32 safetensors.
Reported: the peak anonymous resident memory (``RssAnon`` of /proc/self/status, sampled every 2 ms while
the model loads; the checkpoint's mmapped pages are file-backed and not counted) above the same process's
value after ``import torch, transformers, slimnn``, and the float checkpoint's size.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

CHILD = r"""
import json, os, sys, threading, time
os.environ["HF_HUB_OFFLINE"] = "1"
import torch, transformers, slimnn
from transformers import AutoModelForCausalLM
transformers.utils.logging.disable_progress_bar()
def anon():  # anonymous resident memory in MiB (the checkpoint's mmapped pages are file-backed, not counted)
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) / 1024
peak, stop = [0.0], [False]
def sample():
    while not stop[0]:
        peak[0] = max(peak[0], anon())
        time.sleep(0.002)
base = anon()
t = threading.Thread(target=sample, daemon=True)
t.start()
mode, path, out = sys.argv[1], sys.argv[2], sys.argv[3]
if mode == "float_then_compress":
    m = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    slimnn.compress_(m, slimnn.Int8Config())
elif mode == "quantize_on_load":
    m = AutoModelForCausalLM.from_pretrained(path, quantization_config=slimnn.SlimnnConfig(slimnn.Int8Config()))
else:
    m = AutoModelForCausalLM.from_pretrained(path)
stop[0] = True
t.join()
if mode == "quantize_on_load":
    m.save_pretrained(out)
kinds = sorted({type(x).__name__ for x in m.modules() if type(x).__module__.startswith("slimnn")})
print(json.dumps({"mode": mode, "baseline_mib": base, "peak_mib": peak[0], "added_mib": peak[0] - base,
                  "final_mib": anon() - base, "modules": kinds}))
"""


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--hidden", type=int, default=1024)
    p.add_argument("--layers", type=int, default=8)
    a = p.parse_args()
    os.environ["HF_HUB_OFFLINE"] = "1"
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    d = tempfile.mkdtemp()
    src, out = os.path.join(d, "float"), os.path.join(d, "int8")
    cfg = LlamaConfig(vocab_size=8192, hidden_size=a.hidden, intermediate_size=a.hidden * 3, num_hidden_layers=a.layers,
                      num_attention_heads=a.hidden // 64, num_key_value_heads=a.hidden // 128,
                      tie_word_embeddings=False)
    torch.manual_seed(0)
    LlamaForCausalLM(cfg).save_pretrained(src)
    size = sum(os.path.getsize(os.path.join(src, f)) for f in os.listdir(src)) / 2**20
    print(f"random Llama: hidden {a.hidden}, {a.layers} layers, float32 checkpoint {size:.0f} MiB")
    env = dict(os.environ)
    for mode, path in (("float_then_compress", src), ("quantize_on_load", src), ("compressed_checkpoint", out)):
        r = subprocess.run([sys.executable, "-c", CHILD, mode, path, out], capture_output=True, text=True, env=env)
        if r.returncode != 0:
            print(mode, "failed:", r.stderr[-2000:])
            continue
        res = json.loads(r.stdout.strip().splitlines()[-1])
        print(f"  {mode:24s} peak {res['added_mib']:6.0f} MiB of anonymous memory over the imports, "
              f"{res['final_mib']:6.0f} MiB after loading (modules: {', '.join(res['modules'])})")


if __name__ == "__main__":
    main()
