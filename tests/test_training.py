"""Warm-up schedule, checkpoint selection and averaging, the batch dataset and the config tree."""

from __future__ import annotations

import math
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from hydra import compose, initialize_config_dir
from lhotse import CutSet, Recording, SupervisionSegment

from asr.constants import IGNORE_ID
from asr.models.asr_model import ASRModel
from asr.models.config import ModelConfig, load_model_config
from asr.text.tokenizer import Tokenizer
from asr.training.checkpoint import (
    average_checkpoints,
    load_model,
    read_lightning_checkpoint,
    save_model,
    select_checkpoints,
)
from asr.training.dataset import ASRDataset, AugmentOptions
from asr.training.lr_schedule import warmup_lr_factor

REPO = Path(__file__).resolve().parents[1]


def test_warmup_rises_linearly() -> None:
    assert warmup_lr_factor(0, 100) == pytest.approx(0.01)
    assert warmup_lr_factor(49, 100) == pytest.approx(0.5)


def test_warmup_peaks_at_one() -> None:
    assert warmup_lr_factor(99, 100) == pytest.approx(1.0)


def test_warmup_decays_inverse_sqrt() -> None:
    # step 399 -> s = 400: sqrt(100 / 400) = 0.5
    assert warmup_lr_factor(399, 100) == pytest.approx(0.5)


def test_warmup_rejects_zero_steps() -> None:
    with pytest.raises(ValueError, match="warmup_steps"):
        warmup_lr_factor(0, 0)


def _tiny_config() -> dict:
    config = load_model_config("mini", vocab_size=20).to_dict()
    return config


def _write_ckpt(path: Path, config: dict, scale: float, step: int) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    model = ASRModel(ModelConfig.from_dict(config))
    state = {k: v * scale if v.is_floating_point() else v for k, v in model.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(
        {
            "state_dict": {f"model.{k}": v for k, v in state.items()},
            "hyper_parameters": {"model": config, "optim": {}, "specaugment": {}},
            "global_step": step,
        },
        path,
    )
    return state


def test_average_is_elementwise_mean(tmp_path: Path) -> None:
    config = _tiny_config()
    a = _write_ckpt(tmp_path / "a.ckpt", config, 1.0, 1)
    b = _write_ckpt(tmp_path / "b.ckpt", config, 3.0, 2)
    _, averaged = average_checkpoints([tmp_path / "a.ckpt", tmp_path / "b.ckpt"])
    key = next(k for k, v in a.items() if v.is_floating_point() and v.abs().sum() > 0)
    torch.testing.assert_close(averaged[key], (a[key] + b[key]) / 2)


def test_average_rejects_different_configs(tmp_path: Path) -> None:
    config = _tiny_config()
    other = _tiny_config()
    other["lsm_weight"] = 0.2
    _write_ckpt(tmp_path / "a.ckpt", config, 1.0, 1)
    _write_ckpt(tmp_path / "b.ckpt", other, 1.0, 2)
    with pytest.raises(ValueError, match="different model config"):
        average_checkpoints([tmp_path / "a.ckpt", tmp_path / "b.ckpt"])


def test_select_best_by_validation_loss(tmp_path: Path) -> None:
    config = _tiny_config()
    for name in ("epoch000-step5-val_loss9.5000", "epoch001-step10-val_loss3.2500",
                 "epoch002-step15-val_loss4.0000"):
        _write_ckpt(tmp_path / "best" / f"{name}.ckpt", config, 1.0, 1)
    chosen = select_checkpoints(tmp_path, "best", 2)
    assert [p.name for p in chosen] == [
        "epoch001-step10-val_loss3.2500.ckpt",
        "epoch002-step15-val_loss4.0000.ckpt",
    ]


def test_select_last_by_step(tmp_path: Path) -> None:
    config = _tiny_config()
    for name in ("epoch009-step90", "epoch010-step100", "epoch011-step110"):
        _write_ckpt(tmp_path / "epochs" / f"{name}.ckpt", config, 1.0, 1)
    chosen = select_checkpoints(tmp_path, "last", 2)
    assert [p.name for p in chosen] == ["epoch010-step100.ckpt", "epoch011-step110.ckpt"]


def test_select_without_checkpoints_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="No checkpoints"):
        select_checkpoints(tmp_path, "best", 3)


