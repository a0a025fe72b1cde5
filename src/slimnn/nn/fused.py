"""FusedActivation: what an activation module becomes once its Linear applies it in its GEMM epilogue."""

from __future__ import annotations

from torch import Tensor, nn

from ..ops.q8 import ACTIVATIONS


class FusedActivation(nn.Identity):
    """An identity that records an activation fused into a sibling Linear (``into``, its attribute name).

    ``slimnn.fuse_activations_`` puts one where the activation module was, so the model's structure still
    says what happens there, ``slimnn.save`` knows to do the same to a skeleton at load time, and calling
    it costs nothing.
    """

    def __init__(self, activation: str, into: str) -> None:
        super().__init__()
        if activation not in ACTIVATIONS or activation is None:
            raise ValueError(f"FusedActivation: unknown activation {activation!r}")
        if not isinstance(into, str):
            raise ValueError(f"FusedActivation: into must be a str, got {into!r}")
        self.activation = activation
        self.into = into

    def forward(self, x: Tensor) -> Tensor:
        return x

    def extra_repr(self) -> str:
        return f"{self.activation}, fused into {self.into}"
