"""Tests for global CMVN accumulation and its WeNet-style JSON file."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import soundfile as sf
import torch
from lhotse import CutSet, Recording

from asr.features.cmvn_stats import (
    CmvnAccumulator,
    compute_global_cmvn,
    compute_global_cmvn_from_cuts,
    load_cmvn,
    save_cmvn,
)
from asr.features.fbank import KaldiNativeCompatibleFbank


def random_utterances(seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [
        (rng.standard_normal((num_frames, 80)) * 3 + 10).astype(np.float32)
        for num_frames in (17, 250, 1, 96)
    ]


def test_global_cmvn_matches_numpy():
    utterances = random_utterances()
    frames = np.concatenate(utterances).astype(np.float64)

    mean, istd = compute_global_cmvn(torch.from_numpy(u) for u in utterances)

    assert mean.dtype == torch.float32
    assert np.allclose(mean.numpy(), frames.mean(axis=0), rtol=0, atol=1e-5)
    assert np.allclose(istd.numpy(), 1 / frames.std(axis=0), rtol=1e-5, atol=0)


def test_global_cmvn_hand_computed():
    feats = np.array([[1.0, 5.0], [3.0, 5.0]])

    mean, istd = compute_global_cmvn([feats], var_floor=0.25)

    assert mean.tolist() == [2.0, 5.0]
    # Dimension 0 has variance 1. Dimension 1 is constant, so the floor 0.25 gives istd 2.
    assert istd.tolist() == [1.0, 2.0]


def test_cmvn_accumulator_merge():
    utterances = random_utterances(seed=2)
    whole, first, second = CmvnAccumulator(), CmvnAccumulator(), CmvnAccumulator()
    for index, feats in enumerate(utterances):
        whole.add(feats)
        (first if index % 2 else second).add(feats)

    first.merge(second)

    assert first.frames == whole.frames
    assert np.allclose(first.sum, whole.sum, rtol=1e-12, atol=0)
    assert np.allclose(first.sum_squares, whole.sum_squares, rtol=1e-12, atol=0)


def test_global_cmvn_empty_raises():
    with pytest.raises(ValueError, match="No frames"):
        compute_global_cmvn([])


def test_global_cmvn_dimension_mismatch_raises():
    with pytest.raises(ValueError, match="dimension changed from 80 to 40"):
        compute_global_cmvn([np.zeros((3, 80)), np.zeros((3, 40))])


def test_cmvn_save_load_round_trip(tmp_path):
    mean, istd = compute_global_cmvn(random_utterances(seed=1))
    path = tmp_path / "global_cmvn"

    save_cmvn(path, mean, istd, frames=364)
    loaded_mean, loaded_istd = load_cmvn(path)

    assert torch.allclose(loaded_mean, mean, rtol=1e-6, atol=0)
    assert torch.allclose(loaded_istd, istd, rtol=1e-6, atol=0)


def test_cmvn_file_is_wenet_layout(tmp_path):
    path = tmp_path / "global_cmvn"

    save_cmvn(path, torch.tensor([2.0, 5.0]), torch.tensor([1.0, 2.0]), frames=2)
    payload = json.loads(path.read_text())

    assert payload["frame_num"] == 2
    assert payload["mean_stat"] == [4.0, 10.0]
    # var_stat is the sum of squares: (var + mean^2) * frames = (1 + 4) * 2 and (0.25 + 25) * 2.
    assert payload["var_stat"] == [10.0, 50.5]


def test_load_cmvn_missing_key_raises(tmp_path):
    path = tmp_path / "global_cmvn"
    path.write_text(json.dumps({"mean_stat": [1.0], "frame_num": 1}))

    with pytest.raises(ValueError, match="var_stat"):
        load_cmvn(path)


def test_cmvn_from_cuts_skips_unreadable(tmp_path, caplog):
    rng = np.random.default_rng(3)
    recordings = []
    for index, num_samples in enumerate((16000, 8000)):
        path = tmp_path / f"utt{index}.wav"
        sf.write(path, rng.standard_normal(num_samples) * 0.1, 16000, subtype="PCM_16")
        recordings.append(Recording.from_file(path))
    cuts = CutSet.from_manifests(recordings=recordings)
    (tmp_path / "utt1.wav").unlink()
    extractor = KaldiNativeCompatibleFbank()

    with caplog.at_level(logging.WARNING):
        mean, istd, frames = compute_global_cmvn_from_cuts(cuts, extractor)
    expected_mean, expected_istd = compute_global_cmvn(
        [extractor.extract(cuts[0].load_audio(), 16000)]
    )

    assert frames == 100
    assert torch.allclose(mean, expected_mean)
    assert torch.allclose(istd, expected_istd)
    assert "Skipped 1 of 2 cuts" in caplog.text
