"""AISHELL-1 (OpenSLR 33): archive extraction and lhotse manifests for train, dev and test."""

from __future__ import annotations

import gzip
import json
import logging
import os
import tarfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import soundfile as sf
from lhotse import CutSet, Recording, RecordingSet, SupervisionSegment, SupervisionSet
from lhotse.audio import AudioSource
from lhotse.utils import fastcopy
from tqdm.auto import tqdm

from asr.data.extract import SkippedMember, safe_extract
from asr.data.report import IssueReport

logger = logging.getLogger(__name__)

AISHELL_SPLITS = ("train", "dev", "test")
TRANSCRIPT = Path("data_aishell/transcript/aishell_transcript_v0.8.txt")

# Written into data_aishell/ once every archive is extracted, so re-runs skip extraction.
EXTRACT_MARKER = ".extracted.json"


@dataclass
class AishellExtraction:
    """Outcome of `extract_aishell`: the corpus tree and what could not be extracted."""

    data_dir: Path
    skipped: dict[str, list[SkippedMember]] = field(default_factory=dict)
    failed_archives: dict[str, str] = field(default_factory=dict)
    done_archives: list[str] = field(default_factory=list)
    complete: bool = False

    def to_dict(self) -> dict:
        return {
            "complete": self.complete,
            "done_archives": self.done_archives,
            "failed_archives": self.failed_archives,
            "skipped": {
                archive: [{"name": m.name, "reason": m.reason} for m in members]
                for archive, members in self.skipped.items()
            },
        }

    @classmethod
    def from_dict(cls, data_dir: Path, data: dict) -> AishellExtraction:
        return cls(
            data_dir=data_dir,
            skipped={
                archive: [SkippedMember(m["name"], m["reason"]) for m in members]
                for archive, members in data.get("skipped", {}).items()
            },
            failed_archives=dict(data.get("failed_archives", {})),
            done_archives=list(data.get("done_archives", [])),
            complete=bool(data.get("complete", False)),
        )


@dataclass
class PrepareReport(IssueReport):
    """Problems found while preparing AISHELL-1, with utterance counts per split."""

    CATEGORIES: ClassVar[dict[str, str]] = {
        "unsafe_archive_member": "archive member not extracted because it is unsafe",
        "failed_archive": "archive that could not be read (not extracted)",
        "missing_split": "split directory not found under data_aishell/wav",
        "no_transcript": "audio file without a transcript line (excluded)",
        "no_audio": "transcript line without an audio file (excluded)",
        "empty_transcript": "transcript line with an id but no text (excluded)",
        "duplicate_transcript": "transcript id seen before (first line kept)",
        "duplicate_audio": "audio file name seen before in another folder (first kept)",
        "empty_audio": "audio file with 0 bytes or 0 samples (excluded)",
        "unreadable_audio": "audio file whose header soundfile cannot read (excluded)",
    }

    utterances: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        """Return the utterances per split, then one line per non-empty category."""
        header = ", ".join(f"{split}: {count}" for split, count in self.utterances.items())
        return f"utterances per split: {header or 'none'}\n" + super().summary()

    def to_dict(self) -> dict:
        """Return the category report with the utterances per split added."""
        return {"utterances": self.utterances, **super().to_dict()}


@dataclass
class PrepareResult:
    """Manifests per split written by `prepare_aishell`, and its report."""

    recordings: dict[str, RecordingSet]
    supervisions: dict[str, SupervisionSet]
    cuts: dict[str, CutSet]
    report: PrepareReport


