"""Tests for CTC greedy and prefix beam search, attention beam search and attention rescoring."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from torch import nn

from asr.decode.attention import attention_beam_search, attention_rescoring, score_hypotheses
from asr.decode.ctc import (
    ctc_greedy_search,
    ctc_prefix_beam_search,
    ctc_prefix_beam_search_batch,
)
from asr.decode.search import (
    DECODING_MODES,
    DecodingOptions,
    decode_batch,
    decode_batch_all_modes,
)

BLANK = 0
EOS = 2
SOS = 2

# Next-token probabilities of the stub decoder: prefix (without sos) -> {token: prob}.
# Probability left over is spread evenly over the tokens the entry does not list.
DecoderTable = dict[tuple[int, ...], dict[int, float]]


def target_table(target: list[int], follow_prob: float = 0.6) -> DecoderTable:
    """Build a decoder table that follows `target` and then emits eos."""
    table: DecoderTable = {}
    for length in range(len(target)):
        table[tuple(target[:length])] = {target[length]: follow_prob}
    table[tuple(target)] = {EOS: follow_prob}
    return table


class StubModel(nn.Module):
    """Model with the `ASRModel` decoding interface and hand-designed outputs.

    The encoder is the identity with unchanged lengths. Feature dims [0, V) are the CTC
    log-probs and dim V is the utterance index, which the decoder reads to pick that
    utterance's table, so a row mapped to the wrong utterance gives a different result.
    """

    blank_id = BLANK
    sos_id = SOS
    eos_id = EOS
    ignore_id = -1

    def __init__(self, vocab_size: int, tables: list[DecoderTable]) -> None:
        super().__init__()
        self.vocab_size = vocab_size
        self.tables = tables
        self.encode_calls = 0
        self.decoder_calls = 0

    def encode(self, feats: torch.Tensor, feat_lens: torch.Tensor):
        self.encode_calls += 1
        return feats, feat_lens

    def ctc_log_probs(self, enc_out: torch.Tensor) -> torch.Tensor:
        return enc_out[..., : self.vocab_size].log_softmax(dim=-1)

    def next_token_probs(self, utterance: int, prefix: tuple[int, ...]) -> list[float]:
        listed = self.tables[utterance].get(prefix, {})
        rest = (1.0 - sum(listed.values())) / (self.vocab_size - len(listed))
        return [listed.get(token, rest) for token in range(self.vocab_size)]

    def decode_attention(self, enc_out, enc_lens, ys_in, ys_in_lens) -> torch.Tensor:
        self.decoder_calls += 1
        num_rows, max_len = ys_in.shape
        assert enc_out.size(0) == num_rows
        assert bool((ys_in[:, 0] == SOS).all())

        log_probs = torch.full((num_rows, max_len, self.vocab_size), -math.log(self.vocab_size))
        for n in range(num_rows):
            utterance = int(enc_out[n, 0, self.vocab_size])
            length = int(ys_in_lens[n])
            assert bool((ys_in[n, length:] == EOS).all())
            for position in range(length):
                prefix = tuple(ys_in[n, 1 : position + 1].tolist())
                probs = self.next_token_probs(utterance, prefix)
                log_probs[n, position] = torch.tensor(probs).log()
        return log_probs


def make_feats(ctc_probs: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Pack per-utterance (T_b, V) CTC probabilities into padded stub features (B, T, V + 1)."""
    batch_size = len(ctc_probs)
    vocab_size = ctc_probs[0].size(1)
    max_frames = max(probs.size(0) for probs in ctc_probs)

    feats = torch.zeros(batch_size, max_frames, vocab_size + 1)
    for b, probs in enumerate(ctc_probs):
        feats[b, : probs.size(0), :vocab_size] = probs.log()
        feats[b, :, vocab_size] = b
    lens = torch.tensor([probs.size(0) for probs in ctc_probs])
    return feats, lens


