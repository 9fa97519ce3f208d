"""Decode a Kaldi ``wav.scp`` with sherpa-onnx, to check that an exported model loads there as is.

Usage::

    python -m asr_onnx.sherpa_decode --model-dir exp/mini_mini/onnx --wav-scp data/test/wav.scp \
        --output exp/mini_mini/onnx_decode/sherpa_float/text [--int8] [--num-threads 1]

Uses ``sherpa_onnx.OfflineRecognizer.from_wenet_ctc`` (CTC greedy search) on ``model.onnx`` (or
``model.int8.onnx``) and ``tokens.txt``, one utterance at a time. Writes ``utt text`` lines and
prints the total real-time factor.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import numpy as np

from asr_edge.audio import AudioError, load_audio
from asr_edge.cli import read_wav_scp

logger = logging.getLogger(__name__)

SAMPLE_RATE = 16000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", type=Path, required=True, help="directory written by asr_onnx.cli")
    parser.add_argument("--wav-scp", type=Path, required=True, help="Kaldi wav.scp of the audio to decode")
    parser.add_argument("--output", type=Path, required=True, help="file of 'utt text' lines to write")
    parser.add_argument("--int8", action="store_true", help="use model.int8.onnx")
    parser.add_argument("--num-threads", type=int, default=1, help="onnxruntime threads")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    import sherpa_onnx  # an optional dependency: only this check needs it

    model = args.model_dir / ("model.int8.onnx" if args.int8 else "model.onnx")
    recognizer = sherpa_onnx.OfflineRecognizer.from_wenet_ctc(
        model=str(model), tokens=str(args.model_dir / "tokens.txt"), num_threads=args.num_threads
    )

    entries = read_wav_scp(args.wav_scp)
    lines, failed = [], 0
    audio_seconds = decode_seconds = 0.0
    for utt, path in entries:
        try:
            samples = load_audio(path)
        except AudioError as error:
            logger.error("Skipping %s: %s", utt, error)
            failed += 1
            continue
        start = time.perf_counter()
        stream = recognizer.create_stream()
        stream.accept_waveform(SAMPLE_RATE, samples.astype(np.float32))
        recognizer.decode_stream(stream)
        decode_seconds += time.perf_counter() - start
        audio_seconds += len(samples) / SAMPLE_RATE
        lines.append(f"{utt} {stream.result.text}")

    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    print(f"Total: {audio_seconds:.2f} s audio in {decode_seconds:.2f} s, "
          f"RTF {decode_seconds / max(audio_seconds, 1e-9):.4f}")
    if failed:
        logger.error("%d of %d files failed", failed, len(entries))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
