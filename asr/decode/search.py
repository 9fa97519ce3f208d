"""Decoding options and the batch entry points that run the encoder once and then a search."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import torch

from asr.decode.attention import (
    AttentionDecoderModel,
    attention_beam_search,
    attention_rescoring,
)
from asr.decode.ctc import NBest, ctc_greedy_search, ctc_prefix_beam_search_batch

DECODING_MODES = (
    "ctc_greedy_search",
    "ctc_prefix_beam_search",
    "attention",
    "attention_rescoring",
)


class DecodableModel(AttentionDecoderModel, Protocol):
    """The part of `ASRModel` that decoding calls: the attention part plus encoder and CTC."""

    blank_id: int

    def encode(
        self, feats: torch.Tensor, feat_lens: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]: ...

    def ctc_log_probs(self, enc_out: torch.Tensor) -> torch.Tensor: ...


@dataclass(frozen=True)
class DecodingOptions:
    """Search settings for one decoding mode.

    Attributes:
        mode: one of `DECODING_MODES`.
        beam_size: beam of the prefix beam search (also the n-best size for rescoring) and
            of the attention beam search. Greedy search ignores it.
        ctc_weight: weight of the CTC score in attention rescoring.
        max_len: maximum output tokens of the attention beam search. None uses the encoder
            length of each utterance.
        length_penalty: score added per token in the attention beam search.
    """

    mode: str = "attention_rescoring"
    beam_size: int = 10
    ctc_weight: float = 0.5
    max_len: int | None = None
    length_penalty: float = 0.0

    def __post_init__(self) -> None:
        validate_decoding_options(self)


def validate_decoding_options(options: DecodingOptions) -> None:
    """Raise ValueError naming the first setting of `options` that is invalid."""
    if options.mode not in DECODING_MODES:
        raise ValueError(
            f"Invalid decoding mode {options.mode!r}. Choose one of {', '.join(DECODING_MODES)}."
        )
    if not isinstance(options.beam_size, int) or options.beam_size < 1:
        raise ValueError(f"beam_size must be an integer of at least 1, got {options.beam_size!r}.")
    if not math.isfinite(options.ctc_weight) or options.ctc_weight < 0:
        raise ValueError(
            f"ctc_weight must be a finite number of at least 0, got {options.ctc_weight!r}."
        )
    if options.max_len is not None and (
        not isinstance(options.max_len, int) or options.max_len < 1
    ):
        raise ValueError(
            f"max_len must be None or an integer of at least 1, got {options.max_len!r}."
        )
    if not math.isfinite(options.length_penalty):
        raise ValueError(f"length_penalty must be a finite number, got {options.length_penalty!r}.")


@torch.inference_mode()
def decode_batch(
    model: DecodableModel,
    feats: torch.Tensor,
    feat_lens: torch.Tensor,
    options: DecodingOptions,
) -> list[list[int]]:
    """Encode a batch once and decode it with the search that `options.mode` names.

    Args:
        model: model in eval mode.
        feats: (B, T, 80) fbank features.
        feat_lens: (B,) valid feature frames per utterance.
        options: search settings.

    Returns:
        B token id lists.
    """
    return decode_batch_all_modes(model, feats, feat_lens, [options])[options.mode]


@torch.inference_mode()
def decode_batch_all_modes(
    model: DecodableModel,
    feats: torch.Tensor,
    feat_lens: torch.Tensor,
    options_per_mode: Sequence[DecodingOptions],
) -> dict[str, list[list[int]]]:
    """Decode a batch with several modes from one encoder pass.

    CTC log-probs are computed once, and prefix beam search and attention rescoring with
    the same beam size share one n-best search.

    Args:
        model: model in eval mode.
        feats: (B, T, 80) fbank features.
        feat_lens: (B,) valid feature frames per utterance.
        options_per_mode: one `DecodingOptions` per mode, each mode at most once.

    Returns:
        mode -> B token id lists.
    """
    modes = [options.mode for options in options_per_mode]
    if len(set(modes)) != len(modes):
        raise ValueError(f"Each decoding mode may appear only once, got modes {modes}.")

    enc_out, enc_lens = model.encode(feats, feat_lens)

    ctc_log_probs = None
    if any(mode != "attention" for mode in modes):
        ctc_log_probs = model.ctc_log_probs(enc_out)

    nbest_per_beam: dict[int, list[NBest]] = {}
    for options in options_per_mode:
        uses_nbest = options.mode in ("ctc_prefix_beam_search", "attention_rescoring")
        if uses_nbest and options.beam_size not in nbest_per_beam:
            nbest_per_beam[options.beam_size] = ctc_prefix_beam_search_batch(
                ctc_log_probs, enc_lens, options.beam_size, model.blank_id
            )

    results: dict[str, list[list[int]]] = {}
    for options in options_per_mode:
        if options.mode == "ctc_greedy_search":
            results[options.mode] = ctc_greedy_search(ctc_log_probs, enc_lens, model.blank_id)
        elif options.mode == "ctc_prefix_beam_search":
            nbest = nbest_per_beam[options.beam_size]
            results[options.mode] = [list(hyps[0][0]) if hyps else [] for hyps in nbest]
        elif options.mode == "attention":
            results[options.mode] = attention_beam_search(
                model,
                enc_out,
                enc_lens,
                options.beam_size,
                max_len=options.max_len,
                length_penalty=options.length_penalty,
            )
        else:
            results[options.mode] = attention_rescoring(
                model, enc_out, enc_lens, nbest_per_beam[options.beam_size], options.ctc_weight
            )
    return results
