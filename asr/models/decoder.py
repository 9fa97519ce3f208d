"""Transformer attention decoder whose M' distinct blocks are each applied R' times."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from asr.models.adapter import build_adapters
from asr.models.attention import MultiHeadAttention
from asr.models.blocks import DecoderLayer
from asr.models.config import DecoderConfig
from asr.models.embedding import PositionalEncoding
from asr.models.feed_forward import PositionwiseFeedForward
from asr.models.mask import causal_mask, lengths_to_mask
from asr.models.reuse import reuse_schedule


class TransformerDecoder(nn.Module):
    """Token embedding, positional encoding, shared layers in `schedule` order, final
    LayerNorm and output projection to the vocabulary.

    Args:
        embed: token embedding (V, D).
        pos_enc: positional encoding of the token positions.
        layers: the M' distinct layers.
        schedule: layer index for each application step.
        adapters: one adapter per application step, or None.
        adapter_placement: "block_output" or "ffn" (see `AdapterConfig`).
        norm: final LayerNorm.
        output: Linear(D, V).
    """

    def __init__(
        self,
        embed: nn.Embedding,
        pos_enc: PositionalEncoding,
        layers: nn.ModuleList,
        schedule: Sequence[int],
        adapters: nn.ModuleList | None,
        adapter_placement: str,
        norm: nn.LayerNorm,
        output: nn.Linear,
    ) -> None:
        super().__init__()
        if adapters is not None and len(adapters) != len(schedule):
            raise ValueError(
                f"got {len(adapters)} adapters for {len(schedule)} application steps; "
                "build one adapter per step"
            )

        self.embed = embed
        self.pos_enc = pos_enc
        self.layers = layers
        self.schedule = tuple(schedule)
        self.adapters = adapters
        self.adapter_placement = adapter_placement
        self.norm = norm
        self.output = output

    def forward(
        self,
        memory: torch.Tensor,
        memory_lens: torch.Tensor,
        ys_in: torch.Tensor,
        ys_in_lens: torch.Tensor,
    ) -> torch.Tensor:
        """Score every prefix of `ys_in`.

        Args:
            memory: (N, T, D) encoder output.
            memory_lens: (N,) valid encoder frames.
            ys_in: (N, L) int64 token ids starting with sos; padding must be a valid id.
            ys_in_lens: (N,) valid tokens.

        Returns:
            (N, L, V) logits; position l predicts the token after ys_in[:, :l + 1].
        """
        memory_mask = lengths_to_mask(memory_lens, memory.size(1)).unsqueeze(1)
        length = ys_in.size(1)
        tgt_mask = lengths_to_mask(ys_in_lens, length).unsqueeze(1) & causal_mask(
            length, ys_in.device
        )

        x = self.pos_enc(self.embed(ys_in))
        for step, layer_index in enumerate(self.schedule):
            layer = self.layers[layer_index]
            adapter = self.adapters[step] if self.adapters is not None else None

            if self.adapter_placement == "ffn":
                x = layer(x, tgt_mask, memory, memory_mask, ffn_adapter=adapter)
            else:
                x = layer(x, tgt_mask, memory, memory_mask)
                if adapter is not None:
                    x = adapter(x)

        return self.output(self.norm(x))


def build_decoder(config: DecoderConfig, vocab_size: int, d_model: int) -> TransformerDecoder:
    """Create the decoder described by `config` for `vocab_size` tokens and width `d_model`."""
    layers = nn.ModuleList(
        DecoderLayer(
            MultiHeadAttention(d_model, config.heads, config.attention_dropout),
            MultiHeadAttention(d_model, config.heads, config.attention_dropout),
            PositionwiseFeedForward(d_model, config.ffn_dim, config.dropout),
            d_model,
            config.dropout,
        )
        for _ in range(config.num_blocks)
    )
    schedule = reuse_schedule(config.num_blocks, config.reuse, config.reuse_order)
    adapter = config.adapter

    return TransformerDecoder(
        embed=nn.Embedding(vocab_size, d_model),
        pos_enc=PositionalEncoding(d_model, config.positional_dropout),
        layers=layers,
        schedule=schedule,
        adapters=build_adapters(adapter, d_model, len(schedule)),
        adapter_placement=adapter.placement if adapter is not None else "block_output",
        norm=nn.LayerNorm(d_model),
        output=nn.Linear(d_model, vocab_size),
    )
