"""MFCC k-means targets of HuBERT's first pretraining iteration.

39-dim MFCC (with deltas) at the 50 fps label rate, clustered by k-means on the CPU.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torchaudio.compliance.kaldi as kaldi
import torchaudio.functional as F

from asr.constants import SAMPLE_RATE

logger = logging.getLogger(__name__)

KMEANS_FORMAT = "reuseasr-mfcc-kmeans"
KMEANS_VERSION = 1

# With a 25 ms window and a 10 ms shift (snip_edges), MFCC frame 2t covers samples 320 t to
# 320 t + 399. That is the receptive field of frame t of HuBERT's conv front end (kernels
# 10, 3, 3, 3, 3, 2, 2 and strides 5, 2, 2, 2, 2, 2, 2), so every second MFCC frame is its label.
FRONT_END_STRIDE = 320
FRONT_END_RECEPTIVE_FIELD = 400
LABEL_STRIDE = 2

# Rows of the (N, K) distance matrix computed at once, to bound memory on long corpora.
_CHUNK = 65536


@dataclass(frozen=True)
class MfccOptions:
    """Kaldi MFCC settings (torchaudio's Kaldi-compliant implementation, no dither).

    Attributes:
        num_ceps: Cepstral coefficients per frame, c0 included.
        num_mel_bins: Triangular mel filters before the DCT.
        delta_order: Number of delta stacks appended (2: deltas and delta-deltas).
        delta_window: Window length in frames of `torchaudio.functional.compute_deltas`.
    """

    num_ceps: int = 13
    num_mel_bins: int = 23
    delta_order: int = 2
    delta_window: int = 5

    @property
    def dim(self) -> int:
        """Feature dimension: ``num_ceps * (1 + delta_order)``."""
        return self.num_ceps * (1 + self.delta_order)


def num_label_frames(num_samples: int) -> int:
    """Return the 50 fps label count of a waveform of `num_samples` samples (16 kHz).

    Equals the output length of a stride-320 conv front end with a 400-sample receptive field:
    ``(num_samples - 400) // 320 + 1``, or 0 for shorter inputs.
    """
    if num_samples < FRONT_END_RECEPTIVE_FIELD:
        return 0
    return (num_samples - FRONT_END_RECEPTIVE_FIELD) // FRONT_END_STRIDE + 1


def compute_mfcc(waveform: torch.Tensor, options: MfccOptions = MfccOptions()) -> torch.Tensor:
    """Compute MFCC with deltas at 100 fps.

    Args:
        waveform: (N,) float samples at 16 kHz, any scale (only c0 shifts with the scale).

    Returns:
        (T, options.dim) with ``T = (N - 400) // 160 + 1``, or (0, options.dim) when N < 400.
    """
    if waveform.dim() != 1:
        raise ValueError(f"compute_mfcc expects a 1-D waveform, got shape {tuple(waveform.shape)}")
    if waveform.numel() < FRONT_END_RECEPTIVE_FIELD:
        return waveform.new_zeros(0, options.dim)

    static = kaldi.mfcc(
        waveform.float().unsqueeze(0),
        sample_frequency=SAMPLE_RATE,
        num_ceps=options.num_ceps,
        num_mel_bins=options.num_mel_bins,
        use_energy=False,
        dither=0.0,
    )

    # compute_deltas works along the last axis, so deltas are taken on (dim, T).
    stacks = [static.t()]
    for _ in range(options.delta_order):
        stacks.append(F.compute_deltas(stacks[-1], win_length=options.delta_window))
    return torch.cat(stacks, dim=0).t().contiguous()


def label_rate_mfcc(waveform: torch.Tensor, options: MfccOptions = MfccOptions()) -> torch.Tensor:
    """Compute MFCC with deltas at the 50 fps label rate of a stride-320 front end.

    Args:
        waveform: (N,) float samples at 16 kHz.

    Returns:
        (num_label_frames(N), options.dim): every second 100 fps frame, starting with the first.
    """
    feats = compute_mfcc(waveform, options)[::LABEL_STRIDE]
    assert feats.shape[0] == num_label_frames(waveform.numel())
    return feats


@dataclass(frozen=True)
class KMeansOptions:
    """K-means settings: k-means++ initialization followed by full-batch Lloyd iterations.

    Attributes:
        num_clusters: Number of centroids (the label vocabulary of pretraining).
        max_iter: Upper bound on Lloyd iterations.
        tol: Stop when the inertia falls by less than this fraction in one iteration.
        max_frames: Frames drawn at random (seeded) from the input to fit on; 0 means all.
        seed: Seed of the frame subsampling and of k-means++.
    """

    num_clusters: int = 100
    max_iter: int = 50
    tol: float = 1e-4
    max_frames: int = 200_000
    seed: int = 0


@dataclass
class KMeansModel:
    """Fitted k-means on globally standardized features.

    Attributes:
        centroids: (K, D) cluster centres in the standardized space.
        mean: (D,) feature mean used for standardization.
        std: (D,) feature standard deviation used for standardization.
        mfcc: Options of the features the model was fitted on.
    """

    centroids: torch.Tensor
    mean: torch.Tensor
    std: torch.Tensor
    mfcc: MfccOptions = MfccOptions()

    @property
    def num_clusters(self) -> int:
        """Number of clusters K."""
        return self.centroids.shape[0]

    def assign(self, feats: torch.Tensor) -> torch.Tensor:
        """Return the (T,) long nearest-centroid id of each frame of raw `feats` (T, D)."""
        return nearest_centroid(self.standardize(feats), self.centroids)[0]

    def standardize(self, feats: torch.Tensor) -> torch.Tensor:
        """Apply the stored mean and standard deviation to raw `feats` (T, D)."""
        return (feats.float() - self.mean) / self.std

    def digest(self) -> str:
        """Short SHA-256 of the centroids and statistics, to tie cached labels to this model."""
        hasher = hashlib.sha256()
        for tensor in (self.centroids, self.mean, self.std):
            hasher.update(tensor.float().contiguous().numpy().tobytes())
        return hasher.hexdigest()[:16]

    def save(self, path: str | Path) -> None:
        """Write the model as a small .pt that ``torch.load(weights_only=True)`` reads."""
        torch.save(
            {
                "format": KMEANS_FORMAT,
                "version": KMEANS_VERSION,
                "centroids": self.centroids.float().contiguous(),
                "mean": self.mean.float().contiguous(),
                "std": self.std.float().contiguous(),
                "mfcc": asdict(self.mfcc),
            },
            path,
        )

    @classmethod
    def load(cls, path: str | Path) -> KMeansModel:
        """Read a model written by :meth:`save`."""
        data = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(data, dict) or data.get("format") != KMEANS_FORMAT:
            raise ValueError(
                f"{path} is not a k-means model written by KMeansModel.save (expected format "
                f"{KMEANS_FORMAT!r}); fit one with asr.bin.pretrain_teacher or fit_kmeans."
            )
        if data.get("version") != KMEANS_VERSION:
            raise ValueError(
                f"{path} has k-means format version {data.get('version')}, this code reads "
                f"version {KMEANS_VERSION}: fit the k-means model again."
            )
        return cls(data["centroids"], data["mean"], data["std"], MfccOptions(**data["mfcc"]))


def nearest_centroid(
    points: torch.Tensor, centroids: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Find the nearest centroid of each point.

    Args:
        points: (N, D).
        centroids: (K, D).

    Returns:
        ids (N,) long and squared Euclidean distances (N,).
    """
    ids = torch.empty(points.shape[0], dtype=torch.long)
    dists = torch.empty(points.shape[0])
    centroid_sq = centroids.pow(2).sum(dim=1)
    for start in range(0, points.shape[0], _CHUNK):
        chunk = points[start : start + _CHUNK]
        sq = chunk.pow(2).sum(dim=1, keepdim=True) - 2.0 * chunk @ centroids.t() + centroid_sq
        best, best_ids = sq.min(dim=1)
        ids[start : start + _CHUNK] = best_ids
        dists[start : start + _CHUNK] = best.clamp_min(0.0)
    return ids, dists


def kmeans_plus_plus(
    points: torch.Tensor, num_clusters: int, generator: torch.Generator
) -> torch.Tensor:
    """Pick `num_clusters` initial centroids (K, D) from `points` (N, D) by D^2 sampling."""
    first = torch.randint(points.shape[0], (1,), generator=generator)
    centroids = [points[first[0]]]
    closest = (points - centroids[0]).pow(2).sum(dim=1)

    for _ in range(1, num_clusters):
        total = closest.sum()
        if total <= 0:
            # Fewer distinct points than clusters: fall back to uniform draws.
            index = torch.randint(points.shape[0], (1,), generator=generator)[0]
        else:
            index = torch.multinomial(closest / total, 1, generator=generator)[0]
        centroids.append(points[index])
        closest = torch.minimum(closest, (points - points[index]).pow(2).sum(dim=1))
    return torch.stack(centroids)


def lloyd(
    points: torch.Tensor, centroids: torch.Tensor, max_iter: int, tol: float
) -> tuple[torch.Tensor, float]:
    """Refine `centroids` (K, D) on `points` (N, D) with Lloyd iterations.

    An emptied cluster moves to the point farthest from its centroid.

    Returns:
        The refined (K, D) centroids and the final inertia (mean squared distance per point).
    """
    centroids = centroids.clone()
    num_clusters = centroids.shape[0]
    previous = float("inf")
    inertia = previous

    for iteration in range(max_iter):
        ids, dists = nearest_centroid(points, centroids)
        inertia = float(dists.mean())

        counts = torch.bincount(ids, minlength=num_clusters)
        sums = torch.zeros_like(centroids).index_add_(0, ids, points)
        filled = counts > 0
        centroids[filled] = sums[filled] / counts[filled].unsqueeze(1).to(points.dtype)

        empty = (~filled).nonzero().flatten()
        if empty.numel() > 0:
            logger.info("k-means: reseeding %d empty clusters", empty.numel())
            farthest = dists.topk(empty.numel()).indices
            centroids[empty] = points[farthest]

        logger.debug("k-means iteration %d: inertia %.4f", iteration, inertia)
        if empty.numel() == 0 and previous - inertia <= tol * previous:
            break
        previous = inertia

    return centroids, inertia


def fit_kmeans(
    feats: torch.Tensor,
    options: KMeansOptions = KMeansOptions(),
    mfcc: MfccOptions = MfccOptions(),
) -> KMeansModel:
    """Fit k-means on raw features `feats` (N, D), standardized with their own mean and std.

    Raises:
        ValueError: when there are fewer frames than clusters.
    """
    if feats.dim() != 2:
        raise ValueError(f"fit_kmeans expects (N, D) features, got shape {tuple(feats.shape)}")
    if feats.shape[0] < options.num_clusters:
        raise ValueError(
            f"k-means needs at least num_clusters={options.num_clusters} frames, got "
            f"{feats.shape[0]}: add audio or lower the number of clusters."
        )

    generator = torch.Generator().manual_seed(options.seed)
    feats = feats.float()
    if 0 < options.max_frames < feats.shape[0]:
        keep = torch.randperm(feats.shape[0], generator=generator)[: options.max_frames]
        feats = feats[keep]

    mean = feats.mean(dim=0)
    # Constant dimensions (e.g. deltas of silence-only input) must not divide by zero.
    std = feats.std(dim=0).clamp_min(1e-5)
    points = (feats - mean) / std

    initial = kmeans_plus_plus(points, options.num_clusters, generator)
    centroids, inertia = lloyd(points, initial, options.max_iter, options.tol)
    logger.info(
        "k-means: %d clusters fitted on %d frames, inertia %.4f",
        options.num_clusters,
        points.shape[0],
        inertia,
    )
    return KMeansModel(centroids, mean, std, mfcc)
