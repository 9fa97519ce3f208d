"""Tests for SpecAugment masking on padded fbank batches."""

from __future__ import annotations

import pytest
import torch

from asr.features.specaugment import SpecAugment, SpecAugmentOptions

# A fill value no feature can take, so masked cells are easy to find.
FILL = -100.0


def make_batch(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    lengths = torch.tensor([300, 120, 3])
    feats = torch.rand(3, 300, 80, generator=generator) + 1.0
    return feats, lengths


def runs(flags: list[bool]) -> list[int]:
    """Return the lengths of the runs of True in ``flags``."""
    lengths, current = [], 0
    for flag in flags + [False]:
        if flag:
            current += 1
        elif current:
            lengths.append(current)
            current = 0
    return lengths


def masked_frames(out: torch.Tensor, row: int, length: int) -> list[bool]:
    return (out[row, :length] == FILL).all(dim=1).tolist()


def masked_bins(out: torch.Tensor, row: int, length: int) -> list[bool]:
    return (out[row, :length] == FILL).all(dim=0).tolist()


def test_specaugment_eval_is_identity():
    feats, lengths = make_batch()
    augment = SpecAugment().eval()

    assert augment(feats, lengths) is feats


def test_specaugment_single_band_widths():
    augment = SpecAugment(1, 10, 1, 50, mask_value=FILL).train()
    for seed in range(20):
        feats, lengths = make_batch(seed)
        out = augment(feats, lengths, torch.Generator().manual_seed(seed))

        for row, length in enumerate(lengths.tolist()):
            time_runs = runs(masked_frames(out, row, length))
            assert len(time_runs) <= 1
            assert all(width <= min(50, length) for width in time_runs)

            # A time mask over the whole utterance hides the frequency mask.
            if sum(time_runs) < length:
                freq_runs = runs(masked_bins(out, row, length))
                assert len(freq_runs) <= 1
                assert all(width <= 10 for width in freq_runs)


def test_specaugment_two_masks_bounds():
    augment = SpecAugment(2, 10, 2, 50, mask_value=FILL).train()
    for seed in range(20):
        feats, lengths = make_batch(seed)
        out = augment(feats, lengths, torch.Generator().manual_seed(seed))

        time_flags = masked_frames(out, 0, 300)
        freq_flags = masked_bins(out, 1, 120)
        assert len(runs(time_flags)) <= 2
        assert sum(time_flags) <= 100
        assert len(runs(freq_flags)) <= 2
        assert sum(freq_flags) <= 20


def test_specaugment_masks_something():
    feats, lengths = make_batch()
    augment = SpecAugment(mask_value=FILL).train()

    outputs = [augment(feats, lengths, torch.Generator().manual_seed(s)) for s in range(5)]

    assert any(bool((out[0] == FILL).any()) for out in outputs)


def test_specaugment_padding_untouched():
    feats, lengths = make_batch()
    augment = SpecAugment(mask_value=FILL).train()
    for seed in range(10):
        out = augment(feats, lengths, torch.Generator().manual_seed(seed))

        assert torch.equal(out[1, 120:], feats[1, 120:])
        assert torch.equal(out[2, 3:], feats[2, 3:])


def test_specaugment_only_fill_or_input():
    feats, lengths = make_batch()
    augment = SpecAugment(mask_value=FILL).train()

    out = augment(feats, lengths, torch.Generator().manual_seed(0))

    assert bool(((out == feats) | (out == FILL)).all())


def test_specaugment_seed_determinism():
    feats, lengths = make_batch()
    augment = SpecAugment().train()

    first = augment(feats, lengths, torch.Generator().manual_seed(123))
    second = augment(feats, lengths, torch.Generator().manual_seed(123))
    other = augment(feats, lengths, torch.Generator().manual_seed(124))

    assert torch.equal(first, second)
    assert not torch.equal(first, other)


def test_specaugment_global_rng_seeded():
    feats, lengths = make_batch()
    augment = SpecAugment().train()

    torch.manual_seed(7)
    first = augment(feats, lengths)
    torch.manual_seed(7)
    second = augment(feats, lengths)

    assert torch.equal(first, second)


def test_specaugment_mean_fill():
    # Utterance of 2 valid frames with per-bin means 2 and 4, followed by a padding frame.
    feats = torch.tensor([[[1.0, 3.0], [3.0, 5.0], [50.0, 50.0]]])
    augment = SpecAugment(0, 0, 1, 2, mask_value="mean").train()

    lengths = torch.tensor([2])
    outputs = [augment(feats, lengths, torch.Generator().manual_seed(s)) for s in range(20)]

    masked = [out for out in outputs if not torch.equal(out, feats)]
    assert masked
    for out in masked:
        for frame in range(2):
            assert out[0, frame].tolist() in ([2.0, 4.0], feats[0, frame].tolist())
        assert out[0, 2].tolist() == [50.0, 50.0]


def test_specaugment_from_options():
    augment = SpecAugment.from_options(SpecAugmentOptions(max_time_width=30, mask_value=0.0))

    assert augment.max_time_width == 30
    assert augment.mask_value == 0.0


def test_specaugment_invalid_mask_value():
    with pytest.raises(ValueError, match="mask_value"):
        SpecAugment(mask_value="median")
