"""Pretrain a small HuBERT-style teacher from scratch: MFCC k-means labels, then masked prediction.

Usage (the mini corpus, extracted by ``asr.bin.prepare aishell``)::

    python -m asr.bin.pretrain_teacher --audio-dir download_mini --layout aishell \
        --out-dir exp/teacher

Writes into ``--out-dir``: ``kmeans.pt`` (centroids), ``labels.pt`` (cluster ids per utterance),
``checkpoints/last.ckpt`` (re-running resumes from it), ``csv/metrics.csv``, ``teacher.pt`` (the
teacher checkpoint that distillation loads) and ``pretrain_metrics.json`` (accuracies, chance
and majority-cluster rates, wall time). An existing ``teacher.pt`` is only replaced with
``--overwrite``, which also refits k-means and trains from scratch.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from dataclasses import asdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger

from asr.distill.audio_data import (
    AudioItem,
    UnlabeledAudioDataset,
    aishell_items,
    kaldi_items,
    librispeech_items,
)
from asr.distill.mfcc_kmeans import (
    FRONT_END_RECEPTIVE_FIELD,
    KMeansModel,
    KMeansOptions,
    fit_kmeans,
)
from asr.distill.pretrain import (
    HubertPretrainTask,
    PretrainOptions,
    TeacherArch,
    arch_to_dict,
    export_teacher,
)
from asr.distill.pretrain_data import (
    BucketBatchSampler,
    LabeledAudioDataset,
    cluster_counts,
    collate_labeled_audio,
    collect_mfcc,
    compute_labels,
    load_labels,
    save_labels,
)

logger = logging.getLogger(__name__)

TEACHER_FILE = "teacher.pt"
KMEANS_FILE = "kmeans.pt"
LABELS_FILE = "labels.pt"
METRICS_FILE = "pretrain_metrics.json"

DEFAULT_SETS = {
    "aishell": (["train"], ["dev"]),
    "librispeech": (["train-clean-100"], ["dev-clean"]),
    "kaldi": (["train"], ["dev"]),
}


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser of the pretraining command."""
    parser = argparse.ArgumentParser(
        prog="python -m asr.bin.pretrain_teacher",
        description="Pretrain a HuBERT-style teacher on MFCC k-means labels (HuBERT's first "
        "iteration) and export it as teacher.pt.",
    )
    data = parser.add_argument_group("data")
    data.add_argument("--audio-dir", type=Path, required=True,
                      help="corpus root: the extracted AISHELL-1 directory (containing "
                      "data_aishell/), the LibriSpeech directory, or the parent of Kaldi data dirs")
    data.add_argument("--layout", choices=sorted(DEFAULT_SETS), required=True,
                      help="corpus layout of --audio-dir")
    data.add_argument("--out-dir", type=Path, required=True, help="experiment directory")
    data.add_argument("--train-sets", nargs="+", default=None,
                      help="training splits: AISHELL-1 splits, LibriSpeech subsets or Kaldi data "
                      "dirs under --audio-dir (default: train / train-clean-100 / train)")
    data.add_argument("--valid-sets", nargs="+", default=None,
                      help="held-out splits for the masked-prediction accuracy "
                      "(default: dev / dev-clean / dev)")
    data.add_argument("--overwrite", action="store_true",
                      help="replace a finished teacher.pt: refit k-means and train from scratch")

    kmeans = parser.add_argument_group("k-means labels")
    kmeans.add_argument("--clusters", type=int, default=50, help="number of k-means clusters")
    kmeans.add_argument("--kmeans-frames", type=int, default=200_000,
                        help="50 fps MFCC frames drawn from the training set to fit k-means "
                        "(0: all)")

    model = parser.add_argument_group("teacher architecture")
    arch = TeacherArch()
    model.add_argument("--conv-channels", type=int, default=arch.conv_layers[0][0],
                       help="channels of every front-end conv (kernels and strides are HuBERT's)")
    model.add_argument("--embed-dim", type=int, default=arch.embed_dim, help="Transformer width")
    model.add_argument("--layers", type=int, default=arch.num_layers, help="Transformer layers")
    model.add_argument("--heads", type=int, default=arch.num_heads, help="attention heads")
    model.add_argument("--ffn-dim", type=int, default=arch.ffn_dim, help="feed-forward width")
    model.add_argument("--pos-conv-kernel", type=int, default=arch.pos_conv_kernel,
                       help="kernel of the convolutional positional embedding, in frames")
    model.add_argument("--pos-conv-groups", type=int, default=arch.pos_conv_groups,
                       help="groups of the convolutional positional embedding")
    model.add_argument("--final-dim", type=int, default=arch.final_dim,
                       help="width of the projection compared with the cluster embeddings")

    train = parser.add_argument_group("training")
    options = PretrainOptions()
    train.add_argument("--epochs", type=int, default=3, help="training epochs")
    train.add_argument("--max-minutes", type=float, default=None,
                       help="stop training after this many minutes; the checkpoint and the "
                       "export still run")
    train.add_argument("--batch-size", type=int, default=8, help="utterances per batch")
    train.add_argument("--crop-seconds", type=float, default=6.0,
                       help="longer utterances are randomly cropped to this length")
    train.add_argument("--lr", type=float, default=options.lr, help="peak AdamW learning rate")
    train.add_argument("--warmup-steps", type=int, default=options.warmup_steps,
                       help="optimizer steps of linear warm-up before the linear decay to 0")
    train.add_argument("--weight-decay", type=float, default=options.weight_decay,
                       help="AdamW weight decay")
    train.add_argument("--dropout", type=float, default=options.dropout,
                       help="dropout of the feature projection and Transformer layers")
    train.add_argument("--mask-prob", type=float, default=options.mask_prob,
                       help="HuBERT span-start probability times span length")
    train.add_argument("--mask-length", type=int, default=options.mask_length,
                       help="mask span length in frames")
    train.add_argument("--grad-clip", type=float, default=10.0, help="gradient norm clip")
    train.add_argument("--num-workers", type=int, default=0, help="DataLoader worker processes")
    # NOTE: training runs on one device; the length-bucketed batches are not sharded for DDP.
    train.add_argument("--accelerator", default="cpu",
                       help="Lightning accelerator of the single training device (cpu, gpu, auto)")
    train.add_argument("--seed", type=int, default=0, help="seed of k-means, shuffling and masks")
    train.add_argument("--threads", type=int, default=None,
                       help="torch intra-op threads for training (default: torch's choice)")
    return parser