def extract_aishell(corpus_dir: Path) -> AishellExtraction:
    """Extract `data_aishell.tgz` and every per-speaker `data_aishell/wav/<SPK>.tar.gz`.

    Every archive is extracted with `safe_extract(..., on_unsafe="skip")`: unsafe members are
    logged and recorded, and the rest of the archive is written. An archive that cannot be
    read is logged and recorded, and the others still extract. `resource_aishell.tgz` is
    extracted too when present. Progress is saved in `data_aishell/.extracted.json` after
    each archive, so an interrupted run resumes and a finished one is skipped; delete
    that file to extract again. An already extracted tree without archives is accepted.
    The archives are kept after extraction.

    Args:
        corpus_dir: directory with `data_aishell.tgz` (and optionally `resource_aishell.tgz`),
            or with an extracted `data_aishell/`.

    Returns:
        The extraction outcome, also for a skipped re-run.

    Raises:
        FileNotFoundError: neither `data_aishell/` nor `data_aishell.tgz` exists.
    """
    corpus_dir = Path(corpus_dir)
    data_dir = corpus_dir / "data_aishell"
    marker = data_dir / EXTRACT_MARKER

    state = AishellExtraction(data_dir=data_dir)
    if marker.is_file():
        state = _load_state(marker)
        if state.complete:
            logger.info("Skipping extraction: %s marks it as complete", marker)
            return state

    outer = corpus_dir / "data_aishell.tgz"
    if not data_dir.is_dir() and not outer.is_file():
        raise FileNotFoundError(
            f"Neither {data_dir} nor {outer} exists. Download AISHELL-1 with "
            f"`python -m asr.bin.prepare download --corpus-dir {corpus_dir}`."
        )

    # A damaged outer archive leaves no usable corpus, so its errors propagate.
    if outer.is_file():
        _extract_once(outer, corpus_dir, state, corpus_dir, required=True)
    resource = corpus_dir / "resource_aishell.tgz"
    if resource.is_file():
        _extract_once(resource, corpus_dir, state, corpus_dir)

    wav_dir = data_dir / "wav"
    if not wav_dir.is_dir():
        raise FileNotFoundError(
            f"{wav_dir} not found after extraction. Check that {outer} is the AISHELL-1 "
            "data archive, or delete it and download it again."
        )

    speaker_archives = sorted(wav_dir.glob("*.tar.gz"))
    for archive in tqdm(speaker_archives, desc="Extracting speaker archives", unit="archive"):
        _extract_once(archive, wav_dir, state, corpus_dir)

    state.complete = True
    _save_state(state, marker)
    return state


def _extract_once(
    archive: Path,
    target_dir: Path,
    state: AishellExtraction,
    corpus_dir: Path,
    required: bool = False,
) -> None:
    """Extract `archive` unless `state` lists it as done; record the outcome and save it.

    A read error is re-raised when `required`, else logged and recorded in `state`.
    """
    name = archive.relative_to(corpus_dir).as_posix()
    if name in state.done_archives:
        return

    try:
        result = safe_extract(archive, target_dir, on_unsafe="skip")
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as err:
        if required:
            raise RuntimeError(
                f"Failed to extract {archive}: {err}. Delete it and download it again."
            ) from err
        logger.error("Failed to extract %s, continuing with the other archives: %s", archive, err)
        state.failed_archives[name] = str(err)
    else:
        if result.skipped:
            state.skipped[name] = result.skipped

    state.done_archives.append(name)
    _save_state(state, state.data_dir / EXTRACT_MARKER)


