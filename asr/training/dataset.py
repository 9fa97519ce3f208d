"""Map a lhotse CutSet mini-batch to padded fbank features and token targets."""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from typing import Sequence

import torch
from lhotse import CutSet
from lhotse.dataset import PerturbSpeed
from torch.nn.utils.rnn import pad_sequence

from asr.constants import IGNORE_ID
from asr.features.fbank import FbankOptions, compute_fbank
from asr.text.tokenizer import Tokenizer

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class AugmentOptions:
    """Waveform-level augmentation applied by the training dataset only."""

    speed_factors: Sequence[float] = (0.9, 1.0, 1.1)
    dither: float = 1.0


class ASRDataset(torch.utils.data.Dataset):
    """Turn a sampled CutSet into a batch for :class:`asr.models.asr_model.ASRModel`.

    The sampler hands over a whole CutSet per index (lhotse's convention), so the DataLoader is
    built with ``batch_size=None``. Audio is read and featurized here, on the fly, with the
    same fbank front end that the deployment runtime uses.

    Returns a dict with
        ``feats`` (B, T, 80) float32, zero padded,
        ``feat_lens`` (B,) int64 frames,
        ``tokens`` (B, U) int64 padded with ``IGNORE_ID``,
        ``token_lens`` (B,) int64,
        ``ids`` list of B utterance ids (cut ids),
        ``texts`` list of B reference transcripts.
    """

    def __init__(
        self,
        tokenizer: Tokenizer,
        fbank_options: FbankOptions | None = None,
        augment: AugmentOptions | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.tokenizer = tokenizer
        self.fbank_options = fbank_options or FbankOptions()
        self.augment = augment
        self.rng = random.Random(seed)
        self.perturb_speed = None
        if augment is not None:
            factors = [f for f in augment.speed_factors if f != 1.0]
            if factors:
                # Draw 1.0 with the same probability as each other factor, as WeNet does.
                p = len(factors) / len(augment.speed_factors)
                self.perturb_speed = PerturbSpeed(factors=factors, p=p, randgen=self.rng)

    def __getitem__(self, cuts: CutSet) -> dict:
        cuts = cuts.sort_by_duration(ascending=False)
        if self.perturb_speed is not None:
            cuts = self.perturb_speed(cuts)
        dither = self.augment.dither if self.augment is not None else 0.0

        feats, ids, texts, token_seqs = [], [], [], []
        for cut in cuts:
            # (C, S) float32 in [-1, 1]; validation has already made every cut mono.
            samples = torch.from_numpy(cut.load_audio())
            feats.append(compute_fbank(samples[0], self.fbank_options, dither=dither))
            text = cut.supervisions[0].text if cut.supervisions else ""
            ids.append(cut.id)
            texts.append(text)
            token_seqs.append(torch.tensor(self.tokenizer.encode(text), dtype=torch.int64))

        feat_lens = torch.tensor([f.shape[0] for f in feats], dtype=torch.int64)
        token_lens = torch.tensor([t.shape[0] for t in token_seqs], dtype=torch.int64)
        return {
            "feats": pad_sequence(feats, batch_first=True, padding_value=0.0),
            "feat_lens": feat_lens,
            "tokens": pad_sequence(token_seqs, batch_first=True, padding_value=IGNORE_ID),
            "token_lens": token_lens,
            "ids": ids,
            "texts": texts,
        }
