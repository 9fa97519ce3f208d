"""Label-smoothed KL divergence loss for the attention decoder."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from asr.constants import IGNORE_ID


class LabelSmoothingLoss(nn.Module):
    """KL(q || p) with q = 1 - eps on the target and eps / (V - 1) on every other token.

    Positions whose target is `ignore_id` do not count. The sum is divided by the batch size
    (or by the number of counted tokens when `normalize_length`).

    Args:
        vocab_size: V.
        smoothing: eps in [0, 1).
        ignore_id: target value of padding.
        normalize_length: divide by token count instead of batch size.
    """

    def __init__(
        self,
        vocab_size: int,
        smoothing: float,
        ignore_id: int = IGNORE_ID,
        normalize_length: bool = False,
    ) -> None:
        super().__init__()
        self.vocab_size = vocab_size
        self.confidence = 1.0 - smoothing
        self.smoothing = smoothing
        self.ignore_id = ignore_id
        self.normalize_length = normalize_length

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Logits (B, L, V), targets (B, L) int64 -> scalar loss."""
        batch = logits.size(0)
        logits = logits.reshape(-1, self.vocab_size).float()
        targets = targets.reshape(-1)

        ignore = targets == self.ignore_id
        safe_targets = targets.masked_fill(ignore, 0)
        true_dist = torch.full_like(logits, self.smoothing / (self.vocab_size - 1))
        true_dist.scatter_(1, safe_targets.unsqueeze(1), self.confidence)

        kl = F.kl_div(F.log_softmax(logits, dim=-1), true_dist, reduction="none")
        total = kl.masked_fill(ignore.unsqueeze(1), 0.0).sum()

        denominator = (~ignore).sum() if self.normalize_length else batch
        return total / denominator
