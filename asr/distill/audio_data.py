"""Unlabeled audio for distillation and teacher pre-training: corpus readers, dataset, loaders."""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import lightning as L
import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF
from tqdm.auto import tqdm

from asr.constants import SAMPLE_RATE
from asr.data.aishell import AISHELL_SPLITS
from asr.data.kaldi_dir import _read_segments, _read_wav_scp

logger = logging.getLogger(__name__)

SKIP_REASONS = ("missing", "unreadable", "empty", "too_short")


@dataclass(frozen=True)
class AudioItem:
    """One unlabeled utterance: a whole audio file, or a segment of it.

    Attributes:
        id: utterance id.
        path: audio file.
        num_samples: length at 16 kHz after resampling, or None when not known yet.
        start: segment start in seconds.
        duration: segment length in seconds; None runs to the end of the file.
    """

    id: str
    path: Path
    num_samples: int | None = None
    start: float = 0.0
    duration: float | None = None


def librispeech_items(root: Path, subsets: Sequence[str]) -> list[AudioItem]:
    """List the flac files of LibriSpeech subsets in the released layout.

    Files are read from ``root/<subset>/<speaker>/<chapter>/<speaker>-<chapter>-<utt>.flac``.
    ``root`` may be the ``LibriSpeech`` folder of the release or the folder that contains it.

    Args:
        root: LibriSpeech folder or its parent.
        subsets: e.g. ``["train-clean-100", "dev-clean"]``.

    Returns:
        One item per file, sorted by id within each subset, subsets in the order given.
    """
    root = Path(root)
    if isinstance(subsets, str):
        subsets = [subsets]

    items = []
    for subset in subsets:
        candidates = [root / subset, root / "LibriSpeech" / subset]
        subset_dir = next((path for path in candidates if path.is_dir()), None)
        if subset_dir is None:
            raise FileNotFoundError(
                f"LibriSpeech subset {subset!r} not found: neither {candidates[0]} nor "
                f"{candidates[1]} is a directory. Pass the extracted LibriSpeech folder (or its "
                "parent) as root, laid out as <subset>/<speaker>/<chapter>/*.flac."
            )

        paths = sorted(subset_dir.glob("*/*/*.flac"))
        if not paths:
            raise FileNotFoundError(
                f"No flac files in {subset_dir}; expected "
                "<speaker>/<chapter>/<speaker>-<chapter>-<utt>.flac below it."
            )
        items.extend(AudioItem(path.stem, path) for path in paths)
    return items


def aishell_items(root: Path, splits: Sequence[str] = AISHELL_SPLITS) -> list[AudioItem]:
    """List the wav files of extracted AISHELL-1 splits (or of the mini AISHELL-1 corpus).

    Files are read from ``data_aishell/wav/<split>/<SPK>/<utt>.wav``, the layout that
    ``asr.data.aishell.extract_aishell`` writes for both corpora. Transcripts are not needed.

    Args:
        root: the corpus directory that contains ``data_aishell/``, or ``data_aishell/`` itself.
        splits: any of ``train``, ``dev``, ``test``.

    Returns:
        One item per file, sorted by id within each split, splits in the order given.
    """
    root = Path(root)
    if isinstance(splits, str):
        splits = [splits]
    wav_dir = root / "wav" if root.name == "data_aishell" else root / "data_aishell" / "wav"
    corpus_dir = wav_dir.parent.parent
    extract_hint = (
        f"Extract the archives first, e.g. `python -m asr.bin.prepare aishell --corpus-dir "
        f"{corpus_dir} --output-dir <manifest dir>`."
    )

    if not wav_dir.is_dir():
        raise FileNotFoundError(
            f"{wav_dir} not found; expected an extracted AISHELL-1 tree "
            f"data_aishell/wav/<split>/<SPK>/<utt>.wav under {corpus_dir}. {extract_hint}"
        )

    items = []
    for split in splits:
        split_dir = wav_dir / split
        if not split_dir.is_dir():
            state = "not found"
            if any(wav_dir.glob("*.tar.gz")):
                state = "not found, and the speaker archives next to it are not extracted yet"
            raise FileNotFoundError(
                f"AISHELL-1 split directory {split_dir} {state}. {extract_hint}"
            )

        paths = sorted(split_dir.glob("*/*.wav"), key=lambda path: path.stem)
        if not paths:
            raise FileNotFoundError(f"No wav files in {split_dir}; expected <SPK>/<utt>.wav.")
        items.extend(AudioItem(path.stem, path) for path in paths)
    return items


