"""Print a Markdown table of CER and real-time factor per decoding mode of one decode directory.

Usage::

    python -m asr.bin.results_table --decode-dir exp/mini/decode_test_avg_best5 \
        --modes ctc_greedy_search attention_rescoring

Reads ``DECODE_DIR/ref.txt``, ``DECODE_DIR/<mode>/text`` and ``DECODE_DIR/rtf.json`` as written
by ``asr.bin.decode``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from asr.eval.score import read_text_file, score


def results_table(decode_dir: Path, modes: list[str]) -> str:
    """Return the Markdown table: mode, CER %, S/D/I counts, reference length and RTF."""
    refs = read_text_file(decode_dir / "ref.txt")
    rtf_path = decode_dir / "rtf.json"
    rtf = json.loads(rtf_path.read_text())["rtf"] if rtf_path.is_file() else {}

    lines = [
        f"Results on {decode_dir} ({len(refs)} utterances)",
        "",
        "| decoding mode | CER % | S | D | I | N | RTF |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for mode in modes:
        result = score(refs, read_text_file(decode_dir / mode / "text"))
        mode_rtf = f"{rtf[mode]:.4f}" if mode in rtf else "n/a"
        lines.append(
            f"| {mode} | {result.error_rate:.2f} | {result.substitutions} | {result.deletions} "
            f"| {result.insertions} | {result.ref_length} | {mode_rtf} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--decode-dir", type=Path, required=True, help="output of asr.bin.decode")
    parser.add_argument("--modes", nargs="+", required=True, help="decoding modes to list")
    args = parser.parse_args(argv)
    print(results_table(args.decode_dir, args.modes))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
