"""Pre-LayerNorm Transformer encoder and decoder layers built from the modules they compose."""

from __future__ import annotations

import torch
from torch import nn

from asr.models.attention import MultiHeadAttention
from asr.models.feed_forward import PositionwiseFeedForward


class EncoderLayer(nn.Module):
    """x + SelfAttn(LN(x)), then + FFN(LN(x)); each sub-layer output passes dropout.

    The layer may be applied several times (block reuse). An adapter belonging to one
    application is passed to `forward` as `ffn_adapter`, which wraps the FFN output before the
    residual add.

    Args:
        self_attn: self-attention module.
        feed_forward: position-wise FFN.
        d_model: width D.
        dropout: dropout on each sub-layer output.
    """

    def __init__(
        self,
        self_attn: MultiHeadAttention,
        feed_forward: PositionwiseFeedForward,
        d_model: int,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.self_attn = self_attn
        self.feed_forward = feed_forward
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(
        self,
        x: torch.Tensor,
        mask: torch.Tensor,
        ffn_adapter: nn.Module | None = None,
    ) -> torch.Tensor:
        """(B, T, D), mask (B, 1, T) bool -> (B, T, D)."""
        residual = x
        x = self.norm1(x)
        attended, _ = self.self_attn(x, x, x, mask)
        x = residual + self.dropout(attended)

        y = self.feed_forward(self.norm2(x))
        if ffn_adapter is not None:
            y = ffn_adapter(y)
        return x + self.dropout(y)


class DecoderLayer(nn.Module):
    """Pre-LayerNorm decoder layer: causal self-attention, source attention to the encoder
    output, FFN; each with a residual add.

    Args:
        self_attn: masked self-attention over the token prefix.
        src_attn: attention from tokens to the encoder output.
        feed_forward: position-wise FFN.
        d_model: width D.
        dropout: dropout on each sub-layer output.
    """

    def __init__(
        self,
        self_attn: MultiHeadAttention,
        src_attn: MultiHeadAttention,
        feed_forward: PositionwiseFeedForward,
        d_model: int,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.self_attn = self_attn
        self.src_attn = src_attn
        self.feed_forward = feed_forward
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.norm3 = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(
        self,
        x: torch.Tensor,
        tgt_mask: torch.Tensor,
        memory: torch.Tensor,
        memory_mask: torch.Tensor,
        ffn_adapter: nn.Module | None = None,
    ) -> torch.Tensor:
        """Tokens (N, L, D), tgt_mask (N, L, L), memory (N, T, D), memory_mask (N, 1, T)
        -> (N, L, D)."""
        residual = x
        x = self.norm1(x)
        attended, _ = self.self_attn(x, x, x, tgt_mask)
        x = residual + self.dropout(attended)

        residual = x
        attended, _ = self.src_attn(self.norm2(x), memory, memory, memory_mask)
        x = residual + self.dropout(attended)

        y = self.feed_forward(self.norm3(x))
        if ffn_adapter is not None:
            y = ffn_adapter(y)
        return x + self.dropout(y)
