"""Report how close distilled students are to their teacher on held-out audio.

Usage (from a recipe directory)::

    python -m asr.bin.distill_report --teacher exp/teacher/teacher.pt \
        --student armhubert_mini=exp/distill/armhubert_mini \
        --student maskhubert_mini=exp/distill/maskhubert_mini \
        --layout aishell --audio-dir download_mini --sets test --output exp/distill/report.md

For each student it gives the cosine similarity between every prediction head and its teacher
layer (mean over the valid frames of unmasked held-out audio) and the held-out distillation loss
after each epoch, read from the run's ``csv/metrics.csv``.
"""

from __future__ import annotations

import argparse
import csv
import logging
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from asr.bin.distill import LAYOUTS, list_audio
from asr.constants import SAMPLE_RATE
from asr.distill.audio_data import UnlabeledAudioDataset, collate_audio
from asr.distill.task import load_student
from asr.models.hubert_teacher import HubertTeacher
from asr.models.student import SSLStudent
from asr.models.teacher_checkpoint import load_teacher

logger = logging.getLogger(__name__)


@torch.inference_mode()
def head_cosine(
    student: SSLStudent, teacher: HubertTeacher, dataset: UnlabeledAudioDataset, batch_size: int
) -> list[float]:
    """Mean cosine similarity of each student head with its teacher layer over valid frames."""
    student.eval()
    teacher.eval()
    teacher_layers = [teacher_layer for _, teacher_layer in student.config.heads]
    totals = torch.zeros(len(teacher_layers), dtype=torch.float64)
    frames = 0

    indices = list(range(len(dataset)))
    for start in tqdm(range(0, len(indices), batch_size), desc=f"cosine {student.config.name}"):
        batch = [dataset[i] for i in indices[start : start + batch_size]]
        waveforms, lengths = collate_audio(batch)
        if waveforms.size(0) == 0:
            continue

        output = student(waveforms, lengths)
        targets = teacher(waveforms, lengths).layers
        valid = output.padding_mask  # (B, T') True = real frame
        for h, layer in enumerate(teacher_layers):
            cosine = F.cosine_similarity(output.predictions[h], targets[layer - 1], dim=-1)
            totals[h] += cosine[valid].double().sum()
        frames += int(valid.sum())

    if frames == 0:
        raise ValueError("No usable held-out audio: every file was skipped (see the warnings)")
    return (totals / frames).tolist()


def validation_losses(run_dir: Path) -> list[tuple[int, float]]:
    """(epochs trained, val/loss) pairs from ``run_dir/csv/metrics.csv``; empty when none were logged."""
    path = run_dir / "csv" / "metrics.csv"
    if not path.is_file():
        logger.warning("%s not found; the report has no loss curve for %s", path, run_dir)
        return []

    losses = []
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            if row.get("val/loss"):
                # Lightning counts epochs from 0; the report counts epochs trained.
                losses.append((int(row["epoch"]) + 1, float(row["val/loss"])))
    return losses


def format_report(
    names: list[str],
    students: dict[str, SSLStudent],
    cosines: dict[str, list[float]],
    losses: dict[str, list[tuple[int, float]]],
    num_files: int,
) -> str:
    """Markdown: a cosine table (rows = teacher layers) and a held-out loss table per epoch."""
    lines = [f"Held-out audio: {num_files} utterances, unmasked input.", ""]

    lines.append("Cosine similarity between each student head and its teacher layer:")
    lines.append("")
    by_layer = {
        name: {t: value for (_, t), value in zip(students[name].config.heads, cosines[name])}
        for name in names
    }
    layers = sorted({t for name in names for t in by_layer[name]})
    lines.append("| teacher layer | " + " | ".join(names) + " |")
    lines.append("|---:|" + "---:|" * len(names))
    for t in layers:
        cells = [f"{by_layer[name][t]:.3f}" if t in by_layer[name] else "" for name in names]
        lines.append(f"| {t} | " + " | ".join(cells) + " |")
    means = [sum(cosines[name]) / len(cosines[name]) for name in names]
    lines.append("| mean | " + " | ".join(f"{m:.3f}" for m in means) + " |")

    lines.append("")
    lines.append("Held-out distillation loss after each epoch (fixed validation masks):")
    lines.append("")
    epochs = sorted({epoch for name in names for epoch, _ in losses[name]})
    lines.append("| epoch | " + " | ".join(names) + " |")
    lines.append("|---:|" + "---:|" * len(names))
    for epoch in epochs:
        cells = []
        for name in names:
            value = dict(losses[name]).get(epoch)
            cells.append("" if value is None else f"{value:.4f}")
        lines.append(f"| {epoch} | " + " | ".join(cells) + " |")

    for name in names:
        curve = losses[name]
        if len(curve) >= 2:
            first, last = curve[0][1], curve[-1][1]
            verdict = "falls" if last < first else "does not fall"
            lines.append("")
            lines.append(f"{name}: held-out loss {verdict}, {first:.4f} -> {last:.4f} "
                         f"({100 * (last - first) / first:+.1f}%).")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m asr.bin.distill_report", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teacher", type=Path, required=True,
                        help="teacher.pt, fairseq HuBERT .pt or Hugging Face folder")
    parser.add_argument("--student", action="append", required=True, metavar="NAME=RUN_DIR",
                        help="a distillation run directory holding student.pt (repeatable)")
    parser.add_argument("--layout", choices=LAYOUTS, required=True, help="held-out audio layout")
    parser.add_argument("--audio-dir", type=Path, required=True, help="held-out audio root")
    parser.add_argument("--sets", nargs="+", required=True,
                        help="held-out subsets, splits or Kaldi data dirs")
    parser.add_argument("--max-seconds", type=float, default=10.0,
                        help="crop each utterance to its first N seconds (default 10)")
    parser.add_argument("--batch-size", type=int, default=8, help="utterances per batch")
    parser.add_argument("--output", type=Path, required=True, help="Markdown report to write")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    runs = {}
    for spec in args.student:
        name, sep, run_dir = spec.partition("=")
        if not sep or not name or not run_dir:
            parser.error(f"invalid --student {spec!r}: expected NAME=RUN_DIR")
        runs[name] = Path(run_dir)

    teacher = load_teacher(args.teacher)
    students = {name: load_student(run_dir / "student.pt") for name, run_dir in runs.items()}
    min_samples = max(student.min_samples for student in students.values())
    items = list_audio(args.layout, args.audio_dir, args.sets)
    dataset = UnlabeledAudioDataset(items, min_samples, int(args.max_seconds * SAMPLE_RATE), crop="start")
    if any(dataset.skipped.values()):
        logger.warning("Skipped held-out files: %s", dataset.skipped)

    cosines = {name: head_cosine(student, teacher, dataset, args.batch_size)
               for name, student in students.items()}
    losses = {name: validation_losses(run_dir) for name, run_dir in runs.items()}
    report = format_report(list(runs), students, cosines, losses, len(dataset))

    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(report, encoding="utf-8")
    print(report, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
