"""Conv waveform front end of HuBERT-style models and its frame-count arithmetic."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from asr.models.mask import lengths_to_mask

ConvLayers = Sequence[tuple[int, int, int]]


def conv_output_length(
    num_samples: torch.Tensor | int, conv_layers: ConvLayers
) -> torch.Tensor | int:
    """Frames left after valid (unpadded) convolutions: floor((N - kernel) / stride) + 1 each.

    Args:
        num_samples: (B,) int tensor or an int, input length in samples.
        conv_layers: (channels, kernel, stride) of each conv.

    Returns:
        Same type as `num_samples`; 0 where the input is shorter than the receptive field.
    """
    length = num_samples
    for _, kernel, stride in conv_layers:
        if isinstance(length, torch.Tensor):
            length = torch.div(length - kernel, stride, rounding_mode="floor") + 1
            length = length.clamp(min=0)
        else:
            length = max(0, (length - kernel) // stride + 1)
    return length


def conv_min_samples(conv_layers: ConvLayers) -> int:
    """Shortest input (samples) that yields one output frame: the receptive field."""
    needed = 1
    for _, kernel, stride in reversed(conv_layers):
        needed = (needed - 1) * stride + kernel
    return needed


class ValidChannelNorm(nn.GroupNorm):
    """GroupNorm with one group per channel whose statistics skip padded time steps.

    With `valid` None it is exactly `nn.GroupNorm(C, C)`, the first-layer norm of HuBERT, so
    its parameters load from a HuBERT checkpoint. With a mask, each utterance of a padded
    batch is normalized as if it ran alone.

    NOTE: torchaudio's HuBERT normalizes over the padded length, so in a padded batch a
    teacher's first-layer features differ from what this norm computes.
    """

    def __init__(self, channels: int) -> None:
        super().__init__(num_groups=channels, num_channels=channels, affine=True)

    def forward(self, x: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        """(B, C, T), valid (B, 1, T) float (1 = real sample) or None -> (B, C, T)."""
        if valid is None:
            return super().forward(x)

        count = valid.sum(dim=-1, keepdim=True).clamp(min=1.0)
        mean = (x * valid).sum(dim=-1, keepdim=True) / count
        var = ((x - mean).square() * valid).sum(dim=-1, keepdim=True) / count
        x = (x - mean) * torch.rsqrt(var + self.eps)
        return x * self.weight.unsqueeze(-1) + self.bias.unsqueeze(-1)


class ConvBlock(nn.Module):
    """Conv1d without bias, optional per-channel norm, GELU.

    Args:
        in_channels, out_channels: channel counts.
        kernel, stride: in input steps.
        norm: add a `ValidChannelNorm` after the conv.
    """

    def __init__(
        self, in_channels: int, out_channels: int, kernel: int, stride: int, norm: bool
    ) -> None:
        super().__init__()
        self.conv = nn.Conv1d(in_channels, out_channels, kernel, stride=stride, bias=False)
        self.norm = ValidChannelNorm(out_channels) if norm else None

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """(B, C_in, N) -> (B, C_out, N'); `lengths` (B,) counts the valid output steps."""
        x = self.conv(x)

        if self.norm is not None:
            valid = None
            if lengths is not None:
                valid = lengths_to_mask(lengths, x.size(-1)).unsqueeze(1).to(x.dtype)
            x = self.norm(x, valid)
        return F.gelu(x)


class ConvFrontEnd(nn.Module):
    """Stack of `ConvBlock`s turning a waveform into frames; norm after the first conv only.

    HuBERT's layout [(512, 10, 5), (512, 3, 2) x 4, (512, 2, 2) x 2] has a total stride of
    320 samples (20 ms at 16 kHz) and a receptive field of 400 samples (25 ms).

    Args:
        conv_layers: (channels, kernel, stride) of each conv.
    """

    def __init__(self, conv_layers: ConvLayers) -> None:
        super().__init__()
        self.layer_config = [tuple(layer) for layer in conv_layers]
        blocks = []
        in_channels = 1
        for index, (channels, kernel, stride) in enumerate(self.layer_config):
            blocks.append(ConvBlock(in_channels, channels, kernel, stride, norm=index == 0))
            in_channels = channels
        self.conv_layers = nn.ModuleList(blocks)
        self.output_dim = in_channels
        self.min_samples = conv_min_samples(self.layer_config)

    def num_frames(self, num_samples: torch.Tensor | int) -> torch.Tensor | int:
        """Output frames for inputs of `num_samples` samples (tensor or int)."""
        return conv_output_length(num_samples, self.layer_config)

    def forward(
        self, waveforms: torch.Tensor, lengths: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Waveforms (B, N) -> features (B, T', C) and frame lengths (B,) (None if not given).

        Frames past an utterance's length hold values computed from padding; the valid ones
        equal what the utterance gives when it runs alone.
        """
        if waveforms.dim() != 2:
            raise ValueError(
                f"waveforms must be (B, N) samples, got shape {tuple(waveforms.shape)}"
            )
        if waveforms.size(1) < self.min_samples:
            raise ValueError(
                f"waveforms have {waveforms.size(1)} samples, fewer than the "
                f"{self.min_samples} the conv front end needs for one frame; pad or drop them"
            )

        x = waveforms.unsqueeze(1)
        frame_lengths = lengths
        for block, layer in zip(self.conv_layers, self.layer_config):
            if frame_lengths is not None:
                frame_lengths = conv_output_length(frame_lengths, [layer])
            x = block(x, frame_lengths)
        return x.transpose(1, 2), frame_lengths
