"""Tests of the masking distillation and DistilHuBERT losses on hand-computed cases."""

from __future__ import annotations

import math

import pytest
import torch

from asr.distill.losses import distilhubert_loss, layer_weights, masking_distillation_loss


def _t(rows: list[list[float]]) -> torch.Tensor:
    """(1, T, D) tensor from T rows of D values."""
    return torch.tensor([rows], dtype=torch.float32)


# B=1, T=3, D=2; frame 0 masked, frames 1 and 2 unmasked.
PRED_1 = [[1.0, 2.0], [0.0, 0.0], [3.0, 1.0]]
CLEAN_1 = [[0.0, 0.0], [1.0, 1.0], [3.0, 3.0]]
MASKED_1 = [[1.0, 0.0], [2.0, 0.0], [0.0, 1.0]]
# Masked part: frame 0 vs CLEAN_1: (1 + 4) / 2 = 2.5.
# Unmasked part: frame 1 vs MASKED_1: (4 + 0) / 2 = 2; frame 2: (9 + 0) / 2 = 4.5; mean 3.25.
LOSS_1 = 2.5 + 3.25

PRED_2 = [[2.0, 2.0], [1.0, 1.0], [1.0, 1.0]]
CLEAN_2 = [[0.0, 0.0], [5.0, 5.0], [5.0, 5.0]]
MASKED_2 = [[9.0, 9.0], [1.0, 1.0], [0.0, 1.0]]
# Masked part: frame 0: (4 + 4) / 2 = 4. Unmasked part: frame 1: 0, frame 2: (1 + 0) / 2 = 0.5,
# mean 0.25.
LOSS_2 = 4.0 + 0.25

FRAME_MASK = torch.tensor([[True, False, False]])


def _masking_inputs():
    return (
        [_t(PRED_1), _t(PRED_2)],
        [_t(CLEAN_1), _t(CLEAN_2)],
        [_t(MASKED_1), _t(MASKED_2)],
    )


def test_masking_loss_hand_computed():
    predictions, clean, masked = _masking_inputs()
    total, per_layer = masking_distillation_loss(
        predictions, clean, masked, FRAME_MASK, None, [0.1, 1.0], names=["t4", "t12"]
    )
    assert per_layer["t4"].item() == pytest.approx(LOSS_1)
    assert per_layer["t12"].item() == pytest.approx(LOSS_2)
    assert total.item() == pytest.approx(0.1 * LOSS_1 + 1.0 * LOSS_2)


def test_masking_loss_default_names():
    predictions, clean, masked = _masking_inputs()
    _, per_layer = masking_distillation_loss(
        predictions, clean, masked, FRAME_MASK, None, [1.0, 1.0]
    )
    assert list(per_layer) == ["0", "1"]


def test_masking_loss_ignores_padding():
    predictions, clean, masked = _masking_inputs()
    padding_mask = torch.tensor([[True, True, True, False]])
    # The padded frame is marked masked too: padding must win.
    frame_mask = torch.tensor([[True, False, False, True]])

    def padded(tensors: list[torch.Tensor], value: float) -> list[torch.Tensor]:
        return [torch.cat([x, torch.full((1, 1, 2), value)], dim=1) for x in tensors]

    results = []
    for value in (0.0, 100.0):
        total, _ = masking_distillation_loss(
            padded(predictions, value),
            padded(clean, -value),
            padded(masked, 2 * value),
            frame_mask,
            padding_mask,
            [0.1, 1.0],
        )
        results.append(total.item())
    assert results[0] == pytest.approx(0.1 * LOSS_1 + 1.0 * LOSS_2)
    assert results[1] == pytest.approx(results[0])


def test_masking_loss_no_masked_frames_finite():
    predictions, clean, masked = _masking_inputs()
    predictions = [p.clone().requires_grad_(True) for p in predictions]
    frame_mask = torch.zeros(1, 3, dtype=torch.bool)
    total, per_layer = masking_distillation_loss(
        predictions, clean, masked, frame_mask, None, [1.0, 1.0]
    )
    total.backward()
    # Head 1 unmasked part over all 3 frames vs MASKED_1: (0 + 4) / 2 = 2, 2, 4.5 -> 8.5 / 3.
    assert per_layer["0"].item() == pytest.approx(8.5 / 3)
    assert torch.isfinite(total)
    assert torch.isfinite(predictions[0].grad).all()