def _load_state(marker: Path) -> AishellExtraction:
    try:
        data = json.loads(marker.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(
            f"Invalid extraction marker {marker}: {err}. Delete it to extract again."
        ) from err
    return AishellExtraction.from_dict(marker.parent, data)


def _save_state(state: AishellExtraction, marker: Path) -> None:
    if not marker.parent.is_dir():
        return

    temporary = marker.with_name(marker.name + ".tmp")
    try:
        text = json.dumps(state.to_dict(), ensure_ascii=False, indent=1)
        temporary.write_text(text, encoding="utf-8")
        os.replace(temporary, marker)
    except OSError as err:
        # Without the marker the next run extracts again, which for an already extracted,
        # read-only corpus without archives is a no-op.
        logger.warning("Cannot write extraction marker %s: %s", marker, err)


def read_transcripts(path: Path, report: PrepareReport) -> dict[str, str]:
    """Read `UTTID w1 w2 ...` lines into utterance id -> text with the spaces removed.

    Empty and duplicate ids are recorded in `report`. Of duplicate lines, the first is kept.
    """
    if not path.is_file():
        raise FileNotFoundError(
            f"Transcript {path} not found. Check that the corpus directory contains an extracted "
            "AISHELL-1 tree (run extraction first)."
        )

    transcripts: dict[str, str] = {}
    with open(path, encoding="utf-8") as f:
        for line_number, line in enumerate(f, start=1):
            fields = line.split()
            if not fields:
                continue

            utterance_id = fields[0]
            if utterance_id in transcripts:
                report.add("duplicate_transcript", utterance_id, f"line {line_number}")
                continue
            if len(fields) == 1:
                report.add("empty_transcript", utterance_id, f"line {line_number}")
                continue
            transcripts[utterance_id] = "".join(fields[1:])
    return transcripts


def prepare_aishell(
    corpus_dir: Path,
    output_dir: Path,
    splits: tuple[str, ...] = AISHELL_SPLITS,
) -> PrepareResult:
    """Build recordings, supervisions and cuts for each AISHELL-1 split and write them.

    Audio is read from `corpus_dir/data_aishell/wav/{split}/<SPK>/<UTT>.wav` and text from
    `data_aishell/transcript/aishell_transcript_v0.8.txt`, with spaces removed. Durations
    come from `soundfile.info`. Each cut has the utterance id as its id and one supervision.

    Excluded items are never dropped silently: audio without transcript, transcript lines
    without audio, empty or unreadable audio files, and unsafe archive members recorded by
    `extract_aishell` are listed in `output_dir/prepare_report.json` and logged.

    Writes `output_dir/aishell_{recordings,supervisions,cuts}_{split}.jsonl.gz`.

    Returns:
        The manifests per split and the `PrepareReport`.
    """
    corpus_dir = Path(corpus_dir)
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    data_dir = corpus_dir / "data_aishell"

    report = PrepareReport()
    _report_extraction(data_dir / EXTRACT_MARKER, report)
    transcripts = read_transcripts(corpus_dir / TRANSCRIPT, report)

    result = PrepareResult(recordings={}, supervisions={}, cuts={}, report=report)
    used_ids: set[str] = set()
    for split in splits:
        split_dir = data_dir / "wav" / split
        if not split_dir.is_dir():
            logger.warning("Split directory %s not found; writing empty manifests", split_dir)
            report.add("missing_split", split, str(split_dir))

        recordings, supervisions = _scan_split(split_dir, transcripts, used_ids, report)
        recording_set = RecordingSet.from_recordings(recordings)
        supervision_set = SupervisionSet.from_segments(supervisions)
        cut_set = CutSet.from_cuts(
            fastcopy(recording.to_cut(), supervisions=[supervision])
            for recording, supervision in zip(recordings, supervisions)
        )

        recording_set.to_file(output_dir / f"aishell_recordings_{split}.jsonl.gz")
        supervision_set.to_file(output_dir / f"aishell_supervisions_{split}.jsonl.gz")
        cut_set.to_file(output_dir / f"aishell_cuts_{split}.jsonl.gz")

        result.recordings[split] = recording_set
        result.supervisions[split] = supervision_set
        result.cuts[split] = cut_set
        report.utterances[split] = len(cut_set)

    for utterance_id in sorted(set(transcripts) - used_ids):
        report.add("no_audio", utterance_id)

    report.to_json(output_dir / "prepare_report.json")
    logger.info("AISHELL-1 preparation:\n%s", report.summary())
    return result


def _report_extraction(marker: Path, report: PrepareReport) -> None:
    if not marker.is_file():
        return

    state = _load_state(marker)
    for archive, members in state.skipped.items():
        for member in members:
            report.add("unsafe_archive_member", f"{archive}:{member.name}", member.reason)
    for archive, error in state.failed_archives.items():
        report.add("failed_archive", archive, error)


def _scan_split(
    split_dir: Path,
    transcripts: dict[str, str],
    used_ids: set[str],
    report: PrepareReport,
) -> tuple[list[Recording], list[SupervisionSegment]]:
    """Build one recording and supervision per usable wav file under `split_dir`."""
    recordings = []
    supervisions = []
    paths = sorted(split_dir.rglob("*.wav")) if split_dir.is_dir() else []
    for path in tqdm(paths, desc=f"Reading {split_dir.name}", unit="wav"):
        utterance_id = path.stem
        if utterance_id in used_ids:
            report.add("duplicate_audio", utterance_id, str(path))
            continue
        used_ids.add(utterance_id)

        if utterance_id not in transcripts:
            report.add("no_transcript", utterance_id, str(path))
            continue

        recording = _probe_recording(utterance_id, path, report)
        if recording is None:
            continue

        channel = 0 if recording.num_channels == 1 else recording.channel_ids
        supervisions.append(
            SupervisionSegment(
                id=utterance_id,
                recording_id=utterance_id,
                start=0.0,
                duration=recording.duration,
                channel=channel,
                text=transcripts[utterance_id],
                speaker=path.parent.name,
                language="Chinese",
            )
        )
        recordings.append(recording)
    return recordings, supervisions


def _probe_recording(utterance_id: str, path: Path, report: PrepareReport) -> Recording | None:
    """Return a `Recording` for `path` from its header, or record why it is unusable."""
    if path.stat().st_size == 0:
        report.add("empty_audio", utterance_id, f"{path}: 0 bytes")
        return None

    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError) as err:
        report.add("unreadable_audio", utterance_id, f"{path}: {err}")
        return None

    if info.frames == 0:
        report.add("empty_audio", utterance_id, f"{path}: 0 samples")
        return None

    return Recording(
        id=utterance_id,
        sources=[
            AudioSource(
                type="file", channels=list(range(info.channels)), source=str(path.resolve())
            )
        ],
        sampling_rate=info.samplerate,
        num_samples=info.frames,
        duration=info.frames / info.samplerate,
    )
