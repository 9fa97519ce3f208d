"""Tests for Kaldi data directory import, export and round trip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from lhotse import CutSet

from asr.bin.prepare import main as prepare_main
from asr.data.kaldi_dir import export_kaldi_dir, import_kaldi_dir, read_kaldi_table


def _write_wav(path: Path, seconds: float, sample_rate: int = 16000, channels: int = 1) -> Path:
    rng = np.random.default_rng(0)
    frames = int(round(seconds * sample_rate))
    samples = (rng.standard_normal((frames, channels)) * 0.1).astype("float32")
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, samples, sample_rate, subtype="PCM_16")
    return path


def _write_lines(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


@pytest.fixture
def whole_dir(tmp_path) -> Path:
    """Kaldi dir without segments: two utterances, one per wav file."""
    a = _write_wav(tmp_path / "audio" / "utt1.wav", 1.0)
    b = _write_wav(tmp_path / "audio" / "utt2.wav", 0.5)
    data = tmp_path / "data"
    _write_lines(data / "wav.scp", [f"utt1 {a}", f"utt2 {b}"])
    _write_lines(data / "text", ["utt1 你好 世界", "utt2 今天"])
    _write_lines(data / "utt2spk", ["utt1 spkA", "utt2 spkB"])
    return data


@pytest.fixture
def segments_dir(tmp_path) -> Path:
    """Kaldi dir with segments: two utterances cut from one 3-second wav file."""
    long = _write_wav(tmp_path / "audio" / "long.wav", 3.0)
    data = tmp_path / "seg"
    _write_lines(data / "wav.scp", [f"rec1 {long}"])
    _write_lines(data / "segments", ["rec1-a rec1 0.5 1.25", "rec1-b rec1 2 -1"])
    _write_lines(data / "text", ["rec1-a 早上 好", "rec1-b 再见"])
    _write_lines(data / "utt2spk", ["rec1-a spk1", "rec1-b spk1"])
    return data


def test_import_whole_recordings(whole_dir):
    cuts = import_kaldi_dir(whole_dir)

    assert [c.id for c in cuts] == ["utt1", "utt2"]
    assert [c.duration for c in cuts] == [1.0, 0.5]
    assert cuts[0].supervisions[0].text == "你好 世界"
    assert cuts[0].supervisions[0].speaker == "spkA"
    assert cuts[1].load_audio().shape == (1, 8000)


def test_import_remove_spaces(whole_dir):
    cuts = import_kaldi_dir(whole_dir, remove_spaces=True)

    assert cuts[0].supervisions[0].text == "你好世界"


def test_import_segments(segments_dir):
    cuts = import_kaldi_dir(segments_dir)
    first, second = cuts

    assert first.id == "rec1-a"
    assert first.start == 0.5
    assert first.duration == 0.75
    assert first.load_audio().shape == (1, 12000)
    assert second.start == 2.0
    assert second.duration == 1.0
    assert first.recording.id == "rec1"
    assert first.supervisions[0].start == 0.0


def test_import_without_utt2spk(whole_dir):
    (whole_dir / "utt2spk").unlink()

    cuts = import_kaldi_dir(whole_dir)

    assert cuts[0].supervisions[0].speaker is None


def test_import_missing_text_entry(whole_dir):
    _write_lines(whole_dir / "text", ["utt1 你好"])

    cuts = import_kaldi_dir(whole_dir)

    assert cuts[1].supervisions[0].text == ""


def test_import_rejects_pipe(whole_dir):
    _write_lines(whole_dir / "wav.scp", ["utt1 sox a.flac -t wav - |", "utt2 b.wav"])

    with pytest.raises(ValueError, match="pipe command"):
        import_kaldi_dir(whole_dir)


def test_import_rejects_ark(whole_dir):
    _write_lines(whole_dir / "wav.scp", ["utt1 data/wav.ark:123", "utt2 b.wav"])

    with pytest.raises(ValueError, match="Kaldi archive"):
        import_kaldi_dir(whole_dir)


def test_import_duplicate_key(whole_dir):
    _write_lines(whole_dir / "text", ["utt1 a", "utt1 b"])

    with pytest.raises(ValueError, match=r"text:2: duplicate key 'utt1'"):
        import_kaldi_dir(whole_dir)


def test_import_missing_text_file(whole_dir):
    (whole_dir / "text").unlink()

    with pytest.raises(FileNotFoundError, match="text not found"):
        import_kaldi_dir(whole_dir)


def test_import_unreadable_audio_kept(whole_dir, tmp_path):
    broken = tmp_path / "audio" / "broken.wav"
    broken.write_bytes(b"not audio")
    _write_lines(whole_dir / "wav.scp", [f"utt1 {broken}", f"utt2 {tmp_path / 'missing.wav'}"])

    cuts = import_kaldi_dir(whole_dir)

    assert [c.id for c in cuts] == ["utt1", "utt2"]
    assert [c.recording.num_samples for c in cuts] == [0, 0]


def test_import_bad_segment_times(segments_dir):
    _write_lines(segments_dir / "segments", ["rec1-a rec1 1.5 1.0"])

    with pytest.raises(ValueError, match="start 1.5 and end 1.0"):
        import_kaldi_dir(segments_dir)


def test_import_segment_unknown_recording(segments_dir):
    _write_lines(segments_dir / "segments", ["rec1-a rec9 0 1"])

    with pytest.raises(ValueError, match="'rec9'"):
        import_kaldi_dir(segments_dir)


def test_export_whole_files(whole_dir, tmp_path):
    out = tmp_path / "export"

    count = export_kaldi_dir(import_kaldi_dir(whole_dir), out)

    assert count == 2
    assert sorted(p.name for p in out.iterdir()) == ["spk2utt", "text", "utt2spk", "wav.scp"]
    assert (out / "text").read_text(encoding="utf-8") == "utt1 你好 世界\nutt2 今天\n"
    assert (out / "spk2utt").read_text(encoding="utf-8") == "spkA utt1\nspkB utt2\n"
    assert (out / "wav.scp").read_text(encoding="utf-8").splitlines()[0].endswith("audio/utt1.wav")


def test_export_segments_file(segments_dir, tmp_path):
    out = tmp_path / "export"

    export_kaldi_dir(import_kaldi_dir(segments_dir), out)

    assert (out / "segments").read_text() == "rec1-a rec1 0.5 1.25\nrec1-b rec1 2 3\n"
    assert (out / "spk2utt").read_text() == "spk1 rec1-a rec1-b\n"
    assert list(read_kaldi_table(out / "wav.scp")) == ["rec1"]


@pytest.mark.parametrize("fixture_name", ["whole_dir", "segments_dir"])
def test_round_trip(request, tmp_path, fixture_name):
    source = request.getfixturevalue(fixture_name)
    out = tmp_path / "round"

    original = import_kaldi_dir(source)
    export_kaldi_dir(original, out)
    again = import_kaldi_dir(out)

    def key(cut):
        sup = cut.supervisions[0]
        return (cut.id, cut.recording.id, cut.start, cut.duration, sup.text, sup.speaker,
                cut.recording.sources[0].source, cut.recording.num_samples)

    assert [key(c) for c in again] == [key(c) for c in original]


def test_export_refuses_nonempty(whole_dir, tmp_path):
    out = tmp_path / "export"
    out.mkdir()
    (out / "keep.txt").write_text("mine")

    with pytest.raises(FileExistsError, match="overwrite=True"):
        export_kaldi_dir(import_kaldi_dir(whole_dir), out)

    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]


def test_export_overwrite_removes_stale_segments(segments_dir, whole_dir, tmp_path):
    out = tmp_path / "export"
    export_kaldi_dir(import_kaldi_dir(segments_dir), out)

    export_kaldi_dir(import_kaldi_dir(whole_dir), out, overwrite=True)

    assert not (out / "segments").exists()
    assert list(read_kaldi_table(out / "text")) == ["utt1", "utt2"]


def test_export_rejects_resampled(whole_dir, tmp_path):
    cuts = import_kaldi_dir(whole_dir)
    cuts = CutSet.from_cuts(c.resample(8000) if c.id == "utt1" else c for c in cuts)

    with pytest.raises(ValueError, match="utt1: recording has lazy transforms"):
        export_kaldi_dir(cuts, tmp_path / "export")

    assert not (tmp_path / "export").exists()


def test_export_skip_unsupported(whole_dir, tmp_path):
    cuts = import_kaldi_dir(whole_dir)
    cuts = CutSet.from_cuts(c.resample(8000) if c.id == "utt1" else c for c in cuts)

    count = export_kaldi_dir(cuts, tmp_path / "export", skip_unsupported=True)

    assert count == 1
    assert list(read_kaldi_table(tmp_path / "export" / "text")) == ["utt2"]


def test_export_missing_speaker_uses_utt(whole_dir, tmp_path):
    (whole_dir / "utt2spk").unlink()

    export_kaldi_dir(import_kaldi_dir(whole_dir), tmp_path / "export")

    assert (tmp_path / "export" / "utt2spk").read_text() == "utt1 utt1\nutt2 utt2\n"


def test_cli_kaldi_then_export(whole_dir, tmp_path, capsys):
    out = tmp_path / "cuts"

    status = prepare_main(
        ["kaldi", "--data-dir", str(whole_dir), "--output-dir", str(out), "--name", "mine",
         "--max-duration", "0.75"]
    )
    cuts = CutSet.from_file(out / "cuts_mine.jsonl.gz").to_eager()

    assert status == 0
    assert [c.id for c in cuts] == ["utt2"]
    assert "too_long: 1" in capsys.readouterr().out
    assert (out / "validation_mine.json").is_file()

    cuts_path = str(out / "cuts_mine.jsonl.gz")
    status = prepare_main(["export-kaldi", "--cuts", cuts_path, "--data-dir", str(tmp_path / "k")])

    assert status == 0
    assert (tmp_path / "k" / "text").read_text(encoding="utf-8") == "utt2 今天\n"


def test_export_duplicate_id_rejected(whole_dir, tmp_path):
    cuts = list(import_kaldi_dir(whole_dir))

    with pytest.raises(ValueError, match="utt1: duplicate cut id"):
        export_kaldi_dir(CutSet.from_cuts(cuts + cuts[:1]), tmp_path / "export")


def test_cli_export_existing_dir_fails(whole_dir, tmp_path, caplog):
    out = tmp_path / "cuts"
    prepare_main(["kaldi", "--data-dir", str(whole_dir), "--output-dir", str(out), "--name", "x"])

    status = prepare_main(
        ["export-kaldi", "--cuts", str(out / "cuts_x.jsonl.gz"), "--data-dir", str(whole_dir)]
    )

    assert status == 1
    assert "overwrite=True" in caplog.text
