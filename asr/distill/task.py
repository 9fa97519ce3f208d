"""LightningModule that distills a frozen HuBERT teacher into an SSLStudent, layer to layer."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import torch

from asr.distill.losses import distilhubert_loss, layer_weights, masking_distillation_loss
from asr.distill.masking import span_mask
from asr.models.hubert_teacher import HubertTeacher
from asr.models.student import SSLStudent
from asr.models.student_config import StudentConfig

logger = logging.getLogger(__name__)

LOSSES = ("masking", "distilhubert")
STUDENT_FORMAT = "reuseasr-ssl-student"
STUDENT_FORMAT_VERSION = 1


@dataclass
class DistillOptions:
    """Loss, masking and optimizer settings of a distillation run.

    The optimizer defaults are those of DistilHuBERT's runner config in s3prl
    (``s3prl/pretrain/distiller/config_runner.yaml``: AdamW, lr 2e-4, 7% warm-up of 200k
    steps, betas (0.9, 0.98), eps 1e-6, weight decay 1e-6). That config also clips the
    gradient norm at 5.0, which is set on the Trainer (``gradient_clip_val``). The masking
    defaults (prob 0.8, span 10) are those of HuBERT Base pre-training in fairseq, where
    spans may overlap. Here they never overlap.

    Attributes:
        loss: ``"masking"`` (masked student, two teacher passes) or ``"distilhubert"``
            (unmasked student, L1 + cosine loss).
        mask_prob: ``prob`` of `span_mask`; unused by ``"distilhubert"``.
        mask_span: span length in frames.
        weights: loss weight per student head; None gives `layer_weights` of the heads'
            teacher layers for ``"masking"`` (last layer = the teacher's last) and 1.0 per
            head for ``"distilhubert"``.
        cos_weight: weight of the cosine term of ``"distilhubert"``.
        lr: peak learning rate.
        warmup_fraction: fraction of ``total_steps`` spent warming up linearly from 0.
        betas: AdamW betas.
        eps: AdamW epsilon.
        weight_decay: AdamW decoupled weight decay, not applied to biases, norms and the mask
            embedding (tensors with fewer than 2 dimensions).
        total_steps: optimizer steps of the whole run; the learning rate reaches 0 there. None
            takes the Trainer's estimate (epochs x batches / accumulation).
        val_seed: seed of the validation masks; batch ``i`` always gets the mask of seed
            ``val_seed + i``, so validation losses are comparable across epochs.
    """

    loss: str = "masking"
    mask_prob: float = 0.8
    mask_span: int = 10
    weights: list[float] | None = None
    cos_weight: float = 1.0
    lr: float = 2e-4
    warmup_fraction: float = 0.07
    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = 1e-6
    weight_decay: float = 1e-6
    total_steps: int | None = 200_000
    val_seed: int = 0

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {self.loss!r}")
        if not 0.0 <= self.warmup_fraction < 1.0:
            raise ValueError(f"warmup_fraction must be in [0, 1), got {self.warmup_fraction}")
        if self.total_steps is not None and self.total_steps < 1:
            raise ValueError(f"total_steps must be positive, got {self.total_steps}")
        self.betas = (float(self.betas[0]), float(self.betas[1]))
        if self.weights is not None:
            self.weights = [float(weight) for weight in self.weights]


@dataclass
class _StepResult:
    loss: torch.Tensor
    per_layer: dict[str, torch.Tensor] = field(default_factory=dict)
    masked_fraction: torch.Tensor | None = None


def linear_warmup_decay_factor(step: int, warmup_steps: int, total_steps: int) -> float:
    """Return the learning-rate factor at optimizer ``step`` (0-based).

    The factor rises linearly to 1.0 over ``warmup_steps`` (``(step + 1) / warmup_steps``),
    then falls linearly to 0.0 at ``total_steps`` and stays there.
    """
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))


class DistillTask(L.LightningModule):
    """Training and validation steps that distill ``teacher`` into ``student``.

    The teacher is frozen. Its parameters never require gradients, it runs under
    ``torch.no_grad``, and it stays in eval mode when Lightning switches the module to
    training. Its weights are left out of Lightning checkpoints, so restoring one keeps the
    teacher that the task was built with.

    For ``loss="masking"`` each batch gets one span mask over the student's frames. The
    teacher runs on the unmasked and the masked input, the student on the masked input, and
    `masking_distillation_loss` compares them. For ``loss="distilhubert"`` neither model is
    masked and `distilhubert_loss` is used.

    NOTE: with ``loss="distilhubert"`` the student's mask embedding gets no gradient, so DDP
    training needs the ``"ddp_find_unused_parameters_true"`` strategy.

    Args:
        student: the model being trained; its ``config.heads`` name the teacher layers.
        teacher: the frozen target model.
        options: a `DistillOptions` or a mapping of its fields.
    """

    def __init__(
        self,
        student: SSLStudent,
        teacher: HubertTeacher,
        options: DistillOptions | Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if options is None:
            options = DistillOptions()
        elif isinstance(options, Mapping):
            options = DistillOptions(**options)
        self.options = options

        self.student = student
        self.teacher = teacher
        self.teacher.requires_grad_(False)
        self.teacher.eval()

        heads = student.config.heads
        self.teacher_layers = [teacher_layer for _, teacher_layer in heads]
        self.head_names = [f"s{s}_t{t}" for s, t in heads]
        self.weights = self._resolve_weights()
        _check_compatible(student, teacher)

        teacher_config = dict(teacher.config)
        teacher_config["extractor_conv_layer_config"] = [
            list(layer) for layer in teacher_config["extractor_conv_layer_config"]
        ]
        self.save_hyperparameters({
            "options": {**asdict(options), "betas": list(options.betas)},
            "student_config": student.config.to_dict(),
            "teacher_config": teacher_config,
        })

    def _resolve_weights(self) -> list[float]:
        weights = self.options.weights
        if weights is None:
            if self.options.loss == "distilhubert":
                return [1.0] * len(self.teacher_layers)
            return layer_weights(self.teacher_layers, last_layer=self.teacher.num_layers)
        if len(weights) != len(self.teacher_layers):
            raise ValueError(
                f"options.weights has {len(weights)} entries but the student "
                f"'{self.student.config.name}' has {len(self.teacher_layers)} heads; give one "
                "weight per head or None"
            )
        return list(weights)

    def train(self, mode: bool = True) -> DistillTask:
        """Switch the student to ``mode`` and keep the teacher in eval mode."""
        super().train(mode)
        self.teacher.eval()
        return self

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int):
        waveforms, lengths = batch
        if waveforms.size(0) == 0:
            logger.warning("Training batch %d has no usable audio; skipping it", batch_idx)
            return None

        result = self._distill(waveforms, lengths, generator=None)
        self._log_result("train", result, waveforms.size(0))
        return result.loss

    def validation_step(
        self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int
    ) -> torch.Tensor | None:
        waveforms, lengths = batch
        if waveforms.size(0) == 0:
            return None

        generator = torch.Generator().manual_seed(self.options.val_seed + batch_idx)
        result = self._distill(waveforms, lengths, generator=generator)
        self._log_result("val", result, waveforms.size(0))
        return result.loss

    def _distill(
        self,
        waveforms: torch.Tensor,
        lengths: torch.Tensor,
        generator: torch.Generator | None,
    ) -> _StepResult:
        """Run teacher and student on (B, S) waveforms with (B,) lengths; compute the loss."""
        num_frames = self.student.num_frames(waveforms.size(1))
        frames = self.student.num_frames(lengths)

        frame_mask = None
        if self.options.loss == "masking":
            frame_mask = span_mask(
                frames, num_frames, self.options.mask_prob, self.options.mask_span, generator
            )

        with torch.no_grad():
            clean = self.teacher(waveforms, lengths)
            masked = None
            if frame_mask is not None:
                masked = self.teacher(waveforms, lengths, frame_mask)
        out = self.student(waveforms, lengths, frame_mask)
        _check_frames(clean.layers[0], clean.lengths, out.predictions[0], out.lengths)

        targets = [clean.layers[layer - 1] for layer in self.teacher_layers]
        if frame_mask is None:
            _, per_layer = distilhubert_loss(
                out.predictions, targets, out.padding_mask, self.options.cos_weight,
                self.head_names,
            )
            loss = sum(
                weight * per_layer[name] for name, weight in zip(self.head_names, self.weights)
            )
            return _StepResult(loss, per_layer)

        targets_masked = [masked.layers[layer - 1] for layer in self.teacher_layers]
        loss, per_layer = masking_distillation_loss(
            out.predictions,
            targets,
            targets_masked,
            frame_mask,
            out.padding_mask,
            self.weights,
            self.head_names,
        )
        valid = out.padding_mask if out.padding_mask is not None else torch.ones_like(frame_mask)
        masked_fraction = (frame_mask & valid).sum() / valid.sum().clamp(min=1)
        return _StepResult(loss, per_layer, masked_fraction)

    def _log_result(self, stage: str, result: _StepResult, batch_size: int) -> None:
        sync = stage == "val"
        self.log(f"{stage}/loss", result.loss, prog_bar=True, sync_dist=sync, batch_size=batch_size)
        for name, value in result.per_layer.items():
            self.log(f"{stage}/loss_{name}", value, sync_dist=sync, batch_size=batch_size)
        if result.masked_fraction is not None:
            self.log(
                f"{stage}/masked_fraction", result.masked_fraction, sync_dist=sync,
                batch_size=batch_size,
            )

    def configure_optimizers(self) -> dict:
        decay, no_decay = [], []
        for parameter in self.student.parameters():
            if parameter.requires_grad:
                (decay if parameter.dim() >= 2 else no_decay).append(parameter)

        optimizer = torch.optim.AdamW(
            [
                {"params": decay, "weight_decay": self.options.weight_decay},
                {"params": no_decay, "weight_decay": 0.0},
            ],
            lr=self.options.lr,
            betas=self.options.betas,
            eps=self.options.eps,
        )
        total = self.options.total_steps or int(self.trainer.estimated_stepping_batches)
        warmup = max(1, round(self.options.warmup_fraction * total))
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: linear_warmup_decay_factor(step, warmup, total)
        )
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get("state_dict", {})
        for key in [key for key in state if key.startswith("teacher.")]:
            del state[key]

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Checkpoints carry no teacher weights; put the current ones back for strict loading.
        state = checkpoint.setdefault("state_dict", {})
        for key, value in self.teacher.state_dict().items():
            state.setdefault(f"teacher.{key}", value)

    def save_student(self, path: str | Path) -> None:
        """Write the student's config and weights to ``path``; see `save_student`."""
        save_student(self.student, path)


def save_student(student: SSLStudent, path: str | Path) -> None:
    """Write ``student`` as a plain checkpoint that ``torch.load(weights_only=True)`` accepts.

    The file contains ``{"format", "version", "config": StudentConfig.to_dict(),
    "state_dict"}``, with the prediction heads included.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {name: tensor.detach().cpu() for name, tensor in student.state_dict().items()}
    torch.save(
        {
            "format": STUDENT_FORMAT,
            "version": STUDENT_FORMAT_VERSION,
            "config": student.config.to_dict(),
            "state_dict": state,
        },
        path,
    )


def load_student(path: str | Path) -> SSLStudent:
    """Read a student written by `save_student`, on the CPU.

    Raises:
        ValueError: the file is not a student checkpoint of a known version.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Student checkpoint {path} not found")

    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != STUDENT_FORMAT:
        raise ValueError(
            f"{path} is not a student checkpoint (format {STUDENT_FORMAT!r}); write it with "
            "save_student() or DistillTask.save_student()"
        )
    if checkpoint.get("version") != STUDENT_FORMAT_VERSION:
        raise ValueError(
            f"{path} has student checkpoint version {checkpoint.get('version')}, but this "
            f"version of the toolkit reads version {STUDENT_FORMAT_VERSION}"
        )

    student = SSLStudent(StudentConfig.from_dict(checkpoint["config"]))
    student.load_state_dict(checkpoint["state_dict"])
    return student


def _check_compatible(student: SSLStudent, teacher: HubertTeacher) -> None:
    """Raise ValueError when the student's heads or frames cannot match the teacher."""
    config = student.config
    if config.head_dim != teacher.embed_dim:
        raise ValueError(
            f"student '{config.name}' predicts {config.head_dim}-dim vectors but the teacher's "
            f"layers are {teacher.embed_dim}-dim; set head_dim to {teacher.embed_dim}"
        )
    for _, teacher_layer in config.heads:
        if teacher_layer > teacher.num_layers:
            raise ValueError(
                f"student '{config.name}' has a head for teacher layer {teacher_layer}, but the "
                f"teacher has {teacher.num_layers} layers"
            )

    probe_lengths = (student.min_samples, 16000, 16000 * 7 + 123)
    for num_samples in probe_lengths:
        student_frames = student.num_frames(num_samples)
        teacher_frames = teacher.num_frames(num_samples)
        if student_frames != teacher_frames:
            raise ValueError(
                f"for {num_samples} samples the student '{config.name}' gives {student_frames} "
                f"frames but the teacher gives {teacher_frames}; their conv front ends must have "
                "the same total stride and receptive field"
            )


def _check_frames(
    teacher_layer: torch.Tensor,
    teacher_lengths: torch.Tensor | None,
    prediction: torch.Tensor,
    student_lengths: torch.Tensor | None,
) -> None:
    if teacher_layer.shape[:2] != prediction.shape[:2]:
        raise ValueError(
            f"teacher outputs (B, T') = {tuple(teacher_layer.shape[:2])} but the student "
            f"outputs {tuple(prediction.shape[:2])}; their conv front ends must match in stride "
            "and receptive field"
        )
    if teacher_lengths is not None and student_lengths is not None:
        if not torch.equal(teacher_lengths.to(student_lengths.device), student_lengths):
            raise ValueError(
                f"teacher frame lengths {teacher_lengths.tolist()} differ from the student's "
                f"{student_lengths.tolist()}"
            )
