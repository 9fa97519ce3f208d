"""Boolean attention masks (True = attend) built from lengths by `arange` comparison."""

from __future__ import annotations

import torch


def lengths_to_mask(lengths: torch.Tensor, max_len: int | torch.Tensor) -> torch.Tensor:
    """Mark the valid frames of a padded batch.

    Args:
        lengths: (B,) int, valid length of each sequence.
        max_len: padded length T.

    Returns:
        (B, T) bool, True where the position is inside the sequence.
    """
    positions = torch.arange(max_len, device=lengths.device)
    return positions.unsqueeze(0) < lengths.unsqueeze(1)


def causal_mask(size: int | torch.Tensor, device: torch.device | None = None) -> torch.Tensor:
    """Lower-triangular mask: query i may attend keys 0..i.

    Returns:
        (1, L, L) bool.
    """
    positions = torch.arange(size, device=device)
    return (positions.unsqueeze(0) <= positions.unsqueeze(1)).unsqueeze(0)