def kaldi_items(data_dir: Path) -> list[AudioItem]:
    """List the utterances of a Kaldi data directory from ``wav.scp`` and optional ``segments``.

    Only plain file paths are accepted in ``wav.scp``: pipe commands and ark offsets raise
    ``ValueError``. Without ``segments`` each wav.scp entry is one utterance.

    Returns:
        One item per utterance, sorted by utterance id.
    """
    data_dir = Path(data_dir)
    wav_scp = data_dir / "wav.scp"
    if not wav_scp.is_file():
        raise FileNotFoundError(f"{wav_scp} not found; a Kaldi data directory needs wav.scp.")

    paths = _read_wav_scp(wav_scp)
    if not (data_dir / "segments").is_file():
        return [AudioItem(rec_id, paths[rec_id]) for rec_id in sorted(paths)]

    segments = _read_segments(data_dir / "segments", paths)
    items = []
    for utterance_id in sorted(segments):
        segment = segments[utterance_id]
        duration = None if segment.end is None else segment.end - segment.start
        items.append(
            AudioItem(utterance_id, paths[segment.recording_id], None, segment.start, duration)
        )
    return items


class SkippedAudio(Exception):
    """An item that cannot be used, with its reason (one of `SKIP_REASONS`)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class _Region:
    """Position and length of an item in its file, in the file's own samples."""

    sample_rate: int
    start: int
    frames: int

    @property
    def num_samples(self) -> int:
        """Length at 16 kHz, as `torchaudio.functional.resample` returns it."""
        return math.ceil(self.frames * SAMPLE_RATE / self.sample_rate)