def peaky_probs(labels: list[int], vocab_size: int, peak: float = 0.9) -> torch.Tensor:
    """(T, V) probabilities with `peak` on each frame's label and the rest spread evenly."""
    probs = torch.full((len(labels), vocab_size), (1.0 - peak) / (vocab_size - 1))
    for t, label in enumerate(labels):
        probs[t, label] = peak
    return probs


def brute_force_ctc(log_probs: torch.Tensor) -> dict[tuple[int, ...], float]:
    """Sum the probability of every alignment per collapsed label sequence, in log space."""
    num_frames, vocab_size = log_probs.shape
    values = log_probs.double().tolist()

    totals: dict[tuple[int, ...], float] = {}
    for path in itertools.product(range(vocab_size), repeat=num_frames):
        score = sum(values[t][token] for t, token in enumerate(path))
        labels = tuple(
            token
            for t, token in enumerate(path)
            if token != BLANK and (t == 0 or token != path[t - 1])
        )
        previous = totals.get(labels, -math.inf)
        high = max(previous, score)
        totals[labels] = high + math.log(math.exp(previous - high) + math.exp(score - high))
    return totals


# CTC greedy search


def test_greedy_collapse_and_blank_removal():
    labels = [3, 3, BLANK, 3, 4, 4, BLANK, BLANK, 5]
    log_probs = peaky_probs(labels, vocab_size=6).log().unsqueeze(0)

    hyps = ctc_greedy_search(log_probs, torch.tensor([len(labels)]))

    assert hyps == [[3, 3, 4, 5]]


def test_greedy_ignores_padding_frames():
    long = peaky_probs([3, BLANK, 4, 4, 5], vocab_size=6)
    short = peaky_probs([4, BLANK, 3, 5, 5], vocab_size=6)
    log_probs = torch.stack([long, short]).log()

    hyps = ctc_greedy_search(log_probs, torch.tensor([5, 3]))

    assert hyps[0] == [3, 4, 5]
    assert hyps[1] == [4, 3]


def test_greedy_batch_equals_single():
    torch.manual_seed(0)
    lens = torch.tensor([7, 4, 6])
    log_probs = torch.randn(3, 7, 5).log_softmax(dim=-1)

    batched = ctc_greedy_search(log_probs, lens)

    for b, length in enumerate(lens.tolist()):
        single = ctc_greedy_search(log_probs[b : b + 1, :length], torch.tensor([length]))
        assert batched[b] == single[0]


def test_greedy_rejects_lens_over_frames():
    log_probs = torch.zeros(1, 3, 4)

    with pytest.raises(ValueError, match="lens contains 5 frames"):
        ctc_greedy_search(log_probs, torch.tensor([5]))


def test_greedy_rejects_two_dim_input():
    with pytest.raises(ValueError, match=r"shape \(B, T, V\)"):
        ctc_greedy_search(torch.zeros(3, 4), torch.tensor([3]))


# CTC prefix beam search


def test_prefix_beam_hand_computed():
    # Frame probabilities of blank are 0.6, 0.7, 0.5 and of token 1 are 0.4, 0.3, 0.5.
    probs = torch.tensor([[0.6, 0.4], [0.7, 0.3], [0.5, 0.5]])

    nbest = dict(ctc_prefix_beam_search(probs.log(), beam_size=8))

    # "1 1" needs the only alignment 1 _ 1, and "" needs _ _ _.
    assert nbest[(1, 1)] == pytest.approx(math.log(0.4 * 0.7 * 0.5), abs=1e-6)
    assert nbest[()] == pytest.approx(math.log(0.6 * 0.7 * 0.5), abs=1e-6)
    # "1" is everything else: 1 - 0.14 - 0.21.
    assert nbest[(1,)] == pytest.approx(math.log(0.65), abs=1e-6)


