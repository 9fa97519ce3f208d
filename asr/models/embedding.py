"""Sinusoidal positional encoding added to inputs scaled by sqrt(d_model)."""

from __future__ import annotations

import math

import torch
from torch import nn


class PositionalEncoding(nn.Module):
    """Sinusoidal encoding: x * sqrt(D) + PE, then dropout.

    PE[t, 2i] = sin(t / 10000^(2i/D)) and PE[t, 2i+1] = cos(t / 10000^(2i/D)).

    The table is computed for each call from `arange(T)`, so there is no maximum length and
    the time axis stays dynamic when the model is traced.

    Args:
        d_model: width D (even).
        dropout: dropout rate after the addition.
    """

    def __init__(self, d_model: int, dropout: float = 0.0) -> None:
        super().__init__()
        if d_model % 2 != 0:
            raise ValueError(f"sinusoidal positional encoding needs an even d_model, got {d_model}")

        self.d_model = d_model
        self.xscale = math.sqrt(d_model)
        self.dropout = nn.Dropout(dropout)
        inv_freq = torch.exp(torch.arange(0, d_model, 2).float() * (-math.log(10000.0) / d_model))
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    def encoding(self, length: int | torch.Tensor) -> torch.Tensor:
        """(1, T, D) sinusoidal table for positions 0..T-1."""
        positions = torch.arange(length, device=self.inv_freq.device, dtype=torch.float32)
        angles = positions.unsqueeze(1) * self.inv_freq.unsqueeze(0)

        # Interleave sin and cos: even channels sin, odd channels cos.
        table = torch.stack((angles.sin(), angles.cos()), dim=-1).flatten(1)
        return table.unsqueeze(0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, D) -> (B, T, D)."""
        table = self.encoding(x.size(1)).to(x.dtype)
        return self.dropout(x * self.xscale + table)
