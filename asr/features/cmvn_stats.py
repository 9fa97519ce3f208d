"""Global CMVN statistics: accumulate over the training set, save and load as JSON.

Normalized features are ``(x - mean) * istd``. The JSON layout is WeNet's ``global_cmvn`` file:
per-dimension sums (``mean_stat``), sums of squares (``var_stat``) and the frame count
(``frame_num``).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch
from tqdm import tqdm

logger = logging.getLogger(__name__)

# Variance floor applied before inverting, so a constant feature dimension gets a finite istd.
DEFAULT_VAR_FLOOR = 1e-20


class CmvnAccumulator:
    """Running float64 sums of features and squared features over frames."""

    def __init__(self) -> None:
        self.sum: np.ndarray | None = None
        self.sum_squares: np.ndarray | None = None
        self.frames = 0

    def add(self, feats: torch.Tensor | np.ndarray) -> None:
        """Add the frames of one utterance, (T, F)."""
        feats = np.asarray(feats.detach().cpu() if isinstance(feats, torch.Tensor) else feats)
        if feats.ndim != 2:
            raise ValueError(f"CMVN expects features of shape (T, F), got {feats.shape}.")
        if self.sum is not None and feats.shape[1] != self.sum.shape[0]:
            raise ValueError(
                f"CMVN feature dimension changed from {self.sum.shape[0]} to {feats.shape[1]}."
                " Every utterance must use the same front end."
            )

        feats = feats.astype(np.float64)
        if self.sum is None:
            self.sum = np.zeros(feats.shape[1])
            self.sum_squares = np.zeros(feats.shape[1])
        self.sum += feats.sum(axis=0)
        self.sum_squares += np.square(feats).sum(axis=0)
        self.frames += feats.shape[0]

    def merge(self, other: CmvnAccumulator) -> None:
        """Add the sums of another accumulator, e.g. one filled in a worker process."""
        if other.sum is None:
            return
        if self.sum is None:
            self.sum = np.zeros_like(other.sum)
            self.sum_squares = np.zeros_like(other.sum_squares)
        if other.sum.shape != self.sum.shape:
            raise ValueError(
                f"CMVN feature dimension changed from {self.sum.shape[0]} to"
                f" {other.sum.shape[0]}. Every utterance must use the same front end."
            )
        self.sum += other.sum
        self.sum_squares += other.sum_squares
        self.frames += other.frames

    def finalize(self, var_floor: float = DEFAULT_VAR_FLOOR) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (mean (F,), istd (F,)) float32 over all added frames.

        ``istd = 1 / sqrt(max(var, var_floor))``, so normalized features are ``(x - mean) * istd``.
        """
        if self.sum is None or self.frames == 0:
            raise ValueError("No frames were accumulated; cannot compute CMVN statistics.")

        mean = self.sum / self.frames
        var = self.sum_squares / self.frames - np.square(mean)
        istd = 1.0 / np.sqrt(np.maximum(var, var_floor))
        return torch.from_numpy(mean).float(), torch.from_numpy(istd).float()


def compute_global_cmvn(
    feature_iter: Iterable[torch.Tensor | np.ndarray], var_floor: float = DEFAULT_VAR_FLOOR
) -> tuple[torch.Tensor, torch.Tensor]:
    """Compute global CMVN over every frame of ``feature_iter``, a stream of (T, F) matrices.

    Returns ``(mean (F,), istd (F,))`` in float32, from sums accumulated in float64. Use
    ``CmvnAccumulator`` directly when the frame count is needed too.
    """
    accumulator = CmvnAccumulator()
    for feats in feature_iter:
        accumulator.add(feats)
    return accumulator.finalize(var_floor)


class _CutFeatureSums(torch.utils.data.Dataset):
    """Computes one cut's features in a DataLoader worker and returns only its sums."""

    def __init__(self, cuts: list[Any], extractor: Any) -> None:
        self.cuts = cuts
        self.extractor = extractor

    def __len__(self) -> int:
        return len(self.cuts)

    def __getitem__(self, index: int) -> tuple[str, CmvnAccumulator | None, str]:
        cut = self.cuts[index]
        try:
            feats = self.extractor.extract(cut.load_audio(), cut.sampling_rate)
            accumulator = CmvnAccumulator()
            accumulator.add(feats)
        except Exception as error:  # noqa: BLE001 - any unreadable cut is logged and skipped
            return cut.id, None, f"{type(error).__name__}: {error}"
        return cut.id, accumulator, ""


