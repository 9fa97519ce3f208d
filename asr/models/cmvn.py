"""Global CMVN: per-bin mean and inverse standard deviation applied to fbank frames."""

from __future__ import annotations

import torch
from torch import nn


class GlobalCMVN(nn.Module):
    """Normalise features with corpus-level statistics stored as buffers in the state dict.

    Defaults (mean 0, istd 1) leave the features unchanged until `set_stats` is called or a
    checkpoint is loaded.
    """

    def __init__(self, dim: int = 80) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("istd", torch.ones(dim))

    def set_stats(self, mean: torch.Tensor, istd: torch.Tensor) -> None:
        """Copy statistics in: `mean` and `istd` are (D,) with D the fbank dimension."""
        for name, value in (("mean", mean), ("istd", istd)):
            if tuple(value.shape) != tuple(self.mean.shape):
                raise ValueError(
                    f"CMVN {name} has shape {tuple(value.shape)}, expected "
                    f"{tuple(self.mean.shape)}; recompute the statistics with the model's "
                    "fbank dimension"
                )
        self.mean.copy_(mean)
        self.istd.copy_(istd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, D) -> (B, T, D): (x - mean) * istd."""
        return (x - self.mean) * self.istd