def test_masking_loss_all_frames_masked_finite():
    predictions, clean, masked = _masking_inputs()
    frame_mask = torch.ones(1, 3, dtype=torch.bool)
    total, per_layer = masking_distillation_loss(
        predictions, clean, masked, frame_mask, None, [1.0, 1.0]
    )
    # Head 1 masked part over all 3 frames vs CLEAN_1: 2.5, (1 + 1) / 2 = 1, (0 + 4) / 2 = 2.
    assert per_layer["0"].item() == pytest.approx(5.5 / 3)
    assert torch.isfinite(total)


def test_masking_loss_no_valid_frames_is_zero():
    predictions, clean, masked = _masking_inputs()
    padding_mask = torch.zeros(1, 3, dtype=torch.bool)
    total, _ = masking_distillation_loss(
        predictions, clean, masked, FRAME_MASK, padding_mask, [1.0, 1.0]
    )
    assert total.item() == 0.0


def test_masking_loss_rejects_weight_count():
    predictions, clean, masked = _masking_inputs()
    with pytest.raises(ValueError, match="weights has 1 entries"):
        masking_distillation_loss(predictions, clean, masked, FRAME_MASK, None, [1.0])


def test_masking_loss_rejects_shape_mismatch():
    predictions, clean, masked = _masking_inputs()
    clean[1] = torch.zeros(1, 4, 2)
    with pytest.raises(ValueError, match="head 1"):
        masking_distillation_loss(predictions, clean, masked, FRAME_MASK, None, [1.0, 1.0])


# Cosine similarities of the three frames: 1, 0 and -1.
DISTIL_PRED = [[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]
DISTIL_TARGET = [[2.0, 0.0], [1.0, 0.0], [-1.0, -1.0]]
# L1 per frame, averaged over D=2: 1 / 2, 2 / 2, 4 / 2 -> mean 3.5 / 3.
DISTIL_L1 = 3.5 / 3
# -log sigmoid(c) = log(1 + exp(-c)) for c = 1, 0, -1.
DISTIL_COS = (math.log(1 + math.exp(-1)) + math.log(2) + math.log(1 + math.e)) / 3


def test_distilhubert_loss_hand_computed():
    total, per_layer = distilhubert_loss([_t(DISTIL_PRED)], [_t(DISTIL_TARGET)], None)
    assert per_layer["0"].item() == pytest.approx(DISTIL_L1 + DISTIL_COS)
    assert total.item() == pytest.approx(DISTIL_L1 + DISTIL_COS)


def test_distilhubert_loss_cos_weight_and_sum():
    predictions = [_t(DISTIL_PRED), _t(DISTIL_PRED)]
    targets = [_t(DISTIL_TARGET), _t(DISTIL_PRED)]
    total, per_layer = distilhubert_loss(predictions, targets, None, cos_weight=0.5)
    # Head 2 matches its target exactly: L1 0, cosine 1 on every frame.
    head_2 = 0.5 * math.log(1 + math.exp(-1))
    assert per_layer["1"].item() == pytest.approx(head_2)
    assert total.item() == pytest.approx(DISTIL_L1 + 0.5 * DISTIL_COS + head_2)


def test_distilhubert_loss_ignores_padding():
    padding_mask = torch.tensor([[True, True, True, False]])
    results = []
    for value in (0.0, 50.0):
        pred = torch.cat([_t(DISTIL_PRED), torch.full((1, 1, 2), value)], dim=1)
        target = torch.cat([_t(DISTIL_TARGET), torch.full((1, 1, 2), -value)], dim=1)
        total, _ = distilhubert_loss([pred], [target], padding_mask)
        results.append(total.item())
    assert results[0] == pytest.approx(DISTIL_L1 + DISTIL_COS)
    assert results[1] == pytest.approx(results[0])


def test_layer_weights_armhubert_heads():
    weights = layer_weights(list(range(1, 13)))
    assert weights == [0.1] * 11 + [1.0]


def test_layer_weights_distilhubert_heads():
    assert layer_weights([4, 8, 12], other_weight=1.0) == [1.0, 1.0, 1.0]
    assert layer_weights([4, 8, 12]) == [0.1, 0.1, 1.0]
