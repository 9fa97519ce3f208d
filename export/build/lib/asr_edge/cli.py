"""Transcribe audio files with an exported model and write ``utt text`` lines.

Example: ``python -m asr_edge.cli --model-dir exp/onnx --wav-scp data/test/wav.scp
--output exp/onnx/text --decoding attention_rescoring --rtf``
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from onnxruntime.capi import onnxruntime_pybind11_state as ort_errors

from asr_edge.audio import AudioError
from asr_edge.recognizer import DECODING_MODES, ModelError, Recognizer
from asr_edge.tokens import TokensError

logger = logging.getLogger("asr_edge.cli")

# Errors that fail one file but leave the recognizer usable for the next.
_FILE_ERRORS = (
    AudioError,
    ort_errors.Fail,
    ort_errors.InvalidArgument,
    ort_errors.RuntimeException,
)


def read_wav_scp(path: Path) -> list[tuple[str, str]]:
    """Read ``utt path`` lines. The path is the rest of the line, so it may contain spaces.

    Raises:
        ValueError: naming the file and line of a malformed line or a repeated utterance id.
    """
    # NOTE: Kaldi pipe entries ("sox ... |") are read as file names and fail as missing files.
    entries: list[tuple[str, str]] = []
    seen: set[str] = set()
    for line_number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.strip().split(maxsplit=1)
        if len(fields) != 2:
            raise ValueError(f"{path}:{line_number}: expected 'utt path', got {line!r}.")

        utt, wav = fields
        if utt in seen:
            raise ValueError(f"{path}:{line_number}: utterance id {utt!r} appears twice.")
        seen.add(utt)
        entries.append((utt, wav))
    return entries


def _entries_from_paths(paths: Sequence[str]) -> list[tuple[str, str]]:
    entries = [(Path(path).stem, path) for path in paths]
    ids = [utt for utt, _ in entries]
    repeated = sorted({utt for utt in ids if ids.count(utt) > 1})
    if repeated:
        raise ValueError(
            f"Files share the utterance id(s) {repeated} (their file stems). Pass a wav.scp"
            " with distinct ids instead."
        )
    return entries


def build_parser() -> argparse.ArgumentParser:
    """Return the command-line parser."""
    parser = argparse.ArgumentParser(prog="python -m asr_edge.cli", description=__doc__)
    parser.add_argument(
        "--model-dir", type=Path, default=Path("."),
        help="Directory with model.onnx, tokens.txt and, for attention rescoring, decoder.onnx"
        " (default: current directory).",
    )
    parser.add_argument("--wav-scp", type=Path, help="Kaldi wav.scp with 'utt path' lines.")
    parser.add_argument("wavs", nargs="*", help="Audio files, each named by its file stem.")
    parser.add_argument("--output", type=Path, required=True, help="Output 'utt text' file.")
    parser.add_argument(
        "--num-threads", type=int, default=1, help="onnxruntime intra-op threads per model."
    )
    parser.add_argument(
        "--decoding", choices=DECODING_MODES, default="ctc_greedy_search", help="Search method."
    )
    parser.add_argument("--beam-size", type=int, default=10, help="Prefix beam search beam.")
    parser.add_argument(
        "--ctc-weight", type=float, default=0.5, help="CTC score weight in attention rescoring."
    )
    parser.add_argument(
        "--int8", action="store_true", help="Load model.int8.onnx and decoder.int8.onnx."
    )
    parser.add_argument(
        "--rtf", action="store_true", help="Log each file's real-time factor and print the total."
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI and return the exit status: 0, or 1 if any file or the model failed."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")

    if (args.wav_scp is None) == (not args.wavs):
        print("error: give either --wav-scp or audio files, not both or neither.", file=sys.stderr)
        return 1

    try:
        entries = read_wav_scp(args.wav_scp) if args.wav_scp else _entries_from_paths(args.wavs)
        recognizer = Recognizer(
            args.model_dir,
            num_threads=args.num_threads,
            decoding=args.decoding,
            beam_size=args.beam_size,
            ctc_weight=args.ctc_weight,
            int8=args.int8,
        )
    except (ModelError, TokensError, ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1

    args.output.parent.mkdir(parents=True, exist_ok=True)
    num_failed = 0
    total_duration = 0.0
    total_seconds = 0.0
    with args.output.open("w", encoding="utf-8") as output:
        for index, (utt, wav) in enumerate(entries, start=1):
            try:
                result = recognizer.transcribe(wav)
            except _FILE_ERRORS as error:
                num_failed += 1
                logger.error("Skipping utterance %s (%s): %s", utt, wav, error)
                continue

            output.write(f"{utt} {result.text}".rstrip() + "\n")
            total_duration += result.duration
            total_seconds += result.seconds
            if args.rtf:
                logger.info(
                    "%d/%d %s: %.2f s audio in %.3f s, RTF %.4f",
                    index, len(entries), utt, result.duration, result.seconds, result.rtf,
                )

    num_done = len(entries) - num_failed
    print(
        f"Transcribed {num_done} of {len(entries)} files into {args.output}."
        f" {num_failed} failed."
    )
    if args.rtf and total_duration > 0:
        print(
            f"Total: {total_duration:.2f} s audio in {total_seconds:.2f} s, RTF"
            f" {total_seconds / total_duration:.4f} ({args.num_threads} thread(s),"
            f" {args.decoding}{', int8' if args.int8 else ''})."
        )
    return 1 if num_failed else 0


if __name__ == "__main__":
    sys.exit(main())
