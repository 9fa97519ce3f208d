"""Export a distilled HuBERT student to ONNX and check it against PyTorch.

Usage::

    python -m asr_onnx.student --student exp_mini/distill/armhubert_mini/student.pt \
        --output exp_mini/distill/armhubert_mini/student.onnx

``student.onnx`` takes ``waveforms`` float32 (N, S) at 16 kHz, zero-padded, and ``lengths``
int64 (N,) in samples, S >= 400. It returns ``hidden_states`` float32 (L + 1, N, T', D), the
input of the first Transformer layer followed by every layer's output (what a SUPERB-style
downstream weighs), and ``frame_lengths`` int64 (N,), with one frame per 320 samples. The
prediction heads are left out: they exist for distillation only.
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

from asr.distill.task import load_student
from asr.models.student import SSLStudent
from asr_onnx.exporter import MIN_OPSET, ParityError, QuietExporter

logger = logging.getLogger(__name__)

MODEL_TYPE = "hubert_student"


@dataclass
class StudentParityOptions:
    """Inputs and tolerance of the ONNX Runtime vs PyTorch check of a student.

    Attributes:
        lengths: single-utterance lengths in samples, each >= 400 (the last is 30 s).
        batch_lengths: lengths of one zero-padded batch.
        tolerance: largest allowed absolute difference of hidden states on valid frames.
        seed: seed of the random waveforms.
    """

    lengths: tuple[int, ...] = (400, 3_200, 48_000, 480_000)
    batch_lengths: tuple[int, ...] = (16_000, 4_000, 800)
    tolerance: float = 1e-3
    seed: int = 0


class StudentExportModule(nn.Module):
    """The graph of student.onnx: every hidden state of `student`, stacked, and frame lengths."""

    def __init__(self, student: SSLStudent) -> None:
        super().__init__()
        self.student = student

    def forward(
        self, waveforms: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, S), (N,) -> (L + 1, N, T', D), (N,)."""
        output = self.student(waveforms, lengths)
        return torch.stack(output.hidden_states), output.lengths


def export_student(student: SSLStudent, path: Path, comment: str = "", opset: int = MIN_OPSET) -> None:
    """Write `student` to the ONNX file `path` with dynamic batch and time axes and metadata."""
    example = (torch.randn(2, 16_000), torch.tensor([16_000, 9_000]))
    dynamic = torch.export.Dim.AUTO
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad(), QuietExporter():
        program = torch.onnx.export(
            StudentExportModule(student).eval(),
            example,
            input_names=["waveforms", "lengths"],
            output_names=["hidden_states", "frame_lengths"],
            dynamic_shapes={"waveforms": {0: dynamic, 1: dynamic}, "lengths": {0: dynamic}},
            opset_version=opset,
            dynamo=True,
            optimize=True,
            verbose=False,
        )

    proto = program.model_proto
    config = student.config
    onnx.helper.set_model_props(proto, {
        "model_type": MODEL_TYPE,
        "name": config.name,
        "embed_dim": str(config.embed_dim),
        "num_layers": str(config.num_layers),
        "frame_stride": "320",
        "sample_rate": "16000",
        "comment": comment,
    })
    onnx.save(proto, str(path))
    onnx.checker.check_model(str(path))
    logger.info("Wrote %s", path)


def check_student_parity(
    student: SSLStudent, path: Path, options: StudentParityOptions = StudentParityOptions()
) -> float:
    """Compare student.onnx with PyTorch on `options.lengths` and one padded batch.

    Returns:
        the largest absolute difference of hidden states over valid frames.

    Raises:
        ParityError: when frame lengths differ or the difference exceeds `options.tolerance`.
    """
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    module = StudentExportModule(student).eval()
    generator = torch.Generator().manual_seed(options.seed)
    cases = [(length,) for length in options.lengths] + [tuple(options.batch_lengths)]

    worst = 0.0
    for case in cases:
        lengths = torch.tensor(case)
        waveforms = torch.randn(len(case), max(case), generator=generator)
        waveforms = waveforms * (torch.arange(max(case))[None, :] < lengths[:, None])
        with torch.no_grad():
            expected, expected_lengths = module(waveforms, lengths)
        hidden, frame_lengths = session.run(
            None, {"waveforms": waveforms.numpy(), "lengths": lengths.numpy()}
        )

        if not np.array_equal(frame_lengths, expected_lengths.numpy()):
            raise ParityError(
                f"{path}: frame_lengths {frame_lengths.tolist()} differ from PyTorch's "
                f"{expected_lengths.tolist()} for {list(case)} samples; re-export the student"
            )
        valid = torch.arange(expected.size(2))[None, :] < expected_lengths[:, None]  # (N, T')
        diff = float((torch.from_numpy(hidden) - expected).abs()[:, valid].max())
        logger.info("Parity %s, lengths %s: max |diff| %.2e", path.name, list(case), diff)
        worst = max(worst, diff)

    if worst > options.tolerance:
        raise ParityError(
            f"{path}: ONNX Runtime hidden states differ from PyTorch by up to {worst:.3e}, above "
            f"the tolerance {options.tolerance:.1e}; the exported graph is wrong for some lengths"
        )
    return worst


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m asr_onnx.student",
        description="Export a distilled student (student.pt) to ONNX: hidden states of every "
        "layer from 16 kHz waveforms, checked against PyTorch.",
    )
    parser.add_argument("--student", type=Path, required=True, help="student.pt of a distillation run")
    parser.add_argument("--output", type=Path, required=True, help="ONNX file to write")
    parser.add_argument("--opset", type=int, default=MIN_OPSET,
                        help=f"ONNX opset, at least {MIN_OPSET} (default {MIN_OPSET})")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for name in ("asr", "asr_onnx", __name__):
        logging.getLogger(name).setLevel(logging.INFO)

    if args.output.exists() and not args.overwrite:
        raise SystemExit(f"error: {args.output} exists; pass --overwrite to replace it")
    try:
        student = load_student(args.student)
        export_student(student, args.output, comment=f"student {student.config.name} from {args.student}",
                       opset=args.opset)
        diff = check_student_parity(student, args.output)
    except (FileNotFoundError, ValueError, ParityError) as e:
        raise SystemExit(f"error: {e}") from e
    print(f"{args.output} ({args.output.stat().st_size / 2**20:.2f} MiB), max |diff| vs PyTorch {diff:.2e}")


if __name__ == "__main__":
    main()