@pytest.mark.parametrize(("num_frames", "vocab_size", "seed"), [(5, 3, 0), (4, 4, 1), (6, 3, 2)])
def test_prefix_beam_matches_brute_force(num_frames, vocab_size, seed):
    generator = torch.Generator().manual_seed(seed)
    log_probs = (torch.randn(num_frames, vocab_size, generator=generator) * 2).log_softmax(-1)
    expected = brute_force_ctc(log_probs)

    nbest = ctc_prefix_beam_search(log_probs.double(), beam_size=1000)

    assert len(nbest) == len(expected)
    for labels, score in nbest:
        assert score == pytest.approx(expected[labels], abs=1e-5)
    best_expected = sorted(expected.items(), key=lambda item: item[1], reverse=True)[:5]
    assert [labels for labels, _ in nbest[:5]] == [labels for labels, _ in best_expected]


def test_prefix_beam_total_probability_one():
    generator = torch.Generator().manual_seed(3)
    log_probs = torch.randn(5, 3, generator=generator).log_softmax(-1)

    nbest = ctc_prefix_beam_search(log_probs.double(), beam_size=1000)

    total = sum(math.exp(score) for _, score in nbest)
    assert total == pytest.approx(1.0, abs=1e-6)


def test_prefix_beam_nbest_sorted_and_pruned():
    generator = torch.Generator().manual_seed(4)
    log_probs = torch.randn(20, 6, generator=generator).log_softmax(-1)

    nbest = ctc_prefix_beam_search(log_probs, beam_size=4)
    scores = [score for _, score in nbest]

    assert len(nbest) == 4
    assert scores == sorted(scores, reverse=True)


def test_prefix_beam_size_one_equals_greedy():
    generator = torch.Generator().manual_seed(5)
    labels = torch.randint(0, 6, (4, 12), generator=generator)
    log_probs = torch.stack([peaky_probs(row.tolist(), 6, peak=0.95) for row in labels]).log()
    lens = torch.tensor([12, 9, 5, 12])

    greedy = ctc_greedy_search(log_probs, lens)
    nbest = ctc_prefix_beam_search_batch(log_probs, lens, beam_size=1)

    for b in range(4):
        assert list(nbest[b][0][0]) == greedy[b]


def test_prefix_beam_batch_equals_single():
    generator = torch.Generator().manual_seed(6)
    log_probs = torch.randn(3, 10, 5, generator=generator).log_softmax(-1)
    lens = torch.tensor([10, 6, 8])

    batched = ctc_prefix_beam_search_batch(log_probs, lens, beam_size=3)

    for b, length in enumerate(lens.tolist()):
        assert batched[b] == ctc_prefix_beam_search(log_probs[b, :length], beam_size=3)


def test_prefix_beam_empty_utterance():
    nbest = ctc_prefix_beam_search(torch.zeros(0, 4), beam_size=3)

    assert nbest == [((), 0.0)]


def test_prefix_beam_rejects_zero_beam():
    with pytest.raises(ValueError, match="beam_size must be at least 1"):
        ctc_prefix_beam_search(torch.zeros(3, 4), beam_size=0)


# Attention beam search


def test_attention_beam_follows_target():
    targets = [[3, 4, 5, 3], [5], [], [4, 4]]
    model = StubModel(vocab_size=6, tables=[target_table(target) for target in targets])
    enc_out, enc_lens = make_feats([torch.full((6, 6), 1 / 6)] * len(targets))

    hyps = attention_beam_search(model, enc_out, enc_lens, beam_size=3)

    assert hyps == targets


def test_attention_beam_batch_equals_single():
    targets = [[3, 4, 5, 3], [5, 3], [4]]
    model = StubModel(vocab_size=6, tables=[target_table(target) for target in targets])
    enc_out, enc_lens = make_feats([torch.full((frames, 6), 1 / 6) for frames in (6, 3, 2)])

    batched = attention_beam_search(model, enc_out, enc_lens, beam_size=4)

    for b in range(3):
        single = attention_beam_search(model, enc_out[b : b + 1], enc_lens[b : b + 1], 4)
        assert batched[b] == single[0]


