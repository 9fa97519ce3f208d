"""Compute CER or WER of a hypothesis text file against a reference text file.

Example::

    python -m asr.bin.score --ref data/test/text --hyp exp/decode/text --details exp/cer.txt
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from asr.eval.normalize import SCORING_MODES
from asr.eval.score import read_text_file, score

logger = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    """Build the command-line parser."""
    parser = argparse.ArgumentParser(
        prog="asr-score",
        description=(
            "Score hypotheses against references, both Kaldi-style text files of "
            "'<utt_id> <text>' lines, and print the WeNet-style 'Overall -> ...' line."
        ),
    )
    parser.add_argument("--ref", type=Path, required=True, help="reference text file")
    parser.add_argument("--hyp", type=Path, required=True, help="hypothesis text file")
    parser.add_argument(
        "--mode",
        choices=SCORING_MODES,
        default="char",
        help=(
            "char gives CER with one token per CJK character and per Latin letter/digit run, "
            "word gives WER over whitespace-separated words (default: char)"
        ),
    )
    parser.add_argument(
        "--details",
        type=Path,
        default=None,
        help="write per-utterance alignments and the summary to this file",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Score the files and print the summary. Return 0, or 1 when an input file is invalid."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    try:
        refs = read_text_file(args.ref)
        hyps = read_text_file(args.hyp)
    except (OSError, ValueError) as error:
        logger.error("%s", error)
        return 1

    result = score(refs, hyps, mode=args.mode)

    if args.details is not None:
        args.details.parent.mkdir(parents=True, exist_ok=True)
        args.details.write_text(result.format_details(), encoding="utf-8")
        logger.info("Wrote %d utterance alignments to %s", len(result.alignments), args.details)

    print(result.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