@contextmanager
def torch_threads(num_threads: int) -> Iterator[None]:
    """Run the enclosed block with `num_threads` torch intra-op threads, then restore the count."""
    previous = torch.get_num_threads()
    torch.set_num_threads(num_threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def list_items(audio_dir: Path, layout: str, sets: list[str]) -> list[AudioItem]:
    """List the utterances of `sets` in a corpus of the given layout."""
    if layout == "aishell":
        return aishell_items(audio_dir, sets)
    if layout == "librispeech":
        return librispeech_items(audio_dir, sets)
    items = []
    for name in sets:
        items.extend(kaldi_items(audio_dir / name))
    return items


def prepare_kmeans(
    items: list[AudioItem], path: Path, options: KMeansOptions, refit: bool
) -> KMeansModel:
    """Load the k-means model at `path`, or fit it on the training audio and save it there."""
    if path.is_file() and not refit:
        kmeans = KMeansModel.load(path)
        if kmeans.num_clusters != options.num_clusters:
            raise ValueError(
                f"{path} has {kmeans.num_clusters} clusters but --clusters is "
                f"{options.num_clusters}: pass --overwrite to refit, or choose another --out-dir."
            )
        logger.info("Reusing k-means model %s (%d clusters)", path, kmeans.num_clusters)
        return kmeans

    dataset = UnlabeledAudioDataset(items, FRONT_END_RECEPTIVE_FIELD, max_samples=None)
    feats = collect_mfcc(dataset, options.max_frames, seed=options.seed)
    kmeans = fit_kmeans(feats, options)
    kmeans.save(path)
    logger.info("Saved k-means model to %s", path)
    return kmeans


def prepare_labels(
    items: list[AudioItem], kmeans: KMeansModel, path: Path
) -> dict[str, torch.Tensor]:
    """Load the labels cached at `path`, computing those of `items` that are missing or stale."""
    cached: dict[str, torch.Tensor] = {}
    if path.is_file():
        cached = load_labels(path, kmeans) or {}
        if not cached:
            logger.info("Labels in %s come from another k-means model; recomputing", path)

    todo = [item for item in items if item.id not in cached]
    if not todo:
        logger.info("Reusing cached labels %s", path)
        return cached

    dataset = UnlabeledAudioDataset(todo, FRONT_END_RECEPTIVE_FIELD, max_samples=None)
    labels = {**cached, **compute_labels(dataset, kmeans)}
    save_labels(labels, kmeans, path)
    logger.info("Saved labels of %d utterances to %s", len(labels), path)
    return labels


def _loaders(
    args: argparse.Namespace,
    train_items: list[AudioItem],
    valid_items: list[AudioItem],
    labels: dict[str, torch.Tensor],
    arch: TeacherArch,
) -> tuple[torch.utils.data.DataLoader, torch.utils.data.DataLoader]:
    max_samples = round(args.crop_seconds * 16000)
    train_set = LabeledAudioDataset(train_items, labels, arch.num_frames, max_samples=max_samples)
    valid_set = LabeledAudioDataset(
        valid_items, labels, arch.num_frames, max_samples=max_samples, crop="start"
    )
    for name, dataset in (("training", train_set), ("validation", valid_set)):
        if len(dataset) == 0:
            raise ValueError(f"No usable {name} utterances; check --audio-dir and the sets.")

    train_lengths = [train_set.num_samples(index) for index in range(len(train_set))]
    train_loader = torch.utils.data.DataLoader(
        train_set,
        batch_sampler=BucketBatchSampler(train_lengths, args.batch_size, seed=args.seed),
        collate_fn=collate_labeled_audio,
        num_workers=args.num_workers,
        persistent_workers=args.num_workers > 0,
    )

    # Validation batches hold utterances of similar length, in a fixed order.
    order = sorted(range(len(valid_set)), key=valid_set.num_samples)
    valid_batches = [order[i : i + args.batch_size] for i in range(0, len(order), args.batch_size)]
    valid_loader = torch.utils.data.DataLoader(
        valid_set,
        batch_sampler=valid_batches,
        collate_fn=collate_labeled_audio,
        num_workers=args.num_workers,
        persistent_workers=args.num_workers > 0,
    )
    return train_loader, valid_loader


def _validate(
    trainer: L.Trainer, task: HubertPretrainTask, loader: torch.utils.data.DataLoader
) -> dict[str, float]:
    results = trainer.validate(task, dataloaders=loader, verbose=False)
    return {name: float(value) for name, value in results[0].items()}


def pretrain(args: argparse.Namespace) -> dict[str, Any]:
    """Run every stage (k-means, labels, training, export) and return the metrics record."""
    start = time.perf_counter()
    out_dir: Path = args.out_dir
    teacher_path = out_dir / TEACHER_FILE
    if teacher_path.exists() and not args.overwrite:
        raise FileExistsError(
            f"{teacher_path} exists: this experiment is finished. Pass --overwrite to pretrain "
            "again from scratch, or choose another --out-dir."
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    L.seed_everything(args.seed, workers=True)
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    train_sets, valid_sets = DEFAULT_SETS[args.layout]
    train_items = list_items(args.audio_dir, args.layout, args.train_sets or train_sets)
    valid_items = list_items(args.audio_dir, args.layout, args.valid_sets or valid_sets)
    logger.info("%d training and %d validation utterances", len(train_items), len(valid_items))

    kmeans_options = KMeansOptions(
        num_clusters=args.clusters, max_frames=args.kmeans_frames, seed=args.seed
    )
    train_ids = {item.id for item in train_items}
    all_items = train_items + [item for item in valid_items if item.id not in train_ids]
    # Per-utterance MFCC and k-means steps are too small to gain from intra-op threads, and
    # extra threads slow them down many times over when the cores are busy.
    with torch_threads(1):
        kmeans = prepare_kmeans(train_items, out_dir / KMEANS_FILE, kmeans_options, args.overwrite)
        labels = prepare_labels(all_items, kmeans, out_dir / LABELS_FILE)
    labels_seconds = time.perf_counter() - start

    counts = cluster_counts({key: value for key, value in labels.items() if key in train_ids},
                            kmeans.num_clusters)
    majority_cluster = int(counts.argmax())

    arch = TeacherArch(
        conv_layers=[(args.conv_channels, kernel, stride)
                     for _, kernel, stride in TeacherArch().conv_layers],
        embed_dim=args.embed_dim,
        num_layers=args.layers,
        num_heads=args.heads,
        ffn_dim=args.ffn_dim,
        pos_conv_kernel=args.pos_conv_kernel,
        pos_conv_groups=args.pos_conv_groups,
        final_dim=args.final_dim,
    )
    options = PretrainOptions(
        mask_prob=args.mask_prob,
        mask_length=args.mask_length,
        dropout=args.dropout,
        attention_dropout=args.dropout,
        lr=args.lr,
        weight_decay=args.weight_decay,
        warmup_steps=args.warmup_steps,
        seed=args.seed,
    )
    task = HubertPretrainTask(
        arch=arch_to_dict(arch),
        num_clusters=kmeans.num_clusters,
        options={**asdict(options), "betas": list(options.betas)},
        majority_cluster=majority_cluster,
    )
    num_parameters = sum(p.numel() for p in task.model.wav2vec2.parameters())
    logger.info("Teacher encoder: %s parameters", f"{num_parameters:,}")

    train_loader, valid_loader = _loaders(args, train_items, valid_items, labels, arch)
    ckpt_dir = out_dir / "checkpoints"
    last = ckpt_dir / "last.ckpt"
    resume_from = str(last) if last.is_file() and not args.overwrite else None
    if resume_from:
        logger.info("Resuming from %s", resume_from)

    max_time = None if args.max_minutes is None else {"seconds": round(args.max_minutes * 60)}
    trainer = L.Trainer(
        accelerator=args.accelerator,
        devices=1,
        max_epochs=args.epochs,
        max_time=max_time,
        gradient_clip_val=args.grad_clip,
        default_root_dir=str(out_dir),
        logger=CSVLogger(str(out_dir), name="csv", version=""),
        callbacks=[ModelCheckpoint(dirpath=ckpt_dir, save_top_k=0, save_last=True)],
        log_every_n_steps=10,
        num_sanity_val_steps=0,
        enable_model_summary=False,
    )

    before = _validate(trainer, task, valid_loader) if resume_from is None else {}
    train_start = time.perf_counter()
    trainer.fit(task, train_dataloaders=train_loader, val_dataloaders=valid_loader,
                ckpt_path=resume_from)
    train_seconds = time.perf_counter() - train_start
    after = _validate(trainer, task, valid_loader)

    partial = teacher_path.with_suffix(".pt.partial")
    torch.save(export_teacher(task), partial)
    os.replace(partial, teacher_path)
    logger.info("Saved teacher to %s", teacher_path)

    record = {
        "teacher": str(teacher_path),
        "parameters": num_parameters,
        "clusters": kmeans.num_clusters,
        "chance_rate": 1.0 / kmeans.num_clusters,
        "majority_rate": after.get("val/majority_rate"),
        "initial_acc_masked": before.get("val/acc_masked"),
        "initial_loss_masked": before.get("val_loss"),
        "acc_masked": after.get("val/acc_masked"),
        "loss_masked": after.get("val_loss"),
        "epochs": trainer.current_epoch,
        "steps": trainer.global_step,
        "train_utterances": len(train_loader.dataset),
        "valid_utterances": len(valid_loader.dataset),
        "labels_seconds": round(labels_seconds, 1),
        "train_seconds": round(train_seconds, 1),
        "total_seconds": round(time.perf_counter() - start, 1),
        "arch": arch_to_dict(arch),
    }
    (out_dir / METRICS_FILE).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    logger.info(
        "Held-out masked-prediction accuracy %.3f (before training %s, chance %.3f, majority "
        "cluster %.3f); training took %.0f s",
        record["acc_masked"],
        "unknown (resumed)" if not before else f"{record['initial_acc_masked']:.3f}",
        record["chance_rate"],
        record["majority_rate"],
        train_seconds,
    )
    return record


def main(argv: list[str] | None = None) -> int:
    """Parse `argv`, pretrain, print the metrics record as JSON; return the exit status."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        record = pretrain(args)
    except (FileExistsError, FileNotFoundError, ValueError) as err:
        logger.error("%s", err)
        return 1
    print(json.dumps(record, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
