"""Audio and transcript checks on a CutSet: drop unusable cuts, resample and downmix the rest."""

from __future__ import annotations

import logging
import struct
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import soundfile as sf
from lhotse import CutSet
from lhotse.cut import Cut, MixedCut, MixTrack
from lhotse.utils import fastcopy
from tqdm.auto import tqdm

from asr.constants import SAMPLE_RATE
from asr.data.report import IssueReport

logger = logging.getLogger(__name__)

# Frames decoded per read while checking a file, so long recordings need bounded memory.
_READ_BLOCK_FRAMES = 1 << 18

# Maximum overrun, in seconds, of a cut past its recording's end: one 10 ms frame shift,
# the usual resolution of times in Kaldi segments files.
_END_TOLERANCE = 0.01


@dataclass
class ValidationReport(IssueReport):
    """Result of `validate_cuts`: ids per category plus input and output cut counts."""

    CATEGORIES: ClassVar[dict[str, str]] = {
        "duplicate_id": "cut id seen before (removed)",
        "missing_audio": "audio file not found (removed)",
        "empty_audio": "audio file has 0 bytes or 0 samples (removed)",
        "unreadable_audio": "audio file cannot be decoded or disagrees with the manifest (removed)",
        "past_recording_end": "cut ends after the end of its recording (removed)",
        "missing_text": "no supervision or an empty transcript (removed)",
        "too_long": "longer than max_duration (removed)",
        "too_short": "shorter than min_duration (removed)",
        "resampled": "sample rate differs from the target (kept, resampled on load)",
        "downmixed": "more than one channel (kept, averaged to mono on load)",
        "oov_characters": "characters outside the vocabulary (kept, mapped to <unk>)",
    }

    num_input: int = 0
    num_kept: int = 0

    def summary(self) -> str:
        """Return a header with input and kept counts, then one line per non-empty category."""
        header = f"kept {self.num_kept} of {self.num_input} cuts"
        return header + "\n" + super().summary()

    def to_dict(self) -> dict:
        """Return the category report with `num_input` and `num_kept` added."""
        return {"num_input": self.num_input, "num_kept": self.num_kept, **super().to_dict()}


def validate_cuts(
    cuts: CutSet,
    *,
    vocabulary: set[str] | None = None,
    max_duration: float | None = None,
    min_duration: float | None = None,
    sample_rate: int = SAMPLE_RATE,
    num_workers: int = 4,
) -> tuple[CutSet, ValidationReport]:
    """Check every cut's audio and transcript and return the usable cuts with a report.

    Each audio file is opened and decoded in full with soundfile, once per recording.
    Removed: duplicate ids, missing, empty or undecodable audio, cuts ending more than 10 ms
    after their recording, cuts without text, and cuts outside [min_duration, max_duration]
    seconds. Undecodable includes a file whose sample rate, channel count or length
    disagrees with the manifest, and a file that contains NaN or Inf.
    Kept but changed: other sample rates get a lazy `cut.resample(sample_rate)`, and
    multi-channel cuts become a lazy average of their channels (see `downmix_to_mono`).
    Kept as is: text with characters outside `vocabulary` (whitespace is ignored).

    Args:
        cuts: cuts with one supervision each.
        vocabulary: allowed characters, or None to skip the check.
        max_duration: maximum cut duration in seconds, or None for no limit.
        min_duration: minimum cut duration in seconds, or None for no limit.
        sample_rate: target sample rate in Hz.
        num_workers: threads that decode audio files in parallel.

    Returns:
        The kept cuts, in input order, and the `ValidationReport`.
    """
    cuts = list(cuts)
    report = ValidationReport(num_input=len(cuts))
    audio_errors = _check_recordings(cuts, num_workers)

    kept_cuts = []
    seen: set[str] = set()
    for cut in cuts:
        if cut.id in seen:
            report.add("duplicate_id", cut.id)
            continue
        seen.add(cut.id)

        problem = audio_errors.get(_recording_key(cut))
        if problem is not None:
            category, detail = problem
            report.add(category, cut.id, detail)
            continue

        recording = getattr(cut, "recording", None)
        if recording is not None and cut.end > recording.duration + _END_TOLERANCE:
            detail = f"ends at {cut.end:.3f} s, recording lasts {recording.duration:.3f} s"
            report.add("past_recording_end", cut.id, detail)
            continue

        text = _cut_text(cut)
        if not text.strip():
            report.add("missing_text", cut.id)
            continue

        if max_duration is not None and cut.duration > max_duration:
            report.add("too_long", cut.id, f"{cut.duration:.2f} s")
            continue
        if min_duration is not None and cut.duration < min_duration:
            report.add("too_short", cut.id, f"{cut.duration:.2f} s")
            continue

        if vocabulary is not None:
            unknown = sorted({ch for ch in text if not ch.isspace() and ch not in vocabulary})
            if unknown:
                report.add("oov_characters", cut.id, "".join(unknown))

        if cut.num_channels > 1:
            report.add("downmixed", cut.id, f"{cut.num_channels} channels")
            cut = downmix_to_mono(cut)

        if cut.sampling_rate != sample_rate:
            report.add("resampled", cut.id, f"{cut.sampling_rate} Hz")
            cut = cut.resample(sample_rate)

        kept_cuts.append(cut)

    report.num_kept = len(kept_cuts)
    logger.info("Validation: %s", report.summary())
    return CutSet.from_cuts(kept_cuts), report


