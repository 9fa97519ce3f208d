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
    """Where the manifests and the tokenizer are, and how to batch them."""

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


class ASRDataModule(L.LightningDataModule):
    """Train and validation loaders for one corpus.

    The train sampler's position is part of the checkpoint (``state_dict``), so an interrupted
    run continues the epoch with the batches it had not seen yet.
    """

    def __init__(self, config: DataConfig) -> None:
        super().__init__()
        self.config = config
        self.tokenizer = Tokenizer.load(config.tokenizer)
        self._train_sampler: DynamicBucketingSampler | None = None
        self._pending_sampler_state: dict[str, Any] | None = None

    def train_dataloader(self) -> torch.utils.data.DataLoader:
        cuts = _load_cuts(self.config.train_cuts)
        world_size, rank = _world_size_and_rank(self.trainer)
        self._train_sampler = DynamicBucketingSampler(
            cuts,
            max_duration=self.config.max_duration,
            num_buckets=self.config.num_buckets,
            shuffle=True,
            drop_last=False,
            seed=self.config.seed,
            world_size=world_size,
            rank=rank,
        )
        if self._pending_sampler_state is not None:
            self._train_sampler.load_state_dict(self._pending_sampler_state)
            self._pending_sampler_state = None
        dataset = ASRDataset(
            self.tokenizer,
            augment=AugmentOptions(
                speed_factors=tuple(self.config.speed_factors), dither=self.config.dither
            ),
            seed=self.config.seed + rank,
        )
        return _make_loader(dataset, self._train_sampler, self.config.num_workers)

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
        if self._train_sampler is None:
            return {}
        return {"train_sampler": self._train_sampler.state_dict()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        # The loader is built after the checkpoint is restored, so keep the state until then.
        self._pending_sampler_state = state_dict.get("train_sampler")


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
