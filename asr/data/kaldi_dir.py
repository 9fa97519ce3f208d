"""Import and export of Kaldi data directories (wav.scp, text, utt2spk, spk2utt, segments)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import soundfile as sf
from lhotse import CutSet, Recording, SupervisionSegment
from lhotse.audio import AudioSource
from lhotse.cut import Cut, MonoCut
from lhotse.utils import fastcopy
from tqdm.auto import tqdm

from asr.constants import SAMPLE_RATE

logger = logging.getLogger(__name__)

KALDI_FILES = ("wav.scp", "text", "utt2spk", "spk2utt", "segments")


@dataclass(frozen=True)
class _Segment:
    recording_id: str
    start: float
    end: float | None


def read_kaldi_table(path: Path, allow_empty_value: bool = False) -> dict[str, str]:
    """Read a Kaldi `key value...` file into key -> rest of the line (whitespace-trimmed).

    Raises:
        ValueError: a duplicate key, or a line without a value unless `allow_empty_value`.
    """
    table: dict[str, str] = {}
    with open(path, encoding="utf-8") as f:
        for line_number, line in enumerate(f, start=1):
            fields = line.strip().split(maxsplit=1)
            if not fields:
                continue

            key = fields[0]
            if len(fields) == 1 and not allow_empty_value:
                raise ValueError(f"{path}:{line_number}: key {key!r} has no value.")
            if key in table:
                raise ValueError(
                    f"{path}:{line_number}: duplicate key {key!r}. "
                    "Keys of a Kaldi file must be unique."
                )
            table[key] = fields[1] if len(fields) == 2 else ""
    return table


def import_kaldi_dir(data_dir: Path, *, remove_spaces: bool = False) -> CutSet:
    """Read a Kaldi data directory into a CutSet with one supervision per utterance.

    Reads `wav.scp` and `text`, plus `utt2spk` and `segments` when present. Without
    `segments` each wav.scp entry is one utterance with the recording id as utterance id.
    Relative wav.scp paths are resolved against the current directory, as Kaldi does.
    Only plain file paths are accepted: pipe commands (`cmd |`) and `ark:offset` entries
    raise `ValueError`.

    An audio file that is missing or unreadable still gets a cut with a 0-sample recording,
    so that `validate_cuts` reports it by utterance id. Validate before writing the result.
    Utterances without a `text` entry get an empty text, which validation also reports.

    Args:
        data_dir: the Kaldi data directory.
        remove_spaces: remove all whitespace from the text, as for character-based Mandarin.

    Returns:
        Cuts with cut id = utterance id, sorted by utterance id.
    """
    data_dir = Path(data_dir)
    for required in ("wav.scp", "text"):
        if not (data_dir / required).is_file():
            raise FileNotFoundError(
                f"{data_dir / required} not found; a Kaldi data dir needs it."
            )

    wav_paths = _read_wav_scp(data_dir / "wav.scp")
    texts = read_kaldi_table(data_dir / "text", allow_empty_value=True)
    speakers = _read_optional(data_dir / "utt2spk")
    if (data_dir / "segments").is_file():
        segments = _read_segments(data_dir / "segments", wav_paths)
    else:
        segments = {rec_id: _Segment(rec_id, 0.0, None) for rec_id in wav_paths}

    recordings = {}
    unreadable = []
    for rec_id, path in tqdm(wav_paths.items(), desc="Reading wav.scp", unit="wav"):
        recordings[rec_id] = _probe_recording(rec_id, path)
        if recordings[rec_id].num_samples == 0:
            unreadable.append(rec_id)
    if unreadable:
        logger.warning(
            "%d audio files in %s are missing, empty or unreadable (e.g. %s), "
            "so validation will remove them",
            len(unreadable),
            data_dir / "wav.scp",
            unreadable[:5],
        )

    cuts = []
    for utterance_id in sorted(segments):
        segment = segments[utterance_id]
        text = texts.get(utterance_id, "")
        text = "".join(text.split()) if remove_spaces else " ".join(text.split())
        recording = recordings[segment.recording_id]
        cuts.append(_make_cut(utterance_id, recording, segment, text, speakers.get(utterance_id)))

    _warn_unmatched(data_dir / "text", texts, segments)
    _warn_unmatched(data_dir / "utt2spk", speakers, segments)
    return CutSet.from_cuts(cuts)


def export_kaldi_dir(
    cuts: CutSet,
    data_dir: Path,
    *,
    overwrite: bool = False,
    skip_unsupported: bool = False,
) -> int:
    """Write `cuts` as a Kaldi data directory: wav.scp, text, utt2spk, spk2utt, segments.

    `segments` is written when any cut is a sub-segment of its recording: another start or
    duration, or an id other than the recording id. Then wav.scp is keyed by recording id.
    A cut without a speaker gets its utterance id as speaker, the Kaldi convention.
    NOTE: Kaldi scripts that split data by speaker expect each utterance id to start with
    its speaker id. This is not checked.
    Files are sorted by key in code point order, which equals `LC_ALL=C sort` for UTF-8.

    A cut is unsupported when wav.scp cannot express its audio: not a single-file,
    single-channel recording, or carrying lazy transforms (resampling, volume, downmixing),
    with other than one supervision, or with a duplicate id. Convert such audio to 16 kHz
    mono files first.

    Args:
        cuts: cuts to export.
        data_dir: output directory.
        overwrite: replace the Kaldi files of an existing non-empty `data_dir`.
        skip_unsupported: log and skip unsupported cuts instead of raising.

    Returns:
        Number of exported utterances.

    Raises:
        FileExistsError: `data_dir` exists, is not empty and `overwrite` is False.
        ValueError: unsupported cuts and `skip_unsupported` is False; nothing is written.
    """
    data_dir = Path(data_dir)
    if data_dir.is_dir() and any(data_dir.iterdir()) and not overwrite:
        raise FileExistsError(
            f"{data_dir} exists and is not empty. Choose another directory or pass "
            "overwrite=True (--overwrite in asr-prepare export-kaldi)."
        )

    supported, problems = [], []
    seen: set[str] = set()
    for cut in cuts:
        problem = "duplicate cut id" if cut.id in seen else _export_problem(cut)
        seen.add(cut.id)
        if problem is None:
            supported.append(cut)
        else:
            problems.append(f"{cut.id}: {problem}")

    if problems and not skip_unsupported:
        raise ValueError(
            f"{len(problems)} cut(s) cannot be written to a Kaldi data dir "
            f"({'; '.join(problems[:5])}). Pass skip_unsupported=True "
            "(--skip-unsupported in asr-prepare export-kaldi) to export the rest."
        )
    if problems:
        logger.warning("Skipped %d unsupported cuts, e.g. %s", len(problems), problems[:5])

    tables = _kaldi_tables(supported)

    data_dir.mkdir(parents=True, exist_ok=True)
    for name in KALDI_FILES:
        (data_dir / name).unlink(missing_ok=True)
    leftovers = sorted(p.name for p in data_dir.iterdir())
    if leftovers:
        logger.warning("%s contains other files that may no longer match: %s", data_dir, leftovers)

    for name, table in tables.items():
        with open(data_dir / name, "w", encoding="utf-8") as f:
            for key in sorted(table):
                f.write(f"{key} {table[key]}\n")

    logger.info("Wrote %d utterances to %s (%d skipped)", len(supported), data_dir, len(problems))
    return len(supported)


def _read_wav_scp(path: Path) -> dict[str, Path]:
    entries = read_kaldi_table(path)
    paths = {}
    for rec_id, value in entries.items():
        if value.endswith("|"):
            raise ValueError(
                f"{path}: entry {rec_id!r} is a pipe command ({value!r}), which is not supported. "
                "Run the command to write a wav file and list that file's path instead."
            )
        if ".ark:" in value or value.endswith(".ark"):
            raise ValueError(
                f"{path}: entry {rec_id!r} points into a Kaldi archive ({value!r}), which is "
                "not supported. Write the audio out as wav files (e.g. with wav-copy) and list "
                "their paths."
            )
        paths[rec_id] = Path(value).expanduser().absolute()
    return paths


def _read_optional(path: Path) -> dict[str, str]:
    return read_kaldi_table(path) if path.is_file() else {}


def _read_segments(path: Path, wav_paths: dict[str, Path]) -> dict[str, _Segment]:
    """Read `utt rec start end` lines; an end of -1 means the end of the recording."""
    segments = {}
    for utterance_id, value in read_kaldi_table(path).items():
        fields = value.split()
        if len(fields) != 3:
            raise ValueError(
                f"{path}: line of {utterance_id!r} has {len(fields) + 1} fields, expected 4 "
                "(utterance-id recording-id start end)."
            )

        rec_id, start_text, end_text = fields
        if rec_id not in wav_paths:
            raise ValueError(
                f"{path}: utterance {utterance_id!r} refers to {rec_id!r}, which is not in wav.scp."
            )
        try:
            start, end = float(start_text), float(end_text)
        except ValueError as err:
            raise ValueError(
                f"{path}: invalid time in the line of {utterance_id!r}: {err}."
            ) from err

        if end == -1:
            end = None
        elif start < 0 or end <= start:
            raise ValueError(
                f"{path}: utterance {utterance_id!r} has start {start} and end {end}; "
                "expected 0 <= start < end."
            )
        segments[utterance_id] = _Segment(rec_id, start, end)
    return segments


def _probe_recording(rec_id: str, path: Path) -> Recording:
    try:
        info = sf.info(str(path))
        channels, sampling_rate, num_samples = info.channels, info.samplerate, info.frames
    except (sf.LibsndfileError, RuntimeError, OSError) as err:
        logger.debug("Cannot read %s (recording %s): %s", path, rec_id, err)
        channels, sampling_rate, num_samples = 1, SAMPLE_RATE, 0

    return Recording(
        id=rec_id,
        sources=[AudioSource(type="file", channels=list(range(channels)), source=str(path))],
        sampling_rate=sampling_rate,
        num_samples=num_samples,
        duration=num_samples / sampling_rate,
    )


def _make_cut(
    utterance_id: str,
    recording: Recording,
    segment: _Segment,
    text: str,
    speaker: str | None,
) -> Cut:
    end = recording.duration if segment.end is None else segment.end
    duration = max(0.0, end - segment.start)
    channel = 0 if recording.num_channels == 1 else recording.channel_ids

    supervision = SupervisionSegment(
        id=utterance_id,
        recording_id=recording.id,
        start=0.0,
        duration=duration,
        channel=channel,
        text=text,
        speaker=speaker,
    )
    return fastcopy(
        recording.to_cut(),
        id=utterance_id,
        start=segment.start,
        duration=duration,
        supervisions=[supervision],
    )


def _warn_unmatched(path: Path, table: dict[str, str], segments: dict[str, _Segment]) -> None:
    unmatched = sorted(set(table) - set(segments))
    if unmatched:
        logger.warning(
            "%s: %d entries match no utterance and are ignored, e.g. %s",
            path,
            len(unmatched),
            unmatched[:5],
        )


def _export_problem(cut: Cut) -> str | None:
    if not isinstance(cut, MonoCut):
        return f"{type(cut).__name__} is not a single-channel cut of one recording"

    recording = cut.recording
    if recording is None:
        return "no recording"
    if len(recording.sources) != 1 or recording.sources[0].type != "file":
        return "recording is not a single audio file"
    if recording.num_channels != 1:
        return f"recording has {recording.num_channels} channels"
    if recording.transforms:
        names = [
            t["name"] if isinstance(t, dict) else type(t).__name__ for t in recording.transforms
        ]
        return f"recording has lazy transforms {names}"
    if len(cut.supervisions) != 1:
        return f"{len(cut.supervisions)} supervisions, expected 1"

    text = cut.supervisions[0].text or ""
    if "\n" in text:
        return "text contains a newline"
    fields = (
        ("cut id", cut.id),
        ("recording id", recording.id),
        ("speaker", cut.supervisions[0].speaker or ""),
        ("audio path", str(recording.sources[0].source)),
    )
    for name, value in fields:
        if any(ch.isspace() for ch in value):
            return f"{name} {value!r} contains whitespace"
    return None


def _kaldi_tables(cuts: list[Cut]) -> dict[str, dict[str, str]]:
    cuts_per_recording: dict[str, int] = {}
    for cut in cuts:
        cuts_per_recording[cut.recording.id] = cuts_per_recording.get(cut.recording.id, 0) + 1

    need_segments = any(
        cut.id != cut.recording.id
        or cut.start != 0
        or abs(cut.duration - cut.recording.duration) > 1e-6
        or cuts_per_recording[cut.recording.id] > 1
        for cut in cuts
    )

    tables: dict[str, dict[str, str]] = {"wav.scp": {}, "text": {}, "utt2spk": {}, "spk2utt": {}}
    if need_segments:
        tables["segments"] = {}
    speaker_utterances: dict[str, list[str]] = {}

    for cut in cuts:
        supervision = cut.supervisions[0]
        speaker = supervision.speaker or cut.id
        wav_key = cut.recording.id if need_segments else cut.id

        tables["wav.scp"][wav_key] = cut.recording.sources[0].source
        tables["text"][cut.id] = supervision.text or ""
        tables["utt2spk"][cut.id] = speaker
        speaker_utterances.setdefault(speaker, []).append(cut.id)
        if need_segments:
            tables["segments"][cut.id] = (
                f"{cut.recording.id} {_format_seconds(cut.start)} {_format_seconds(cut.end)}"
            )

    for speaker, utterances in speaker_utterances.items():
        tables["spk2utt"][speaker] = " ".join(sorted(utterances))
    return tables


def _format_seconds(value: float) -> str:
    """Format seconds with up to microsecond precision and no trailing zeros."""
    text = f"{value:.6f}".rstrip("0").rstrip(".")
    return text or "0"
