"""Multi-head attention that can return its probabilities or apply probabilities given to it."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class MultiHeadAttention(nn.Module):
    """Scaled dot-product attention over H heads of size d_model / H.

    Three modes:
      * default: fused `F.scaled_dot_product_attention`;
      * `need_weights=True`: explicit softmax(Q K^T / sqrt(d_k)) path that also returns the
        probabilities (B, H, T_q, T_k);
      * `attn_probs` given: skips the query/key projections and applies the probabilities to
        this module's value projection once (no softmax). A module built with
        `query_key=False` has only value and output projections and always needs them.

    Masks are boolean, True = attend, shaped (B, 1, T_k) for key padding or (B, T_q, T_k) for
    causal plus padding. A query whose row is fully masked outputs the output bias and zero
    probabilities instead of NaN.

    Args:
        d_model: model width D.
        heads: number of heads H; D must be divisible by H.
        dropout: dropout on the attention probabilities (training only).
        query_key: create the query and key projections.
    """

    def __init__(
        self, d_model: int, heads: int, dropout: float = 0.0, query_key: bool = True
    ) -> None:
        super().__init__()
        if d_model % heads != 0:
            raise ValueError(f"d_model ({d_model}) must be divisible by heads ({heads})")

        self.d_model = d_model
        self.heads = heads
        self.head_dim = d_model // heads
        self.dropout = dropout

        self.linear_q = nn.Linear(d_model, d_model) if query_key else None
        self.linear_k = nn.Linear(d_model, d_model) if query_key else None
        self.linear_v = nn.Linear(d_model, d_model)
        self.linear_out = nn.Linear(d_model, d_model)

    def _split_heads(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, D) -> (B, H, T, D / H)."""
        batch, time, _ = x.shape
        return x.view(batch, time, self.heads, self.head_dim).transpose(1, 2)

    def _merge_heads(self, x: torch.Tensor) -> torch.Tensor:
        """(B, H, T, D / H) -> (B, T, D)."""
        batch, _, time, _ = x.shape
        return x.transpose(1, 2).reshape(batch, time, self.d_model)

    def forward(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        mask: torch.Tensor | None = None,
        *,
        need_weights: bool = False,
        attn_probs: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Attend from `query` (B, T_q, D) to `key`/`value` (B, T_k, D).

        Args:
            mask: (B, 1, T_k) or (B, T_q, T_k) bool, True = attend; None attends everywhere.
            need_weights: also return the attention probabilities.
            attn_probs: (B, H, T_q, T_k) probabilities to apply instead of computing them;
                `query`, `key` and `mask` are then unused.

        Returns:
            output (B, T_q, D) and the probabilities (B, H, T_q, T_k) when `need_weights`
            (the given ones when `attn_probs` is set), else None.
        """
        v = self._split_heads(self.linear_v(value))
        dropout_p = self.dropout if self.training else 0.0

        if attn_probs is not None:
            expected = (v.size(0), self.heads, query.size(1), v.size(2))
            if tuple(attn_probs.shape) != expected:
                raise ValueError(
                    f"attn_probs has shape {tuple(attn_probs.shape)}, expected (B, H, T_q, T_k) "
                    f"= {expected}"
                )
            context = torch.matmul(F.dropout(attn_probs, dropout_p, self.training), v)
            probs = attn_probs if need_weights else None
            return self.linear_out(self._merge_heads(context)), probs

        if self.linear_q is None or self.linear_k is None:
            raise ValueError(
                "this MultiHeadAttention has no query/key projections (query_key=False); "
                "pass attn_probs computed by another attention layer"
            )
        q = self._split_heads(self.linear_q(query))
        k = self._split_heads(self.linear_k(key))

        # A fully masked row would softmax over nothing (NaN). Let it attend everywhere so the
        # arithmetic stays finite, then zero its context.
        attend = None
        row_valid = None
        if mask is not None:
            mask = mask.unsqueeze(1)
            row_valid = mask.any(dim=-1, keepdim=True)
            attend = mask | ~row_valid

        if need_weights:
            # The (B, H, T_q, T_k) tensors dominate this path on a CPU, so the scale goes on q
            # and the masking works in place: one fewer full-size pass and allocation each.
            scores = torch.matmul(q * (1.0 / math.sqrt(self.head_dim)), k.transpose(-2, -1))
            if attend is not None:
                scores.masked_fill_(~attend, float("-inf"))
            probs = torch.softmax(scores, dim=-1)
            if row_valid is not None:
                # Softmax's backward reads its output, so in place only without autograd.
                probs = probs.mul_(row_valid) if not probs.requires_grad else probs * row_valid
            context = torch.matmul(F.dropout(probs, dropout_p, self.training), v)
        else:
            probs = None
            context = F.scaled_dot_product_attention(q, k, v, attn_mask=attend, dropout_p=dropout_p)
            if row_valid is not None:
                context = context * row_valid

        return self.linear_out(self._merge_heads(context)), probs
