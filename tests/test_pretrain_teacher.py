"""MFCC label rate, k-means, label alignment and a tiny end-to-end teacher pretraining run."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio

from asr.bin.pretrain_teacher import build_parser, pretrain
from asr.constants import IGNORE_ID, SAMPLE_RATE
from asr.distill.audio_data import AudioItem
from asr.distill.mfcc_kmeans import (
    KMeansModel,
    KMeansOptions,
    compute_mfcc,
    fit_kmeans,
    label_rate_mfcc,
    num_label_frames,
)
from asr.distill.pretrain import TeacherArch, linear_warmup_decay
from asr.distill.pretrain_data import (
    BucketBatchSampler,
    LabeledAudioDataset,
    align_labels,
    collate_labeled_audio,
)
from asr.models.teacher_checkpoint import load_teacher


def _tone(seconds: float, freq: float = 440.0) -> torch.Tensor:
    t = torch.arange(round(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    return 0.5 * torch.sin(2 * math.pi * freq * t)


# --- MFCC and label rate -------------------------------------------------------------------


def test_mfcc_one_second_frames() -> None:
    # Kaldi framing with snip_edges: (16000 - 400) // 160 + 1 = 98 frames at 100 fps.
    assert compute_mfcc(_tone(1.0)).shape == (98, 39)


def test_label_rate_one_second_frames() -> None:
    # Every second 100 fps frame: ceil(98 / 2) = 49 = (16000 - 400) // 320 + 1.
    assert label_rate_mfcc(_tone(1.0)).shape == (49, 39)


def test_label_rate_matches_arch_frames() -> None:
    assert TeacherArch().num_frames(SAMPLE_RATE) == num_label_frames(SAMPLE_RATE)


def test_label_rate_matches_torchaudio_frontend() -> None:
    config = TeacherArch(conv_layers=[(8, 10, 5)] + [(8, 3, 2)] * 4 + [(8, 2, 2)] * 2)
    model = torchaudio.models.wav2vec2_model(**config.teacher_config())
    lengths = torch.tensor([16000, 16319, 16320, 16719])
    with torch.no_grad():
        _, frames = model.feature_extractor(torch.zeros(4, 16719), lengths)
    assert frames.tolist() == [num_label_frames(n) for n in lengths.tolist()]


def test_label_rate_uses_even_frames() -> None:
    waveform = _tone(0.5)
    assert torch.equal(label_rate_mfcc(waveform), compute_mfcc(waveform)[::2])


def test_mfcc_shorter_than_window_is_empty() -> None:
    assert compute_mfcc(torch.zeros(399)).shape == (0, 39)


# --- k-means -------------------------------------------------------------------------------


def _blobs() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    centers = torch.tensor([[0.0, 0.0, 0.0], [10.0, 10.0, 0.0], [-10.0, 10.0, 5.0]])
    membership = torch.arange(3).repeat_interleave(200)
    points = centers[membership] + 0.3 * torch.randn(600, 3, generator=generator)
    return points, membership, centers


def test_kmeans_recovers_blob_centres() -> None:
    points, _, centers = _blobs()
    model = fit_kmeans(points, KMeansOptions(num_clusters=3, seed=0))
    found = model.centroids * model.std + model.mean
    # Match every true centre to its nearest fitted centre.
    distances = torch.cdist(centers, found).min(dim=1).values
    assert distances.max() < 0.2


def test_kmeans_assigns_one_cluster_per_blob() -> None:
    points, membership, _ = _blobs()
    model = fit_kmeans(points, KMeansOptions(num_clusters=3, seed=0))
    ids = model.assign(points)
    pairs = {(int(blob), int(cluster)) for blob, cluster in zip(membership, ids)}
    assert len(pairs) == 3
    assert len({cluster for _, cluster in pairs}) == 3


def test_kmeans_rejects_too_few_frames() -> None:
    with pytest.raises(ValueError, match="num_clusters=5"):
        fit_kmeans(torch.randn(4, 2), KMeansOptions(num_clusters=5))


def test_kmeans_save_load_roundtrip(tmp_path: Path) -> None:
    points, _, _ = _blobs()
    model = fit_kmeans(points, KMeansOptions(num_clusters=3))
    model.save(tmp_path / "kmeans.pt")
    torch.load(tmp_path / "kmeans.pt", weights_only=True)
    loaded = KMeansModel.load(tmp_path / "kmeans.pt")
    assert torch.equal(loaded.assign(points), model.assign(points))
    assert loaded.digest() == model.digest()


# --- label alignment and batches -----------------------------------------------------------


def test_align_labels_trims() -> None:
    assert align_labels(torch.tensor([1, 2, 3, 4]), 3, "utt").tolist() == [1, 2, 3]


def test_align_labels_pads_with_last() -> None:
    assert align_labels(torch.tensor([1, 2, 3]), 5, "utt").tolist() == [1, 2, 3, 3, 3]


def test_align_labels_rejects_large_mismatch() -> None:
    with pytest.raises(ValueError, match="utt7"):
        align_labels(torch.tensor([1, 2, 3]), 6, "utt7")


def test_labeled_crop_keeps_alignment(tmp_path: Path) -> None:
    # Sample k has the value (k // 320) / 1000, so a crop's first sample gives its offset in frames.
    num_samples = 320 * 60 + 80
    samples = (np.arange(num_samples) // 320).astype(np.float32) / 1000.0
    sf.write(tmp_path / "a.wav", samples, SAMPLE_RATE, subtype="FLOAT")
    labels = {"a": torch.arange(num_label_frames(num_samples), dtype=torch.int16)}
    arch = TeacherArch()
    dataset = LabeledAudioDataset(
        [AudioItem("a", tmp_path / "a.wav")], labels, arch.num_frames, max_samples=320 * 20
    )

    torch.manual_seed(3)
    for _ in range(5):
        waveform, crop_labels = dataset[0]
        offset = round(float(waveform[0]) * 1000.0)
        assert waveform.numel() == 320 * 20
        assert crop_labels.numel() == arch.num_frames(320 * 20)
        assert crop_labels[0].item() == offset


def test_collate_pads_labels_with_ignore_id() -> None:
    batch = collate_labeled_audio(
        [(torch.ones(800), torch.tensor([1, 2])), None, (torch.ones(400), torch.tensor([3]))]
    )
    assert batch["waveforms"].shape == (2, 800)
    assert batch["lengths"].tolist() == [800, 400]
    assert batch["labels"].tolist() == [[1, 2], [3, IGNORE_ID]]


def test_bucket_sampler_yields_every_index_once() -> None:
    sampler = BucketBatchSampler(list(range(103)), batch_size=4, seed=1)
    batches = list(sampler)
    assert sorted(i for batch in batches for i in batch) == list(range(103))
    assert len(batches) == len(sampler)


def test_bucket_sampler_sorts_within_batch() -> None:
    lengths = torch.randperm(64, generator=torch.Generator().manual_seed(0)).tolist()
    for batch in BucketBatchSampler(lengths, batch_size=8):
        assert [lengths[i] for i in batch] == sorted(lengths[i] for i in batch)


def test_warmup_decay_schedule() -> None:
    assert linear_warmup_decay(0, 4, 12) == pytest.approx(0.25)
    assert linear_warmup_decay(3, 4, 12) == pytest.approx(1.0)
    assert linear_warmup_decay(8, 4, 12) == pytest.approx(0.5)
    assert linear_warmup_decay(12, 4, 12) == pytest.approx(0.0)


# --- tiny end-to-end run -------------------------------------------------------------------


def _write_corpus(root: Path, num_utterances: int) -> None:
    """Kaldi data dir of 1 s utterances, each a sequence of 0.1 s tones from a 4-tone alphabet."""
    data_dir = root / "train"
    (data_dir / "wav").mkdir(parents=True)
    generator = np.random.default_rng(0)
    freqs = np.array([300.0, 700.0, 1500.0, 3000.0])
    lines = []
    for index in range(num_utterances):
        segments = [_tone(0.1, float(f)).numpy() for f in generator.choice(freqs, size=10)]
        path = data_dir / "wav" / f"utt{index:02d}.wav"
        sf.write(path, np.concatenate(segments), SAMPLE_RATE)
        lines.append(f"utt{index:02d} {path}\n")
    (data_dir / "wav.scp").write_text("".join(lines), encoding="utf-8")


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("pretrain")
    _write_corpus(root / "corpus", num_utterances=12)
    argv = [
        "--audio-dir", str(root / "corpus"), "--layout", "kaldi", "--out-dir", str(root / "exp"),
        "--train-sets", "train", "--valid-sets", "train", "--clusters", "8",
        "--kmeans-frames", "0", "--conv-channels", "16", "--embed-dim", "32", "--layers", "2",
        "--heads", "4", "--ffn-dim", "64", "--pos-conv-kernel", "16", "--pos-conv-groups", "4",
        "--final-dim", "16", "--epochs", "2", "--batch-size", "2", "--lr", "5e-3",
        "--warmup-steps", "2", "--dropout", "0", "--mask-length", "5", "--threads", "1",
    ]
    record = pretrain(build_parser().parse_args(argv))
    return root / "exp", record


def test_pretrain_reduces_masked_loss(tiny_run: tuple[Path, dict]) -> None:
    _, record = tiny_run
    assert record["loss_masked"] < record["initial_loss_masked"]


def test_pretrain_writes_stage_files(tiny_run: tuple[Path, dict]) -> None:
    exp_dir, _ = tiny_run
    for name in ("kmeans.pt", "labels.pt", "teacher.pt", "pretrain_metrics.json"):
        assert (exp_dir / name).is_file(), name
    assert (exp_dir / "checkpoints" / "last.ckpt").is_file()


def test_teacher_file_loads_weights_only(tiny_run: tuple[Path, dict]) -> None:
    exp_dir, _ = tiny_run
    data = torch.load(exp_dir / "teacher.pt", weights_only=True)
    assert data["format"] == "reuseasr-hubert-teacher"
    assert data["version"] == 1
    assert data["mask_emb"].shape == (32,)


def test_teacher_state_dict_loads_strictly(tiny_run: tuple[Path, dict]) -> None:
    exp_dir, _ = tiny_run
    data = torch.load(exp_dir / "teacher.pt", weights_only=True)
    model = torchaudio.models.wav2vec2_model(**data["config"])
    model.load_state_dict(data["state_dict"], strict=True)


def test_teacher_config_has_no_dropout(tiny_run: tuple[Path, dict]) -> None:
    exp_dir, _ = tiny_run
    config = torch.load(exp_dir / "teacher.pt", weights_only=True)["config"]
    for key in ("encoder_projection_dropout", "encoder_attention_dropout",
                "encoder_ff_interm_dropout", "encoder_dropout", "encoder_layer_drop"):
        assert config[key] == 0.0, key
    assert config["aux_num_out"] is None


def test_teacher_loads_with_load_teacher(tiny_run: tuple[Path, dict]) -> None:
    exp_dir, _ = tiny_run
    teacher = load_teacher(exp_dir / "teacher.pt")
    data = torch.load(exp_dir / "teacher.pt", weights_only=True)
    assert torch.equal(teacher.mask_emb.detach(), data["mask_emb"])
    assert teacher.num_layers == 2


def test_pretrain_rejects_finished_teacher(tiny_run: tuple[Path, dict]) -> None:
    exp_dir, _ = tiny_run
    args = build_parser().parse_args(
        ["--audio-dir", str(exp_dir.parent / "corpus"), "--layout", "kaldi",
         "--out-dir", str(exp_dir), "--train-sets", "train", "--valid-sets", "train"]
    )
    with pytest.raises(FileExistsError, match="--overwrite"):
        pretrain(args)
