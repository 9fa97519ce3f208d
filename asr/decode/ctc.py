"""CTC searches over frame-level log-probs: greedy search and prefix beam search."""

from __future__ import annotations

import math

import torch

from asr.constants import BLANK_ID

# An n-best list: (token ids without blanks, log score), best first.
NBest = list[tuple[tuple[int, ...], float]]


def _check_batch(log_probs: torch.Tensor, lens: torch.Tensor) -> None:
    if log_probs.dim() != 3:
        raise ValueError(
            f"CTC log-probs must have shape (B, T, V), got {tuple(log_probs.shape)}. "
            "Add a batch dimension for a single utterance."
        )
    batch_size, num_frames, _ = log_probs.shape
    if lens.shape != (batch_size,):
        raise ValueError(
            f"lens must have shape ({batch_size},) to match log-probs {tuple(log_probs.shape)}, "
            f"got {tuple(lens.shape)}."
        )
    if batch_size > 0 and int(lens.max()) > num_frames:
        raise ValueError(
            f"lens contains {int(lens.max())} frames but log-probs only have {num_frames}. "
            "Pass the encoder output lengths, not the feature lengths."
        )


def ctc_greedy_search(
    log_probs: torch.Tensor, lens: torch.Tensor, blank_id: int = BLANK_ID
) -> list[list[int]]:
    """Decode a batch by taking the best token per frame, collapsing repeats and dropping blanks.

    Args:
        log_probs: (B, T, V) CTC log-probs.
        lens: (B,) number of valid frames per utterance. Later frames are padding and ignored.
        blank_id: CTC blank token id.

    Returns:
        B token id lists.
    """
    _check_batch(log_probs, lens)
    batch_size, num_frames, _ = log_probs.shape

    best_tokens = log_probs.argmax(dim=-1)

    # A token is emitted where it differs from the previous frame's token and is not blank.
    previous = torch.full_like(best_tokens, -1)
    previous[:, 1:] = best_tokens[:, :-1]
    frame_index = torch.arange(num_frames, device=log_probs.device)
    valid = frame_index.unsqueeze(0) < lens.to(log_probs.device).unsqueeze(1)
    emitted = (best_tokens != previous) & (best_tokens != blank_id) & valid

    best_tokens = best_tokens.cpu()
    emitted = emitted.cpu()
    return [best_tokens[b][emitted[b]].tolist() for b in range(batch_size)]


def _log_add(a: float, b: float) -> float:
    """Return log(exp(a) + exp(b)) without overflow, with -inf as the log of zero."""
    if a == -math.inf:
        return b
    if b == -math.inf:
        return a
    high = max(a, b)
    return high + math.log1p(math.exp(-abs(a - b)))


def _check_beam_size(beam_size: int) -> None:
    if beam_size < 1:
        raise ValueError(f"beam_size must be at least 1, got {beam_size}.")


