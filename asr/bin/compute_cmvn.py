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

from lhotse import CutSet

from asr.features.cmvn_stats import compute_global_cmvn_from_cuts, save_cmvn
from asr.features.fbank import KaldiNativeCompatibleFbank

logger = logging.getLogger(__name__)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cuts", type=Path, required=True, help="training CutSet manifest")
    parser.add_argument("--output", type=Path, required=True, help="JSON file to write")
    parser.add_argument("--num-workers", type=int, default=2, help="feature worker processes")
    parser.add_argument("--max-utterances", type=int, default=None,
                        help="use only the first N utterances (statistics converge early)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    if not args.cuts.is_file():
        logger.error("%s not found: run data preparation (recipe stage 1) first.", args.cuts)
        return 1
    cuts = CutSet.from_file(args.cuts)
    if args.max_utterances is not None:
        cuts = cuts.subset(first=args.max_utterances)
    mean, istd, frames = compute_global_cmvn_from_cuts(
        cuts, KaldiNativeCompatibleFbank(dither=0.0), num_workers=args.num_workers
    )
    save_cmvn(args.output, mean, istd, frames)
    logger.info("Wrote %s from %d frames", args.output, frames)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
