"""Small real tasks for the pipeline's demos and tests: data that ships with scikit-learn, a torch model
trained on it in seconds.

``digits_task()``: the 8x8 handwritten digits (1,797 images, 10 classes) of ``sklearn.datasets.load_digits``
(bundled with scikit-learn, no download), split 80/20 stratified, and an MLP trained on it.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import torch
from torch import Tensor, nn


@dataclasses.dataclass
class Task:
    model: nn.Module  # trained, in eval mode
    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor

    def accuracy(self, model: nn.Module) -> float:
        """Test-set accuracy in [0, 1]."""
        with torch.inference_mode():
            return float((model(self.x_test).argmax(-1) == self.y_test).float().mean())

    @property
    def eval_fn(self) -> Callable[[nn.Module], float]:
        return self.accuracy

    def batches(self, batch_size: int = 128, seed: int = 0, with_labels: bool = True) -> list:
        """The training set as a shuffled list of ``(x, y)`` (or ``x``) batches."""
        g = torch.Generator().manual_seed(seed)
        perm = torch.randperm(self.x_train.shape[0], generator=g)
        out = []
        for i in range(0, perm.numel(), batch_size):
            idx = perm[i: i + batch_size]
            out.append((self.x_train[idx], self.y_train[idx]) if with_labels else self.x_train[idx])
        return out


def mlp(d_in: int, hidden: int, d_out: int, layers: int = 2) -> nn.Sequential:
    mods: list[nn.Module] = []
    d = d_in
    for _ in range(layers):
        mods += [nn.Linear(d, hidden), nn.ReLU()]
        d = hidden
    mods.append(nn.Linear(d, d_out))
    return nn.Sequential(*mods)


def train_classifier(model: nn.Module, x: Tensor, y: Tensor, epochs: int = 40, lr: float = 2e-3,
                     batch_size: int = 128, seed: int = 0) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(x.shape[0], generator=g)
        for i in range(0, perm.numel(), batch_size):
            idx = perm[i: i + batch_size]
            loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model.eval()


def digits_task(hidden: int = 512, layers: int = 2, epochs: int = 15, seed: int = 0) -> Task:
    """An MLP (64 -> hidden x layers -> 10, ReLU) trained on scikit-learn's digits; ~97-98% test accuracy."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    x = torch.tensor(data.data, dtype=torch.float32) / 16.0
    y = torch.tensor(data.target, dtype=torch.int64)
    idx_train, idx_test = train_test_split(
        range(len(y)), test_size=0.2, random_state=seed, stratify=data.target
    )
    it, iv = torch.tensor(idx_train), torch.tensor(idx_test)
    mean = x[it].mean(0)
    std = x[it].std(0).clamp_min(0.05)
    x = (x - mean) / std
    torch.manual_seed(seed)
    model = mlp(64, hidden, 10, layers)
    train_classifier(model, x[it], y[it], epochs=epochs, seed=seed)
    return Task(model, x[it], y[it], x[iv], y[iv])
