"""Cluster labels of HuBERT pretraining: extraction, caching, and label-aligned audio batches."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence

import torch
from tqdm.auto import tqdm

from asr.constants import IGNORE_ID
from asr.distill.audio_data import AudioItem, UnlabeledAudioDataset
from asr.distill.mfcc_kmeans import (
    FRONT_END_RECEPTIVE_FIELD,
    FRONT_END_STRIDE,
    KMeansModel,
    MfccOptions,
    label_rate_mfcc,
)

logger = logging.getLogger(__name__)

LABELS_FORMAT = "reuseasr-hubert-labels"
LABELS_VERSION = 1

# Largest label/frame count mismatch that trimming or padding may absorb. A larger one means that
# the front end's stride or receptive field is not the 320/400 samples the labels assume.
MAX_LABEL_MISMATCH = 2


def collect_mfcc(
    dataset: UnlabeledAudioDataset,
    max_frames: int,
    options: MfccOptions = MfccOptions(),
    seed: int = 0,
) -> torch.Tensor:
    """Compute 50 fps MFCC of randomly ordered utterances until `max_frames` frames are collected.

    Args:
        dataset: whole utterances (``max_samples=None``).
        max_frames: stop once this many frames are collected; 0 reads every utterance.

    Returns:
        (N, options.dim) features, N <= max_frames when max_frames > 0.
    """
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))
    chunks = []
    total = 0
    for index in tqdm(order.tolist(), desc="MFCC for k-means", unit="utt"):
        waveform = dataset[index]
        if waveform is None:
            continue
        feats = label_rate_mfcc(waveform, options)
        chunks.append(feats)
        total += feats.shape[0]
        if 0 < max_frames <= total:
            break

    if not chunks:
        raise ValueError("No usable audio to fit k-means on: every utterance was skipped.")
    feats = torch.cat(chunks)
    return feats[:max_frames] if max_frames > 0 else feats


def compute_labels(dataset: UnlabeledAudioDataset, kmeans: KMeansModel) -> dict[str, torch.Tensor]:
    """Assign every utterance's 50 fps MFCC frames to their nearest k-means cluster.

    Utterances that cannot be read are skipped (the dataset logs and counts them).

    Returns:
        Utterance id -> (num_label_frames(N),) int16 cluster ids.
    """
    labels = {}
    for index in tqdm(range(len(dataset)), desc="Cluster labels", unit="utt"):
        waveform = dataset[index]
        if waveform is None:
            continue
        feats = label_rate_mfcc(waveform, kmeans.mfcc)
        labels[dataset.items[index].id] = kmeans.assign(feats).to(torch.int16)
    return labels


def save_labels(labels: dict[str, torch.Tensor], kmeans: KMeansModel, path) -> None:
    """Write per-utterance labels with the digest of the k-means model that produced them."""
    torch.save(
        {
            "format": LABELS_FORMAT,
            "version": LABELS_VERSION,
            "kmeans_digest": kmeans.digest(),
            "num_clusters": kmeans.num_clusters,
            "labels": labels,
        },
        path,
    )


def load_labels(path, kmeans: KMeansModel) -> dict[str, torch.Tensor] | None:
    """Read labels written by `save_labels`; None when they came from a different k-means model."""
    data = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(data, dict) or data.get("format") != LABELS_FORMAT:
        raise ValueError(
            f"{path} is not a label cache written by save_labels (expected format "
            f"{LABELS_FORMAT!r}); delete it to recompute the labels."
        )
    if data.get("version") != LABELS_VERSION or data.get("kmeans_digest") != kmeans.digest():
        return None
    return data["labels"]


def cluster_counts(labels: dict[str, torch.Tensor], num_clusters: int) -> torch.Tensor:
    """Return the (K,) frame count of each cluster over all utterances."""
    counts = torch.zeros(num_clusters, dtype=torch.long)
    for ids in labels.values():
        counts += torch.bincount(ids.long(), minlength=num_clusters)
    return counts


def align_labels(labels: torch.Tensor, num_frames: int, utterance_id: str) -> torch.Tensor:
    """Trim or pad (repeating the last label) `labels` (T,) to the model's `num_frames`.

    Raises:
        ValueError: when the counts differ by more than `MAX_LABEL_MISMATCH` frames.
    """
    difference = labels.shape[0] - num_frames
    if abs(difference) > MAX_LABEL_MISMATCH:
        raise ValueError(
            f"Utterance {utterance_id}: {labels.shape[0]} labels but the model's front end "
            f"outputs {num_frames} frames. The labels assume a front end of stride "
            f"{FRONT_END_STRIDE} and receptive field {FRONT_END_RECEPTIVE_FIELD} samples, so "
            "use HuBERT's kernels and strides."
        )
    if difference >= 0:
        return labels[:num_frames]
    return torch.cat([labels, labels[-1:].expand(-difference)])


class LabeledAudioDataset(torch.utils.data.Dataset):
    """Waveforms with their frame-aligned cluster labels, cropped to at most ``max_samples``.

    Crops start on a multiple of 320 samples, so label frame ``j + t`` of the utterance stays
    the target of model frame ``t`` of the crop.

    Args:
        items: utterances; those without labels are dropped (and counted in ``missing_labels``).
        labels: utterance id -> (T,) cluster ids at 50 fps.
        num_frames: model frames for a given number of samples (the conv front end's length).
        min_samples: shortest usable utterance, at least one front-end receptive field.
        max_samples: longer utterances are cropped; None keeps them whole.
        crop: ``"random"`` draws the offset from torch's global generator, ``"start"`` keeps
            the beginning (for validation).
    """

    def __init__(
        self,
        items: Sequence[AudioItem],
        labels: dict[str, torch.Tensor],
        num_frames: Callable[[int], int],
        min_samples: int = FRONT_END_RECEPTIVE_FIELD,
        max_samples: int | None = None,
        crop: str = "random",
    ) -> None:
        if crop not in ("random", "start"):
            raise ValueError(f"crop must be 'random' or 'start', got {crop!r}")
        if max_samples is not None and max_samples < min_samples:
            raise ValueError(
                f"max_samples ({max_samples}) must be at least min_samples ({min_samples})"
            )

        labeled = [item for item in items if item.id in labels]
        self.missing_labels = len(items) - len(labeled)
        if self.missing_labels:
            logger.warning("Dropping %d utterances without cluster labels", self.missing_labels)

        self.audio = UnlabeledAudioDataset(labeled, min_samples, max_samples=None)
        self.labels = labels
        self.num_frames = num_frames
        self.max_samples = max_samples
        self.crop = crop

    def __len__(self) -> int:
        return len(self.audio)

    def num_samples(self, index: int) -> int:
        """Length at 16 kHz of item `index` after cropping (known from its header)."""
        num_samples = self.audio.items[index].num_samples
        assert num_samples is not None, "items are probed, so their lengths are known"
        return num_samples if self.max_samples is None else min(num_samples, self.max_samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Return the waveform (S,) and its labels (num_frames(S),) int64, or None if unreadable."""
        waveform = self.audio[index]
        if waveform is None:
            return None
        utterance_id = self.audio.items[index].id
        labels = self.labels[utterance_id].long()
        labels = align_labels(labels, self.num_frames(waveform.numel()), utterance_id)

        if self.max_samples is not None and waveform.numel() > self.max_samples:
            num_offsets = (waveform.numel() - self.max_samples) // FRONT_END_STRIDE + 1
            offset = 0
            if self.crop == "random":
                offset = int(torch.randint(num_offsets, (1,)))
            waveform = waveform[offset * FRONT_END_STRIDE :][: self.max_samples]
            labels = labels[offset : offset + self.num_frames(waveform.numel())]
        return waveform, labels


def collate_labeled_audio(
    batch: Sequence[tuple[torch.Tensor, torch.Tensor] | None],
) -> dict[str, torch.Tensor]:
    """Zero-pad waveforms and pad labels with IGNORE_ID, dropping the None entries.

    Returns:
        ``waveforms`` (B, S) float32, ``lengths`` (B,) samples, ``labels`` (B, T') int64.
    """
    pairs = [pair for pair in batch if pair is not None]
    lengths = torch.tensor([waveform.numel() for waveform, _ in pairs], dtype=torch.long)
    max_samples = int(lengths.max()) if pairs else 0
    max_frames = max((labels.numel() for _, labels in pairs), default=0)

    waveforms = torch.zeros(len(pairs), max_samples)
    labels = torch.full((len(pairs), max_frames), IGNORE_ID, dtype=torch.long)
    for row, (waveform, ids) in enumerate(pairs):
        waveforms[row, : waveform.numel()] = waveform
        labels[row, : ids.numel()] = ids
    return {"waveforms": waveforms, "lengths": lengths, "labels": labels}


class BucketBatchSampler(torch.utils.data.Sampler[list[int]]):
    """Batches of similar-length utterances in random order, to waste little compute on padding.

    Each epoch shuffles the indices, sorts windows of ``50 * batch_size`` of them by length,
    cuts the windows into batches and shuffles the batches.

    Args:
        lengths: length of every item (any unit).
        batch_size: items per batch (the last batch of a window may be smaller).
        seed: base seed; epoch ``e`` uses ``seed + e``.
    """

    def __init__(self, lengths: Sequence[int], batch_size: int, seed: int = 0) -> None:
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.lengths = list(lengths)
        self.batch_size = batch_size
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the shuffle of `epoch` (Lightning calls this before each epoch)."""
        self.epoch = epoch

    def __iter__(self) -> Iterator[list[int]]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        order = torch.randperm(len(self.lengths), generator=generator).tolist()
        window = 50 * self.batch_size

        batches = []
        for start in range(0, len(order), window):
            chunk = sorted(order[start : start + window], key=lambda index: self.lengths[index])
            batches.extend(
                chunk[i : i + self.batch_size] for i in range(0, len(chunk), self.batch_size)
            )

        for position in torch.randperm(len(batches), generator=generator).tolist():
            yield batches[position]

    def __len__(self) -> int:
        window = 50 * self.batch_size
        full, rest = divmod(len(self.lengths), window)
        return full * -(-window // self.batch_size) + -(-rest // self.batch_size)