def _search_pruned_frames(
    top_scores: list[list[float]], top_tokens: list[list[int]], beam_size: int, blank_id: int
) -> NBest:
    """Run prefix beam search over frames already pruned to their best tokens.

    Args:
        top_scores: T lists of the kept tokens' log-probs.
        top_tokens: T lists of the kept token ids.
        beam_size: number of prefixes kept per frame.
        blank_id: CTC blank token id.
    """
    # prefix -> (log score ending in blank, log score ending in the prefix's last label)
    beam: dict[tuple[int, ...], tuple[float, float]] = {(): (0.0, -math.inf)}
    for frame_scores, frame_tokens in zip(top_scores, top_tokens):
        next_beam: dict[tuple[int, ...], list[float]] = {}

        for prefix, (blank_score, label_score) in beam.items():
            total = _log_add(blank_score, label_score)
            last = prefix[-1] if prefix else None

            for token, token_score in zip(frame_tokens, frame_scores):
                if token == blank_id:
                    entry = next_beam.setdefault(prefix, [-math.inf, -math.inf])
                    entry[0] = _log_add(entry[0], total + token_score)
                elif token == last:
                    # Staying on the last label keeps the prefix, while the same label after
                    # a blank is a new occurrence.
                    entry = next_beam.setdefault(prefix, [-math.inf, -math.inf])
                    entry[1] = _log_add(entry[1], label_score + token_score)
                    extended = next_beam.setdefault(prefix + (token,), [-math.inf, -math.inf])
                    extended[1] = _log_add(extended[1], blank_score + token_score)
                else:
                    extended = next_beam.setdefault(prefix + (token,), [-math.inf, -math.inf])
                    extended[1] = _log_add(extended[1], total + token_score)

        ranked = sorted(next_beam.items(), key=lambda item: _log_add(*item[1]), reverse=True)
        # A repeated label after a prefix with no blank-ending alignment creates a prefix of
        # probability zero, which must not take a beam slot.
        possible = [item for item in ranked if _log_add(*item[1]) > -math.inf]
        if possible:
            ranked = possible
        beam = {prefix: (scores[0], scores[1]) for prefix, scores in ranked[:beam_size]}

    return [(prefix, _log_add(*scores)) for prefix, scores in beam.items()]


def ctc_prefix_beam_search(
    log_probs: torch.Tensor, beam_size: int, blank_id: int = BLANK_ID
) -> NBest:
    """Find the n-best label sequences of one utterance with CTC prefix beam search.

    Each prefix keeps two log scores, one for the alignments that end in blank and one for
    those that end in its last label, so that a repeated label is merged or extended
    correctly. Each frame first keeps only its `beam_size` best tokens, then every prefix is
    extended by them, and the `beam_size` prefixes with the highest total score survive.

    Args:
        log_probs: (T, V) CTC log-probs of the valid frames of one utterance.
        beam_size: number of prefixes kept per frame, and of tokens tried per frame.
        blank_id: CTC blank token id.

    Returns:
        Up to `beam_size` pairs (label sequence, log probability summed over its alignments),
        best first. With T = 0 it is [((), 0.0)].
    """
    if log_probs.dim() != 2:
        raise ValueError(
            f"ctc_prefix_beam_search expects log-probs of shape (T, V) for one utterance, "
            f"got {tuple(log_probs.shape)}. Use ctc_prefix_beam_search_batch for a batch."
        )
    _check_beam_size(beam_size)

    num_tokens = min(beam_size, log_probs.size(1))
    top_scores, top_tokens = log_probs.detach().topk(num_tokens, dim=-1)
    return _search_pruned_frames(
        top_scores.double().cpu().tolist(), top_tokens.cpu().tolist(), beam_size, blank_id
    )


def ctc_prefix_beam_search_batch(
    log_probs: torch.Tensor, lens: torch.Tensor, beam_size: int, blank_id: int = BLANK_ID
) -> list[NBest]:
    """Run CTC prefix beam search on each utterance of a padded batch.

    The per-frame top-k runs on the tensor's device for the whole batch, so only
    (B, T, beam_size) values move to the CPU, where the search itself runs.

    Args:
        log_probs: (B, T, V) CTC log-probs.
        lens: (B,) number of valid frames per utterance.
        beam_size: see `ctc_prefix_beam_search`.
        blank_id: CTC blank token id.

    Returns:
        B n-best lists, each best first, equal to `ctc_prefix_beam_search` per utterance.
    """
    _check_batch(log_probs, lens)
    _check_beam_size(beam_size)

    num_tokens = min(beam_size, log_probs.size(2))
    top_scores, top_tokens = log_probs.detach().topk(num_tokens, dim=-1)
    top_scores = top_scores.double().cpu().tolist()
    top_tokens = top_tokens.cpu().tolist()

    return [
        _search_pruned_frames(top_scores[b][:length], top_tokens[b][:length], beam_size, blank_id)
        for b, length in enumerate(lens.tolist())
    ]
