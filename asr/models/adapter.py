"""Residual bottleneck adapter (ADM): one per application of a shared block."""

from __future__ import annotations

import torch
from torch import nn

from asr.models.config import AdapterConfig


class Adapter(nn.Module):
    """x + Linear(b, D)(ReLU(Linear(D, b)(LayerNorm(x)))).

    The up-projection starts at zero, so a fresh adapter is the identity and adding adapters
    to a trained model does not change its output until they are trained.

    Args:
        d_model: width D.
        bottleneck: hidden width b.
        layer_norm: normalise the input of the down-projection.
    """

    def __init__(self, d_model: int, bottleneck: int, layer_norm: bool = True) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(d_model) if layer_norm else nn.Identity()
        self.down = nn.Linear(d_model, bottleneck)
        self.activation = nn.ReLU()
        self.up = nn.Linear(bottleneck, d_model)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, D) -> (B, T, D)."""
        return x + self.up(self.activation(self.down(self.norm(x))))


def build_adapters(
    config: AdapterConfig | None, d_model: int, num_applications: int
) -> nn.ModuleList | None:
    """Create one adapter per application step (index = step in the reuse schedule), or None."""
    if config is None:
        return None
    return nn.ModuleList(
        Adapter(d_model, config.bottleneck, config.layer_norm) for _ in range(num_applications)
    )
