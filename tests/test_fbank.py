"""Tests for the fbank front end against kaldi-native-fbank, and its lhotse extractor."""

from __future__ import annotations

from pathlib import Path

import kaldi_native_fbank as knf
import numpy as np
import pytest
import soundfile as sf
import torch
from lhotse import CutSet, Recording
from lhotse.dataset.input_strategies import OnTheFlyFeatures
from lhotse.features.base import FeatureExtractor

from asr.features.fbank import (
    FbankOptions,
    KaldiNativeCompatibleFbank,
    compute_fbank,
    compute_fbank_batch,
    mel_banks,
    num_frames,
)

# Max abs difference allowed between our log-mel and knf's. Both run float32 FFTs, which
# disagree by about 1e-4 in the log domain on noise-like input (measured up to 4e-4 on 10 s).
LOG_MEL_TOLERANCE = 1e-3


def knf_fbank(waveform: np.ndarray, options: FbankOptions = FbankOptions()) -> np.ndarray:
    """Run kaldi-native-fbank the way sherpa-onnx does for WeNet CTC models."""
    fbank = knf.OnlineFbank(options.to_knf())
    fbank.accept_waveform(options.sample_rate, (waveform * 32768).astype(np.float32).tolist())
    fbank.input_finished()
    frames = [fbank.get_frame(i) for i in range(fbank.num_frames_ready)]
    return np.array(frames, dtype=np.float32).reshape(-1, options.num_mel_bins)


