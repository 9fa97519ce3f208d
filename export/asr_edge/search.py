"""CTC greedy search, CTC prefix beam search and attention rescoring in numpy."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from asr_edge.tokens import BLANK_ID, SOS_EOS_ID

# An n-best list: (token ids without blanks, log score), best first.
NBest = list[tuple[tuple[int, ...], float]]

# Scores (hyps_in (M, L) int64, hyps_in_lens (M,) int64) and returns decoder log-probs (M, L, V).
DecoderFn = Callable[[np.ndarray, np.ndarray], np.ndarray]


def _check_frames(log_probs: np.ndarray) -> None:
    if log_probs.ndim != 2:
        raise ValueError(
            f"Expected CTC log-probs of shape (T, V) for one utterance, got {log_probs.shape}."
        )


def ctc_greedy_search(log_probs: np.ndarray, blank_id: int = BLANK_ID) -> list[int]:
    """Take the best token per frame, collapse repeats and drop blanks.

    Args:
        log_probs: (T, V) CTC log-probs of the valid frames of one utterance.
        blank_id: CTC blank token id.

    Returns:
        Token ids.
    """
    _check_frames(log_probs)

    best = log_probs.argmax(axis=1)
    previous = np.full_like(best, -1)
    previous[1:] = best[:-1]
    emitted = (best != previous) & (best != blank_id)
    return best[emitted].tolist()


def _log_add(a: float, b: float) -> float:
    """Return log(exp(a) + exp(b)), with -inf as the log of zero."""
    if a == -math.inf:
        return b
    if b == -math.inf:
        return a
    return max(a, b) + math.log1p(math.exp(-abs(a - b)))


def ctc_prefix_beam_search(
    log_probs: np.ndarray, beam_size: int, blank_id: int = BLANK_ID
) -> NBest:
    """Find the n-best label sequences of one utterance with CTC prefix beam search.

    Each prefix keeps one log score for its alignments ending in blank and one for those
    ending in its last label, so a repeated label merges unless a blank separates it. Each
    frame tries only its ``beam_size`` best tokens, and the ``beam_size`` best prefixes survive.

    Args:
        log_probs: (T, V) CTC log-probs of the valid frames of one utterance.
        beam_size: prefixes kept per frame, and tokens tried per frame.
        blank_id: CTC blank token id.

    Returns:
        Up to ``beam_size`` pairs (token ids, log probability summed over their alignments),
        best first. With T = 0 it is [((), 0.0)].
    """
    _check_frames(log_probs)
    if beam_size < 1:
        raise ValueError(f"beam_size must be at least 1, got {beam_size}.")

    num_tokens = min(beam_size, log_probs.shape[1])
    top_tokens = np.argsort(-log_probs, axis=1, kind="stable")[:, :num_tokens]
    top_scores = np.take_along_axis(log_probs, top_tokens, axis=1).astype(np.float64)

    # prefix -> [log score ending in blank, log score ending in the last label]
    beam: dict[tuple[int, ...], list[float]] = {(): [0.0, -math.inf]}
    for frame_tokens, frame_scores in zip(top_tokens.tolist(), top_scores.tolist()):
        next_beam: dict[tuple[int, ...], list[float]] = {}

        def entry(prefix: tuple[int, ...]) -> list[float]:
            return next_beam.setdefault(prefix, [-math.inf, -math.inf])

        for prefix, (blank_score, label_score) in beam.items():
            total = _log_add(blank_score, label_score)
            last = prefix[-1] if prefix else None

            for token, score in zip(frame_tokens, frame_scores):
                if token == blank_id:
                    kept = entry(prefix)
                    kept[0] = _log_add(kept[0], total + score)
                elif token == last:
                    kept = entry(prefix)
                    kept[1] = _log_add(kept[1], label_score + score)
                    extended = entry(prefix + (token,))
                    extended[1] = _log_add(extended[1], blank_score + score)
                else:
                    extended = entry(prefix + (token,))
                    extended[1] = _log_add(extended[1], total + score)

        ranked = sorted(next_beam.items(), key=lambda item: _log_add(*item[1]), reverse=True)
        # A repeat right after a label-ending-only prefix creates a zero-probability prefix,
        # which must not take a beam slot.
        possible = [item for item in ranked if _log_add(*item[1]) > -math.inf]
        beam = dict((possible or ranked)[:beam_size])

    return [(prefix, _log_add(*scores)) for prefix, scores in beam.items()]


def rescoring_inputs(
    hyps: list[tuple[int, ...]], sos_eos_id: int = SOS_EOS_ID
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Decoder inputs and targets for M hypotheses of up to L - 1 tokens.

    Returns:
        hyps_in (M, L): sos + hyp, padded with eos; hyps_in_lens (M,): len(hyp) + 1;
        targets (M, L): hyp + eos, padded with eos.
    """
    max_len = max(len(hyp) for hyp in hyps) + 1
    hyps_in = np.full((len(hyps), max_len), sos_eos_id, dtype=np.int64)
    targets = np.full((len(hyps), max_len), sos_eos_id, dtype=np.int64)
    for m, hyp in enumerate(hyps):
        hyps_in[m, 1 : len(hyp) + 1] = hyp
        targets[m, : len(hyp)] = hyp
    hyps_in_lens = np.array([len(hyp) + 1 for hyp in hyps], dtype=np.int64)
    return hyps_in, hyps_in_lens, targets


def attention_rescoring(
    nbest: NBest, decoder: DecoderFn, ctc_weight: float = 0.5, sos_eos_id: int = SOS_EOS_ID
) -> tuple[int, ...]:
    """Pick the n-best hypothesis with the highest decoder log-prob plus weighted CTC score.

    Every hypothesis goes through ``decoder`` in one batch, fed as sos + hyp (padded with eos)
    and scored on hyp + eos.

    Args:
        nbest: (token ids, CTC log score) pairs of one utterance.
        decoder: function from ``hyps_in`` (M, L) and ``hyps_in_lens`` (M,) to (M, L, V)
            decoder log-probs, already bound to the utterance's encoder output.
        ctc_weight: weight of the CTC score.
        sos_eos_id: id used for both sos and eos.

    Returns:
        Token ids of the best hypothesis, () for an empty n-best list.
    """
    if not nbest:
        return ()

    hyps = [hyp for hyp, _ in nbest]
    num_hyps = len(hyps)
    hyps_in, hyps_in_lens, targets = rescoring_inputs(hyps, sos_eos_id)
    max_len = hyps_in.shape[1]

    log_probs = decoder(hyps_in, hyps_in_lens)
    if log_probs.shape[:2] != (num_hyps, max_len):
        raise ValueError(
            f"Decoder returned log-probs of shape {log_probs.shape}, expected ({num_hyps},"
            f" {max_len}, V) for {num_hyps} hypotheses of up to {max_len - 1} tokens."
        )

    token_scores = np.take_along_axis(log_probs, targets[:, :, None], axis=2)[:, :, 0]
    valid = np.arange(max_len)[None, :] < hyps_in_lens[:, None]
    decoder_scores = np.where(valid, token_scores, 0.0).astype(np.float64).sum(axis=1)

    ctc_scores = np.array([score for _, score in nbest], dtype=np.float64)
    best = int(np.argmax(decoder_scores + ctc_weight * ctc_scores))
    return tuple(hyps[best])

