"""The AISHELL-1 recipe end to end on the tiny mini corpus, and resuming a killed training run."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from lhotse import CutSet

from asr.data.mini_aishell import make_mini_aishell

REPO = Path(__file__).resolve().parents[1]
RUN_SH = REPO / "recipes" / "aishell1" / "run.sh"
MODES = ("ctc_greedy_search", "ctc_prefix_beam_search", "attention", "attention_rescoring")

pytestmark = pytest.mark.slow


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    env["PYTHON"] = sys.executable
    return env


def _run_recipe(tmp: Path, *options: str) -> subprocess.CompletedProcess:
    command = [
        "bash", str(RUN_SH), "--mini", "true", "--mini_scale", "tiny", "--model", "mini",
        "--corpus_dir", str(tmp / "download"), "--data_dir", str(tmp / "data"),
        "--exp_dir", str(tmp / "exp"), "--avg_num", "2", "--beam_size", "3", *options,
    ]
    return subprocess.run(command, env=_env(), capture_output=True, text=True, timeout=900)


TRANSCRIPT = "data_aishell/transcript/aishell_transcript_v0.8.txt"
# Defects injected into the tiny corpus; the recipe must name each one and train on the rest.
CORRUPT = "BAC009S0002W0901"
EMPTY = "BAC009S0002W0902"
STEREO_44K = "BAC009S0002W0903"
NO_AUDIO = "BAC009S0002W0904"
NO_TRANSCRIPT = "BAC009S0002W0905"
OOV_CHAR = "龘"


def _wav_bytes(samples: np.ndarray, sample_rate: int) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, samples, sample_rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def _inject_defects(corpus_dir: Path) -> None:
    """Rewrite the tiny corpus's data_aishell.tgz with one instance of every defect."""
    archive = corpus_dir / "data_aishell.tgz"
    with tarfile.open(archive) as outer:
        members = {m.name: (m, outer.extractfile(m).read() if m.isfile() else None)
                   for m in outer.getmembers()}

    # Speaker S0002 (train) gets the broken audio files and an archive member named ../x.
    speaker_name = "data_aishell/wav/S0002.tar.gz"
    rng = np.random.default_rng(0)
    speaker_buffer = io.BytesIO()
    with tarfile.open(fileobj=io.BytesIO(members[speaker_name][1])) as inner, \
            tarfile.open(fileobj=speaker_buffer, mode="w:gz") as rewritten:
        for member in inner.getmembers():
            rewritten.addfile(member, inner.extractfile(member) if member.isfile() else None)
        _add(rewritten, f"train/S0002/{CORRUPT}.wav", b"RIFF\x24\x00\x00\x00WAVEjunkjunk")
        _add(rewritten, f"train/S0002/{EMPTY}.wav", b"")
        stereo = (rng.standard_normal((44100 * 2, 2)) * 0.05).astype(np.float32)
        _add(rewritten, f"train/S0002/{STEREO_44K}.wav", _wav_bytes(stereo, 44100))
        mono = (rng.standard_normal(16000 * 2) * 0.05).astype(np.float32)
        _add(rewritten, f"train/S0002/{NO_TRANSCRIPT}.wav", _wav_bytes(mono, 16000))
        _add(rewritten, "../x", b"outside the target folder")
    members[speaker_name] = (members[speaker_name][0], speaker_buffer.getvalue())

    # Transcripts: the new utterances, one line without audio, and an OOV character in test.
    lines = members[TRANSCRIPT][1].decode("utf-8").splitlines()
    lines = [line[:-1] + OOV_CHAR if line.startswith("BAC009S0764") and i == len(lines) - 1
             else line for i, line in enumerate(lines)]
    lines += [f"{CORRUPT} 明年 云南", f"{EMPTY} 湖南 早上", f"{STEREO_44K} 珠海 年底 有 大雨",
              f"{NO_AUDIO} 大连 房企"]
    members[TRANSCRIPT] = (members[TRANSCRIPT][0], ("\n".join(sorted(lines)) + "\n").encode())

    with tarfile.open(archive, "w:gz") as outer:
        for name, (member, data) in members.items():
            if data is None:
                outer.addfile(member)
            else:
                member.size = len(data)
                outer.addfile(member, io.BytesIO(data))


