"""Attention decoder searches: batched beam search and rescoring of a CTC n-best list."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import torch

from asr.constants import IGNORE_ID
from asr.decode.ctc import NBest


class AttentionDecoderModel(Protocol):
    """The part of `ASRModel` that the attention searches call."""

    sos_id: int
    eos_id: int

    def decode_attention(
        self,
        enc_out: torch.Tensor,
        enc_lens: torch.Tensor,
        ys_in: torch.Tensor,
        ys_in_lens: torch.Tensor,
    ) -> torch.Tensor: ...


def _check_encoder_output(enc_out: torch.Tensor, enc_lens: torch.Tensor) -> None:
    if enc_out.dim() != 3 or enc_lens.shape != (enc_out.size(0),):
        raise ValueError(
            f"enc_out must have shape (B, T', D) and enc_lens shape (B,), got "
            f"{tuple(enc_out.shape)} and {tuple(enc_lens.shape)}."
        )


def attention_beam_search(
    model: AttentionDecoderModel,
    enc_out: torch.Tensor,
    enc_lens: torch.Tensor,
    beam_size: int,
    max_len: int | None = None,
    length_penalty: float = 0.0,
) -> list[list[int]]:
    """Decode a batch with the attention decoder by beam search over B x beam_size rows.

    A hypothesis scores the sum of its token log-probs, eos included, plus `length_penalty`
    per token. Hypotheses that emitted eos stay in the beam with a fixed score. The decoder
    reruns on the whole prefix at every step because it has no key/value cache.

    Args:
        model: model with `decode_attention`, `sos_id` and `eos_id`.
        enc_out: (B, T', D) encoder output.
        enc_lens: (B,) valid encoder frames per utterance.
        beam_size: hypotheses kept per utterance.
        max_len: maximum tokens per hypothesis, eos excluded. None uses each utterance's
            encoder length, because a CTC-trained encoder emits at most one token per frame.
        length_penalty: score added per emitted token. Positive values favor longer outputs.

    Returns:
        B token id lists without sos and eos.
    """
    _check_encoder_output(enc_out, enc_lens)
    if beam_size < 1:
        raise ValueError(f"beam_size must be at least 1, got {beam_size}.")
    if max_len is not None and max_len < 0:
        raise ValueError(f"max_len must be None or non-negative, got {max_len}.")

    batch_size = enc_out.size(0)
    device = enc_out.device
    num_rows = batch_size * beam_size
    eos_id = model.eos_id
    if batch_size == 0:
        return []

    # Row r is beam r % beam_size of utterance r // beam_size.
    enc_out_rows = enc_out.repeat_interleave(beam_size, dim=0)
    enc_lens_rows = enc_lens.to(device).repeat_interleave(beam_size)
    if max_len is None:
        row_limits = enc_lens_rows
    else:
        row_limits = torch.full((num_rows,), max_len, dtype=torch.long, device=device)

    hyps = torch.full((num_rows, 1), model.sos_id, dtype=torch.long, device=device)
    # Only beam 0 starts alive, so the first step does not fill the beam with copies.
    scores = torch.full((batch_size, beam_size), float("-inf"), device=device)
    scores[:, 0] = 0.0
    scores = scores.view(-1)
    finished = torch.zeros(num_rows, dtype=torch.bool, device=device)
    row_offsets = torch.arange(batch_size, device=device).unsqueeze(1) * beam_size

    for step in range(1, int(row_limits.max()) + 2):
        ys_in_lens = torch.full((num_rows,), step, dtype=torch.long, device=device)
        log_probs = model.decode_attention(enc_out_rows, enc_lens_rows, hyps, ys_in_lens)
        step_scores = log_probs[:, -1].float() + length_penalty
        vocab_size = step_scores.size(1)

        # A row that already contains its maximum number of tokens may only emit eos.
        eos_only = torch.full_like(step_scores, float("-inf"))
        eos_only[:, eos_id] = step_scores[:, eos_id]
        over_limit = (row_limits < step).unsqueeze(1)
        step_scores = torch.where(over_limit, eos_only, step_scores)

        # A finished row extends only by eos at no cost, so its score stays fixed.
        carry = torch.full_like(step_scores, float("-inf"))
        carry[:, eos_id] = 0.0
        step_scores = torch.where(finished.unsqueeze(1), carry, step_scores)

        candidates = (scores.unsqueeze(1) + step_scores).view(batch_size, beam_size * vocab_size)
        top_scores, top_index = candidates.topk(beam_size, dim=-1)
        source_rows = (top_index // vocab_size + row_offsets).view(-1)
        tokens = (top_index % vocab_size).view(-1)

        hyps = torch.cat([hyps[source_rows], tokens.unsqueeze(1)], dim=1)
        finished = finished[source_rows] | (tokens == eos_id)
        scores = top_scores.view(-1)
        if bool(finished.all()):
            break

    best_rows = scores.view(batch_size, beam_size).argmax(dim=-1) + row_offsets.squeeze(1)
    results = []
    for row in best_rows.tolist():
        tokens = hyps[row, 1:].tolist()
        if eos_id in tokens:
            tokens = tokens[: tokens.index(eos_id)]
        results.append(tokens)
    return results


def score_hypotheses(
    model: AttentionDecoderModel,
    enc_out: torch.Tensor,
    enc_lens: torch.Tensor,
    hyps: Sequence[Sequence[int]],
    utterance_index: Sequence[int],
) -> torch.Tensor:
    """Score token sequences with the attention decoder in one teacher-forced batch.

    Hypothesis n is read against utterance `utterance_index[n]` of `enc_out`, fed as
    sos + hyp, and scored on hyp + eos. An empty hypothesis scores the log-prob of eos
    right after sos.

    Args:
        model: model with `decode_attention`, `sos_id` and `eos_id`.
        enc_out: (B, T', D) encoder output.
        enc_lens: (B,) valid encoder frames per utterance.
        hyps: N token id sequences without sos and eos.
        utterance_index: N indices into the batch dimension of `enc_out`.

    Returns:
        (N,) float tensor of summed decoder log-probs.
    """
    _check_encoder_output(enc_out, enc_lens)
    if len(hyps) != len(utterance_index):
        raise ValueError(
            f"Got {len(hyps)} hypotheses but {len(utterance_index)} utterance indices. "
            "Pass one index per hypothesis."
        )

    device = enc_out.device
    num_hyps = len(hyps)
    if num_hyps == 0:
        return torch.zeros(0, device=device)

    max_tokens = max(len(hyp) for hyp in hyps) + 1
    ys_in = torch.full((num_hyps, max_tokens), model.eos_id, dtype=torch.long)
    ys_out = torch.full((num_hyps, max_tokens), IGNORE_ID, dtype=torch.long)
    for n, hyp in enumerate(hyps):
        ys_in[n, 0] = model.sos_id
        ys_in[n, 1 : len(hyp) + 1] = torch.as_tensor(hyp, dtype=torch.long)
        ys_out[n, : len(hyp)] = torch.as_tensor(hyp, dtype=torch.long)
        ys_out[n, len(hyp)] = model.eos_id
    ys_in = ys_in.to(device)
    ys_out = ys_out.to(device)
    ys_in_lens = torch.tensor([len(hyp) + 1 for hyp in hyps], dtype=torch.long, device=device)

    rows = torch.as_tensor(list(utterance_index), dtype=torch.long, device=device)
    log_probs = model.decode_attention(enc_out[rows], enc_lens.to(device)[rows], ys_in, ys_in_lens)

    # Padding targets gather index 0 and are then zeroed by the mask.
    valid = ys_out != IGNORE_ID
    token_scores = log_probs.float().gather(-1, ys_out.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return (token_scores * valid).sum(dim=1)


def attention_rescoring(
    model: AttentionDecoderModel,
    enc_out: torch.Tensor,
    enc_lens: torch.Tensor,
    nbest: Sequence[NBest],
    ctc_weight: float = 0.5,
) -> list[list[int]]:
    """Pick each utterance's best CTC n-best hypothesis after scoring it with the decoder.

    The final score of a hypothesis is its decoder log-prob (`score_hypotheses`) plus
    `ctc_weight` times its CTC log score. All hypotheses of the batch go through the decoder
    in one call.

    Args:
        model: model with `decode_attention`, `sos_id` and `eos_id`.
        enc_out: (B, T', D) encoder output.
        enc_lens: (B,) valid encoder frames per utterance.
        nbest: B n-best lists of (token ids, CTC log score), e.g. from
            `ctc_prefix_beam_search_batch`.
        ctc_weight: weight of the CTC score.

    Returns:
        B token id lists. An utterance with an empty n-best list gets [].
    """
    _check_encoder_output(enc_out, enc_lens)
    if len(nbest) != enc_out.size(0):
        raise ValueError(
            f"Got n-best lists for {len(nbest)} utterances but enc_out has {enc_out.size(0)}. "
            "Pass one n-best list per utterance."
        )

    hyps: list[tuple[int, ...]] = []
    utterance_index: list[int] = []
    ctc_scores: list[float] = []
    for b, utterance_nbest in enumerate(nbest):
        for hyp, ctc_score in utterance_nbest:
            hyps.append(tuple(hyp))
            utterance_index.append(b)
            ctc_scores.append(ctc_score)

    decoder_scores = score_hypotheses(model, enc_out, enc_lens, hyps, utterance_index)
    total_scores = decoder_scores.cpu().double() + ctc_weight * torch.tensor(
        ctc_scores, dtype=torch.double
    )

    results = []
    start = 0
    for utterance_nbest in nbest:
        end = start + len(utterance_nbest)
        if end == start:
            results.append([])
            continue
        best = start + int(total_scores[start:end].argmax())
        results.append(list(hyps[best]))
        start = end
    return results
