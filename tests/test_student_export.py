"""A distilled student exported to ONNX, and wrapped as an s3prl-style upstream."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest
import torch

from asr.distill.task import save_student
from asr.models.student import SSLStudent
from asr.models.upstream import DOWNSAMPLE_RATE, StudentUpstream
from asr_onnx.student import StudentParityOptions, check_student_parity, export_student, main
from tests.test_student import tiny_config

# Shorter than the defaults: the tiny model needs no 30 s check to show dynamic axes.
PARITY = StudentParityOptions(lengths=(400, 3_200, 24_000), batch_lengths=(8_000, 2_000, 800))


@pytest.fixture(scope="module")
def student() -> SSLStudent:
    torch.manual_seed(0)
    return SSLStudent(tiny_config()).eval()


@pytest.fixture(scope="module")
def exported(student: SSLStudent, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("student") / "student.onnx"
    export_student(student, path, comment="tiny test student")
    return path


def test_export_parity_lengths(student: SSLStudent, exported: Path) -> None:
    assert check_student_parity(student, exported, PARITY) < 1e-4


def test_export_metadata(exported: Path) -> None:
    metadata = {p.key: p.value for p in onnx.load(str(exported)).metadata_props}
    assert (metadata["model_type"], metadata["num_layers"], metadata["frame_stride"]) == (
        "hubert_student", "4", "320")


def test_export_io_names(exported: Path) -> None:
    graph = onnx.load(str(exported)).graph
    names = ([i.name for i in graph.input], [o.name for o in graph.output])
    assert names == (["waveforms", "lengths"], ["hidden_states", "frame_lengths"])


def test_cli_refuses_overwrite(student: SSLStudent, tmp_path: Path) -> None:
    save_student(student, tmp_path / "student.pt")
    output = tmp_path / "student.onnx"
    output.write_bytes(b"keep me")
    with pytest.raises(SystemExit, match="--overwrite"):
        main(["--student", str(tmp_path / "student.pt"), "--output", str(output)])
    assert output.read_bytes() == b"keep me"


def test_upstream_hidden_state_count(student: SSLStudent) -> None:
    upstream = StudentUpstream(student)
    hidden = upstream([torch.randn(16_000), torch.randn(8_000)])["hidden_states"]
    # The first layer's input, then each of the 4 layers.
    assert len(hidden) == 5
    assert hidden[0].shape == (2, 49, 48)


def test_upstream_padding_invariant(student: SSLStudent) -> None:
    upstream = StudentUpstream(student)
    short = torch.randn(8_000)
    with torch.no_grad():
        alone = upstream([short])["hidden_states"][-1][0]
        batched = upstream([torch.randn(16_000), short])["hidden_states"][-1][1]
    torch.testing.assert_close(batched[: alone.size(0)], alone, atol=1e-5, rtol=1e-4)
    assert batched[alone.size(0):].abs().max() == 0


def test_upstream_rejects_short(student: SSLStudent) -> None:
    with pytest.raises(ValueError, match="fewer than 400 samples"):
        StudentUpstream(student)([torch.randn(16_000), torch.randn(100)])


def test_upstream_downsample_rate(student: SSLStudent) -> None:
    assert StudentUpstream(student).get_downsample_rates("hidden_states") == DOWNSAMPLE_RATE
