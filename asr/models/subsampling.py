"""Conv2d subsampling by 4: two 3x3 stride-2 convolutions and a linear projection to d_model."""

from __future__ import annotations

import torch
from torch import nn


class Conv2dSubsampling4(nn.Module):
    """Reduce (B, T, F) fbank frames to (B, T', D) with T' = ((T - 1) // 2 - 1) // 2.

    Each output frame covers 7 input frames (6 frames of right context), so T must be >= 7.

    Args:
        input_dim: fbank bins F.
        d_model: output width D.
        channels: conv channels; None uses ``d_model``.
    """

    subsampling_rate = 4
    right_context = 6

    def __init__(self, input_dim: int, d_model: int, channels: int | None = None) -> None:
        super().__init__()
        channels = channels or d_model
        self.conv = nn.Sequential(
            nn.Conv2d(1, channels, kernel_size=3, stride=2),
            nn.ReLU(),
            nn.Conv2d(channels, channels, kernel_size=3, stride=2),
            nn.ReLU(),
        )
        freq_bins = ((input_dim - 1) // 2 - 1) // 2
        self.out = nn.Linear(channels * freq_bins, d_model)

    @staticmethod
    def output_lengths(lengths: torch.Tensor) -> torch.Tensor:
        """(B,) input frame counts -> (B,) output frame counts, 0 for inputs under 7 frames."""
        return torch.clamp(((lengths - 1) // 2 - 1) // 2, min=0)

    def forward(
        self, x: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T, F), (B,) -> (B, T', D), (B,)."""
        x = self.conv(x.unsqueeze(1))

        batch, channels, time, freq = x.shape
        x = self.out(x.transpose(1, 2).reshape(batch, time, channels * freq))

        return x, self.output_lengths(lengths)