def write_validated_cuts(
    cuts: CutSet,
    output_dir: Path,
    name: str,
    **options,
) -> tuple[CutSet, ValidationReport]:
    """Validate `cuts`, then write `cuts_{name}.jsonl.gz` and `validation_{name}.json`.

    Keyword `options` go to `validate_cuts`.
    """
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)

    kept_cuts, report = validate_cuts(cuts, **options)

    kept_cuts.to_file(output_dir / f"cuts_{name}.jsonl.gz")
    report.to_json(output_dir / f"validation_{name}.json")
    logger.info(
        "Wrote %d validated cuts to %s", len(kept_cuts), output_dir / f"cuts_{name}.jsonl.gz"
    )
    return kept_cuts, report


def downmix_to_mono(cut: Cut) -> Cut:
    """Return a lazy, serializable cut whose audio is the mean of `cut`'s channels, shape (1, N).

    lhotse 1.33's `MultiCut.to_mono(mono_downmix=True)` sums the channels and keeps the result
    in memory, which `CutSet.to_file` cannot write. Here each channel becomes a track scaled
    by 1 / C with a lazy volume transform, and the tracks are mixed in a `MixedCut`.
    The supervisions stay on the first track only, with channel 0.
    """
    channel_cuts = cut.to_mono(mono_downmix=False)
    scale = 1.0 / len(channel_cuts)
    supervisions = [fastcopy(s, channel=0) for s in _unique_supervisions(cut)]

    tracks = []
    for index, channel_cut in enumerate(channel_cuts):
        channel_cut = channel_cut.perturb_volume(scale, affix_id=False)
        channel_cut = fastcopy(channel_cut, supervisions=supervisions if index == 0 else [])
        tracks.append(MixTrack(cut=channel_cut))
    return MixedCut(id=cut.id, tracks=tracks)


def _unique_supervisions(cut: Cut) -> list:
    unique = {}
    for supervision in cut.supervisions:
        unique.setdefault(supervision.id, supervision)
    return list(unique.values())


def _cut_text(cut: Cut) -> str:
    return " ".join(s.text for s in _unique_supervisions(cut) if s.text)


def _recording_key(cut: Cut) -> str:
    """Return the key that `_check_recordings` stores the audio check of `cut` under."""
    recording = getattr(cut, "recording", None)
    return recording.id if recording is not None else f"cut:{cut.id}"


def _check_recordings(cuts: list[Cut], num_workers: int) -> dict[str, tuple[str, str]]:
    """Decode each distinct recording once; return key -> (category, detail) for failures."""
    targets: dict[str, Cut] = {}
    for cut in cuts:
        targets.setdefault(_recording_key(cut), cut)

    with ThreadPoolExecutor(max_workers=max(1, num_workers)) as pool:
        results = list(
            tqdm(
                pool.map(_check_cut_audio, targets.values()),
                total=len(targets),
                desc="Checking audio",
                unit="rec",
            )
        )
    return {key: result for key, result in zip(targets, results) if result is not None}


