"""Read an audio file into a mono 16 kHz float waveform, rejecting input a model cannot use."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import soundfile as sf

from asr_edge.features import SAMPLE_RATE
from asr_edge.resample import resample

logger = logging.getLogger(__name__)


class AudioError(ValueError):
    """An audio file is missing, unreadable, empty, non-finite or too short to recognize."""


def load_audio(path: str | Path, min_samples: int = 0) -> np.ndarray:
    """Read a wav/flac (any format libsndfile reads) as a mono 16 kHz waveform.

    Multi-channel audio is averaged to mono and other sample rates are resampled with
    windowed-sinc interpolation, each with a logged warning.

    Args:
        path: Audio file.
        min_samples: Minimum length in samples at 16 kHz after resampling.

    Returns:
        (S,) float32 samples in [-1, 1] at 16 kHz.

    Raises:
        AudioError: naming ``path``, if the file is missing, empty, not audio or corrupt, has no
            samples, contains NaN or Inf, or is shorter than ``min_samples``.
    """
    path = Path(path)
    if not path.is_file():
        raise AudioError(f"{path}: audio file not found. Check the path or the wav.scp entry.")
    if path.stat().st_size == 0:
        raise AudioError(f"{path}: audio file is empty (0 bytes).")

    try:
        data, sample_rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as error:
        raise AudioError(
            f"{path}: not a readable audio file, the format is unsupported or the file is"
            f" corrupt ({str(error).rstrip('.')}). Convert it to 16 kHz mono wav or flac."
        ) from error

    num_samples, num_channels = data.shape
    if num_samples == 0:
        raise AudioError(f"{path}: audio file contains no samples.")

    finite = np.isfinite(data)
    if not finite.all():
        first_bad = int(np.argmin(finite.all(axis=1)))
        raise AudioError(
            f"{path}: audio contains {int((~finite).sum())} NaN or Inf sample values, the first"
            f" at sample {first_bad}. Re-encode the file from a clean source."
        )

    if num_channels > 1:
        logger.warning("%s: averaging %d channels to mono.", path, num_channels)
    samples = data.mean(axis=1) if num_channels > 1 else data[:, 0]

    if sample_rate != SAMPLE_RATE:
        logger.warning(
            "%s: resampling from %d Hz to %d Hz (windowed-sinc interpolation).",
            path, sample_rate, SAMPLE_RATE,
        )
        samples = resample(samples, sample_rate, SAMPLE_RATE)

    if samples.shape[0] < min_samples:
        raise AudioError(
            f"{path}: audio is {samples.shape[0] / SAMPLE_RATE:.3f} s long, shorter than the"
            f" model's minimum of {min_samples / SAMPLE_RATE:.3f} s ({min_samples} samples at"
            f" {SAMPLE_RATE} Hz)."
        )
    return samples.astype(np.float32, copy=False)