def beam_beats_greedy_table() -> DecoderTable:
    # Greedy takes 3 then 5 (0.5 * 0.25 * 0.9 = 0.1125), but [4] scores 0.4 * 1.0.
    return {(): {3: 0.5, 4: 0.4}, (3,): {5: 0.25, EOS: 0.2}, (3, 5): {EOS: 0.9}, (4,): {EOS: 1.0}}


def test_attention_beam_finds_better_than_greedy():
    model = StubModel(vocab_size=6, tables=[beam_beats_greedy_table()])
    enc_out, enc_lens = make_feats([torch.full((5, 6), 1 / 6)])

    greedy = attention_beam_search(model, enc_out, enc_lens, beam_size=1)
    beam = attention_beam_search(model, enc_out, enc_lens, beam_size=2)

    assert greedy == [[3, 5]]
    assert beam == [[4]]


def test_attention_beam_length_penalty_favors_longer():
    model = StubModel(vocab_size=6, tables=[beam_beats_greedy_table()])
    enc_out, enc_lens = make_feats([torch.full((5, 6), 1 / 6)])

    # [4] + eos scores log 0.4 + 2 * 2 = 3.08, and [3, 5] + eos scores log 0.1125 + 3 * 2 = 3.82.
    hyps = attention_beam_search(model, enc_out, enc_lens, beam_size=2, length_penalty=2.0)

    assert hyps == [[3, 5]]


def test_attention_beam_max_len_truncates():
    model = StubModel(vocab_size=6, tables=[target_table([3, 4, 5])])
    enc_out, enc_lens = make_feats([torch.full((6, 6), 1 / 6)])

    hyps = attention_beam_search(model, enc_out, enc_lens, beam_size=2, max_len=1)

    assert hyps == [[3]]


def test_attention_beam_limit_defaults_to_encoder_length():
    targets = [[3, 4, 5], [3, 4, 5]]
    model = StubModel(vocab_size=6, tables=[target_table(target) for target in targets])
    enc_out, enc_lens = make_feats([torch.full((2, 6), 1 / 6), torch.full((4, 6), 1 / 6)])

    hyps = attention_beam_search(model, enc_out, enc_lens, beam_size=2)

    assert hyps[0] == [3, 4]
    assert hyps[1] == [3, 4, 5]


# Attention rescoring


def test_score_hypotheses_hand_computed():
    model = StubModel(vocab_size=6, tables=[target_table([3, 4]), target_table([])])
    enc_out, enc_lens = make_feats([torch.full((3, 6), 1 / 6)] * 2)
    # Tokens a table does not list share 0.4 / 5 = 0.08.
    other = 0.4 / 5

    scores = score_hypotheses(model, enc_out, enc_lens, [[3, 4], [3], [4], [], []], [0, 0, 0, 0, 1])

    assert scores[0].item() == pytest.approx(3 * math.log(0.6), abs=1e-5)
    assert scores[1].item() == pytest.approx(math.log(0.6) + math.log(other), abs=1e-5)
    assert scores[2].item() == pytest.approx(math.log(other) + math.log(1 / 6), abs=1e-5)
    assert scores[3].item() == pytest.approx(math.log(other), abs=1e-5)
    assert scores[4].item() == pytest.approx(math.log(0.6), abs=1e-5)
    assert model.decoder_calls == 1


def test_rescoring_prefers_decoder_when_ctc_close():
    model = StubModel(vocab_size=6, tables=[target_table([3, 4])])
    enc_out, enc_lens = make_feats([torch.full((3, 6), 1 / 6)])
    nbest = [[((3,), -1.0), ((3, 4), -1.1), ((), -3.0)]]

    # [3] scores log 0.6 + log 0.08 - 0.5 = -3.54, and [3, 4] scores 3 log 0.6 - 0.55 = -2.08.
    hyps = attention_rescoring(model, enc_out, enc_lens, nbest, ctc_weight=0.5)

    assert hyps == [[3, 4]]


