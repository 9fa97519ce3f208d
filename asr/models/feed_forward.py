"""Position-wise feed-forward network of a Transformer block."""

from __future__ import annotations

import torch
from torch import nn


class PositionwiseFeedForward(nn.Module):
    """Linear(D, F) -> ReLU -> dropout -> Linear(F, D), applied to each frame.

    Args:
        d_model: input and output width D.
        hidden_dim: hidden width F.
        dropout: dropout on the hidden activations.
    """

    def __init__(self, d_model: int, hidden_dim: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.w_1 = nn.Linear(d_model, hidden_dim)
        self.activation = nn.ReLU()
        self.dropout = nn.Dropout(dropout)
        self.w_2 = nn.Linear(hidden_dim, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, D) -> (B, T, D)."""
        return self.w_2(self.dropout(self.activation(self.w_1(x))))
