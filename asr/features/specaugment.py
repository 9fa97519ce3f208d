"""SpecAugment: random frequency and time masks on a padded batch of fbank features."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class SpecAugmentOptions:
    """SpecAugment settings, with WeNet's AISHELL-1 values as defaults.

    Attributes:
        num_freq_masks: Frequency masks per utterance.
        max_freq_width: Max width of one frequency mask, in mel bins.
        num_time_masks: Time masks per utterance.
        max_time_width: Max width of one time mask, in frames (10 ms each).
        mask_value: "mean" fills masks with the utterance's per-bin mean over its valid frames,
            and a float fills them with that constant (0.0 reproduces WeNet).
    """

    num_freq_masks: int = 2
    max_freq_width: int = 10
    num_time_masks: int = 2
    max_time_width: int = 50
    mask_value: float | str = "mean"


class SpecAugment(nn.Module):
    """Frequency and time masking of (B, T, F) features, active only in training mode.

    Each mask has a width drawn uniformly from [0, max width] and a start drawn so that the mask
    lies inside the utterance. Time masks stay within each utterance's own length, and frequency
    masks touch only its valid frames, so padding is never modified.

    The default fill is the per-utterance mean, not 0. These features are raw log-mel before
    CMVN, where 0 is a near-silent energy and becomes a large negative value after normalization.
    The mean is what the SpecAugment paper's zero fill means on normalized features.
    """

    def __init__(
        self,
        num_freq_masks: int = 2,
        max_freq_width: int = 10,
        num_time_masks: int = 2,
        max_time_width: int = 50,
        mask_value: float | str = "mean",
    ) -> None:
        super().__init__()
        if isinstance(mask_value, str) and mask_value != "mean":
            raise ValueError(
                f"Invalid SpecAugment mask_value {mask_value!r}: use 'mean' or a float."
            )
        for name, value in (
            ("num_freq_masks", num_freq_masks),
            ("max_freq_width", max_freq_width),
            ("num_time_masks", num_time_masks),
            ("max_time_width", max_time_width),
        ):
            if value < 0:
                raise ValueError(f"Invalid SpecAugment {name}={value}: must be >= 0.")

        self.num_freq_masks = num_freq_masks
        self.max_freq_width = max_freq_width
        self.num_time_masks = num_time_masks
        self.max_time_width = max_time_width
        self.mask_value = mask_value

    @classmethod
    def from_options(cls, options: SpecAugmentOptions) -> SpecAugment:
        """Build the module from an options bundle."""
        return cls(
            options.num_freq_masks,
            options.max_freq_width,
            options.num_time_masks,
            options.max_time_width,
            options.mask_value,
        )

    def extra_repr(self) -> str:
        return (
            f"num_freq_masks={self.num_freq_masks}, max_freq_width={self.max_freq_width},"
            f" num_time_masks={self.num_time_masks}, max_time_width={self.max_time_width},"
            f" mask_value={self.mask_value!r}"
        )

    def forward(
        self,
        feats: torch.Tensor,
        lengths: torch.Tensor,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Apply the masks and return a new tensor, leaving ``feats`` unchanged.

        Args:
            feats: (B, T, F) features, padded along T.
            lengths: (B,) number of valid frames per utterance.
            generator: Random generator for mask positions, the global RNG when None.

        Returns:
            (B, T, F) features, identical to ``feats`` in eval mode.
        """
        if not self.training:
            return feats

        batch_size, max_frames, num_bins = feats.shape
        lengths = lengths.to(device=feats.device, dtype=torch.long)
        valid = torch.arange(max_frames, device=feats.device)[None, :] < lengths[:, None]

        freq_mask = _band_mask(
            torch.full((batch_size,), num_bins, dtype=torch.long),
            self.num_freq_masks, self.max_freq_width, num_bins, generator,
        ).to(feats.device)
        time_mask = _band_mask(
            lengths.cpu(), self.num_time_masks, self.max_time_width, max_frames, generator
        ).to(feats.device)
        mask = (time_mask[:, :, None] | freq_mask[:, None, :]) & valid[:, :, None]

        if self.mask_value == "mean":
            valid_frames = valid[:, :, None].to(feats.dtype)
            fill = (feats * valid_frames).sum(dim=1, keepdim=True)
            fill = fill / lengths.clamp(min=1)[:, None, None].to(feats.dtype)
        else:
            fill = torch.tensor(float(self.mask_value), dtype=feats.dtype, device=feats.device)
        return torch.where(mask, fill, feats)


def _band_mask(
    sizes: torch.Tensor,
    num_masks: int,
    max_width: int,
    axis_length: int,
    generator: torch.Generator | None,
) -> torch.Tensor:
    """Return a (B, axis_length) bool mask, the union of ``num_masks`` bands per row.

    Row b's bands have widths uniform in [0, min(max_width, sizes[b])] and lie in [0, sizes[b]).
    """
    batch_size = sizes.shape[0]
    if num_masks == 0 or max_width == 0:
        return torch.zeros(batch_size, axis_length, dtype=torch.bool)

    # Draw in float64 so floor(u * n) < n holds for every n, then clamp as a safeguard.
    device = generator.device if generator is not None else torch.device("cpu")
    draws = torch.rand(batch_size, num_masks, 2, generator=generator, dtype=torch.float64,
                       device=device).cpu()
    sizes = sizes[:, None]

    max_widths = torch.clamp(sizes, max=max_width)
    widths = torch.minimum((draws[..., 0] * (max_widths + 1)).long(), max_widths)
    starts = torch.minimum((draws[..., 1] * (sizes - widths + 1)).long(), sizes - widths)

    positions = torch.arange(axis_length)[None, None, :]
    inside = (positions >= starts[..., None]) & (positions < (starts + widths)[..., None])
    return inside.any(dim=1)
