"""Layer-to-layer distillation losses: masking distillation (MaskHuBERT) and DistilHuBERT."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F


def layer_weights(
    teacher_layers: Sequence[int],
    last_weight: float = 1.0,
    other_weight: float = 0.1,
    last_layer: int = 12,
) -> list[float]:
    """Return one loss weight per head: ``last_weight`` for ``last_layer``, else ``other_weight``.

    Args:
        teacher_layers: 1-based teacher layer predicted by each head.
    """
    return [last_weight if layer == last_layer else other_weight for layer in teacher_layers]


def masking_distillation_loss(
    predictions: Sequence[torch.Tensor],
    targets_unmasked: Sequence[torch.Tensor],
    targets_masked: Sequence[torch.Tensor],
    frame_mask: torch.Tensor,
    padding_mask: torch.Tensor | None,
    weights: Sequence[float],
    names: Sequence[str] | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Compute the masking distillation loss of a student whose input frames were masked.

    Masked frames regress to the teacher that saw the whole input (``targets_unmasked``), so
    the student learns to fill them in. Unmasked frames regress to the teacher that saw the
    same masked input (``targets_masked``). For head ``l`` the squared error is averaged over
    features, then separately over the valid masked frames and over the valid unmasked frames
    of the whole batch, and the two means are summed. A part without frames contributes 0.

    Args:
        predictions: L student head outputs, each (B, T', D).
        targets_unmasked: L teacher layer outputs from the unmasked input, each (B, T', D).
        targets_masked: L teacher layer outputs from the masked input, each (B, T', D).
        frame_mask: (B, T') bool, True = frame masked in the inputs.
        padding_mask: (B, T') bool, True = valid frame; None when nothing is padded.
        weights: L loss weights.
        names: L keys of the per-head losses; default ``"0"``, ``"1"``, ...

    Returns:
        ``sum_l weights[l] * loss_l`` (scalar) and the unweighted ``loss_l`` per name.
    """
    names = _check_heads(predictions, [targets_unmasked, targets_masked], weights, names)
    frame_mask = frame_mask.bool()
    if frame_mask.shape != predictions[0].shape[:2]:
        raise ValueError(
            f"frame_mask has shape {tuple(frame_mask.shape)}, expected (B, T') = "
            f"{tuple(predictions[0].shape[:2])}"
        )
    valid = _valid_frames(padding_mask, frame_mask.shape, frame_mask.device)
    on_masked = (frame_mask & valid).to(predictions[0].dtype)
    on_unmasked = (~frame_mask & valid).to(predictions[0].dtype)

    total = predictions[0].new_zeros(())
    per_layer = {}
    for name, pred, clean, masked, weight in zip(
        names, predictions, targets_unmasked, targets_masked, weights
    ):
        masked_part = _frame_mean((pred - clean).pow(2).mean(dim=-1), on_masked)
        unmasked_part = _frame_mean((pred - masked).pow(2).mean(dim=-1), on_unmasked)
        per_layer[name] = masked_part + unmasked_part
        total = total + weight * per_layer[name]
    return total, per_layer


def distilhubert_loss(
    predictions: Sequence[torch.Tensor],
    targets: Sequence[torch.Tensor],
    padding_mask: torch.Tensor | None,
    cos_weight: float = 1.0,
    names: Sequence[str] | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Compute the DistilHuBERT loss: L1 plus cosine similarity through a log-sigmoid, per head.

    For head ``l``: ``loss_l = mean |pred - target| - cos_weight * mean log sigmoid(cos)``,
    where the L1 mean runs over valid frames and features and the second mean over valid
    frames, with ``cos`` the cosine similarity of each frame's vectors.

    Args:
        predictions: L student head outputs, each (B, T', D).
        targets: L teacher layer outputs, each (B, T', D).
        padding_mask: (B, T') bool, True = valid frame; None when nothing is padded.
        cos_weight: weight of the cosine term.
        names: L keys of the per-head losses; default ``"0"``, ``"1"``, ...

    Returns:
        ``sum_l loss_l`` (scalar) and ``loss_l`` per name.
    """
    names = _check_heads(predictions, [targets], [1.0] * len(predictions), names)
    first = predictions[0]
    frames = _valid_frames(padding_mask, first.shape[:2], first.device).to(first.dtype)

    total = first.new_zeros(())
    per_layer = {}
    for name, pred, target in zip(names, predictions, targets):
        l1 = _frame_mean((pred - target).abs().mean(dim=-1), frames)
        cosine = F.cosine_similarity(pred, target, dim=-1)
        cos_term = _frame_mean(-F.logsigmoid(cosine), frames)
        per_layer[name] = l1 + cos_weight * cos_term
        total = total + per_layer[name]
    return total, per_layer


def _frame_mean(values: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` (B, T') over the frames where ``frames`` is 1; 0 when there are none."""
    return (values * frames).sum() / frames.sum().clamp(min=1.0)


def _valid_frames(
    padding_mask: torch.Tensor | None, shape: torch.Size, device: torch.device
) -> torch.Tensor:
    """Return the (B, T') bool mask of valid frames, all True without a padding mask."""
    if padding_mask is None:
        return torch.ones(shape, dtype=torch.bool, device=device)
    if padding_mask.shape != shape:
        raise ValueError(
            f"padding_mask has shape {tuple(padding_mask.shape)}, expected (B, T') = "
            f"{tuple(shape)}"
        )
    return padding_mask.bool()


def _check_heads(
    predictions: Sequence[torch.Tensor],
    target_lists: Sequence[Sequence[torch.Tensor]],
    weights: Sequence[float],
    names: Sequence[str] | None,
) -> list[str]:
    """Check that every list has one (B, T', D) tensor per head; return the head names."""
    if not predictions:
        raise ValueError("predictions is empty; the student needs at least one prediction head")

    count = len(predictions)
    names = [str(i) for i in range(count)] if names is None else list(names)
    sizes = {"weights": len(weights), "names": len(names)}
    sizes.update({f"target list {i}": len(targets) for i, targets in enumerate(target_lists)})
    for label, size in sizes.items():
        if size != count:
            raise ValueError(f"{label} has {size} entries, expected one per prediction ({count})")

    for name, pred, *targets in zip(names, predictions, *target_lists):
        for target in targets:
            if pred.shape != target.shape:
                raise ValueError(
                    f"head {name}: prediction shape {tuple(pred.shape)} differs from the "
                    f"target shape {tuple(target.shape)}; both must be (B, T', D)"
                )
    return names
