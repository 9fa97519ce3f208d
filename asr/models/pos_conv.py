"""Convolutional positional embedding of wav2vec 2.0 / HuBERT: a wide grouped conv over time."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class ConvPositionalEmbedding(nn.Module):
    """GELU(Conv1d(D, D, kernel, groups)) over time, returned for the caller to add.

    The weight is weight-normalized over the time axis (one gain per kernel tap). An even
    kernel with padding kernel // 2 yields one frame too many; the last one is dropped so the
    output keeps T frames.

    Args:
        embed_dim: width D.
        kernel_size: taps over time, in frames.
        groups: conv groups; D must be divisible by it.
    """

    def __init__(self, embed_dim: int, kernel_size: int = 128, groups: int = 16) -> None:
        super().__init__()
        conv = nn.Conv1d(
            embed_dim, embed_dim, kernel_size, padding=kernel_size // 2, groups=groups
        )

        # wav2vec 2.0's initialization: normal with a variance scaled by 1 / (kernel * D).
        nn.init.normal_(conv.weight, mean=0.0, std=math.sqrt(4.0 / (kernel_size * embed_dim)))
        nn.init.zeros_(conv.bias)
        self.conv = nn.utils.parametrizations.weight_norm(conv, name="weight", dim=2)
        self.num_remove = 1 if kernel_size % 2 == 0 else 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, D) -> (B, T, D) positional embedding."""
        x = self.conv(x.transpose(1, 2))
        if self.num_remove:
            x = x[..., : -self.num_remove]
        return F.gelu(x).transpose(1, 2)
