"""Tests of the unlabeled audio readers, dataset, collate function and data module."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from asr.distill.audio_data import (
    AudioDataModule,
    AudioItem,
    UnlabeledAudioDataset,
    aishell_items,
    collate_audio,
    kaldi_items,
    librispeech_items,
)


def _write(path: Path, samples: np.ndarray, sample_rate: int = 16000) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), samples, sample_rate)
    return path


def _ramp(num_samples: int) -> np.ndarray:
    """Distinct, exactly representable 16-bit values, so read-back can be compared exactly."""
    return (np.arange(num_samples) % 1000 - 500).astype(np.float32) / 1024


def _librispeech_tree(root: Path) -> None:
    base = root / "LibriSpeech"
    _write(base / "train-clean-100/19/198/19-198-0001.flac", _ramp(800))
    _write(base / "train-clean-100/19/198/19-198-0000.flac", _ramp(900))
    _write(base / "train-clean-100/26/495/26-495-0000.flac", _ramp(700))
    _write(base / "dev-clean/84/121123/84-121123-0000.flac", _ramp(600))


def test_librispeech_items_parent_root(tmp_path):
    _librispeech_tree(tmp_path)
    items = librispeech_items(tmp_path, ["train-clean-100", "dev-clean"])
    assert [item.id for item in items] == [
        "19-198-0000", "19-198-0001", "26-495-0000", "84-121123-0000"
    ]
    assert items[0].path.suffix == ".flac"


def test_librispeech_items_release_root(tmp_path):
    _librispeech_tree(tmp_path)
    items = librispeech_items(tmp_path / "LibriSpeech", "dev-clean")
    assert [item.id for item in items] == ["84-121123-0000"]


def test_librispeech_items_missing_subset(tmp_path):
    _librispeech_tree(tmp_path)
    with pytest.raises(FileNotFoundError, match="train-other-500"):
        librispeech_items(tmp_path, ["train-other-500"])


def _aishell_tree(corpus: Path) -> None:
    wav = corpus / "data_aishell" / "wav"
    _write(wav / "train/S0002/BAC009S0002W0123.wav", _ramp(500))
    _write(wav / "train/S0002/BAC009S0002W0122.wav", _ramp(500))
    _write(wav / "train/S0003/BAC009S0003W0121.wav", _ramp(500))
    _write(wav / "dev/S0724/BAC009S0724W0121.wav", _ramp(500))


def test_aishell_items_corpus_root(tmp_path):
    _aishell_tree(tmp_path)
    items = aishell_items(tmp_path, ["train"])
    assert [item.id for item in items] == [
        "BAC009S0002W0122", "BAC009S0002W0123", "BAC009S0003W0121"
    ]


def test_aishell_items_data_aishell_root(tmp_path):
    _aishell_tree(tmp_path)
    items = aishell_items(tmp_path / "data_aishell", ["dev"])
    assert [item.id for item in items] == ["BAC009S0724W0121"]


def test_aishell_items_missing_split(tmp_path):
    _aishell_tree(tmp_path)
    with pytest.raises(FileNotFoundError, match="wav/test"):
        aishell_items(tmp_path, ["test"])


def test_aishell_items_not_extracted(tmp_path):
    (tmp_path / "data_aishell.tgz").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="Extract the archives"):
        aishell_items(tmp_path)


def test_kaldi_items_wav_scp(tmp_path):
    a = _write(tmp_path / "audio/a.wav", _ramp(400))
    b = _write(tmp_path / "audio/b.wav", _ramp(400))
    data = tmp_path / "data"
    data.mkdir()
    (data / "wav.scp").write_text(f"utt_b {b}\nutt_a {a}\n", encoding="utf-8")
    items = kaldi_items(data)
    assert [(item.id, item.path) for item in items] == [("utt_a", a), ("utt_b", b)]


def test_kaldi_items_segments(tmp_path):
    a = _write(tmp_path / "a.wav", _ramp(32000))
    (tmp_path / "wav.scp").write_text(f"rec {a}\n", encoding="utf-8")
    (tmp_path / "segments").write_text("rec-1 rec 0.5 1.25\nrec-2 rec 1.5 -1\n", encoding="utf-8")
    items = kaldi_items(tmp_path)
    assert [(item.id, item.start, item.duration) for item in items] == [
        ("rec-1", 0.5, 0.75), ("rec-2", 1.5, None)
    ]


def test_kaldi_items_rejects_pipe(tmp_path):
    (tmp_path / "wav.scp").write_text("utt sox a.flac -t wav - |\n", encoding="utf-8")
    with pytest.raises(ValueError, match="pipe"):
        kaldi_items(tmp_path)


def test_dataset_reads_segment(tmp_path):
    samples = _ramp(32000)
    path = _write(tmp_path / "a.wav", samples)
    dataset = UnlabeledAudioDataset([AudioItem("seg", path, start=0.5, duration=0.75)], 100)
    waveform = dataset[0]
    assert waveform.shape == (12000,)
    assert torch.equal(waveform, torch.from_numpy(samples[8000:20000]))


def test_dataset_skips_and_counts(tmp_path, caplog):
    good = _write(tmp_path / "good.wav", _ramp(2000))
    short = _write(tmp_path / "short.wav", _ramp(399))
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF this is not a wav file at all" * 10)
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    items = [
        AudioItem("good", good),
        AudioItem("short", short),
        AudioItem("corrupt", corrupt),
        AudioItem("empty", empty),
        AudioItem("missing", tmp_path / "missing.wav"),
    ]
    with caplog.at_level(logging.WARNING, logger="asr.distill.audio_data"):
        dataset = UnlabeledAudioDataset(items, min_samples=400)
    assert [item.id for item in dataset.items] == ["good"]
    assert dataset.items[0].num_samples == 2000
    assert dict(dataset.skipped) == {"too_short": 1, "unreadable": 1, "empty": 1, "missing": 1}
    assert "short" in caplog.text


def test_dataset_unprobed_skips_when_read(tmp_path):
    good = _write(tmp_path / "good.wav", _ramp(2000))
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"not audio" * 50)
    dataset = UnlabeledAudioDataset(
        [AudioItem("good", good), AudioItem("corrupt", corrupt)], min_samples=400, probe=False
    )
    waveforms, lengths = collate_audio([dataset[0], dataset[1]])
    assert waveforms.shape == (1, 2000)
    assert dict(dataset.skipped) == {"unreadable": 1}


def test_dataset_downmixes_stereo(tmp_path, caplog):
    left = _ramp(1000)
    right = np.full(1000, 0.25, dtype=np.float32)
    path = _write(tmp_path / "stereo.wav", np.stack([left, right], axis=1))
    with caplog.at_level(logging.WARNING, logger="asr.distill.audio_data"):
        waveform = UnlabeledAudioDataset([AudioItem("stereo", path)], 100)[0]
    assert waveform.shape == (1000,)
    assert torch.allclose(waveform, torch.from_numpy((left + right) / 2), atol=1e-4)
    assert "Averaging 2 channels" in caplog.text


def test_dataset_resamples_8k(tmp_path):
    t = np.arange(8000) / 8000
    path = _write(tmp_path / "tone.wav", (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32),
                  sample_rate=8000)
    dataset = UnlabeledAudioDataset([AudioItem("tone", path)], 100)
    waveform = dataset[0]
    assert dataset.items[0].num_samples == 16000
    assert waveform.shape == (16000,)
    # The resampled tone still follows sin(2 pi 440 t) at 16 kHz away from the edges.
    expected = 0.5 * np.sin(2 * np.pi * 440 * np.arange(16000) / 16000)
    assert np.abs(waveform.numpy()[1000:15000] - expected[1000:15000]).max() < 0.01


def test_dataset_too_short_after_resampling(tmp_path):
    # 300 samples at 8 kHz are 600 at 16 kHz: usable with min_samples 600, not 601.
    path = _write(tmp_path / "a.wav", _ramp(300), sample_rate=8000)
    assert len(UnlabeledAudioDataset([AudioItem("a", path)], 600)) == 1
    assert len(UnlabeledAudioDataset([AudioItem("a", path)], 601)) == 0


def test_dataset_crop_start(tmp_path):
    samples = _ramp(5000)
    path = _write(tmp_path / "a.wav", samples)
    waveform = UnlabeledAudioDataset([AudioItem("a", path)], 100, 1200, crop="start")[0]
    assert torch.equal(waveform, torch.from_numpy(samples[:1200]))


def test_dataset_crop_random_is_contiguous_window(tmp_path):
    samples = _ramp(5000)
    path = _write(tmp_path / "a.wav", samples)
    dataset = UnlabeledAudioDataset([AudioItem("a", path)], 100, 1200, crop="random")
    torch.manual_seed(0)
    offsets = set()
    for _ in range(5):
        waveform = dataset[0].numpy()
        offset = int(np.flatnonzero(samples == waveform[0])[0])
        assert np.array_equal(waveform, samples[offset : offset + 1200])
        offsets.add(offset)
    assert len(offsets) > 1


def test_dataset_crop_resampled_length(tmp_path):
    path = _write(tmp_path / "a.wav", _ramp(4410), sample_rate=44100)
    waveform = UnlabeledAudioDataset([AudioItem("a", path)], 100, 1000, crop="random")[0]
    assert waveform.shape == (1000,)


def test_collate_pads_with_zeros():
    waveforms, lengths = collate_audio([torch.ones(3), None, torch.full((5,), 2.0)])
    assert torch.equal(lengths, torch.tensor([3, 5]))
    assert torch.equal(waveforms[0], torch.tensor([1.0, 1.0, 1.0, 0.0, 0.0]))
    assert torch.equal(waveforms[1], torch.full((5,), 2.0))


def test_collate_all_skipped():
    waveforms, lengths = collate_audio([None, None])
    assert waveforms.shape == (0, 0)
    assert lengths.shape == (0,)


def test_datamodule_batches(tmp_path):
    items = [
        AudioItem(f"u{i}", _write(tmp_path / f"u{i}.wav", _ramp(1000 + 500 * i)))
        for i in range(5)
    ]
    module = AudioDataModule(items[:4], items[4:], batch_size=2, min_samples=400,
                             max_samples=1600, seed=3)
    module.setup("fit")
    train = list(module.train_dataloader())
    valid_first = list(module.val_dataloader())
    valid_second = list(module.val_dataloader())
    assert [waveforms.shape[0] for waveforms, _ in train] == [2, 2]
    assert max(int(lengths.max()) for _, lengths in train) == 1600
    assert torch.equal(valid_first[0][0], valid_second[0][0])
    assert valid_first[0][1].tolist() == [1600]


def test_datamodule_rejects_empty_split(tmp_path):
    short = _write(tmp_path / "short.wav", _ramp(100))
    good = _write(tmp_path / "good.wav", _ramp(1000))
    module = AudioDataModule([AudioItem("good", good)], [AudioItem("short", short)],
                             batch_size=2, min_samples=400, max_samples=None)
    with pytest.raises(ValueError, match="No usable valid audio"):
        module.setup("fit")