def test_rescoring_prefers_ctc_when_weight_large():
    model = StubModel(vocab_size=6, tables=[target_table([3, 4])])
    enc_out, enc_lens = make_feats([torch.full((3, 6), 1 / 6)])
    nbest = [[((3,), -0.5), ((3, 4), -2.0)]]

    # [3] scores -3.04 + 10 * -0.5 = -8.04, and [3, 4] scores -1.53 + 10 * -2.0 = -21.53.
    hyps = attention_rescoring(model, enc_out, enc_lens, nbest, ctc_weight=10.0)

    assert hyps == [[3]]


def test_rescoring_empty_hypothesis_wins():
    model = StubModel(vocab_size=6, tables=[target_table([])])
    enc_out, enc_lens = make_feats([torch.full((3, 6), 1 / 6)])
    nbest = [[((4,), -1.0), ((), -1.2)]]

    hyps = attention_rescoring(model, enc_out, enc_lens, nbest, ctc_weight=0.5)

    assert hyps == [[]]


def test_rescoring_batch_equals_single():
    targets = [[3, 4], [5], [4, 4, 3]]
    model = StubModel(vocab_size=6, tables=[target_table(target) for target in targets])
    enc_out, enc_lens = make_feats([torch.full((frames, 6), 1 / 6) for frames in (4, 2, 5)])
    nbest = [
        [((3,), -1.0), ((3, 4), -1.2)],
        [((5,), -2.0), ((5, 5), -1.0), ((3,), -1.5)],
        [((4, 3), -0.9), ((4, 4, 3), -1.0)],
    ]

    batched = attention_rescoring(model, enc_out, enc_lens, nbest)

    assert batched == targets
    for b in range(3):
        rows = slice(b, b + 1)
        single = attention_rescoring(model, enc_out[rows], enc_lens[rows], nbest[rows])
        assert batched[b] == single[0]


def test_rescoring_empty_nbest_list():
    model = StubModel(vocab_size=6, tables=[target_table([3]), target_table([4])])
    enc_out, enc_lens = make_feats([torch.full((3, 6), 1 / 6)] * 2)

    hyps = attention_rescoring(model, enc_out, enc_lens, [[], [((4,), -1.0)]])

    assert hyps == [[], [4]]


def test_rescoring_rejects_nbest_count_mismatch():
    model = StubModel(vocab_size=6, tables=[target_table([3])])
    enc_out, enc_lens = make_feats([torch.full((3, 6), 1 / 6)])

    with pytest.raises(ValueError, match="n-best lists for 2 utterances"):
        attention_rescoring(model, enc_out, enc_lens, [[], []])


# Decoding options and batch decoding


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mode": "beam"}, "Invalid decoding mode 'beam'"),
        ({"beam_size": 0}, "beam_size must be an integer of at least 1"),
        ({"beam_size": 2.5}, "beam_size must be an integer of at least 1"),
        ({"ctc_weight": -0.1}, "ctc_weight must be a finite number of at least 0"),
        ({"ctc_weight": math.nan}, "ctc_weight must be a finite number of at least 0"),
        ({"max_len": 0}, "max_len must be None or an integer of at least 1"),
        ({"length_penalty": math.inf}, "length_penalty must be a finite number"),
    ],
)
def test_options_reject_invalid(kwargs, message):
    with pytest.raises(ValueError, match=message):
        DecodingOptions(**kwargs)


def test_options_defaults_valid():
    options = DecodingOptions()

    assert options.mode in DECODING_MODES
    assert options.beam_size == 10


def decoding_fixture():
    """Build a stub model and features for two utterances whose CTC and decoder outputs agree."""
    # CTC greedy search and the decoder both read 3 4 5 in utterance 0 and 4 3 in utterance 1.
    ctc_probs = [
        peaky_probs([3, BLANK, 4, 4, 5, BLANK], 6),
        peaky_probs([4, 4, BLANK, 3], 6),
    ]
    targets = [[3, 4, 5], [4, 3]]
    model = StubModel(vocab_size=6, tables=[target_table(target) for target in targets])
    feats, feat_lens = make_feats(ctc_probs)
    return model, feats, feat_lens, targets