class UnlabeledAudioDataset(torch.utils.data.Dataset):
    """Mono 16 kHz waveforms of unlabeled utterances, cropped to at most ``max_samples``.

    Files are read with soundfile. Multi-channel audio is averaged to mono and other sample
    rates are resampled to 16 kHz. Items that are missing, unreadable, empty or shorter than
    ``min_samples`` are skipped: each is logged once at WARNING and counted in ``skipped``
    by reason. With ``probe`` every header is read here, so such items are dropped before
    training and ``items`` contains the kept ones with ``num_samples`` filled in. Without it
    only items whose ``num_samples`` is known are checked here, the rest when read:
    ``__getitem__`` then returns None, which `collate_audio` drops.

    NOTE: with DataLoader workers, files skipped while reading are counted in the worker
    processes, so ``skipped`` of the main process includes only the ones found by probing.

    Args:
        items: utterances to read.
        min_samples: shortest usable length at 16 kHz, e.g. the student's ``min_samples``.
        max_samples: longer utterances are cropped to this length at 16 kHz; None keeps all.
        crop: ``"random"`` draws the crop offset from torch's global generator, ``"start"``
            keeps the beginning (for validation).
        probe: read every header now to drop unusable items up front.
    """

    def __init__(
        self,
        items: Sequence[AudioItem],
        min_samples: int,
        max_samples: int | None = None,
        crop: str = "random",
        probe: bool = True,
    ) -> None:
        if crop not in ("random", "start"):
            raise ValueError(f"crop must be 'random' or 'start', got {crop!r}")
        if max_samples is not None and max_samples < max(min_samples, 1):
            raise ValueError(
                f"max_samples ({max_samples}) must be at least min_samples ({min_samples})"
            )

        self.min_samples = min_samples
        self.max_samples = max_samples
        self.crop = crop
        self.skipped: dict[str, int] = Counter()
        self._logged: set[str] = set()
        self._warned_downmix = False
        self._logged_resample: set[int] = set()

        self.items: list[AudioItem] = []
        self._regions: list[_Region | None] = []
        if not probe:
            for item in items:
                if item.num_samples is not None and item.num_samples < min_samples:
                    self._skip(item, SkippedAudio("too_short", f"{item.num_samples} samples"))
                    continue
                self.items.append(item)
                self._regions.append(None)
            return

        for item in tqdm(items, desc="Reading audio headers", unit="file"):
            try:
                region = self._check(item)
            except SkippedAudio as skip:
                self._skip(item, skip)
                continue
            self.items.append(replace(item, num_samples=region.num_samples))
            self._regions.append(region)
        if self.skipped:
            logger.warning(
                "Skipped %d of %d audio items: %s",
                sum(self.skipped.values()),
                len(items),
                dict(self.skipped),
            )

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> torch.Tensor | None:
        """Return the waveform (S,) float32 at 16 kHz, or None when the item is unusable."""
        item = self.items[index]
        try:
            region = self._regions[index] or self._check(item)
            return self._read(item, region)
        except SkippedAudio as skip:
            self._skip(item, skip)
            return None

    def _check(self, item: AudioItem) -> _Region:
        """Locate ``item`` in its file from the header; raise `SkippedAudio` if unusable."""
        path = Path(item.path)
        if not path.is_file():
            raise SkippedAudio("missing", f"{path} not found")
        if path.stat().st_size == 0:
            raise SkippedAudio("empty", f"{path} has 0 bytes")

        try:
            info = sf.info(str(path))
        except (sf.LibsndfileError, RuntimeError, OSError) as err:
            raise SkippedAudio("unreadable", f"{path}: {err}") from err

        start = min(round(item.start * info.samplerate), info.frames)
        frames = info.frames - start
        if item.duration is not None:
            frames = min(frames, round(item.duration * info.samplerate))
        region = _Region(info.samplerate, start, frames)

        if region.frames <= 0:
            raise SkippedAudio("empty", f"{path} has no samples from {item.start} s on")
        if region.num_samples < self.min_samples:
            raise SkippedAudio(
                "too_short",
                f"{path} gives {region.num_samples} samples at {SAMPLE_RATE} Hz, "
                f"fewer than min_samples={self.min_samples}",
            )
        return region

    def _read(self, item: AudioItem, region: _Region) -> torch.Tensor:
        start, frames = region.start, region.frames
        if self.max_samples is not None and region.num_samples > self.max_samples:
            offset = 0
            if self.crop == "random":
                offset = int(torch.randint(region.num_samples - self.max_samples + 1, (1,)))
            start += offset * region.sample_rate // SAMPLE_RATE
            needed = math.ceil(self.max_samples * region.sample_rate / SAMPLE_RATE)
            frames = min(needed, region.start + region.frames - start)

        try:
            samples, sample_rate = sf.read(
                str(item.path), start=start, frames=frames, dtype="float32", always_2d=True
            )
        except (sf.LibsndfileError, RuntimeError, OSError) as err:
            raise SkippedAudio("unreadable", f"{item.path}: {err}") from err
        if samples.size == 0:
            raise SkippedAudio("empty", f"{item.path} returned no samples")

        waveform = torch.from_numpy(np.ascontiguousarray(self._to_mono(samples, item)))
        if sample_rate != SAMPLE_RATE:
            if sample_rate not in self._logged_resample:
                self._logged_resample.add(sample_rate)
                logger.info("Resampling %d Hz audio to %d Hz (first file %s)",
                            sample_rate, SAMPLE_RATE, item.path)
            waveform = AF.resample(waveform, sample_rate, SAMPLE_RATE)

        if self.max_samples is not None:
            waveform = waveform[: self.max_samples]
        return waveform

    def _to_mono(self, samples: np.ndarray, item: AudioItem) -> np.ndarray:
        """(N, C) -> (N,), averaging the channels."""
        if samples.shape[1] == 1:
            return samples[:, 0]
        if not self._warned_downmix:
            self._warned_downmix = True
            logger.warning(
                "Averaging %d channels to mono (first file %s); further files are downmixed "
                "without a warning",
                samples.shape[1],
                item.path,
            )
        return samples.mean(axis=1)

    def _skip(self, item: AudioItem, skip: SkippedAudio) -> None:
        self.skipped[skip.reason] += 1
        if item.id not in self._logged:
            self._logged.add(item.id)
            logger.warning("Skipping audio item %s (%s): %s", item.id, skip.reason, skip)


