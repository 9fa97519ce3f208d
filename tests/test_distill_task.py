"""Tests of the Lightning distillation task with a tiny real teacher and student."""

from __future__ import annotations

import logging

import lightning as L
import pytest
import soundfile as sf
import torch

from asr.distill.audio_data import AudioDataModule, AudioItem
from asr.distill.task import (
    DistillOptions,
    DistillTask,
    linear_warmup_decay_factor,
    load_student,
    save_student,
)
from asr.models.hubert_teacher import HubertTeacher, hubert_base_config
from asr.models.student import SSLStudent
from asr.models.student_config import StudentConfig

# training_step logs, which Lightning warns about outside a Trainer.
pytestmark = pytest.mark.filterwarnings("ignore:You are trying to `self.log")


# Both front ends have a total stride of 320 samples and a receptive field of 400 samples.
TEACHER_CONV = [(16, 10, 5)] + [(16, 3, 2)] * 4 + [(16, 2, 2)] * 2
STUDENT_DIM = 24


def _teacher(seed: int = 0) -> HubertTeacher:
    torch.manual_seed(seed)
    config = hubert_base_config()
    config.update(
        extractor_conv_layer_config=TEACHER_CONV,
        encoder_embed_dim=32,
        encoder_pos_conv_kernel=16,
        encoder_pos_conv_groups=4,
        encoder_num_layers=3,
        encoder_num_heads=4,
        encoder_ff_interm_features=64,
    )
    return HubertTeacher(config)


def _student(heads=((1, 1), (2, 2), (2, 3)), seed: int = 1, **overrides) -> SSLStudent:
    torch.manual_seed(seed)
    fields = dict(
        name="tiny",
        conv_layers=[(8, 10, 5), (16, 1, 1)] + [(16, 3, 2)] * 4
        + [(STUDENT_DIM, 1, 1)] + [(STUDENT_DIM, 2, 2)] * 2,
        embed_dim=STUDENT_DIM,
        ffn_dim=48,
        num_layers=2,
        num_heads=4,
        reuse=[False, True],
        pos_conv_kernel=16,
        pos_conv_groups=4,
        head_dim=32,
        heads=[list(pair) for pair in heads],
        dropout=0.0,
        attention_dropout=0.0,
        activation_dropout=0.0,
        input_dropout=0.0,
    )
    fields.update(overrides)
    return SSLStudent(StudentConfig(**fields))


def _utterances(count: int, seed: int) -> list[torch.Tensor]:
    """Noisy harmonic tones of 0.5 to 0.8 s, so teacher layers carry structure."""
    generator = torch.Generator().manual_seed(seed)
    utterances = []
    for i in range(count):
        num_samples = 8000 + 800 * (i % 4)
        t = torch.arange(num_samples) / 16000
        pitch = 120 + 40 * i
        wave = sum(torch.sin(2 * torch.pi * pitch * k * t) / k for k in (1, 2, 3))
        utterances.append(0.3 * wave + 0.05 * torch.randn(num_samples, generator=generator))
    return utterances


def _batches(utterances: list[torch.Tensor], batch_size: int):
    batches = []
    for start in range(0, len(utterances), batch_size):
        chunk = utterances[start : start + batch_size]
        lengths = torch.tensor([u.numel() for u in chunk])
        waveforms = torch.zeros(len(chunk), int(lengths.max()))
        for row, utterance in enumerate(chunk):
            waveforms[row, : utterance.numel()] = utterance
        batches.append((waveforms, lengths))
    return batches


def _options(**overrides) -> DistillOptions:
    fields = dict(mask_span=4, lr=2e-3, warmup_fraction=0.1, total_steps=40)
    fields.update(overrides)
    return DistillOptions(**fields)


def _trainer(max_epochs: int) -> L.Trainer:
    return L.Trainer(
        accelerator="cpu",
        devices=1,
        max_epochs=max_epochs,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_train_batches=4,
        limit_val_batches=2,
    )


def test_lr_factor_warmup_then_decay():
    # 10 warm-up steps of 100: factor (s + 1) / 10, then (100 - s) / 90.
    assert linear_warmup_decay_factor(0, 10, 100) == pytest.approx(0.1)
    assert linear_warmup_decay_factor(9, 10, 100) == pytest.approx(1.0)
    assert linear_warmup_decay_factor(10, 10, 100) == pytest.approx(1.0)
    assert linear_warmup_decay_factor(55, 10, 100) == pytest.approx(0.5)
    assert linear_warmup_decay_factor(100, 10, 100) == 0.0
    assert linear_warmup_decay_factor(150, 10, 100) == 0.0


def test_task_default_weights():
    task = DistillTask(_student(), _teacher(), _options())
    # The teacher has 3 layers, so layer 3 is the last one and gets weight 1.0.
    assert task.weights == [0.1, 0.1, 1.0]
    assert task.head_names == ["s1_t1", "s2_t2", "s2_t3"]


def test_task_distilhubert_default_weights():
    task = DistillTask(_student(), _teacher(), _options(loss="distilhubert"))
    assert task.weights == [1.0, 1.0, 1.0]


def test_task_rejects_weight_count():
    with pytest.raises(ValueError, match="one weight per head"):
        DistillTask(_student(), _teacher(), _options(weights=[1.0]))