def test_saved_model_loads_weights_only(tmp_path: Path) -> None:
    config = _tiny_config()
    state = _write_ckpt(tmp_path / "a.ckpt", config, 2.0, 1)
    save_model(tmp_path / "model.pt", config, state)
    model = load_model(tmp_path / "model.pt")
    key = next(iter(state))
    torch.testing.assert_close(model.state_dict()[key], state[key])
    assert not model.training


def test_lightning_checkpoint_strips_prefix(tmp_path: Path) -> None:
    config = _tiny_config()
    state = _write_ckpt(tmp_path / "a.ckpt", config, 1.0, 1)
    read_config, read_state = read_lightning_checkpoint(tmp_path / "a.ckpt")
    assert read_config == config
    assert set(read_state) == set(state)


def _cuts(tmp_path: Path) -> CutSet:
    cuts = []
    rng = np.random.default_rng(0)
    for index, (seconds, text) in enumerate([(1.0, "你好"), (1.5, "今天天气")]):
        path = tmp_path / f"utt{index}.wav"
        sf.write(path, (rng.standard_normal(int(16000 * seconds)) * 0.1).astype(np.float32),
                 16000, subtype="PCM_16")
        recording = Recording.from_file(path, recording_id=f"utt{index}")
        cut = recording.to_cut()
        cut.supervisions = [SupervisionSegment(id=f"utt{index}", recording_id=f"utt{index}",
                                               start=0.0, duration=recording.duration, text=text)]
        cuts.append(cut)
    return CutSet.from_cuts(cuts)


@pytest.fixture()
def tokenizer(tmp_path: Path) -> Tokenizer:
    return Tokenizer.train(["你好", "今天天气"], tmp_path / "tok")


def test_dataset_pads_features_and_tokens(tmp_path: Path, tokenizer: Tokenizer) -> None:
    batch = ASRDataset(tokenizer)[_cuts(tmp_path)]
    # Sorted longest first: 1.5 s -> (24000 + 80) // 160 = 150 frames, 1.0 s -> 100 frames.
    assert batch["feats"].shape == (2, 150, 80)
    assert batch["feat_lens"].tolist() == [150, 100]
    assert batch["token_lens"].tolist() == [4, 2]
    assert batch["tokens"][1, 2:].tolist() == [IGNORE_ID, IGNORE_ID]
    assert batch["texts"] == ["今天天气", "你好"]


def test_dataset_speed_perturbation_changes_length(tmp_path: Path, tokenizer: Tokenizer) -> None:
    dataset = ASRDataset(tokenizer, augment=AugmentOptions(speed_factors=(1.1,), dither=0.0))
    batch = dataset[_cuts(tmp_path)]
    # Speed 1.1 shortens 1.5 s to about 1.364 s: about 136 frames instead of 150.
    assert batch["feat_lens"][0] < 150
    assert math.isclose(int(batch["feat_lens"][0]), 136, abs_tol=1)


@pytest.mark.parametrize("model", ["mini", "brst", "brst_adm", "universal", "transformer"])
def test_train_config_composes(model: str) -> None:
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[f"model={model}", "trainer=ddp"])
    assert cfg.trainer.strategy == "ddp"
    ModelConfig.from_dict({**cfg.model, "vocab_size": 100})


def test_mini_experiment_overrides_schedule() -> None:
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose(config_name="train", overrides=["experiment=mini"])
    assert cfg.data.manifest_dir == "data_mini/manifests"
    assert cfg.optim.warmup_steps < 25000


def test_parse_options_rejects_unknown_flag(tmp_path: Path) -> None:
    script = tmp_path / "script.sh"
    script.write_text(f'stage=0\n. "{REPO}/tools/parse_options.sh"\necho "stage=$stage"\n')
    ok = subprocess.run(["bash", str(script), "--stage", "3"], capture_output=True, text=True)
    assert ok.stdout.strip() == "stage=3"
    bad = subprocess.run(["bash", str(script), "--stgae", "3"], capture_output=True, text=True)
    assert bad.returncode == 1
    assert "unknown option --stgae" in bad.stderr
