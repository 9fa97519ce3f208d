"""HuBERT teacher: torchaudio's wav2vec 2.0 / HuBERT model plus HuBERT's mask embedding, returning every
Transformer layer's output for distillation."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torchaudio
import torch.nn.functional as F
from torch import nn

# Keyword arguments of `torchaudio.models.wav2vec2_model`, in its order.
CONFIG_KEYS = (
    "extractor_mode",
    "extractor_conv_layer_config",
    "extractor_conv_bias",
    "encoder_embed_dim",
    "encoder_projection_dropout",
    "encoder_pos_conv_kernel",
    "encoder_pos_conv_groups",
    "encoder_num_layers",
    "encoder_num_heads",
    "encoder_attention_dropout",
    "encoder_ff_interm_features",
    "encoder_ff_interm_dropout",
    "encoder_dropout",
    "encoder_layer_norm_first",
    "encoder_layer_drop",
    "aux_num_out",
)

# A teacher is a frozen regression target, so every stochastic part is off.
NO_DROPOUT = {
    "encoder_projection_dropout": 0.0,
    "encoder_attention_dropout": 0.0,
    "encoder_ff_interm_dropout": 0.0,
    "encoder_dropout": 0.0,
    "encoder_layer_drop": 0.0,
}


def hubert_base_config() -> dict[str, Any]:
    """Return HuBERT Base as `wav2vec2_model` kwargs: 94.4M parameters, dropouts 0, no CTC head.

    The conv front end has total stride 320 (20 ms frames at 16 kHz). The Transformer has 12
    post-LayerNorm layers, D 768, 12 heads and FFN 3072.
    """
    return {
        "extractor_mode": "group_norm",
        "extractor_conv_layer_config": [(512, 10, 5)] + [(512, 3, 2)] * 4 + [(512, 2, 2)] * 2,
        "extractor_conv_bias": False,
        "encoder_embed_dim": 768,
        "encoder_pos_conv_kernel": 128,
        "encoder_pos_conv_groups": 16,
        "encoder_num_layers": 12,
        "encoder_num_heads": 12,
        "encoder_ff_interm_features": 3072,
        "encoder_layer_norm_first": False,
        "aux_num_out": None,
        **NO_DROPOUT,
    }


def normalize_config(config: dict[str, Any]) -> dict[str, Any]:
    """Return a copy of `config` in plain Python types after checking its keys.

    The keys must be exactly the `wav2vec2_model` kwargs. Conv layers become a list of
    `(channels, kernel, stride)` int tuples, so configs read back from yaml, json or a checkpoint
    compare equal.
    """
    missing = [key for key in CONFIG_KEYS if key not in config]
    unknown = sorted(set(config) - set(CONFIG_KEYS))
    if missing or unknown:
        raise ValueError(
            f"invalid teacher config: missing keys {missing}, unknown keys {unknown} (expected the "
            f"kwargs of torchaudio.models.wav2vec2_model); start from hubert_base_config() and "
            f"change values only"
        )

    normalized = dict(config)
    normalized["extractor_conv_layer_config"] = [
        tuple(int(value) for value in layer) for layer in config["extractor_conv_layer_config"]
    ]
    return {key: normalized[key] for key in CONFIG_KEYS}


@dataclass
class TeacherOutput:
    """Hidden states of the teacher.

    Attributes:
        layers: L tensors (B, T', D), the outputs of Transformer layers 1..L.
        lengths: (B,) valid frames per utterance, None when no input lengths were given.
    """

    layers: list[torch.Tensor]
    lengths: torch.Tensor | None


class HubertTeacher(nn.Module):
    """HuBERT-style encoder whose layer outputs are the distillation targets.

    Forward: conv front end -> feature projection (LayerNorm + Linear) -> `mask_emb` replaces the
    frames where `frame_mask` is True -> padded frames zeroed -> convolutional positional embedding
    -> Transformer, keeping every layer's output. With `frame_mask=None` this equals torchaudio's
    `Wav2Vec2Model.extract_features`.

    Gradients are not blocked here; callers that only read targets wrap the call in
    `torch.no_grad()`.

    Args:
        config: `torchaudio.models.wav2vec2_model` kwargs, e.g. `hubert_base_config()`.
    """

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__()
        self.config = normalize_config(config)
        self.model = torchaudio.models.wav2vec2_model(**self.config)

        self.embed_dim = int(self.config["encoder_embed_dim"])
        self.num_layers = int(self.config["encoder_num_layers"])
        self.mask_emb = nn.Parameter(torch.empty(self.embed_dim).uniform_())

    def num_frames(self, num_samples: torch.Tensor | int) -> torch.Tensor | int:
        """Return the frames after the conv front end for `num_samples` (int or (B,) tensor), >= 0."""
        frames = num_samples
        for _, kernel, stride in self.config["extractor_conv_layer_config"]:
            if isinstance(frames, torch.Tensor):
                frames = torch.div(frames - kernel, stride, rounding_mode="floor") + 1
                frames = frames.clamp(min=0)
            else:
                frames = max((frames - kernel) // stride + 1, 0)
        return frames

    def _conv_features(
        self, waveforms: torch.Tensor, lengths: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """torchaudio's conv front end, but with padding-aware first-layer GroupNorm statistics.

        HuBERT's GroupNorm normalizes each channel over the whole input, padding included, so
        an utterance in a padded batch would get other targets than when run alone. Here the
        statistics cover the valid samples only, as `ValidChannelNorm` does in the student.
        Without padding this is exactly torchaudio's computation.

        Returns:
            features (B, T', C) and valid frame counts (B,) (None when `lengths` is None).
        """
        if lengths is None:
            return self.model.feature_extractor(waveforms, None)

        x = waveforms.unsqueeze(1)  # (B, 1, N)
        length = lengths
        for block in self.model.feature_extractor.conv_layers:
            x = block.conv(x)
            length = torch.div(length - block.kernel_size, block.stride, rounding_mode="floor") + 1
            length = length.clamp(min=0)

            if isinstance(block.layer_norm, nn.GroupNorm):
                valid = torch.arange(x.size(-1), device=x.device) < length[:, None]
                x = _valid_group_norm(x, valid.unsqueeze(1).to(x.dtype), block.layer_norm)
            elif block.layer_norm is not None:
                x = block.layer_norm(x)
            x = F.gelu(x)
        return x.transpose(1, 2), length

    def forward(
        self,
        waveforms: torch.Tensor,
        lengths: torch.Tensor | None = None,
        frame_mask: torch.Tensor | None = None,
    ) -> TeacherOutput:
        """Run the teacher on a batch of 16 kHz waveforms.

        Args:
            waveforms: (B, N) samples.
            lengths: (B,) valid samples per utterance, or None when no utterance is padded.
            frame_mask: (B, T') bool, True where the frame is replaced by `mask_emb`.

        Returns:
            TeacherOutput with L layer outputs (B, T', D) and the valid frame counts.
        """
        features, frame_lengths = self._conv_features(waveforms, lengths)
        x = self.model.encoder.feature_projection(features)
        batch, time, _ = x.shape

        if frame_mask is not None:
            if tuple(frame_mask.shape) != (batch, time) or frame_mask.dtype != torch.bool:
                raise ValueError(
                    f"invalid frame_mask: expected a bool tensor (B, T') = {(batch, time)}, got "
                    f"{frame_mask.dtype} {tuple(frame_mask.shape)}. Size it with num_frames()."
                )
            x = torch.where(frame_mask.unsqueeze(-1), self.mask_emb.to(x.dtype), x)

        attention_mask = None
        if frame_lengths is not None:
            padding = torch.arange(time, device=x.device).expand(batch, time) >= frame_lengths[:, None]
            x = x.masked_fill(padding.unsqueeze(-1), 0.0)
            # Additive mask in torchaudio's convention, so outputs match its extract_features.
            attention_mask = -10000.0 * padding[:, None, None, :].to(x.dtype)
            attention_mask = attention_mask.expand(batch, 1, time, time)

        layers = self.model.encoder.transformer.get_intermediate_outputs(x, attention_mask=attention_mask)
        return TeacherOutput(layers=layers, lengths=frame_lengths)


def _valid_group_norm(x: torch.Tensor, valid: torch.Tensor, norm: nn.GroupNorm) -> torch.Tensor:
    """One-group-per-channel `norm` of x (B, C, T) with statistics over `valid` (B, 1, T) only."""
    count = valid.sum(dim=-1, keepdim=True).clamp(min=1.0)
    mean = (x * valid).sum(dim=-1, keepdim=True) / count
    var = ((x - mean).square() * valid).sum(dim=-1, keepdim=True) / count
    x = (x - mean) * torch.rsqrt(var + norm.eps)
    return x * norm.weight.unsqueeze(-1) + norm.bias.unsqueeze(-1)