@pytest.fixture(scope="module")
def recipe_run(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    tmp = tmp_path_factory.mktemp("recipe")
    make_mini_aishell(tmp / "download", scale="tiny")
    _inject_defects(tmp / "download")
    result = _run_recipe(
        tmp,
        "--stage", "1",
        "--train_opts",
        "trainer.max_epochs=2 data.loader.num_workers=0 checkpoint.every_n_train_steps=2",
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return tmp, result


def test_recipe_writes_every_stage_output(recipe_run) -> None:
    tmp, _ = recipe_run
    assert (tmp / "data" / "manifests" / "cuts_train.jsonl.gz").is_file()
    assert (tmp / "data" / "lang_char" / "tokens.txt").is_file()
    assert (tmp / "data" / "manifests" / "cmvn.json").is_file()
    assert (tmp / "exp" / "checkpoints" / "last.ckpt").is_file()
    assert (tmp / "exp" / "avg_best2.pt").is_file()


def _reported_ids(manifests: Path) -> str:
    reports = [manifests / "prepare_report.json", *manifests.glob("validation_*.json")]
    return "\n".join(path.read_text(encoding="utf-8") for path in reports)


def test_recipe_reports_each_defect(recipe_run) -> None:
    tmp, _ = recipe_run
    reported = _reported_ids(tmp / "data" / "manifests")
    for utterance in (CORRUPT, EMPTY, STEREO_44K, NO_AUDIO, NO_TRANSCRIPT):
        assert utterance in reported, utterance
    assert "../x" in reported
    oov = json.loads((tmp / "data" / "lang_char" / "oov_report.json").read_text(encoding="utf-8"))
    # The tiny training text is small, so other test characters are out of vocabulary too.
    assert OOV_CHAR in oov["test"]["utterances"]["BAC009S0764W0123"]


def test_recipe_trains_on_the_rest(recipe_run) -> None:
    tmp, _ = recipe_run
    cuts = tmp / "data" / "manifests" / "cuts_train.jsonl.gz"
    ids = set(CutSet.from_file(cuts).ids)
    assert STEREO_44K in ids
    assert CORRUPT not in ids
    assert EMPTY not in ids
    assert NO_TRANSCRIPT not in ids
    assert (tmp / "exp" / "checkpoints" / "last.ckpt").is_file()


def test_traversal_member_written_nowhere(recipe_run) -> None:
    tmp, _ = recipe_run
    # The member ../x would land next to data_aishell/wav, i.e. in data_aishell/.
    assert not (tmp / "download" / "data_aishell" / "x").exists()
    assert not (tmp / "download" / "x").exists()
    assert not list(tmp.rglob("x"))


def test_recipe_decodes_all_modes(recipe_run) -> None:
    tmp, _ = recipe_run
    decode_dir = tmp / "exp" / "decode_test_avg_best2_beam3_ctc0.5"
    ref_ids = [line.split()[0] for line in (decode_dir / "ref.txt").read_text().splitlines()]
    assert len(ref_ids) == 3
    for mode in MODES:
        hyp_lines = (decode_dir / mode / "text").read_text().splitlines()
        assert [line.split(maxsplit=1)[0] for line in hyp_lines] == ref_ids, mode


def test_recipe_prints_results_table(recipe_run) -> None:
    tmp, result = recipe_run
    table = (tmp / "exp" / "results_test.md").read_text()
    for mode in MODES:
        assert re.search(rf"\| {mode} \| \d+\.\d\d \|", table), mode
    assert "| decoding mode | CER % |" in result.stdout


def test_recipe_onnx_stages_tabulate_runtimes(recipe_run) -> None:
    tmp, _ = recipe_run
    table = (tmp / "exp" / "results_onnx_test.md").read_text(encoding="utf-8")
    for run in ("| edge | float | ctc_greedy_search |", "| edge | int8 | attention_rescoring |",
                "| sherpa | float | ctc_greedy_search |", "| sherpa | int8 | ctc_greedy_search |"):
        assert run in table, run
    onnx_dir = tmp / "exp" / "onnx_avg_best2"
    assert (onnx_dir / "model.int8.onnx").stat().st_size < (onnx_dir / "model.onnx").stat().st_size


def test_recipe_rerun_skips_done_stages(recipe_run) -> None:
    tmp, _ = recipe_run
    result = _run_recipe(tmp, "--stop_stage", "5")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Stage 1: manifests in" in result.stdout
    assert "Stage 2: tokenizer and CMVN are done, skipping" in result.stdout
    assert "Stage 3: training in" in result.stdout
    assert "exists, skipping" in result.stdout


def test_tokens_txt_starts_with_special_symbols(recipe_run) -> None:
    tmp, _ = recipe_run
    lines = (tmp / "data" / "lang_char" / "tokens.txt").read_text(encoding="utf-8").splitlines()
    assert lines[:3] == ["<blank> 0", "<unk> 1", "<sos/eos> 2"]


def test_averaged_model_keeps_cmvn(recipe_run) -> None:
    tmp, _ = recipe_run
    package = torch.load(tmp / "exp" / "avg_best2.pt", map_location="cpu", weights_only=True)
    mean = package["state_dict"]["cmvn.mean"]
    assert mean.shape == (80,)
    assert float(mean.abs().sum()) > 0.0


def _train_command(tmp: Path) -> list[str]:
    data = tmp / "data"
    return [
        sys.executable, "-m", "asr.bin.train", "model=mini", "data=mini_aishell",
        "experiment=mini", f"data.manifest_dir={data / 'manifests'}",
        f"data.loader.tokenizer={data / 'lang_char' / 'tokenizer.model'}",
        f"exp_dir={tmp / 'exp_resume'}", "trainer.max_epochs=3", "data.loader.num_workers=0",
        "data.loader.max_duration=10", "checkpoint.every_n_train_steps=1",
        "+trainer.enable_progress_bar=false",
    ]


def _global_step(path: Path) -> int:
    return int(torch.load(path, map_location="cpu", weights_only=False)["global_step"])


def test_killed_training_resumes_from_last_checkpoint(recipe_run) -> None:
    tmp, _ = recipe_run
    exp = tmp / "exp_resume"
    steps_dir = exp / "checkpoints" / "steps"

    # Kill the first run with SIGKILL as soon as a mid-epoch step checkpoint exists.
    process = subprocess.Popen(_train_command(tmp), cwd=REPO, env=_env(),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        checkpoints = list(steps_dir.glob("*.ckpt")) if steps_dir.is_dir() else []
        if checkpoints and _global_step_safe(checkpoints[0]) >= 2:
            break
        time.sleep(0.2)
    assert process.poll() is None, "training finished before it could be killed"
    process.send_signal(signal.SIGKILL)
    process.wait()
    killed_at = max(_global_step_safe(p) for p in steps_dir.glob("*.ckpt"))
    assert killed_at >= 2

    # The same command again resumes and finishes the remaining steps.
    result = subprocess.run(_train_command(tmp), cwd=REPO, env=_env(),
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Resuming from" in result.stdout + result.stderr
    final_step = _global_step(exp / "checkpoints" / "last.ckpt")

    # A run from scratch with the same settings takes as many steps in total.
    fresh = tmp / "exp_fresh"
    command = [arg if not arg.startswith("exp_dir=") else f"exp_dir={fresh}"
               for arg in _train_command(tmp)]
    reference = subprocess.run(command, cwd=REPO, env=_env(), capture_output=True, text=True,
                               timeout=600)
    assert reference.returncode == 0, reference.stderr[-3000:]
    assert final_step == _global_step(fresh / "checkpoints" / "last.ckpt")


def _global_step_safe(path: Path) -> int:
    # A checkpoint being written by the other process may be incomplete for a moment.
    try:
        return _global_step(path)
    except Exception:  # noqa: BLE001 - any read failure means "not ready yet"
        return -1


def test_ddp_on_two_cpu_processes(recipe_run) -> None:
    tmp, _ = recipe_run
    data = tmp / "data"
    command = [
        sys.executable, "-m", "asr.bin.train", "model=mini", "data=mini_aishell",
        "experiment=mini", "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2",
        "trainer.precision=32-true", f"data.manifest_dir={data / 'manifests'}",
        f"data.loader.tokenizer={data / 'lang_char' / 'tokenizer.model'}",
        f"exp_dir={tmp / 'exp_ddp'}", "trainer.max_epochs=1", "data.loader.num_workers=0",
        "data.loader.max_duration=10", "+trainer.enable_progress_bar=false",
    ]
    result = subprocess.run(command, cwd=REPO, env=_env(), capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    # The single-process run of the resume test used the same data and batch size.
    first_epoch = next((tmp / "exp_fresh" / "checkpoints" / "epochs").glob("epoch000-*.ckpt"))
    single = _global_step(first_epoch)
    ddp = _global_step(tmp / "exp_ddp" / "checkpoints" / "last.ckpt")
    # Each rank takes its own share of the epoch's batches, so the epoch has fewer steps.
    assert ddp > 0
    assert ddp < single