def test_task_rejects_missing_teacher_layer():
    with pytest.raises(ValueError, match="teacher layer 4"):
        DistillTask(_student(heads=((2, 4),)), _teacher(), _options())


def test_task_rejects_frame_mismatch():
    # A front end of stride 160 (10 ms) gives twice the frames of the 20 ms teacher.
    student = _student(conv_layers=[(8, 10, 5)] + [(16, 3, 2)] * 4 + [(STUDENT_DIM, 2, 2)])
    with pytest.raises(ValueError, match="frames but the teacher gives"):
        DistillTask(student, _teacher(), _options())


def test_task_teacher_stays_eval():
    task = DistillTask(_student(), _teacher(), _options())
    task.train()
    assert task.student.training
    assert not task.teacher.training
    assert not any(p.requires_grad for p in task.teacher.parameters())


def test_training_step_gradients_masking():
    task = DistillTask(_student(), _teacher(), _options())
    task.train()
    loss = task.training_step(_batches(_utterances(3, seed=0), 3)[0], 0)
    loss.backward()

    assert torch.isfinite(loss)
    for name, parameter in task.teacher.named_parameters():
        assert parameter.grad is None, f"teacher parameter {name} got a gradient"
    for name, parameter in task.student.named_parameters():
        assert parameter.grad is not None, f"student parameter {name} got no gradient"
        assert parameter.grad.abs().sum() > 0, f"student parameter {name} has a zero gradient"
    # The reusing layer has no query/key projections of its own.
    assert task.student.layers[1].self_attn.linear_q is None


def test_training_step_gradients_distilhubert():
    task = DistillTask(_student(), _teacher(), _options(loss="distilhubert"))
    task.train()
    loss = task.training_step(_batches(_utterances(3, seed=0), 3)[0], 0)
    loss.backward()

    # Without masking the mask embedding is never used.
    assert task.student.mask_emb.grad is None
    assert task.student.heads[0].weight.grad is not None
    assert all(p.grad is None for p in task.teacher.parameters())


def test_training_step_skips_empty_batch(caplog):
    task = DistillTask(_student(), _teacher(), _options())
    with caplog.at_level(logging.WARNING, logger="asr.distill.task"):
        result = task.training_step((torch.zeros(0, 0), torch.zeros(0, dtype=torch.long)), 5)
    assert result is None
    assert "batch 5" in caplog.text


def test_validation_mask_is_fixed_per_batch():
    task = DistillTask(_student(), _teacher(), _options())
    task.eval()
    batch = _batches(_utterances(3, seed=0), 3)[0]
    first = task.validation_step(batch, 3)
    again = task.validation_step(batch, 3)
    other = task.validation_step(batch, 4)
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


def _audio_items(tmp_path, name: str, count: int, seed: int) -> list[AudioItem]:
    items = []
    for i, utterance in enumerate(_utterances(count, seed)):
        path = tmp_path / name / f"{name}{i}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(str(path), utterance.numpy(), 16000)
        items.append(AudioItem(path.stem, path))
    return items


def test_distill_run_lowers_val_loss(tmp_path):
    data = AudioDataModule(
        _audio_items(tmp_path, "train", 16, seed=1),
        _audio_items(tmp_path, "valid", 8, seed=2),
        batch_size=4,
        min_samples=400,
        max_samples=12000,
    )
    teacher = _teacher()
    teacher_before = {k: v.clone() for k, v in teacher.state_dict().items()}
    task = DistillTask(_student(), teacher, _options())

    before = _trainer(2).validate(task, data, verbose=False)[0]["val/loss"]
    trainer = _trainer(2)
    trainer.fit(task, data)
    after = float(trainer.callback_metrics["val/loss"])

    assert after < 0.9 * before
    for key, value in teacher.state_dict().items():
        assert torch.equal(value, teacher_before[key]), f"teacher tensor {key} changed"
    assert not task.teacher.training


def test_lightning_checkpoint_has_no_teacher(tmp_path):
    task = DistillTask(_student(), _teacher(), _options())
    trainer = _trainer(1)
    loader = torch.utils.data.DataLoader(_batches(_utterances(4, seed=3), 2), batch_size=None)
    trainer.fit(task, loader)
    path = tmp_path / "last.ckpt"
    trainer.save_checkpoint(path)

    checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    assert not any(key.startswith("teacher.") for key in checkpoint["state_dict"])

    restored = DistillTask(_student(seed=9), _teacher(), _options())
    restored.on_load_checkpoint(checkpoint)
    restored.load_state_dict(checkpoint["state_dict"])
    for key, value in task.student.state_dict().items():
        assert torch.equal(restored.student.state_dict()[key], value)


def test_save_load_student_round_trip(tmp_path):
    student = _student()
    path = tmp_path / "student.pt"
    save_student(student, path)

    loaded = load_student(path)
    assert loaded.config == student.config
    waveforms, lengths = _batches(_utterances(2, seed=4), 2)[0]
    student.eval()
    loaded.eval()
    expected = student(waveforms, lengths).predictions[2]
    assert torch.equal(loaded(waveforms, lengths).predictions[2], expected)
    assert torch.load(path, weights_only=True)["format"] == "reuseasr-ssl-student"


def test_load_student_rejects_other_file(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"state_dict": {}}, path)
    with pytest.raises(ValueError, match="not a student checkpoint"):
        load_student(path)
