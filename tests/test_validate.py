"""Tests for cut validation: audio checks, resampling, downmixing, OOV and duration filters."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from lhotse import CutSet, Recording, SupervisionSegment
from lhotse.audio import AudioSource
from lhotse.utils import fastcopy

from asr.data.validate import ValidationReport, downmix_to_mono, validate_cuts, write_validated_cuts


def _write_wav(path: Path, samples: np.ndarray, sample_rate: int, subtype: str = "PCM_16") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, samples, sample_rate, subtype=subtype)
    return path


def _noise(seconds: float, sample_rate: int, channels: int = 1) -> np.ndarray:
    rng = np.random.default_rng(1)
    frames = int(round(seconds * sample_rate))
    return (rng.standard_normal((frames, channels)) * 0.1).astype("float32")


def _cut(utt_id: str, path: Path, text: str = "你好", *, sample_rate: int = 16000,
         channels: int = 1, num_samples: int = 16000):
    """Cut for `path` described by the given manifest fields (the file itself is not read)."""
    recording = Recording(
        id=utt_id,
        sources=[AudioSource(type="file", channels=list(range(channels)), source=str(path))],
        sampling_rate=sample_rate,
        num_samples=num_samples,
        duration=num_samples / sample_rate,
    )
    channel = 0 if channels == 1 else list(range(channels))
    supervision = SupervisionSegment(
        id=utt_id, recording_id=utt_id, start=0.0, duration=recording.duration,
        channel=channel, text=text, speaker="S1",
    )
    return fastcopy(recording.to_cut(), supervisions=[supervision])


def _cut_for_file(utt_id: str, path: Path, text: str = "你好"):
    info = sf.info(str(path))
    return _cut(utt_id, path, text, sample_rate=info.samplerate, channels=info.channels,
                num_samples=info.frames)


def _good(tmp_path: Path, utt_id: str = "good", seconds: float = 1.0, text: str = "你好"):
    path = _write_wav(tmp_path / f"{utt_id}.wav", _noise(seconds, 16000), 16000)
    return _cut_for_file(utt_id, path, text)


def _validate(cuts, **options):
    return validate_cuts(CutSet.from_cuts(cuts), num_workers=2, **options)


def test_validate_clean_cut_kept(tmp_path):
    kept, report = _validate([_good(tmp_path)])

    assert [c.id for c in kept] == ["good"]
    assert report.num_input == 1
    assert report.num_kept == 1
    assert sum(report.counts.values()) == 0


def test_validate_missing_audio(tmp_path):
    cut = _cut("gone", tmp_path / "gone.wav")

    kept, report = _validate([cut, _good(tmp_path)])

    assert [c.id for c in kept] == ["good"]
    assert report.ids["missing_audio"] == ["gone"]
    assert str(tmp_path / "gone.wav") in report.details["missing_audio"]["gone"]


def test_validate_zero_byte_audio(tmp_path):
    path = tmp_path / "zero.wav"
    path.write_bytes(b"")

    _, report = _validate([_cut("zero", path)])

    assert report.ids["empty_audio"] == ["zero"]
    assert "0 bytes" in report.details["empty_audio"]["zero"]


def test_validate_zero_sample_audio(tmp_path):
    path = _write_wav(tmp_path / "nosamples.wav", np.zeros(0, dtype="int16"), 16000)

    _, report = _validate([_cut("nosamples", path)])

    assert report.ids["empty_audio"] == ["nosamples"]
    assert "0 samples" in report.details["empty_audio"]["nosamples"]


def test_validate_corrupt_audio(tmp_path):
    path = tmp_path / "corrupt.wav"
    path.write_bytes(b"RIFF" + bytes(range(256)) * 8)

    _, report = _validate([_cut("corrupt", path)])

    assert report.ids["unreadable_audio"] == ["corrupt"]


def test_validate_truncated_wav(tmp_path):
    path = _write_wav(tmp_path / "full.wav", _noise(1.0, 16000), 16000)
    truncated = tmp_path / "truncated.wav"
    truncated.write_bytes(path.read_bytes()[:16000])
    # The manifest matches what libsndfile reports, so only the RIFF header reveals the cut.
    cut = _cut_for_file("truncated", truncated)

    _, report = _validate([cut])

    assert report.ids["unreadable_audio"] == ["truncated"]
    detail = report.details["unreadable_audio"]["truncated"]
    assert "data chunk declares 32000 bytes, 15956 present" in detail


def test_validate_manifest_mismatch(tmp_path):
    path = _write_wav(tmp_path / "m.wav", _noise(1.0, 16000), 16000)
    cut = _cut("m", path, num_samples=20000)

    _, report = _validate([cut])

    assert report.ids["unreadable_audio"] == ["m"]
    assert "16000 samples, manifest 20000" in report.details["unreadable_audio"]["m"]


def test_validate_nan_samples(tmp_path):
    samples = _noise(0.5, 16000)
    samples[100, 0] = np.nan
    path = _write_wav(tmp_path / "nan.wav", samples, 16000, subtype="FLOAT")

    _, report = _validate([_cut_for_file("nan", path)])

    assert report.ids["unreadable_audio"] == ["nan"]
    assert "NaN" in report.details["unreadable_audio"]["nan"]


def test_validate_resamples_44k(tmp_path):
    path = _write_wav(tmp_path / "hi.wav", _noise(1.0, 44100), 44100)

    kept, report = _validate([_cut_for_file("hi", path)])

    assert report.ids["resampled"] == ["hi"]
    assert report.details["resampled"]["hi"] == "44100 Hz"
    assert kept[0].sampling_rate == 16000
    assert kept[0].load_audio().shape == (1, 16000)


def test_validate_downmixes_stereo(tmp_path):
    samples = _noise(1.0, 16000, channels=2)
    path = _write_wav(tmp_path / "st.wav", samples, 16000, subtype="FLOAT")

    kept, report = _validate([_cut_for_file("st", path)])
    audio = kept[0].load_audio()

    assert report.ids["downmixed"] == ["st"]
    assert audio.shape == (1, 16000)
    np.testing.assert_allclose(audio[0], samples.mean(axis=1), atol=1e-6)
    assert [s.text for s in kept[0].supervisions] == ["你好"]
    assert kept[0].id == "st"


def test_validate_stereo_44k_written_and_reloaded(tmp_path):
    path = _write_wav(tmp_path / "both.wav", _noise(0.5, 44100, channels=2), 44100)
    cuts = CutSet.from_cuts([_cut_for_file("both", path), _good(tmp_path)])

    write_validated_cuts(cuts, tmp_path / "out", "train", num_workers=1)
    reloaded = CutSet.from_file(tmp_path / "out" / "cuts_train.jsonl.gz").to_eager()
    both = reloaded["both"]

    assert both.load_audio().shape == (1, 8000)
    assert both.sampling_rate == 16000
    assert both.num_channels == 1
    assert len(both.supervisions) == 1
    assert reloaded["good"].load_audio().shape == (1, 16000)


def test_validate_oov_characters_kept(tmp_path):
    cut = _good(tmp_path, text="你好吗")

    kept, report = _validate([cut], vocabulary={"你", "好"})

    assert [c.id for c in kept] == ["good"]
    assert report.ids["oov_characters"] == ["good"]
    assert report.details["oov_characters"]["good"] == "吗"


def test_validate_oov_ignores_spaces(tmp_path):
    cut = _good(tmp_path, text="你 好")

    _, report = _validate([cut], vocabulary={"你", "好"})

    assert report.counts["oov_characters"] == 0


def test_validate_max_duration_filters(tmp_path):
    long = _good(tmp_path, "long", seconds=2.5)
    short = _good(tmp_path, "short", seconds=1.0)

    kept, report = _validate([long, short], max_duration=2.0)

    assert [c.id for c in kept] == ["short"]
    assert report.ids["too_long"] == ["long"]
    assert report.details["too_long"]["long"] == "2.50 s"


def test_validate_min_duration_filters(tmp_path):
    tiny = _good(tmp_path, "tiny", seconds=0.05)

    kept, report = _validate([tiny], min_duration=0.1)

    assert len(kept) == 0
    assert report.ids["too_short"] == ["tiny"]


def test_validate_missing_text(tmp_path):
    cut = _good(tmp_path, text="")
    bare = fastcopy(_good(tmp_path, "bare"), supervisions=[])

    kept, report = _validate([cut, bare])

    assert len(kept) == 0
    assert report.ids["missing_text"] == ["good", "bare"]


def test_validate_duplicate_id(tmp_path):
    cut = _good(tmp_path)

    kept, report = _validate([cut, cut])

    assert len(kept) == 1
    assert report.ids["duplicate_id"] == ["good"]


def test_report_summary_and_json(tmp_path):
    cut = _cut("gone", tmp_path / "gone.wav")
    _, report = _validate([cut, _good(tmp_path)])

    report.to_json(tmp_path / "report.json")
    data = json.loads((tmp_path / "report.json").read_text(encoding="utf-8"))

    assert "kept 1 of 2 cuts" in report.summary()
    assert "missing_audio: 1" in report.summary()
    assert data["num_input"] == 2
    assert data["num_kept"] == 1
    assert data["counts"]["missing_audio"] == 1
    assert data["categories"]["missing_audio"]["ids"] == ["gone"]


def test_report_rejects_unknown_category():
    with pytest.raises(ValueError, match="Unknown report category 'bogus'"):
        ValidationReport().add("bogus", "x")


def test_downmix_three_channels(tmp_path):
    samples = _noise(0.25, 16000, channels=3)
    path = _write_wav(tmp_path / "three.wav", samples, 16000, subtype="FLOAT")

    mono = downmix_to_mono(_cut_for_file("three", path))

    np.testing.assert_allclose(mono.load_audio()[0], samples.mean(axis=1), atol=1e-6)
    assert mono.supervisions[0].channel == 0


def test_validate_past_recording_end(tmp_path):
    cut = _good(tmp_path, seconds=1.0)
    late = fastcopy(cut, id="late", start=0.5, duration=0.6)

    kept, report = _validate([late])

    assert len(kept) == 0
    assert report.ids["past_recording_end"] == ["late"]
    assert report.details["past_recording_end"]["late"] == "ends at 1.100 s, recording lasts 1.000 s"


def test_validate_output_revalidates_clean(tmp_path):
    stereo = _write_wav(tmp_path / "st.wav", _noise(0.5, 44100, channels=2), 44100)
    cuts = CutSet.from_cuts([_cut_for_file("st", stereo), _good(tmp_path)])
    write_validated_cuts(cuts, tmp_path / "out", "train", num_workers=1)
    reloaded = CutSet.from_file(tmp_path / "out" / "cuts_train.jsonl.gz")

    again, report = _validate(list(reloaded))

    assert sorted(c.id for c in again) == ["good", "st"]
    assert sum(report.counts.values()) == 0
