"""Print a Markdown table of CER, model size and RTF for float and int8 decoding runs.

Usage::

    python -m asr_onnx.report --ref data/test/text --model-dir exp/mini_mini/onnx \
        --decode-dir exp/mini_mini/onnx_decode

Each run is a folder ``DECODE_DIR/<runtime>_<precision>_<mode>`` holding ``text`` (``utt text``
lines) and ``log`` (the decoder's standard output, whose ``RTF x`` figure is read).
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from asr.eval.score import read_text_file, score

_RTF = re.compile(r"RTF (\d+(?:\.\d+)?)")
_RUNTIMES = ("edge_", "sherpa_")
_MODEL_FILES = {"float": ("model.onnx", "decoder.onnx"), "int8": ("model.int8.onnx", "decoder.int8.onnx")}


def model_megabytes(model_dir: Path, precision: str, mode: str) -> float:
    """Return the size in MB of the graphs that ``mode`` runs (the decoder only for rescoring)."""
    ctc_graph, decoder_graph = _MODEL_FILES[precision]
    files = [ctc_graph] + ([decoder_graph] if mode == "attention_rescoring" else [])
    return sum((model_dir / name).stat().st_size for name in files) / 1e6


def report(ref_path: Path, model_dir: Path, decode_dir: Path) -> str:
    """Return the Markdown table over every run folder in ``decode_dir``."""
    refs = read_text_file(ref_path)
    lines = [
        "| runtime | precision | decoding mode | CER % | model MB | RTF |",
        "|---|---|---|---:|---:|---:|",
    ]
    runs = [p for p in decode_dir.iterdir() if p.name.startswith(_RUNTIMES) and (p / "text").is_file()]
    for run in sorted(runs):
        runtime, precision, mode = run.name.split("_", 2)
        result = score(refs, read_text_file(run / "text"))
        log = (run / "log").read_text(encoding="utf-8") if (run / "log").is_file() else ""
        match = _RTF.search(log)
        rtf = match.group(1) if match else "n/a"
        size = model_megabytes(model_dir, precision, mode)
        lines.append(f"| {runtime} | {precision} | {mode} | {result.error_rate:.2f} | {size:.2f} | {rtf} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ref", type=Path, required=True, help="reference 'utt text' file")
    parser.add_argument("--model-dir", type=Path, required=True, help="directory of the .onnx files")
    parser.add_argument("--decode-dir", type=Path, required=True, help="directory of the run folders")
    args = parser.parse_args(argv)
    print(report(args.ref, args.model_dir, args.decode_dir))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