@pytest.mark.parametrize("mode", DECODING_MODES)
def test_decode_batch_each_mode(mode):
    model, feats, feat_lens, targets = decoding_fixture()

    hyps = decode_batch(model, feats, feat_lens, DecodingOptions(mode=mode, beam_size=3))

    assert hyps == targets
    assert model.encode_calls == 1


def test_decode_all_modes_matches_single():
    model, feats, feat_lens, _ = decoding_fixture()
    options = [DecodingOptions(mode=mode, beam_size=3) for mode in DECODING_MODES]

    combined = decode_batch_all_modes(model, feats, feat_lens, options)

    assert model.encode_calls == 1
    for single_options in options:
        expected = decode_batch(model, feats, feat_lens, single_options)
        assert combined[single_options.mode] == expected


def test_decode_rescoring_uses_decoder_preference():
    # CTC alone reads 3 4 5 for both, but the decoder of utterance 1 prefers 3 4.
    ctc_probs = [peaky_probs([3, 4, 5], 6, peak=0.5)] * 2
    model = StubModel(vocab_size=6, tables=[target_table([3, 4, 5]), target_table([3, 4])])
    feats, feat_lens = make_feats(ctc_probs)

    options = [
        DecodingOptions(mode="ctc_prefix_beam_search", beam_size=6),
        DecodingOptions(mode="attention_rescoring", beam_size=6, ctc_weight=0.1),
    ]
    hyps = decode_batch_all_modes(model, feats, feat_lens, options)

    assert hyps["ctc_prefix_beam_search"] == [[3, 4, 5], [3, 4, 5]]
    assert hyps["attention_rescoring"] == [[3, 4, 5], [3, 4]]


def test_decode_all_modes_rejects_duplicates():
    model, feats, feat_lens, _ = decoding_fixture()
    options = [DecodingOptions(mode="attention"), DecodingOptions(mode="attention", beam_size=2)]

    with pytest.raises(ValueError, match="only once"):
        decode_batch_all_modes(model, feats, feat_lens, options)


def test_real_model_batch_equals_single():
    asr_model = pytest.importorskip("asr.models.asr_model")
    model_config = pytest.importorskip("asr.models.config")
    torch.manual_seed(0)
    stack = {"num_blocks": 2, "heads": 2, "ffn_dim": 64}
    config = model_config.ModelConfig(
        vocab_size=12,
        d_model=32,
        encoder=model_config.EncoderConfig(**stack),
        decoder=model_config.DecoderConfig(**stack),
    )
    model = asr_model.ASRModel(config).eval()
    feats = torch.randn(3, 60, 80)
    feat_lens = torch.tensor([60, 41, 25])

    # A positive length penalty makes the untrained decoder emit long hypotheses, so that
    # padding of both the encoder output and the prefixes matters.
    with torch.inference_mode():
        enc_out, enc_lens = model.encode(feats, feat_lens)
        nbest = ctc_prefix_beam_search_batch(model.ctc_log_probs(enc_out), enc_lens, 4)
        beam_batched = attention_beam_search(model, enc_out, enc_lens, 4, length_penalty=3.0)
        rescored_batched = attention_rescoring(model, enc_out, enc_lens, nbest)

        for b, length in enumerate(enc_lens.tolist()):
            rows = slice(b, b + 1)
            single_out = enc_out[rows, :length]
            beam_single = attention_beam_search(
                model, single_out, enc_lens[rows], 4, length_penalty=3.0
            )
            rescored_single = attention_rescoring(model, single_out, enc_lens[rows], nbest[rows])
            assert beam_batched[b] == beam_single[0]
            assert rescored_batched[b] == rescored_single[0]

    assert len(beam_batched[0]) > 3
