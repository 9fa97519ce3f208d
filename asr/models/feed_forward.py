"""Position-wise feed-forward network of a Transformer block."""

from __future__ import annotations

import torch
from torch import nn


ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU}


class PositionwiseFeedForward(nn.Module):
    """Linear(D, F) -> activation -> dropout -> Linear(F, D), applied to each frame.

    Args:
        d_model: input and output width D.
        hidden_dim: hidden width F.
        dropout: dropout on the hidden activations.
        activation: "relu" (the ASR models) or "gelu" (HuBERT and its students).
    """

    def __init__(
        self, d_model: int, hidden_dim: int, dropout: float = 0.0, activation: str = "relu"
    ) -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"Invalid activation {activation!r}: expected one of {sorted(ACTIVATIONS)}")
        self.w_1 = nn.Linear(d_model, hidden_dim)
        self.activation = ACTIVATIONS[activation]()
        self.dropout = nn.Dropout(dropout)
        self.w_2 = nn.Linear(hidden_dim, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, D) -> (B, T, D)."""
        return self.w_2(self.dropout(self.activation(self.w_1(x))))
