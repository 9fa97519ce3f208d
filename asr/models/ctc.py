"""CTC head: projection to the vocabulary, log-softmax and the CTC loss."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from asr.constants import BLANK_ID


class CTCHead(nn.Module):
    """Linear(D, V) on the encoder output.

    Args:
        d_model: encoder width D.
        vocab_size: V, with the blank at id 0.
        dropout: dropout on the encoder output before the projection, in the loss only.
    """

    def __init__(self, d_model: int, vocab_size: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.proj = nn.Linear(d_model, vocab_size)
        self.dropout = nn.Dropout(dropout)

    def log_probs(self, enc_out: torch.Tensor) -> torch.Tensor:
        """(B, T, D) -> (B, T, V) log-softmax over the vocabulary."""
        return F.log_softmax(self.proj(enc_out), dim=-1)

    def loss(
        self,
        enc_out: torch.Tensor,
        enc_lens: torch.Tensor,
        targets: torch.Tensor,
        target_lens: torch.Tensor,
    ) -> torch.Tensor:
        """CTC loss summed over the batch and divided by the batch size B.

        Args:
            enc_out: (B, T, D); enc_lens: (B,).
            targets: (B, U) int64 token ids; entries at or beyond `target_lens` are ignored.
            target_lens: (B,).

        Returns:
            scalar loss; infinite losses (targets longer than the frames allow) count as 0.
        """
        logits = self.proj(self.dropout(enc_out))
        log_probs = F.log_softmax(logits.float(), dim=-1).transpose(0, 1)

        # Padding (-1) is out of range for ctc_loss; the lengths make it unused anyway.
        targets = targets.clamp(min=BLANK_ID)
        total = F.ctc_loss(
            log_probs,
            targets,
            enc_lens,
            target_lens,
            blank=BLANK_ID,
            reduction="sum",
            zero_infinity=True,
        )
        return total / enc_out.size(0)
