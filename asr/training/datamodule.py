"""LightningDataModule over lhotse manifests with duration-bucketed dynamic batching."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lhotse import CutSet
from lhotse.dataset import DynamicBucketingSampler, SimpleCutSampler

from asr.text.tokenizer import Tokenizer
from asr.training.dataset import ASRDataset, AugmentOptions

logger = logging.getLogger(__name__)


@dataclass
class DataConfig:
    """Manifest and tokenizer paths and the batching options of one corpus."""

    train_cuts: str
    valid_cuts: str
    tokenizer: str
    # Total seconds of audio in one batch; the sampler buckets cuts by duration.
    max_duration: float = 200.0
    num_buckets: int = 10
    num_workers: int = 2
    speed_factors: list[float] = field(default_factory=lambda: [0.9, 1.0, 1.1])
    dither: float = 1.0
    seed: int = 0


class ResumableSampler(torch.utils.data.Sampler):
    """Wrap a lhotse sampler so that a resumed epoch skips the batches already trained on.

    A lhotse sampler draws the same batches for the same seed and epoch, so skipping the first
    ``skip_batches`` batches of the restored epoch continues exactly where training stopped.
    Counting the batches that training finished (rather than restoring the sampler's own
    state) keeps the DataLoader's prefetched batches out of the count.
    """

    def __init__(self, sampler: DynamicBucketingSampler) -> None:
        super().__init__()
        self.sampler = sampler
        self.epoch = 0
        self.skip_epoch: int | None = None
        self.skip_batches = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.sampler.set_epoch(epoch)

    def __iter__(self):
        iterator = iter(self.sampler)
        if self.skip_epoch == self.epoch and self.skip_batches > 0:
            logger.info("Resuming epoch %d after its first %d batches", self.epoch, self.skip_batches)
            for _ in range(self.skip_batches):
                if next(iterator, None) is None:
                    break
        self.skip_epoch = None
        return iterator


class ASRDataModule(L.LightningDataModule):
    """Train and validation loaders for one corpus.

    The number of batches trained in the current epoch is part of every checkpoint
    (``state_dict``), so a run killed mid-epoch continues with the batches it had not seen.
    """

    def __init__(self, config: DataConfig) -> None:
        super().__init__()
        self.config = config
        self.tokenizer = Tokenizer.load(config.tokenizer)
        self._resume_position: dict[str, int] | None = None

    def train_dataloader(self) -> torch.utils.data.DataLoader:
        cuts = _load_cuts(self.config.train_cuts)
        world_size, rank = _world_size_and_rank(self.trainer)
        sampler = ResumableSampler(DynamicBucketingSampler(
            cuts,
            max_duration=self.config.max_duration,
            num_buckets=self.config.num_buckets,
            shuffle=True,
            drop_last=False,
            seed=self.config.seed,
            world_size=world_size,
            rank=rank,
        ))
        if self._resume_position is not None:
            sampler.skip_epoch = self._resume_position["epoch"]
            sampler.skip_batches = self._resume_position["batches_done"]
            self._resume_position = None
        dataset = ASRDataset(
            self.tokenizer,
            augment=AugmentOptions(
                speed_factors=tuple(self.config.speed_factors), dither=self.config.dither
            ),
            seed=self.config.seed + rank,
        )
        return _make_loader(dataset, sampler, self.config.num_workers)

    def val_dataloader(self) -> torch.utils.data.DataLoader:
        cuts = _load_cuts(self.config.valid_cuts)
        world_size, rank = _world_size_and_rank(self.trainer)
        sampler = SimpleCutSampler(
            cuts,
            max_duration=self.config.max_duration,
            shuffle=False,
            world_size=world_size,
            rank=rank,
        )
        return _make_loader(ASRDataset(self.tokenizer), sampler, self.config.num_workers)

    def state_dict(self) -> dict[str, Any]:
        if self.trainer is None:
            return {}
        progress = self.trainer.fit_loop.epoch_loop.batch_progress
        return {"epoch": self.trainer.current_epoch, "batches_done": progress.current.processed}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        # Lightning restores the checkpoint before it builds the loaders, so keep the position.
        # NOTE: a checkpoint written after the last batch of an epoch but before its validation
        # resumes into the next epoch, so that one validation is skipped.
        if "batches_done" in state_dict:
            self._resume_position = {
                "epoch": int(state_dict["epoch"]),
                "batches_done": int(state_dict["batches_done"]),
            }


def _load_cuts(path: str) -> CutSet:
    if not Path(path).is_file():
        raise FileNotFoundError(
            f"Manifest {path} not found: run the recipe's data preparation stage first."
        )
    return CutSet.from_file(path)


def _make_loader(dataset, sampler, num_workers: int) -> torch.utils.data.DataLoader:
    return torch.utils.data.DataLoader(
        dataset,
        sampler=sampler,
        batch_size=None,
        num_workers=num_workers,
        persistent_workers=False,
    )


def _world_size_and_rank(trainer: L.Trainer | None) -> tuple[int, int]:
    if trainer is None:
        return 1, 0
    return trainer.world_size, trainer.global_rank
