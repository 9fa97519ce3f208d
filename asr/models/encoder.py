"""Transformer encoder whose M distinct blocks are each applied R times (block reuse)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from asr.models.adapter import build_adapters
from asr.models.attention import MultiHeadAttention
from asr.models.blocks import EncoderLayer
from asr.models.config import EncoderConfig
from asr.models.embedding import PositionalEncoding
from asr.models.feed_forward import PositionwiseFeedForward
from asr.models.mask import lengths_to_mask
from asr.models.reuse import reuse_schedule
from asr.models.subsampling import Conv2dSubsampling4


class TransformerEncoder(nn.Module):
    """Front end, positional encoding, shared layers run in `schedule` order, final LayerNorm.

    The loop over `schedule` has a length fixed at construction, and masks come from
    comparing `arange` with lengths, so the forward pass has no data-dependent control flow.

    Args:
        front_end: conv2d subsampling to width D.
        pos_enc: positional encoding of the subsampled frames.
        layers: the M distinct layers.
        schedule: layer index for each application step.
        adapters: one adapter per application step, or None.
        adapter_placement: "block_output" or "ffn" (see `AdapterConfig`).
        norm: final LayerNorm.
    """

    def __init__(
        self,
        front_end: Conv2dSubsampling4,
        pos_enc: PositionalEncoding,
        layers: nn.ModuleList,
        schedule: Sequence[int],
        adapters: nn.ModuleList | None,
        adapter_placement: str,
        norm: nn.LayerNorm,
    ) -> None:
        super().__init__()
        if adapters is not None and len(adapters) != len(schedule):
            raise ValueError(
                f"got {len(adapters)} adapters for {len(schedule)} application steps; "
                "build one adapter per step"
            )

        self.front_end = front_end
        self.pos_enc = pos_enc
        self.layers = layers
        self.schedule = tuple(schedule)
        self.adapters = adapters
        self.adapter_placement = adapter_placement
        self.norm = norm

    def forward(
        self, feats: torch.Tensor, feat_lens: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised fbank (B, T, F), lengths (B,) -> (B, T', D), (B,).

        T' = ((T - 1) // 2 - 1) // 2.
        """
        x, lengths = self.front_end(feats, feat_lens)
        x = self.pos_enc(x)
        mask = lengths_to_mask(lengths, x.size(1)).unsqueeze(1)

        for step, layer_index in enumerate(self.schedule):
            layer = self.layers[layer_index]
            adapter = self.adapters[step] if self.adapters is not None else None

            if self.adapter_placement == "ffn":
                x = layer(x, mask, ffn_adapter=adapter)
            else:
                x = layer(x, mask)
                if adapter is not None:
                    x = adapter(x)

        return self.norm(x), lengths


def build_encoder(config: EncoderConfig, input_dim: int, d_model: int) -> TransformerEncoder:
    """Create the encoder described by `config` for `input_dim` fbank bins and width `d_model`."""
    layers = nn.ModuleList(
        EncoderLayer(
            MultiHeadAttention(d_model, config.heads, config.attention_dropout),
            PositionwiseFeedForward(d_model, config.ffn_dim, config.dropout),
            d_model,
            config.dropout,
        )
        for _ in range(config.num_blocks)
    )
    schedule = reuse_schedule(config.num_blocks, config.reuse, config.reuse_order)
    adapter = config.adapter

    return TransformerEncoder(
        front_end=Conv2dSubsampling4(input_dim, d_model, config.subsampling_channels),
        pos_enc=PositionalEncoding(d_model, config.positional_dropout),
        layers=layers,
        schedule=schedule,
        adapters=build_adapters(adapter, d_model, len(schedule)),
        adapter_placement=adapter.placement if adapter is not None else "block_output",
        norm=nn.LayerNorm(d_model),
    )
