"""Train an ASR model with Lightning, configured with Hydra.

Usage (from a recipe directory, e.g. ``recipes/aishell1``)::

    python -m asr.bin.train model=brst_adm data=aishell trainer=gpu
    python -m asr.bin.train model=mini data=mini_aishell trainer.max_epochs=30 exp_dir=exp/mini
    python -m asr.bin.train model=brst_adm trainer=ddp trainer.devices=4 trainer.num_nodes=2

Re-running the same command resumes from ``<exp_dir>/checkpoints/last.ckpt`` when it exists
(``resume=false`` starts over and refuses to overwrite an existing ``last.ckpt``).
"""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
import lightning as L
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from omegaconf import DictConfig, OmegaConf

from asr.features.cmvn_stats import load_cmvn
from asr.training.datamodule import ASRDataModule, DataConfig
from asr.training.module import ASRTask

logger = logging.getLogger(__name__)

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"


def train(cfg: DictConfig) -> Path:
    """Run (or resume) training and return the checkpoint directory."""
    exp_dir = Path(cfg.exp_dir)
    ckpt_dir = exp_dir / "checkpoints"
    latest = latest_checkpoint(ckpt_dir)
    if latest is not None and not cfg.resume:
        raise FileExistsError(
            f"{latest} exists and resume=false: choose another exp_dir or pass resume=true."
        )
    resume_from = str(latest) if cfg.resume and latest is not None else None
    if resume_from:
        logger.info("Resuming from %s", resume_from)

    L.seed_everything(cfg.seed, workers=True)

    data_config = DataConfig(**OmegaConf.to_container(cfg.data.loader, resolve=True))
    datamodule = ASRDataModule(data_config)

    model_dict = OmegaConf.to_container(cfg.model, resolve=True)
    model_dict["vocab_size"] = datamodule.tokenizer.vocab_size
    task = ASRTask(
        model=model_dict,
        optim=OmegaConf.to_container(cfg.optim, resolve=True),
        specaugment=OmegaConf.to_container(cfg.specaugment, resolve=True),
    )
    mean, istd = load_cmvn(cfg.data.cmvn)
    task.set_cmvn(mean, istd)
    logger.info("Model: %s parameters", f"{sum(p.numel() for p in task.model.parameters()):,}")

    callbacks = _checkpoint_callbacks(ckpt_dir, cfg.checkpoint) + [
        LearningRateMonitor(logging_interval="step")
    ]
    trainer = L.Trainer(
        **OmegaConf.to_container(cfg.trainer, resolve=True),
        default_root_dir=str(exp_dir),
        callbacks=callbacks,
        logger=[
            TensorBoardLogger(str(exp_dir), name="tensorboard", version=""),
            CSVLogger(str(exp_dir), name="csv", version=""),
        ],
        # lhotse samplers shard the data across ranks themselves.
        use_distributed_sampler=False,
    )
    trainer.fit(task, datamodule=datamodule, ckpt_path=resume_from)
    return ckpt_dir


def latest_checkpoint(ckpt_dir: Path) -> Path | None:
    """Return the newest of ``last.ckpt`` (end of validation) and the rolling step checkpoint."""
    candidates = [ckpt_dir / "last.ckpt", *sorted((ckpt_dir / "steps").glob("*.ckpt"))]
    existing = [path for path in candidates if path.is_file()]
    if not existing:
        return None
    return max(existing, key=lambda path: path.stat().st_mtime)


def _checkpoint_callbacks(ckpt_dir: Path, cfg: DictConfig) -> list[ModelCheckpoint]:
    """Build the three checkpoint streams that averaging and resuming read.

    ``best/`` keeps the ``save_top_k`` checkpoints of lowest validation loss, ``epochs/`` the
    ``keep_last_epochs`` most recent validations, ``last.ckpt`` the latest validation, and
    ``steps/`` one rolling checkpoint every ``every_n_train_steps`` so that a run killed
    mid-epoch loses at most that many steps.
    """
    best = ModelCheckpoint(
        dirpath=ckpt_dir / "best",
        filename="epoch{epoch:03d}-step{step}-val_loss{val_loss:.4f}",
        auto_insert_metric_name=False,
        monitor="val_loss",
        mode="min",
        save_top_k=cfg.save_top_k,
        save_last=False,
        save_on_train_epoch_end=False,
    )
    recent = ModelCheckpoint(
        dirpath=ckpt_dir / "epochs",
        filename="epoch{epoch:03d}-step{step}",
        auto_insert_metric_name=False,
        monitor="step",
        mode="max",
        save_top_k=cfg.keep_last_epochs,
        save_on_train_epoch_end=False,
    )
    last = ModelCheckpoint(dirpath=ckpt_dir, save_top_k=0, save_last=True, save_on_train_epoch_end=False)
    steps = ModelCheckpoint(
        dirpath=ckpt_dir / "steps",
        filename="step{step}",
        auto_insert_metric_name=False,
        every_n_train_steps=cfg.every_n_train_steps,
        save_top_k=1,
        monitor="step",
        mode="max",
    )
    return [best, recent, last, steps]


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="train")
def main(cfg: DictConfig) -> None:
    train(cfg)


if __name__ == "__main__":
    main()
