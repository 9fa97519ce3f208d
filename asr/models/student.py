"""HuBERT-style student whose Transformer layers may reuse the previous layer's attention map."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn

from asr.models.attention import MultiHeadAttention
from asr.models.feed_forward import PositionwiseFeedForward
from asr.models.mask import lengths_to_mask
from asr.models.pos_conv import ConvPositionalEmbedding
from asr.models.student_config import StudentConfig
from asr.models.wav_frontend import ConvFrontEnd

if TYPE_CHECKING:
    from asr.models.hubert_teacher import HubertTeacher

logger = logging.getLogger(__name__)

# Student layer sub-module -> torchaudio wav2vec 2.0 encoder layer sub-module.
_LAYER_NAME_MAP = {
    "self_attn.linear_q": "attention.q_proj",
    "self_attn.linear_k": "attention.k_proj",
    "self_attn.linear_v": "attention.v_proj",
    "self_attn.linear_out": "attention.out_proj",
    "norm1": "layer_norm",
    "feed_forward.w_1": "feed_forward.intermediate_dense",
    "feed_forward.w_2": "feed_forward.output_dense",
    "norm2": "final_layer_norm",
}
_TEACHER_POS_EMBED = "encoder.transformer.pos_conv_embed"


@dataclass
class StudentOutput:
    """Output of `SSLStudent.forward`.

    Attributes:
        hidden_states: 1 + L tensors (B, T', D): the input of layer 1, then each layer's output.
        predictions: one (B, T', head_dim) tensor per `config.heads` entry, in that order.
        lengths: (B,) valid frames, None when no lengths were given.
        padding_mask: (B, T') bool, True = valid frame; None when no lengths were given.
    """

    hidden_states: list[torch.Tensor]
    predictions: list[torch.Tensor]
    lengths: torch.Tensor | None
    padding_mask: torch.Tensor | None


class StudentLayer(nn.Module):
    """Post-LayerNorm Transformer layer: LN(x + Attn(x)), then LN(x + FFN(x)).

    A reuse layer has no query/key projections: it applies the previous layer's attention
    probabilities (B, H, T, T) once to its own value projection, then its own output
    projection.

    Args:
        embed_dim: width D.
        num_heads: attention heads H.
        ffn_dim: feed-forward hidden width.
        reuse: take the attention probabilities from the previous layer.
        dropout: dropout on each sub-layer output before its residual add.
        attention_dropout: dropout on the attention probabilities.
        activation_dropout: dropout on the feed-forward hidden activations.
    """

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        ffn_dim: int,
        reuse: bool = False,
        dropout: float = 0.0,
        attention_dropout: float = 0.0,
        activation_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.reuse = reuse
        self.self_attn = MultiHeadAttention(
            embed_dim, num_heads, attention_dropout, query_key=not reuse
        )
        self.norm1 = nn.LayerNorm(embed_dim)
        self.feed_forward = PositionwiseFeedForward(
            embed_dim, ffn_dim, activation_dropout, activation="gelu"
        )
        self.norm2 = nn.LayerNorm(embed_dim)
        self.dropout = nn.Dropout(dropout)

    def forward(
        self,
        x: torch.Tensor,
        mask: torch.Tensor | None = None,
        *,
        attn_probs: torch.Tensor | None = None,
        need_weights: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Run the layer on x (B, T, D).

        Args:
            mask: (B, 1, T) bool key padding mask, True = valid frame; unused when reusing.
            attn_probs: (B, H, T, T) probabilities of the previous layer; required when the
                layer reuses, else ignored.
            need_weights: also return this layer's probabilities (the given ones for a
                reuse layer), for the next layer to reuse.

        Returns:
            (B, T, D) output and the (B, H, T, T) probabilities or None.
        """
        attended, probs = self.self_attn(
            x,
            x,
            x,
            mask,
            need_weights=need_weights,
            attn_probs=attn_probs if self.reuse else None,
        )
        x = self.norm1(x + self.dropout(attended))

        x = self.norm2(x + self.dropout(self.feed_forward(x)))
        return x, probs


class SSLStudent(nn.Module):
    """Conv front end, masked-frame embedding, post-LN Transformer with attention reuse, and
    one prediction head per (student layer, teacher layer) pair.

    Args:
        config: sizes, reuse pattern and heads.
    """

    def __init__(self, config: StudentConfig) -> None:
        super().__init__()
        self.config = config
        dim = config.embed_dim

        self.frontend = ConvFrontEnd(config.conv_layers)
        conv_dim = self.frontend.output_dim
        self.feature_norm = nn.LayerNorm(conv_dim)
        self.feature_projection = nn.Linear(conv_dim, dim) if conv_dim != dim else None
        self.input_dropout = nn.Dropout(config.input_dropout)
        self.mask_emb = nn.Parameter(torch.empty(dim).uniform_())

        self.pos_conv = ConvPositionalEmbedding(dim, config.pos_conv_kernel, config.pos_conv_groups)
        self.layer_norm = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(config.dropout)
        self.layers = nn.ModuleList(
            StudentLayer(
                dim,
                config.num_heads,
                config.ffn_dim,
                reuse=reuse,
                dropout=config.dropout,
                attention_dropout=config.attention_dropout,
                activation_dropout=config.activation_dropout,
            )
            for reuse in config.reuse
        )
        # Layer i returns its probabilities only when layer i + 1 reuses them; the others
        # keep the fused attention kernel.
        self.need_weights = [*config.reuse[1:], False]

        self.heads = nn.ModuleList(nn.Linear(dim, config.head_dim) for _ in config.heads)
        self.min_samples = self.frontend.min_samples

    def num_frames(self, num_samples: torch.Tensor | int) -> torch.Tensor | int:
        """Frames (20 ms each for the shipped configs) for inputs of `num_samples` samples."""
        return self.frontend.num_frames(num_samples)

    def forward(
        self,
        waveforms: torch.Tensor,
        lengths: torch.Tensor | None = None,
        frame_mask: torch.Tensor | None = None,
    ) -> StudentOutput:
        """Encode 16 kHz waveforms.

        Args:
            waveforms: (B, N) samples, zero-padded past each length.
            lengths: (B,) valid samples; None when no utterance is padded.
            frame_mask: (B, T') bool, True = replace that frame by the mask embedding after
                the feature projection, as HuBERT does before its positional conv.

        Returns:
            `StudentOutput` with T' = `num_frames(N)` frames.
        """
        features, frame_lengths = self.frontend(waveforms, lengths)
        x = self.feature_norm(features)
        if self.feature_projection is not None:
            x = self.feature_projection(x)
        x = self.input_dropout(x)

        if frame_mask is not None:
            if tuple(frame_mask.shape) != tuple(x.shape[:2]) or frame_mask.dtype != torch.bool:
                raise ValueError(
                    f"frame_mask must be a bool tensor (B, T') = {tuple(x.shape[:2])}, got "
                    f"{frame_mask.dtype} {tuple(frame_mask.shape)}; size it with num_frames(N)"
                )
            x = torch.where(frame_mask.unsqueeze(-1), self.mask_emb.to(x.dtype), x)

        padding_mask = None
        key_mask = None
        if frame_lengths is not None:
            padding_mask = lengths_to_mask(frame_lengths, x.size(1))
            # Zero the padded frames: the positional conv then reads the zeros that a lone
            # utterance gets from the conv's own padding.
            x = x * padding_mask.unsqueeze(-1).to(x.dtype)
            key_mask = padding_mask.unsqueeze(1)

        x = self.layer_norm(x + self.pos_conv(x))
        x = self.dropout(x)

        hidden_states = [x]
        probs = None
        for layer, need_weights in zip(self.layers, self.need_weights):
            x, probs = layer(x, key_mask, attn_probs=probs, need_weights=need_weights)
            hidden_states.append(x)

        predictions = [
            head(hidden_states[student_layer])
            for head, (student_layer, _) in zip(self.heads, self.config.heads)
        ]
        return StudentOutput(hidden_states, predictions, frame_lengths, padding_mask)

    def init_from_teacher(self, teacher: HubertTeacher | nn.Module) -> list[str]:
        """Copy the teacher modules that fit into this student.

        The conv front end and the feature norm/projection are copied only when the conv
        layout equals the teacher's. The positional conv, the mask embedding, the
        pre-Transformer LayerNorm and each Linear/LayerNorm of student layer i (from teacher
        layer i) are copied when all their tensors have the teacher's shapes. A module is
        never copied in part, and reuse layers have no query/key projections to copy.

        Args:
            teacher: `HubertTeacher` (wrapping a torchaudio Wav2Vec2Model in `.model`) or a
                torchaudio Wav2Vec2Model; it must be post-LayerNorm like HuBERT Base.

        Returns:
            Names (as in `self.state_dict()`) of the copied tensors.
        """
        model = getattr(teacher, "model", teacher)
        source = _teacher_state(model)
        mask_emb = getattr(teacher, "mask_emb", None)
        if mask_emb is not None:
            source["mask_emb"] = mask_emb.detach()

        target = self.state_dict()
        copied = []
        with torch.no_grad():
            for unit in self._teacher_units(model):
                fits = all(
                    name in target
                    and teacher_name in source
                    and source[teacher_name].shape == target[name].shape
                    for name, teacher_name in unit.items()
                )
                if not fits:
                    continue
                for name, teacher_name in unit.items():
                    target[name].copy_(source[teacher_name])
                    copied.append(name)

        logger.info(
            "initialized %d of %d student tensors (%s) from the teacher",
            len(copied),
            len(target),
            self.config.name,
        )
        return copied

    def _teacher_units(self, model: nn.Module) -> list[dict[str, str]]:
        """Groups of student tensor name -> teacher tensor name, copied all or none."""
        units = [
            {"mask_emb": "mask_emb"},
            _linear_or_norm("layer_norm", "encoder.transformer.layer_norm"),
            {
                f"pos_conv.{name}": f"{_TEACHER_POS_EMBED}.{name}"
                for name in self.pos_conv.state_dict()
            },
        ]

        if _teacher_conv_layers(model) == self.frontend.layer_config:
            frontend = {
                f"frontend.conv_layers.{index}.conv.weight": (
                    f"feature_extractor.conv_layers.{index}.conv.weight"
                )
                for index in range(len(self.frontend.conv_layers))
            }
            frontend.update(
                _linear_or_norm(
                    "frontend.conv_layers.0.norm", "feature_extractor.conv_layers.0.layer_norm"
                )
            )
            projection = "encoder.feature_projection"
            units += [
                frontend,
                _linear_or_norm("feature_norm", f"{projection}.layer_norm"),
                _linear_or_norm("feature_projection", f"{projection}.projection"),
            ]
        else:
            logger.info(
                "conv layout of %s differs from the teacher's; its front end stays random",
                self.config.name,
            )

        teacher_layers = model.encoder.transformer.layers
        if any(layer.layer_norm_first for layer in teacher_layers):
            logger.warning(
                "the teacher uses pre-LayerNorm layers; the post-LN student layers of %s "
                "are not initialized from it",
                self.config.name,
            )
            return units
        for index in range(min(len(self.layers), len(teacher_layers))):
            for student_part, teacher_part in _LAYER_NAME_MAP.items():
                units.append(
                    _linear_or_norm(
                        f"layers.{index}.{student_part}",
                        f"encoder.transformer.layers.{index}.{teacher_part}",
                    )
                )
        return units


def _linear_or_norm(student_prefix: str, teacher_prefix: str) -> dict[str, str]:
    return {f"{student_prefix}.{part}": f"{teacher_prefix}.{part}" for part in ("weight", "bias")}


def _teacher_conv_layers(model: nn.Module) -> list[tuple[int, int, int]] | None:
    """Return (channels, kernel, stride) per conv of a HuBERT-style front end (bias-free
    convs, GroupNorm after the first only), or None for any other kind of front end."""
    layout = []
    for index, block in enumerate(model.feature_extractor.conv_layers):
        norm = block.layer_norm
        norm_ok = isinstance(norm, nn.GroupNorm) if index == 0 else norm is None
        if block.conv.bias is not None or not norm_ok:
            return None
        layout.append((block.conv.out_channels, block.conv.kernel_size[0], block.conv.stride[0]))
    return layout


def _teacher_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """Return the teacher's state dict with the positional conv in weight-norm form, also when
    the teacher's weight norm was folded into a plain weight."""
    state = dict(model.state_dict())
    folded = state.pop(f"{_TEACHER_POS_EMBED}.conv.weight", None)
    if folded is not None:
        # weight = g * v / ||v|| with the norm over every axis but time; v = weight gives g.
        state[f"{_TEACHER_POS_EMBED}.conv.parametrizations.weight.original0"] = folded.norm(
            dim=(0, 1), keepdim=True
        )
        state[f"{_TEACHER_POS_EMBED}.conv.parametrizations.weight.original1"] = folded
    return state
