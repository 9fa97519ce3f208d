"""Compute global CMVN statistics of the training set's fbank features.

Usage::

    python -m asr.bin.compute_cmvn --cuts data/manifests/cuts_train.jsonl.gz \
        --output data/manifests/cmvn.json

Features are computed without dither or speed perturbation, with the same front end as training.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import torch
from lhotse import CutSet
from tqdm import tqdm

from asr.features.cmvn_stats import compute_global_cmvn, save_cmvn
from asr.features.fbank import FbankOptions, compute_fbank

logger = logging.getLogger(__name__)


def iter_fbank(cuts: CutSet, options: FbankOptions):
    """Yield ``(T, 80)`` fbank features of each cut."""
    for cut in tqdm(cuts, desc="cmvn", unit="utt"):
        samples = torch.from_numpy(cut.load_audio())
        yield compute_fbank(samples[0], options)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cuts", type=Path, required=True, help="training CutSet manifest")
    parser.add_argument("--output", type=Path, required=True, help="JSON file to write")
    parser.add_argument("--max-utterances", type=int, default=None,
                        help="use only the first N utterances (statistics converge early)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    cuts = CutSet.from_file(args.cuts)
    if args.max_utterances is not None:
        cuts = cuts.subset(first=args.max_utterances)
    options = FbankOptions()
    frames = 0

    def counted():
        nonlocal frames
        for feats in iter_fbank(cuts, options):
            frames += feats.shape[0]
            yield feats

    mean, istd = compute_global_cmvn(counted())
    save_cmvn(args.output, mean, istd, frames)
    logger.info("Wrote %s from %d frames", args.output, frames)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