def _keep_item(item: Any) -> Any:
    return item


def compute_global_cmvn_from_cuts(
    cuts: Iterable[Any],
    extractor: Any,
    num_workers: int = 0,
    var_floor: float = DEFAULT_VAR_FLOOR,
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Compute global CMVN of ``extractor`` features over every cut's audio.

    Args:
        cuts: Lhotse cuts (a ``CutSet`` or any iterable of mono cuts), read into memory.
        extractor: A lhotse ``FeatureExtractor`` without dither, as at evaluation.
        num_workers: DataLoader worker processes computing features, 0 for this process.
        var_floor: Variance floor applied before inverting.

    Returns:
        ``(mean (F,), istd (F,), frames)``, ready for ``save_cmvn(path, mean, istd, frames)``.

    Cuts whose audio cannot be loaded or featurized are logged, counted and skipped.
    """
    cut_list = list(cuts)
    loader = torch.utils.data.DataLoader(
        _CutFeatureSums(cut_list, extractor),
        batch_size=None,
        num_workers=num_workers,
        collate_fn=_keep_item,
    )

    total = CmvnAccumulator()
    num_skipped = 0
    for cut_id, accumulator, error in tqdm(loader, total=len(cut_list), desc="CMVN", unit="cut"):
        if accumulator is None:
            num_skipped += 1
            logger.warning("Skipping cut %s in CMVN statistics: %s", cut_id, error)
            continue
        total.merge(accumulator)

    if num_skipped:
        logger.warning("Skipped %d of %d cuts in CMVN statistics.", num_skipped, len(cut_list))
    logger.info("Computed CMVN over %d frames from %d cuts.", total.frames, len(cut_list))
    mean, istd = total.finalize(var_floor)
    return mean, istd, total.frames


def save_cmvn(path: str | Path, mean: torch.Tensor, istd: torch.Tensor, frames: int) -> None:
    """Write CMVN as WeNet-style JSON (``mean_stat``, ``var_stat``, ``frame_num``).

    The sums are rebuilt from ``mean``, ``istd`` and ``frames``, so a floored variance is saved
    as its floor and ``load_cmvn`` returns the same ``istd``.
    """
    if frames <= 0:
        raise ValueError(f"Cannot save CMVN to {path}: frames must be positive, got {frames}.")

    mean64 = mean.double().cpu().numpy()
    var64 = 1.0 / np.square(istd.double().cpu().numpy())
    payload = {
        "mean_stat": (mean64 * frames).tolist(),
        "var_stat": ((var64 + np.square(mean64)) * frames).tolist(),
        "frame_num": int(frames),
    }

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload), encoding="utf-8")


def load_cmvn(
    path: str | Path, var_floor: float = DEFAULT_VAR_FLOOR
) -> tuple[torch.Tensor, torch.Tensor]:
    """Read a WeNet-style CMVN JSON file and return ``(mean (F,), istd (F,))`` in float32."""
    path = Path(path)
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
        sums = np.asarray(payload["mean_stat"], dtype=np.float64)
        sum_squares = np.asarray(payload["var_stat"], dtype=np.float64)
        frames = int(payload["frame_num"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ValueError(
            f"Cannot read CMVN file {path}: {error}. Expected JSON with mean_stat, var_stat and"
            " frame_num, as written by save_cmvn."
        ) from error

    if frames <= 0 or sums.shape != sum_squares.shape or sums.ndim != 1:
        raise ValueError(
            f"Invalid CMVN file {path}: frame_num={frames}, mean_stat shape {sums.shape},"
            f" var_stat shape {sum_squares.shape}. Expected a positive count and equal 1-D stats."
        )

    accumulator = CmvnAccumulator()
    accumulator.sum, accumulator.sum_squares, accumulator.frames = sums, sum_squares, frames
    return accumulator.finalize(var_floor)