def collate_audio(
    batch: Sequence[torch.Tensor | None],
) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero-pad waveforms into a batch, dropping the None entries of skipped items.

    Returns:
        waveforms (B, S) float32 and lengths (B,) int64 in samples; B may be 0.
    """
    waveforms = [waveform for waveform in batch if waveform is not None]
    lengths = torch.tensor([waveform.numel() for waveform in waveforms], dtype=torch.long)
    if not waveforms:
        return torch.zeros(0, 0), lengths

    padded = torch.zeros(len(waveforms), int(lengths.max()))
    for row, waveform in enumerate(waveforms):
        padded[row, : waveform.numel()] = waveform
    return padded, lengths


class AudioDataModule(L.LightningDataModule):
    """Shuffled, randomly cropped training batches and fixed validation batches of raw audio.

    Validation crops keep the beginning of each utterance and are not shuffled, so every epoch
    validates on the same audio.

    Args:
        train_items: training utterances.
        valid_items: validation utterances.
        batch_size: utterances per batch.
        min_samples: shortest usable utterance at 16 kHz.
        max_samples: crop length at 16 kHz; None keeps whole utterances.
        num_workers: DataLoader worker processes.
        seed: seed of the training shuffle.
    """

    def __init__(
        self,
        train_items: Sequence[AudioItem],
        valid_items: Sequence[AudioItem],
        batch_size: int,
        min_samples: int,
        max_samples: int | None,
        num_workers: int = 0,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.train_items = list(train_items)
        self.valid_items = list(valid_items)
        self.batch_size = batch_size
        self.min_samples = min_samples
        self.max_samples = max_samples
        self.num_workers = num_workers
        self.seed = seed
        self.train_set: UnlabeledAudioDataset | None = None
        self.valid_set: UnlabeledAudioDataset | None = None

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is None:
            self.train_set = UnlabeledAudioDataset(
                self.train_items, self.min_samples, self.max_samples, crop="random"
            )
        if self.valid_set is None:
            self.valid_set = UnlabeledAudioDataset(
                self.valid_items, self.min_samples, self.max_samples, crop="start"
            )
        for name, dataset in (("train", self.train_set), ("valid", self.valid_set)):
            if len(dataset) == 0:
                raise ValueError(
                    f"No usable {name} audio: all items were skipped ({dict(dataset.skipped)}). "
                    "Check the corpus paths and min_samples."
                )

    def train_dataloader(self) -> torch.utils.data.DataLoader:
        return self._loader(self.train_set, shuffle=True)

    def val_dataloader(self) -> torch.utils.data.DataLoader:
        return self._loader(self.valid_set, shuffle=False)

    def _loader(
        self, dataset: UnlabeledAudioDataset | None, shuffle: bool
    ) -> torch.utils.data.DataLoader:
        if dataset is None:
            raise RuntimeError("AudioDataModule.setup() must run before the loaders are built")
        return torch.utils.data.DataLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=shuffle,
            collate_fn=collate_audio,
            num_workers=self.num_workers,
            generator=torch.Generator().manual_seed(self.seed) if shuffle else None,
            persistent_workers=self.num_workers > 0,
        )
