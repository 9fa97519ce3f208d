"""Data preparation CLI: download and prepare AISHELL-1, import and export Kaldi data dirs."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from lhotse import CutSet

from asr.data.aishell import AISHELL_SPLITS, extract_aishell, prepare_aishell
from asr.data.download import AISHELL_BASE_URL, ChecksumError, DownloadError, download_aishell
from asr.data.extract import UnsafeArchiveError
from asr.data.kaldi_dir import export_kaldi_dir, import_kaldi_dir
from asr.data.validate import write_validated_cuts

logger = logging.getLogger(__name__)


def read_vocabulary(path: Path) -> set[str]:
    """Read a vocabulary file: one token per line, optionally followed by its id."""
    vocabulary = set()
    with open(path, encoding="utf-8") as f:
        for line in f:
            fields = line.split()
            if fields:
                vocabulary.add(fields[0])
    if not vocabulary:
        raise ValueError(f"Vocabulary file {path} is empty; expected one token per line.")
    return vocabulary


def _seconds_or_none(value: str) -> float | None:
    seconds = float(value)
    if seconds < 0:
        raise argparse.ArgumentTypeError(f"expected seconds >= 0, got {value}")
    return seconds if seconds > 0 else None


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser with the download, aishell, kaldi and export-kaldi commands."""
    parser = argparse.ArgumentParser(prog="asr-prepare", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    download = commands.add_parser("download", help="Download the AISHELL-1 archives.")
    download.add_argument(
        "--corpus-dir",
        "--target-dir",
        dest="corpus_dir",
        type=Path,
        required=True,
        help="Directory for the archives; pass the same one to the aishell command.",
    )
    download.add_argument(
        "--base-url", default=AISHELL_BASE_URL, help="URL of the OpenSLR resource 33."
    )

    aishell = commands.add_parser(
        "aishell",
        help="Extract, prepare and validate AISHELL-1.",
        description="Extract the archives in --corpus-dir, write lhotse manifests for train, "
        "dev and test, and the validated cuts_{split}.jsonl.gz used for training.",
    )
    aishell.add_argument("--corpus-dir", type=Path, required=True,
                         help="Directory with data_aishell.tgz or an extracted data_aishell/.")
    aishell.add_argument(
        "--output-dir", type=Path, required=True, help="Directory for manifests and reports."
    )
    aishell.add_argument("--max-duration", type=_seconds_or_none, default=20.0,
                         help="Remove train utterances longer than this, in seconds; 0 disables. "
                         "Dev and test keep every length so scores stay comparable (default: 20).")
    aishell.add_argument("--vocabulary", type=Path, default=None,
                         help="Token list (one per line) for the out-of-vocabulary report. "
                         "Default: the characters of the validated train transcripts, "
                         "so only dev and test can have out-of-vocabulary characters.")
    aishell.add_argument("--num-workers", type=int, default=4, help="Threads that decode audio.")

    kaldi = commands.add_parser("kaldi", help="Import a Kaldi data dir into validated cuts.")
    kaldi.add_argument("--data-dir", type=Path, required=True, help="Kaldi data directory.")
    kaldi.add_argument("--output-dir", type=Path, required=True, help="Directory for the cuts.")
    kaldi.add_argument("--name", required=True, help="Name of the set: writes cuts_NAME.jsonl.gz.")
    kaldi.add_argument("--max-duration", type=_seconds_or_none, default=None,
                       help="Remove utterances longer than this, in seconds (default: no limit).")
    kaldi.add_argument("--vocabulary", type=Path, default=None,
                       help="Token list (one per line) for the out-of-vocabulary report.")
    kaldi.add_argument("--remove-spaces", action="store_true",
                       help="Remove whitespace from transcripts, as for character-based Mandarin.")
    kaldi.add_argument("--num-workers", type=int, default=4, help="Threads that decode audio.")

    export = commands.add_parser("export-kaldi", help="Write a cuts manifest as a Kaldi data dir.")
    export.add_argument("--cuts", type=Path, required=True, help="Cuts manifest (.jsonl.gz).")
    export.add_argument("--data-dir", type=Path, required=True, help="Output Kaldi data directory.")
    export.add_argument(
        "--overwrite", action="store_true", help="Replace the Kaldi files in --data-dir."
    )
    export.add_argument("--skip-unsupported", action="store_true",
                        help="Skip cuts that wav.scp cannot express (resampled, downmixed) "
                        "instead of failing.")
    return parser


def run_aishell(args: argparse.Namespace) -> str:
    """Extract, prepare and validate AISHELL-1; return the printed summary."""
    extract_aishell(args.corpus_dir)
    prepared = prepare_aishell(args.corpus_dir, args.output_dir)
    vocabulary = read_vocabulary(args.vocabulary) if args.vocabulary else None

    lines = ["Preparation (prepare_report.json):", prepared.report.summary()]
    for split in AISHELL_SPLITS:
        validated, report = write_validated_cuts(
            prepared.cuts[split],
            args.output_dir,
            split,
            vocabulary=vocabulary,
            max_duration=args.max_duration if split == "train" else None,
            num_workers=args.num_workers,
        )
        if split == "train" and args.vocabulary is None:
            vocabulary = {ch for cut in validated for s in cut.supervisions for ch in s.text}
        lines += [f"Validation of {split} (validation_{split}.json):", report.summary()]
    return "\n".join(lines)


def run_kaldi(args: argparse.Namespace) -> str:
    """Import and validate a Kaldi data dir; return the printed summary."""
    cuts = import_kaldi_dir(args.data_dir, remove_spaces=args.remove_spaces)
    _, report = write_validated_cuts(
        cuts,
        args.output_dir,
        args.name,
        vocabulary=read_vocabulary(args.vocabulary) if args.vocabulary else None,
        max_duration=args.max_duration,
        num_workers=args.num_workers,
    )
    return f"Validation of {args.name} (validation_{args.name}.json):\n{report.summary()}"


def main(argv: list[str] | None = None) -> int:
    """Run the command named in `argv` (default: `sys.argv[1:]`) and return the exit status."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )

    try:
        print(_run_command(args))
    except (
        ChecksumError,
        DownloadError,
        FileExistsError,
        FileNotFoundError,
        UnsafeArchiveError,
        ValueError,
    ) as err:
        logger.error("%s failed: %s", args.command, err)
        return 1
    return 0


def _run_command(args: argparse.Namespace) -> str:
    if args.command == "download":
        paths = download_aishell(args.corpus_dir, base_url=args.base_url)
        return "\n".join(str(path) for path in paths)
    if args.command == "aishell":
        return run_aishell(args)
    if args.command == "kaldi":
        return run_kaldi(args)

    count = export_kaldi_dir(
        CutSet.from_file(args.cuts),
        args.data_dir,
        overwrite=args.overwrite,
        skip_unsupported=args.skip_unsupported,
    )
    return f"Wrote {count} utterances to {args.data_dir}"


if __name__ == "__main__":
    sys.exit(main())
