"""Tests of the span masks used for masked distillation."""

from __future__ import annotations

import pytest
import torch

from asr.distill.masking import span_mask


def _runs(row: torch.Tensor) -> list[int]:
    """Lengths of the runs of True in a 1-D bool tensor."""
    runs, current = [], 0
    for value in row.tolist():
        if value:
            current += 1
        elif current:
            runs.append(current)
            current = 0
    if current:
        runs.append(current)
    return runs


def test_span_mask_shape_and_dtype():
    mask = span_mask(torch.tensor([40, 25]), 40, generator=torch.Generator().manual_seed(0))
    assert mask.shape == (2, 40)
    assert mask.dtype == torch.bool


def test_span_mask_fraction_matches_prob_when_spans_fit():
    # prob * n / span = 0.3 * 335 / 10 = 10.05 spans on average, i.e. 100.5 of 335 frames
    # = 0.3; 11 spans of 10 frames always fit in 335 frames, so nothing is dropped.
    generator = torch.Generator().manual_seed(1)
    fractions = [
        span_mask(torch.tensor([335]), 335, prob=0.3, generator=generator).float().mean()
        for _ in range(400)
    ]
    assert abs(float(torch.stack(fractions).mean()) - 0.3) < 0.005


def test_span_mask_fraction_below_prob_when_crowded():
    generator = torch.Generator().manual_seed(2)
    fractions = torch.stack([
        span_mask(torch.tensor([500]), 500, prob=0.8, generator=generator).float().mean()
        for _ in range(200)
    ])
    mean = float(fractions.mean())
    assert mean < 0.8
    assert mean > 0.72


def test_span_mask_span_count_formula():
    # 0.4 * 50 / 10 = 2 exactly, so every draw has 2 spans = 20 frames; after the first
    # span one free interval is at least 20 frames long, so the second always fits.
    generator = torch.Generator().manual_seed(3)
    for _ in range(50):
        mask = span_mask(torch.tensor([50]), 50, prob=0.4, generator=generator)
        assert int(mask.sum()) == 20


def test_span_mask_runs_are_span_multiples():
    generator = torch.Generator().manual_seed(4)
    lengths = torch.tensor([300, 123, 57, 10])
    for _ in range(50):
        mask = span_mask(lengths, 300, prob=0.8, span=10, generator=generator)
        for row in mask:
            for run in _runs(row):
                assert run % 10 == 0, f"run of {run} frames is not a multiple of the span"


def test_span_mask_padding_never_masked():
    generator = torch.Generator().manual_seed(5)
    lengths = torch.tensor([100, 37, 0])
    for _ in range(50):
        mask = span_mask(lengths, 100, prob=0.8, generator=generator)
        assert not mask[1, 37:].any()
        assert not mask[2].any()


def test_span_mask_seeded_is_deterministic():
    lengths = torch.tensor([200, 150, 90])
    first = span_mask(lengths, 200, generator=torch.Generator().manual_seed(7))
    second = span_mask(lengths, 200, generator=torch.Generator().manual_seed(7))
    other = span_mask(lengths, 200, generator=torch.Generator().manual_seed(8))
    assert torch.equal(first, second)
    assert not torch.equal(first, other)


def test_span_mask_short_utterances():
    generator = torch.Generator().manual_seed(9)
    for _ in range(20):
        mask = span_mask(torch.tensor([9, 15]), 15, prob=0.01, generator=generator)
        # 9 frames cannot hold a 10-frame span.
        assert not mask[0].any()
        # 0.01 * 15 / 10 rounds to 0 spans; min_masks raises it to one span.
        assert int(mask[1].sum()) == 10


def test_span_mask_min_masks_zero_allows_empty():
    mask = span_mask(
        torch.tensor([15]), 15, prob=0.0, min_masks=0, generator=torch.Generator().manual_seed(0)
    )
    assert not mask.any()


def test_span_mask_rejects_lengths_over_num_frames():
    with pytest.raises(ValueError, match="num_frames=10"):
        span_mask(torch.tensor([12]), 10)
