"""Command line that generates the mini AISHELL-1 corpus archives."""

from __future__ import annotations

import argparse
import json
import logging
import time

from asr.data.mini_aishell.build import SCALES, STAMP_FILE, make_mini_aishell


def main(argv: list[str] | None = None) -> None:
    """Parse `argv`, build the corpus and print the build record (sizes, hours) as JSON."""
    parser = argparse.ArgumentParser(
        description="Generate the mini AISHELL-1 corpus (Mandarin speech synthesized with "
        "espeak-ng) as data_aishell.tgz and resource_aishell.tgz."
    )
    parser.add_argument(
        "--out-dir", required=True, help="directory for data_aishell.tgz and resource_aishell.tgz"
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the sentence and audio generators"
    )
    parser.add_argument(
        "--scale",
        choices=sorted(SCALES),
        default="full",
        help="full: 18 speakers, about 1.7 hours; tiny: 4 speakers, 14 utterances, for tests",
    )
    parser.add_argument("--workers", type=int, default=2, help="number of synthesis processes")
    args = parser.parse_args(argv)

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    start = time.perf_counter()
    out_dir = make_mini_aishell(
        args.out_dir, scale=args.scale, seed=args.seed, workers=args.workers
    )

    record = json.loads((out_dir / STAMP_FILE).read_text(encoding="utf-8"))
    record["out_dir"] = str(out_dir)
    record["seconds"] = round(time.perf_counter() - start, 1)
    print(json.dumps(record, indent=2, sort_keys=True))


if __name__ == "__main__":
    main()
