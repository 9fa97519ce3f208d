"""Masked-prediction pretraining of a small HuBERT-style teacher on k-means cluster labels."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
import torchaudio

from asr.constants import IGNORE_ID
from asr.models.hubert_teacher import NO_DROPOUT, normalize_config
from asr.models.teacher_checkpoint import TEACHER_FORMAT, TEACHER_FORMAT_VERSION

logger = logging.getLogger(__name__)


def _mini_conv_layers() -> list[tuple[int, int, int]]:
    # HuBERT's kernels and strides (stride 320, receptive field 400) with 64 channels.
    return [(64, 10, 5)] + [(64, 3, 2)] * 4 + [(64, 2, 2)] * 2


@dataclass
class TeacherArch:
    """Architecture of the teacher to pretrain. The defaults are the CPU-sized mini teacher.

    Attributes:
        conv_layers: conv front end as (channels, kernel, stride). The labels assume HuBERT's total
            stride of 320 samples and receptive field of 400 samples.
        conv_bias: bias in the front-end convolutions.
        extractor_mode: ``"group_norm"`` (HuBERT Base) or ``"layer_norm"``.
        embed_dim: Transformer width D.
        num_layers: Transformer layers.
        num_heads: attention heads.
        ffn_dim: hidden width of the feed-forward blocks.
        pos_conv_kernel: kernel of the convolutional positional embedding, in frames.
        pos_conv_groups: groups of the convolutional positional embedding.
        layer_norm_first: pre-LayerNorm layers (False is HuBERT Base's post-LayerNorm).
        final_dim: width of the projection compared with the cluster embeddings.
    """

    conv_layers: list[tuple[int, int, int]] = field(default_factory=_mini_conv_layers)
    conv_bias: bool = False
    extractor_mode: str = "group_norm"
    embed_dim: int = 192
    num_layers: int = 4
    num_heads: int = 4
    ffn_dim: int = 576
    pos_conv_kernel: int = 64
    pos_conv_groups: int = 16
    layer_norm_first: bool = False
    final_dim: int = 64

    def __post_init__(self) -> None:
        self.conv_layers = [tuple(int(value) for value in layer) for layer in self.conv_layers]
        if self.embed_dim % self.num_heads:
            raise ValueError(
                f"embed_dim {self.embed_dim} is not divisible by num_heads {self.num_heads}"
            )
        if self.embed_dim % self.pos_conv_groups:
            raise ValueError(
                f"embed_dim {self.embed_dim} is not divisible by pos_conv_groups "
                f"{self.pos_conv_groups}"
            )

    def teacher_config(self) -> dict[str, Any]:
        """Return the `torchaudio.models.wav2vec2_model` kwargs of the exported teacher.

        Every dropout is 0 and there is no CTC head (``aux_num_out=None``).
        """
        return normalize_config(
            {
                "extractor_mode": self.extractor_mode,
                "extractor_conv_layer_config": self.conv_layers,
                "extractor_conv_bias": self.conv_bias,
                "encoder_embed_dim": self.embed_dim,
                "encoder_pos_conv_kernel": self.pos_conv_kernel,
                "encoder_pos_conv_groups": self.pos_conv_groups,
                "encoder_num_layers": self.num_layers,
                "encoder_num_heads": self.num_heads,
                "encoder_ff_interm_features": self.ffn_dim,
                "encoder_layer_norm_first": self.layer_norm_first,
                "aux_num_out": None,
                **NO_DROPOUT,
            }
        )

    def num_frames(self, num_samples: int) -> int:
        """Frames after the conv front end for `num_samples` samples (0 when too short)."""
        frames = num_samples
        for _, kernel, stride in self.conv_layers:
            frames = max((frames - kernel) // stride + 1, 0)
        return frames


@dataclass
class PretrainOptions:
    """Masking, regularization, loss and optimizer settings of teacher pretraining.

    Attributes:
        mask_prob: fraction of frames chosen as span starts, times ``mask_length`` (HuBERT: 0.8).
        mask_length: span length in frames.
        dropout: dropout after the feature projection and in the Transformer layers.
        attention_dropout: dropout on attention probabilities.
        activation_dropout: dropout inside the feed-forward blocks.
        layer_drop: probability of skipping a whole Transformer layer.
        feature_grad_mult: gradient scale of the conv front end in (0, 1); None leaves it at 1.
        unmasked_weight: weight of the prediction loss on unmasked frames (HuBERT Base: 0).
        feature_penalty_weight: weight of the squared front-end features' mean (HuBERT: 10).
        lr: peak learning rate of AdamW.
        weight_decay: AdamW weight decay.
        betas: AdamW betas.
        eps: AdamW epsilon.
        warmup_steps: optimizer steps of linear warm-up; the rate then decays linearly to 0 at
            the last step of training.
        seed: seed of the validation masks (training masks use the global generator).
    """

    mask_prob: float = 0.8
    mask_length: int = 10
    dropout: float = 0.1
    attention_dropout: float = 0.1
    activation_dropout: float = 0.0
    layer_drop: float = 0.0
    feature_grad_mult: float | None = None
    unmasked_weight: float = 0.0
    feature_penalty_weight: float = 10.0
    lr: float = 2e-3
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = 1e-6
    warmup_steps: int = 100
    seed: int = 0

    def __post_init__(self) -> None:
        # Hyper-parameters read back from a checkpoint or JSON carry the betas as a list.
        self.betas = (float(self.betas[0]), float(self.betas[1]))


def build_pretrain_model(
    arch: TeacherArch, num_clusters: int, options: PretrainOptions
) -> torchaudio.models.HuBERTPretrainModel:
    """Build torchaudio's HuBERT pretraining model (encoder, mask generator, logit generator)."""
    return torchaudio.models.hubert_pretrain_model(
        extractor_mode=arch.extractor_mode,
        extractor_conv_layer_config=arch.conv_layers,
        extractor_conv_bias=arch.conv_bias,
        encoder_embed_dim=arch.embed_dim,
        encoder_projection_dropout=options.dropout,
        encoder_pos_conv_kernel=arch.pos_conv_kernel,
        encoder_pos_conv_groups=arch.pos_conv_groups,
        encoder_num_layers=arch.num_layers,
        encoder_num_heads=arch.num_heads,
        encoder_attention_dropout=options.attention_dropout,
        encoder_ff_interm_features=arch.ffn_dim,
        encoder_ff_interm_dropout=options.activation_dropout,
        encoder_dropout=options.dropout,
        encoder_layer_norm_first=arch.layer_norm_first,
        encoder_layer_drop=options.layer_drop,
        mask_prob=options.mask_prob,
        mask_selection="static",
        mask_other=0.0,
        mask_length=options.mask_length,
        no_mask_overlap=False,
        mask_min_space=1,
        mask_channel_prob=0.0,
        mask_channel_selection="static",
        mask_channel_other=0.0,
        mask_channel_length=10,
        no_mask_channel_overlap=False,
        mask_channel_min_space=1,
        skip_masked=False,
        skip_nomask=options.unmasked_weight == 0.0,
        num_classes=num_clusters,
        final_dim=arch.final_dim,
        feature_grad_mult=options.feature_grad_mult,
    )


def linear_warmup_decay(step: int, warmup_steps: int, total_steps: int) -> float:
    """Return the learning-rate factor at optimizer `step`.

    The factor rises linearly to 1 over `warmup_steps`, then falls linearly to 0 at `total_steps`.
    """
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    remaining = max(total_steps - warmup_steps, 1)
    return max(0.0, 1.0 - (step - warmup_steps) / remaining)


class HubertPretrainTask(L.LightningModule):
    """HuBERT masked prediction: cross-entropy of each masked frame's cluster against all clusters.

    torchaudio's logit generator (``_compute_logits`` in torchaudio 2.11) returns cosine
    similarities / 0.1 with the true cluster's in column 0 and that cluster's own column set to
    -inf. So the target of every row is 0, and a frame is predicted correctly when column 0 is
    the largest.

    Args:
        arch: `TeacherArch` fields.
        num_clusters: k-means clusters (the label vocabulary).
        options: `PretrainOptions` fields.
        majority_cluster: most frequent training cluster; validation logs how often it is the
            label, the accuracy of always predicting it.
    """

    def __init__(
        self,
        arch: dict[str, Any],
        num_clusters: int,
        options: dict[str, Any] | None = None,
        majority_cluster: int | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.arch = TeacherArch(**arch)
        self.options = PretrainOptions(**(options or {}))
        self.num_clusters = num_clusters
        self.majority_cluster = majority_cluster
        self.model = build_pretrain_model(self.arch, num_clusters, self.options)

    def compute_metrics(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Run the model on a batch and return its losses and accuracies.

        Args:
            batch: ``waveforms`` (B, S), ``lengths`` (B,) samples, ``labels`` (B, T') cluster
                ids padded with IGNORE_ID.

        Returns:
            ``loss`` (total), ``loss_masked``, ``loss_unmasked`` (0 when not computed),
            ``feature_penalty``, ``acc_masked``, ``acc_unmasked`` and ``num_masked``.
        """
        logit_m, logit_u, feature_penalty = self.model(
            batch["waveforms"], batch["labels"], batch["lengths"]
        )

        loss_masked, acc_masked = _prediction_loss(logit_m)
        loss_unmasked, acc_unmasked = _prediction_loss(logit_u)
        loss = (
            loss_masked
            + self.options.unmasked_weight * loss_unmasked
            + self.options.feature_penalty_weight * feature_penalty
        )
        return {
            "loss": loss,
            "loss_masked": loss_masked,
            "loss_unmasked": loss_unmasked,
            "feature_penalty": feature_penalty,
            "acc_masked": acc_masked,
            "acc_unmasked": acc_unmasked,
            "num_masked": torch.tensor(float(logit_m.shape[0])),
        }

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        metrics = self.compute_metrics(batch)
        batch_size = batch["waveforms"].shape[0]
        self.log("train/loss", metrics["loss"], prog_bar=True, batch_size=batch_size)
        self.log("train/loss_masked", metrics["loss_masked"], batch_size=batch_size)
        self.log("train/feature_penalty", metrics["feature_penalty"], batch_size=batch_size)
        self.log("train/acc_masked", metrics["acc_masked"], prog_bar=True, batch_size=batch_size)
        return metrics["loss"]

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        # Seeded masks, so every validation scores the same frames.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.options.seed + batch_idx)
            metrics = self.compute_metrics(batch)

        frames = int(metrics["num_masked"])
        self.log("val_loss", metrics["loss_masked"], prog_bar=True, batch_size=frames)
        self.log("val/acc_masked", metrics["acc_masked"], prog_bar=True, batch_size=frames)
        if self.options.unmasked_weight > 0.0:
            self.log("val/acc_unmasked", metrics["acc_unmasked"], batch_size=frames)

        if self.majority_cluster is not None:
            valid = batch["labels"] != IGNORE_ID
            hits = (batch["labels"] == self.majority_cluster) & valid
            rate = hits.sum() / valid.sum().clamp_min(1)
            self.log("val/majority_rate", rate.float(), batch_size=int(valid.sum()))

    def configure_optimizers(self) -> dict:
        optimizer = torch.optim.AdamW(
            self.model.parameters(),
            lr=self.options.lr,
            betas=self.options.betas,
            eps=self.options.eps,
            weight_decay=self.options.weight_decay,
        )
        total_steps = int(self.trainer.estimated_stepping_batches)
        warmup_steps = min(self.options.warmup_steps, max(total_steps // 2, 1))
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: linear_warmup_decay(step, warmup_steps, total_steps)
        )
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }


def _prediction_loss(logits: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-entropy and accuracy of torchaudio HuBERT logits (N, K + 1), true class in column 0."""
    if logits is None or logits.shape[0] == 0:
        zero = torch.zeros(())
        return zero, zero

    targets = torch.zeros(logits.shape[0], dtype=torch.long, device=logits.device)
    loss = F.cross_entropy(logits.float(), targets)
    with torch.no_grad():
        accuracy = (logits.argmax(dim=-1) == 0).float().mean()
    return loss, accuracy


def export_teacher(task: HubertPretrainTask) -> dict[str, Any]:
    """Return the pretrained encoder in the teacher checkpoint format.

    The dict contains ``format``, ``version``, ``config`` (`wav2vec2_model` kwargs in plain
    Python types, dropouts 0, no CTC head), ``state_dict`` (the `Wav2Vec2Model` weights) and
    ``mask_emb`` (D,), HuBERT's embedding for masked frames. ``torch.save`` it to get a file that
    ``torch.load(..., weights_only=True)`` and `asr.models.teacher_checkpoint.load_teacher` read.
    """
    state_dict = {
        name: tensor.detach().cpu().clone()
        for name, tensor in task.model.wav2vec2.state_dict().items()
    }
    return {
        "format": TEACHER_FORMAT,
        "version": TEACHER_FORMAT_VERSION,
        "config": task.arch.teacher_config(),
        "state_dict": state_dict,
        "mask_emb": task.model.mask_generator.mask_embedding.detach().cpu().clone(),
    }


def arch_to_dict(arch: TeacherArch) -> dict[str, Any]:
    """`TeacherArch` as plain Python types (conv layers as lists), for hyper-parameters and JSON."""
    data = asdict(arch)
    data["conv_layers"] = [list(layer) for layer in arch.conv_layers]
    return data
