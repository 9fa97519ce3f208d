"""LightningModule that trains an ASRModel with the hybrid CTC/attention loss."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import lightning as L
import torch

from asr.decode.ctc import ctc_greedy_search
from asr.features.specaugment import SpecAugment, SpecAugmentOptions
from asr.models.asr_model import ASRModel
from asr.models.config import ModelConfig
from asr.training.lr_schedule import warmup_scheduler

logger = logging.getLogger(__name__)


@dataclass
class OptimConfig:
    """Adam with a warm-up schedule stepped once per optimizer step."""

    lr: float = 0.002
    warmup_steps: int = 25000
    weight_decay: float = 0.0


class ASRTask(L.LightningModule):
    """Training and validation steps around a plain :class:`ASRModel`.

    The model stays a plain ``nn.Module`` so that averaging, decoding and export never need
    Lightning. The checkpoint carries the model config in its hyper-parameters.
    """

    def __init__(
        self,
        model: dict[str, Any],
        optim: dict[str, Any],
        specaugment: dict[str, Any],
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.model_config = ModelConfig.from_dict(model)
        self.optim_config = OptimConfig(**optim)
        self.model = ASRModel(self.model_config)
        self.specaugment = SpecAugment.from_options(SpecAugmentOptions(**specaugment))

    def set_cmvn(self, mean: torch.Tensor, istd: torch.Tensor) -> None:
        """Store global CMVN statistics in the model; they travel with every checkpoint."""
        self.model.cmvn.mean.copy_(mean)
        self.model.cmvn.istd.copy_(istd)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        feats = self.specaugment(batch["feats"], batch["feat_lens"])
        out = self.model(feats, batch["feat_lens"], batch["tokens"], batch["token_lens"])

        batch_size = batch["feats"].shape[0]
        self.log("train/loss", out["loss"], prog_bar=True, batch_size=batch_size)
        self.log("train/loss_ctc", out["loss_ctc"], batch_size=batch_size)
        self.log("train/loss_att", out["loss_att"], batch_size=batch_size)
        self.log("train/accuracy", out["accuracy"], batch_size=batch_size)
        self.log("train/audio_seconds", _audio_seconds(batch), reduce_fx="sum", batch_size=1)
        return out["loss"]

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        out = self.model(batch["feats"], batch["feat_lens"], batch["tokens"], batch["token_lens"])
        batch_size = batch["feats"].shape[0]
        self.log("val_loss", out["loss"], prog_bar=True, sync_dist=True, batch_size=batch_size)
        self.log("val/loss_ctc", out["loss_ctc"], sync_dist=True, batch_size=batch_size)
        self.log("val/loss_att", out["loss_att"], sync_dist=True, batch_size=batch_size)
        self.log("val/accuracy", out["accuracy"], sync_dist=True, batch_size=batch_size)

        # Token error rate of CTC greedy search: a cheap progress signal, not the final CER.
        enc_out, enc_lens = self.model.encode(batch["feats"], batch["feat_lens"])
        hyps = ctc_greedy_search(self.model.ctc_log_probs(enc_out), enc_lens)
        errors, total = _token_errors(hyps, batch["tokens"], batch["token_lens"])
        self.log("val/ctc_ter", errors / max(total, 1), sync_dist=True, batch_size=total)

    def configure_optimizers(self) -> dict:
        optimizer = torch.optim.Adam(
            self.model.parameters(),
            lr=self.optim_config.lr,
            weight_decay=self.optim_config.weight_decay,
        )
        scheduler = warmup_scheduler(optimizer, self.optim_config.warmup_steps)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }


def _audio_seconds(batch: dict) -> float:
    # 100 fbank frames per second.
    return float(batch["feat_lens"].sum()) / 100.0


def _token_errors(
    hyps: list[list[int]], tokens: torch.Tensor, token_lens: torch.Tensor
) -> tuple[int, int]:
    errors = 0
    for hyp, ref_row, ref_len in zip(hyps, tokens.tolist(), token_lens.tolist()):
        errors += _edit_distance(hyp, ref_row[:ref_len])
    return errors, int(token_lens.sum())


def _edit_distance(a: list[int], b: list[int]) -> int:
    row = list(range(len(b) + 1))
    for i, x in enumerate(a, start=1):
        prev, row[0] = row[0], i
        for j, y in enumerate(b, start=1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (x != y))
    return row[-1]
