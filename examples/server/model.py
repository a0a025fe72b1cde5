"""The served model: a token classifier (embedding -> transformer-style MLP blocks -> mean pool -> head),
and how it is built, compressed with slimnn int8, saved and loaded.

The weights are synthetic (drawn like a trained network's), since nothing is downloaded;
every nn.Linear -- the blocks and the head, about 99% of the compute -- is compressed.
"""

from __future__ import annotations

import json
import pathlib

import torch
from torch import nn

import slimnn
from slimnn.app.demo import MlpBlock


SIZES = {
    # name: (vocab, d, hidden, blocks, classes)
    "small": (1024, 128, 512, 2, 8),
    "full": (8192, 512, 2048, 4, 16),
}


class TokenClassifier(nn.Module):
    def __init__(self, vocab: int, d: int, hidden: int, blocks: int, classes: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, d)
        self.blocks = nn.Sequential(*[MlpBlock(d, hidden) for _ in range(blocks)])
        self.norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, classes)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens: (L,) int64 -> logits (classes,)."""
        x = self.blocks(self.embed(tokens))
        return self.head(self.norm(x).mean(0, keepdim=True))[0]


def make_float_model(size: str, seed: int = 0) -> TokenClassifier:
    g = torch.Generator().manual_seed(seed)
    model = TokenClassifier(*SIZES[size])
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Linear):
                k = m.in_features
                w = torch.randn(m.out_features, k, generator=g) / k**0.5
                w *= torch.exp(0.5 * torch.randn(m.out_features, 1, generator=g))  # channel scale spread
                m.weight.copy_(w)
                m.bias.copy_(0.02 * torch.randn(m.out_features, generator=g))
            elif isinstance(m, nn.Embedding):
                m.weight.copy_(torch.randn(m.weight.shape, generator=g))
    return model.eval()


def build(out_dir: str | pathlib.Path, size: str = "full", mode: str = "dynamic") -> pathlib.Path:
    """Writes float.slimnn.safetensors, int8.slimnn.safetensors and meta.json to out_dir: the offline
    compression step. slimnn.save's format: safetensors (no pickle), a sha256 per tensor, atomic writes."""
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = make_float_model(size)
    slimnn.save(model, out / "float.slimnn.safetensors")
    config = slimnn.Int8Config(mode=mode)
    report = slimnn.compress_(model, config)
    slimnn.save(model, out / "int8.slimnn.safetensors")
    (out / "meta.json").write_text(
        json.dumps({"size": size, "config": config.to_json(), "converted": len(report.converted)}, indent=1)
    )
    return out


def load(model_dir: str | pathlib.Path, variant: str) -> TokenClassifier:
    """Loads the float or int8 model from build()'s files. A model file is untrusted input: slimnn.load
    runs no code from it (safetensors, no pickle), checks every tensor's digest and every packed blob
    before any kernel reads it, and raises slimnn.LoadError (a ValueError) on anything wrong. The
    skeleton is built on the meta device, so no float copy of the weights is allocated first."""
    if variant not in ("int8", "float"):
        raise ValueError(f"variant must be 'int8' or 'float', got {variant!r}")
    d = pathlib.Path(model_dir)
    meta = json.loads((d / "meta.json").read_text())
    with torch.device("meta"):
        skeleton = TokenClassifier(*SIZES[meta["size"]])
    return slimnn.load(d / f"{variant}.slimnn.safetensors", skeleton).eval()


def vocab_size(model: TokenClassifier) -> int:
    return model.embed.num_embeddings