def speech_like(num_samples: int, seed: int) -> np.ndarray:
    """Harmonic source with a gliding pitch, a syllable-rate envelope and a little noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(num_samples) / 16000
    pitch = 120 + 30 * np.sin(2 * np.pi * 0.5 * t)
    phase = 2 * np.pi * np.cumsum(pitch) / 16000
    voiced = sum(np.sin(k * phase) / k for k in range(1, 30))
    envelope = (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t)) ** 2
    noise = rng.standard_normal(num_samples) * 1e-3
    return (0.1 * voiced * envelope + noise).astype(np.float32)


def noise(num_samples: int, seed: int, scale: float = 0.1) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(num_samples) * scale).astype(np.float32)


def test_options_match_sherpa_onnx_settings():
    options = FbankOptions().to_knf()

    assert options.frame_opts.dither == 0.0
    assert options.frame_opts.snip_edges is False
    assert options.frame_opts.window_type == "povey"
    assert options.frame_opts.samp_freq == 16000
    assert options.mel_opts.num_bins == 80
    assert options.mel_opts.high_freq == -400
    assert options.mel_opts.low_freq == 20
    assert options.use_energy is False


def test_options_sizes():
    options = FbankOptions()

    assert options.frame_length_samples == 400
    assert options.frame_shift_samples == 160
    assert options.fft_size == 512


def test_options_invalid_window():
    with pytest.raises(ValueError, match="window_type"):
        FbankOptions(window_type="blackmann")


@pytest.mark.parametrize(
    "num_samples, expected",
    [(0, 0), (79, 0), (80, 1), (239, 1), (240, 2), (16000, 100), (16079, 100), (16080, 101)],
)
def test_num_frames_snip_edges_false(num_samples, expected):
    assert num_frames(num_samples, FbankOptions()) == expected


@pytest.mark.parametrize("num_samples, expected", [(399, 0), (400, 1), (559, 1), (560, 2)])
def test_num_frames_snip_edges_true(num_samples, expected):
    assert num_frames(num_samples, FbankOptions(snip_edges=True)) == expected


def test_mel_banks_match_knf():
    options = FbankOptions()
    knf_options = options.to_knf()
    expected = knf.MelBanks(knf_options.mel_opts, knf_options.frame_opts, 1.0).get_matrix()

    banks = mel_banks(options).numpy()

    assert banks.shape == expected.shape
    # knf computes the mel scale in float32, we in float64.
    assert np.abs(banks - expected).max() < 1e-4


@pytest.mark.parametrize(
    "num_samples", [0, 1, 79, 80, 81, 120, 121, 239, 240, 241, 399, 400, 401, 1000, 16037]
)
def test_fbank_matches_knf_noise(num_samples):
    waveform = noise(num_samples, seed=num_samples)

    expected = knf_fbank(waveform)
    feats = compute_fbank(torch.from_numpy(waveform)).numpy()

    assert feats.shape == expected.shape
    assert feats.shape[0] == num_frames(num_samples, FbankOptions())
    if expected.size:
        assert np.abs(feats - expected).max() < LOG_MEL_TOLERANCE


@pytest.mark.parametrize("num_samples, seed", [(8000, 1), (32000, 2), (16123, 3)])
def test_fbank_matches_knf_speech_like(num_samples, seed):
    waveform = speech_like(num_samples, seed)

    expected = knf_fbank(waveform)
    feats = compute_fbank(torch.from_numpy(waveform)).numpy()

    assert feats.shape == expected.shape
    assert np.abs(feats - expected).max() < LOG_MEL_TOLERANCE


def test_fbank_matches_knf_silence_and_burst():
    waveform = np.zeros(16000, dtype=np.float32)
    waveform[5000:6000] = noise(1000, seed=7, scale=0.3)

    expected = knf_fbank(waveform)
    feats = compute_fbank(torch.from_numpy(waveform)).numpy()

    assert feats.shape == expected.shape
    assert np.abs(feats - expected).max() < LOG_MEL_TOLERANCE


def test_fbank_matches_knf_snip_edges_true():
    options = FbankOptions(snip_edges=True)
    waveform = speech_like(4000, seed=4)

    expected = knf_fbank(waveform, options)
    feats = compute_fbank(torch.from_numpy(waveform), options).numpy()

    assert feats.shape == expected.shape
    assert np.abs(feats - expected).max() < LOG_MEL_TOLERANCE


def test_fbank_digital_silence_is_log_epsilon():
    feats = compute_fbank(torch.zeros(1600))

    assert torch.allclose(feats, torch.full_like(feats, np.log(np.finfo(np.float32).eps)))


def test_fbank_batch_equals_single():
    waveforms = [speech_like(n, seed=n) for n in (16000, 9000, 240)]
    padded = torch.zeros(3, 16000)
    for row, waveform in enumerate(waveforms):
        padded[row, : len(waveform)] = torch.from_numpy(waveform)

    feats, feat_lens = compute_fbank_batch(padded, torch.tensor([16000, 9000, 240]))

    assert feat_lens.tolist() == [100, 56, 2]
    for row, waveform in enumerate(waveforms):
        single = compute_fbank(torch.from_numpy(waveform))
        assert torch.allclose(feats[row, : feat_lens[row]], single, atol=1e-5)
    assert bool((feats[2, 2:] == 0).all())


def test_fbank_dither_seeded():
    silence = torch.zeros(1600)

    first = compute_fbank(silence, dither=1.0, generator=torch.Generator().manual_seed(0))
    second = compute_fbank(silence, dither=1.0, generator=torch.Generator().manual_seed(0))

    assert torch.equal(first, second)
    # Dither of one int16 step lifts digital silence well above the log floor of about -15.9.
    assert float(first.mean()) > 0.0


def write_wav(path: Path, waveform: np.ndarray) -> Recording:
    sf.write(path, waveform, 16000, subtype="PCM_16")
    return Recording.from_file(path)


def test_extractor_on_the_fly_matches_knf(tmp_path):
    waveforms = [speech_like(16000, seed=5), speech_like(7000, seed=6)]
    recordings = [write_wav(tmp_path / f"utt{i}.wav", w) for i, w in enumerate(waveforms)]
    cuts = CutSet.from_manifests(recordings=recordings)
    extractor = KaldiNativeCompatibleFbank()

    feats, feat_lens = OnTheFlyFeatures(extractor)(cuts)

    assert feats.shape == (2, 100, 80)
    assert feat_lens.tolist() == [100, 44]
    for row, cut in enumerate(cuts):
        expected = knf_fbank(cut.load_audio()[0])
        assert np.abs(feats[row, : feat_lens[row]].numpy() - expected).max() < LOG_MEL_TOLERANCE


def test_extractor_extract_shapes():
    extractor = KaldiNativeCompatibleFbank()
    waveform = speech_like(3200, seed=8)

    flat = extractor.extract(waveform, 16000)
    batched = extractor.extract(waveform[None, :], 16000)

    assert flat.shape == (20, 80)
    assert np.array_equal(flat, batched)
    assert extractor.feature_dim(16000) == 80
    assert extractor.frame_shift == 0.01


def test_extractor_rejects_wrong_rate():
    with pytest.raises(ValueError, match="8000 Hz"):
        KaldiNativeCompatibleFbank().extract(np.zeros(800, dtype=np.float32), 8000)


def test_extractor_rejects_stereo():
    with pytest.raises(ValueError, match="mono"):
        KaldiNativeCompatibleFbank().extract(np.zeros((2, 800), dtype=np.float32), 16000)


def test_extractor_dict_round_trip():
    extractor = KaldiNativeCompatibleFbank(dither=0.1)

    restored = FeatureExtractor.from_dict(extractor.to_dict())

    assert isinstance(restored, KaldiNativeCompatibleFbank)
    assert restored.config == extractor.config
    assert restored.config.dither == 0.1


def test_extractor_extract_batch_padded():
    extractor = KaldiNativeCompatibleFbank()
    waveforms = [speech_like(3200, seed=9), speech_like(1600, seed=10)]
    padded = torch.zeros(2, 3200)
    padded[0] = torch.from_numpy(waveforms[0])
    padded[1, :1600] = torch.from_numpy(waveforms[1])

    feats = extractor.extract_batch(padded, 16000, lengths=torch.tensor([3200, 1600]))

    assert feats.shape == (2, 20, 80)
    assert torch.allclose(feats[1, :10], compute_fbank(torch.from_numpy(waveforms[1])), atol=1e-5)
