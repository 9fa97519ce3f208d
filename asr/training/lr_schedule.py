"""Warm-up learning-rate schedule of the Transformer ("Noam") family, as WeNet uses it."""

from __future__ import annotations

import torch


def warmup_lr_factor(step: int, warmup_steps: int) -> float:
    """Return the factor that multiplies the peak learning rate at optimizer ``step``.

    The factor rises linearly to 1.0 at ``warmup_steps`` and then decays with the inverse
    square root of the step: ``min(s / w, sqrt(w / s))`` for step ``s = step + 1``.
    """
    if warmup_steps <= 0:
        raise ValueError(f"warmup_steps must be positive, got {warmup_steps}")
    s = step + 1
    return min(s / warmup_steps, (warmup_steps / s) ** 0.5)


def warmup_scheduler(
    optimizer: torch.optim.Optimizer, warmup_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """Build a per-step scheduler that applies :func:`warmup_lr_factor` to every group."""
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: warmup_lr_factor(step, warmup_steps)
    )
