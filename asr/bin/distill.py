"""Distill a HuBERT teacher into an ARMHuBERT-family student with Lightning, configured with Hydra.

Usage (from a recipe directory)::

    python -m asr.bin.distill student=armhubert teacher=hubert_base_ls960.pt \
        distill_data.root=/data/LibriSpeech trainer=ddp trainer.devices=2 trainer.precision=16-mixed
    python -m asr.bin.distill student=armhubert_mini teacher=exp/teacher/teacher.pt \
        distill_data=aishell distill_data.root=download_mini trainer.max_epochs=8

Re-running the same command resumes from ``<exp_dir>/checkpoints/last.ckpt``. The final
student is written to ``<exp_dir>/student.pt`` (config and weights, ``weights_only`` loadable).
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import hydra
import lightning as L
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from omegaconf import DictConfig, OmegaConf

from asr.constants import SAMPLE_RATE
from asr.distill.audio_data import (
    AudioDataModule,
    AudioItem,
    aishell_items,
    kaldi_items,
    librispeech_items,
)
from asr.distill.task import DistillTask, save_student
from asr.models.student import SSLStudent
from asr.models.student_config import StudentConfig
from asr.models.teacher_checkpoint import TeacherCheckpointError, load_teacher

logger = logging.getLogger(__name__)

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"
LAYOUTS = ("librispeech", "aishell", "kaldi")


def list_audio(layout: str, root: Path, parts: list[str]) -> list[AudioItem]:
    """Utterances of `parts` (subsets, splits or Kaldi data dirs under `root`) of one layout."""
    if layout == "librispeech":
        return librispeech_items(root, parts)
    if layout == "aishell":
        return aishell_items(root, parts)
    if layout == "kaldi":
        return [item for part in parts for item in kaldi_items(root / part)]
    raise ValueError(f"Invalid distill_data.layout {layout!r}: expected one of {LAYOUTS}")


def distill(cfg: DictConfig) -> Path:
    """Run (or resume) distillation and return the path of the final student."""
    exp_dir = Path(cfg.exp_dir)
    ckpt_dir = exp_dir / "checkpoints"
    last = ckpt_dir / "last.ckpt"
    if last.is_file() and not cfg.resume:
        raise FileExistsError(f"{last} exists and resume=false: choose another exp_dir or pass resume=true.")
    resume_from = str(last) if cfg.resume and last.is_file() else None
    if resume_from:
        logger.info("Resuming from %s", resume_from)

    L.seed_everything(cfg.seed, workers=True)

    teacher = load_teacher(Path(cfg.teacher), trust_checkpoint=cfg.trust_teacher)
    student = SSLStudent(StudentConfig.from_dict(OmegaConf.to_container(cfg.student, resolve=True)))
    if cfg.init_from_teacher and resume_from is None:
        student.init_from_teacher(teacher)
    logger.info("Student %s: %s parameters; teacher: %d layers of width %d",
                student.config.name, f"{sum(p.numel() for p in student.parameters()):,}",
                teacher.num_layers, teacher.embed_dim)

    data = cfg.distill_data
    root = Path(data.root)
    max_samples = None if data.max_seconds is None else int(data.max_seconds * SAMPLE_RATE)
    datamodule = AudioDataModule(
        train_items=list_audio(data.layout, root, list(data.train)),
        valid_items=list_audio(data.layout, root, list(data.valid)),
        batch_size=data.batch_size,
        min_samples=student.min_samples,
        max_samples=max_samples,
        num_workers=data.num_workers,
        seed=cfg.seed,
    )

    task = DistillTask(student, teacher, OmegaConf.to_container(cfg.distill, resolve=True))
    callbacks = [
        ModelCheckpoint(dirpath=ckpt_dir / "best", filename="epoch{epoch:03d}-step{step}",
                        auto_insert_metric_name=False, monitor="val/loss", mode="min",
                        save_top_k=cfg.checkpoint.save_top_k, save_on_train_epoch_end=False),
        ModelCheckpoint(dirpath=ckpt_dir, save_top_k=0, save_last=True, save_on_train_epoch_end=False,
                        every_n_train_steps=cfg.checkpoint.every_n_train_steps),
        LearningRateMonitor(logging_interval="step"),
    ]
    trainer = L.Trainer(
        **OmegaConf.to_container(cfg.trainer, resolve=True),
        default_root_dir=str(exp_dir),
        callbacks=callbacks,
        logger=[
            TensorBoardLogger(str(exp_dir), name="tensorboard", version=""),
            CSVLogger(str(exp_dir), name="csv", version=""),
        ],
    )
    trainer.fit(task, datamodule=datamodule, ckpt_path=resume_from)

    skipped = {name: dataset.skipped for name, dataset in
               (("train", datamodule.train_set), ("valid", datamodule.valid_set)) if dataset is not None}
    for name, counts in skipped.items():
        if any(counts.values()):
            logger.warning("Skipped %s audio files: %s", name, dict(counts))

    student_path = exp_dir / "student.pt"
    if trainer.is_global_zero:
        save_student(task.student, student_path)
        logger.info("Wrote %s", student_path)
    return student_path


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="distill")
def main(cfg: DictConfig) -> None:
    # The frozen teacher is in eval mode on purpose; Lightning warns about it at every start.
    warnings.filterwarnings("ignore", message=r"Found \d+ module\(s\) in eval mode")
    try:
        distill(cfg)
    except (TeacherCheckpointError, FileNotFoundError, FileExistsError) as error:
        # Bad teacher files and data paths: the message names the fix, and a traceback
        # through Hydra and Lightning would bury it.
        raise SystemExit(f"error: {error}") from error


if __name__ == "__main__":
    main()
