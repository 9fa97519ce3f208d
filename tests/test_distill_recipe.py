"""The distillation recipe end to end on the tiny mini corpus: teacher, two students, report."""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from asr.distill.task import load_student
from asr.models.teacher_checkpoint import load_teacher

REPO = Path(__file__).resolve().parents[1]
RUN_SH = REPO / "recipes" / "librispeech" / "run.sh"
STUDENTS = ("armhubert_mini", "maskhubert_mini")

pytestmark = pytest.mark.slow


def _run(tmp: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    env["PYTHON"] = sys.executable
    command = ["bash", str(RUN_SH), "--mini", "true", "--mini_scale", "tiny",
               "--corpus_dir", str(tmp / "download"), "--exp_dir", str(tmp / "exp"),
               "--teacher_epochs", "1", "--distill_epochs", "2"]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def recipe(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess]:
    tmp = tmp_path_factory.mktemp("distill_recipe")
    done = _run(tmp)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return tmp / "exp", done


def test_recipe_teacher_loads(recipe) -> None:
    exp, _ = recipe
    assert load_teacher(exp / "teacher" / "teacher.pt").num_layers == 4


def test_recipe_students_load(recipe) -> None:
    exp, _ = recipe
    for name in STUDENTS:
        assert load_student(exp / "distill" / name / "student.pt").config.name == name


def test_recipe_student_is_weights_only(recipe) -> None:
    exp, _ = recipe
    checkpoint = torch.load(exp / "distill" / STUDENTS[0] / "student.pt", weights_only=True)
    assert checkpoint["config"]["reuse"] == [False, True, False, True]


def test_recipe_report_cosines(recipe) -> None:
    exp, _ = recipe
    report = (exp / "distill" / "report.md").read_text()
    cosine_table = report.split("Cosine similarity")[1].split("\n\n")[1]
    rows = [line for line in cosine_table.splitlines() if re.match(r"\| [1-4] \|", line)]
    assert len(rows) == 4
    values = [float(v) for row in rows for v in row.strip("| ").split(" | ")[1:]]
    assert all(-1.0 <= v <= 1.0 for v in values)


def test_recipe_heldout_loss_falls(recipe) -> None:
    exp, _ = recipe
    report = (exp / "distill" / "report.md").read_text()
    for name in STUDENTS:
        assert f"{name}: held-out loss falls" in report


def test_recipe_exports_students(recipe) -> None:
    exp, _ = recipe
    for name in STUDENTS:
        assert (exp / "distill" / name / "student.onnx").stat().st_size > 0


def test_recipe_rerun_skips(recipe) -> None:
    exp, _ = recipe
    again = _run(exp.parent)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count("skipping") == 1 + 1 + len(STUDENTS)


def _global_step(path: Path) -> int:
    return torch.load(path, map_location="cpu", weights_only=False)["global_step"]


def _distill(exp: Path, run_dir: Path, *overrides: str) -> subprocess.CompletedProcess:
    download = exp.parent / "download"
    command = [
        sys.executable, "-m", "asr.bin.distill", "student=armhubert_mini",
        f"teacher={exp / 'teacher' / 'teacher.pt'}", "distill_data=aishell",
        f"distill_data.root={download}", "distill_data.batch_size=4", "distill_data.max_seconds=4",
        "distill_data.num_workers=0", f"exp_dir={run_dir}", "trainer.max_epochs=1",
        "+trainer.enable_progress_bar=false", *overrides,
    ]
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO)
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)


def _num_train_files(exp: Path) -> int:
    return len(list((exp.parent / "download" / "data_aishell" / "wav" / "train").rglob("*.wav")))


def test_distill_ddp_two_cpu_processes(recipe) -> None:
    exp, _ = recipe
    run_dir = exp / "distill_ddp"
    done = _distill(exp, run_dir, "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2",
                    "trainer.precision=32-true")
    assert done.returncode == 0, done.stderr[-3000:]
    # Each rank takes half of the files, in batches of 4: one epoch is that many steps.
    per_rank = math.ceil(_num_train_files(exp) / 2)
    assert _global_step(run_dir / "checkpoints" / "last.ckpt") == math.ceil(per_rank / 4)


def test_distill_bf16_accumulation(recipe) -> None:
    exp, _ = recipe
    run_dir = exp / "distill_bf16"
    done = _distill(exp, run_dir, "trainer.precision=bf16-mixed",
                    "trainer.accumulate_grad_batches=2")
    assert done.returncode == 0, done.stderr[-3000:]
    # One process, batches of 4, two batches per optimizer step.
    batches = math.ceil(_num_train_files(exp) / 4)
    assert _global_step(run_dir / "checkpoints" / "last.ckpt") == math.ceil(batches / 2)
    assert (run_dir / "student.pt").is_file()
