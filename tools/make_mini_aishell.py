"""Generate the mini AISHELL-1 corpus (synthesized Mandarin speech) as data_aishell.tgz and resource_aishell.tgz."""

from __future__ import annotations

import argparse
import json
import logging
import time

from asr.data.mini_aishell import SCALES, make_mini_aishell
from asr.data.mini_aishell.build import STAMP_FILE


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out-dir", required=True, help="directory for data_aishell.tgz and resource_aishell.tgz")
    parser.add_argument("--seed", type=int, default=0, help="seed of the sentence and audio generators")
    parser.add_argument("--scale", choices=sorted(SCALES), default="full", help="full: about 1.5 hours; tiny: 14 utterances for tests")
    parser.add_argument("--workers", type=int, default=2, help="number of synthesis processes")
    args = parser.parse_args()

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    start = time.perf_counter()
    out_dir = make_mini_aishell(args.out_dir, scale=args.scale, seed=args.seed, workers=args.workers)
    record = json.loads((out_dir / STAMP_FILE).read_text(encoding="utf-8"))
    print(json.dumps({"out_dir": str(out_dir), "seconds": round(time.perf_counter() - start, 1), **record}, indent=2))


if __name__ == "__main__":
    main()
