"""Average the best or last N training checkpoints into one model file.

Usage::

    python -m asr.bin.average --ckpt-dir exp/brst_adm/checkpoints --mode best --num 10 \
        --output exp/brst_adm/avg_best10.pt
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from asr.training.checkpoint import average_checkpoints, save_model, select_checkpoints

logger = logging.getLogger(__name__)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt-dir", type=Path, required=True, help="checkpoint directory of a run")
    parser.add_argument("--mode", choices=["best", "last"], default="best",
                        help="lowest validation loss or most recent epochs")
    parser.add_argument("--num", type=int, default=10, help="number of checkpoints to average")
    parser.add_argument("--output", type=Path, required=True, help="model file to write (.pt)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    if args.output.exists() and not args.overwrite:
        parser.error(f"{args.output} exists; pass --overwrite to replace it.")
    try:
        paths = select_checkpoints(args.ckpt_dir, args.mode, args.num)
        for path in paths:
            logger.info("Averaging %s", path)
        config, state = average_checkpoints(paths)
    except (FileNotFoundError, ValueError) as error:
        logger.error("%s", error)
        return 1
    save_model(args.output, config, state, averaged=[str(p) for p in paths], mode=args.mode)
    logger.info("Wrote %s (average of %d checkpoints)", args.output, len(paths))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