def _check_cut_audio(cut: Cut) -> tuple[str, str] | None:
    recording = getattr(cut, "recording", None)
    if recording is None or any(source.type != "file" for source in recording.sources):
        return _check_by_loading(cut)

    # A transform (resampling, speed, volume) changes the sample rate or length in the
    # manifest, so the file header cannot be compared with it. Loading applies the transform.
    if recording.transforms:
        return _check_by_loading(cut)

    for source in recording.sources:
        problem = _check_audio_file(
            Path(source.source),
            sampling_rate=recording.sampling_rate,
            num_channels=len(source.channels),
            num_samples=recording.num_samples,
        )
        if problem is not None:
            return problem
    return None


def _check_by_loading(cut: Cut) -> tuple[str, str] | None:
    """Check audio that is not a plain file, or is transformed, by loading the cut."""
    try:
        audio = cut.load_audio()
    except Exception as err:  # noqa: BLE001 (lhotse raises many types across backends)
        return "unreadable_audio", f"{type(err).__name__}: {err}"

    if audio.size == 0:
        return "empty_audio", "0 samples"
    if not np.isfinite(audio).all():
        return "unreadable_audio", "contains NaN or Inf samples"
    return None


def _check_audio_file(
    path: Path, sampling_rate: int, num_channels: int, num_samples: int
) -> tuple[str, str] | None:
    """Decode the whole file at `path` and compare it with the manifest's recording fields."""
    if not path.is_file():
        return "missing_audio", str(path)
    if path.stat().st_size == 0:
        return "empty_audio", f"{path}: 0 bytes"

    truncation = _wav_truncation(path)
    if truncation is not None:
        return "unreadable_audio", f"{path}: {truncation}"

    try:
        with sf.SoundFile(str(path)) as f:
            if f.frames == 0:
                return "empty_audio", f"{path}: 0 samples"

            mismatch = []
            if f.samplerate != sampling_rate:
                mismatch.append(f"{f.samplerate} Hz, manifest {sampling_rate} Hz")
            if f.channels != num_channels:
                mismatch.append(f"{f.channels} channels, manifest {num_channels}")
            if f.frames != num_samples:
                mismatch.append(f"{f.frames} samples, manifest {num_samples}")
            if mismatch:
                return "unreadable_audio", f"{path}: file has " + "; ".join(mismatch)

            frames_read = 0
            for block in f.blocks(blocksize=_READ_BLOCK_FRAMES, dtype="float32", always_2d=True):
                if not np.isfinite(block).all():
                    return "unreadable_audio", f"{path}: contains NaN or Inf samples"
                frames_read += block.shape[0]
    except (sf.LibsndfileError, RuntimeError, OSError) as err:
        return "unreadable_audio", f"{path}: {err}"

    if frames_read != num_samples:
        return "unreadable_audio", f"{path}: decoded {frames_read} of {num_samples} samples"
    return None


def _wav_truncation(path: Path) -> str | None:
    """Return why a RIFF/WAVE file is shorter than its `data` chunk header declares, or None.

    libsndfile clamps the frame count of a truncated WAV file to the bytes present, so a
    file cut off mid-download decodes without error and only its header reveals it.
    """
    file_size = path.stat().st_size
    with open(path, "rb") as f:
        header = f.read(12)
        if len(header) < 12 or header[:4] != b"RIFF" or header[8:12] != b"WAVE":
            return None

        offset = 12
        while offset + 8 <= file_size:
            f.seek(offset)
            chunk_id, chunk_size = struct.unpack("<4sI", f.read(8))
            if chunk_id == b"data":
                # Streaming writers leave the size as 0 or 0xFFFFFFFF when it is unknown.
                if chunk_size in (0, 0xFFFFFFFF):
                    return None
                available = file_size - offset - 8
                if chunk_size > available:
                    return f"truncated: data chunk declares {chunk_size} bytes, {available} present"
                return None
            offset += 8 + chunk_size + (chunk_size & 1)
    return None
