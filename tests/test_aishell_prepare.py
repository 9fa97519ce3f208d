"""Tests for AISHELL-1 extraction and preparation on a small corpus in the real layout."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from lhotse import CutSet

from asr.bin.prepare import main as prepare_main
from asr.data.aishell import PrepareReport, extract_aishell, prepare_aishell, read_transcripts

TRANSCRIPT_MEMBER = "data_aishell/transcript/aishell_transcript_v0.8.txt"


def _wav_bytes(seconds: float, sample_rate: int = 16000, channels: int = 1) -> bytes:
    rng = np.random.default_rng(7)
    frames = int(round(seconds * sample_rate))
    samples = (rng.standard_normal((frames, channels)) * 0.1).astype("float32")
    buffer = io.BytesIO()
    sf.write(buffer, samples, sample_rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def _tar_bytes(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _write_corpus(corpus: Path, speakers: dict[str, dict[str, bytes]], transcript: str,
                  resource: bool = False) -> Path:
    """Write `corpus/data_aishell.tgz` holding the transcript and one .tar.gz per speaker.

    `speakers` maps a speaker id to its archive members (`{split}/{SPK}/{UTT}.wav` -> bytes).
    """
    members = {TRANSCRIPT_MEMBER: transcript.encode("utf-8")}
    for speaker, files in speakers.items():
        members[f"data_aishell/wav/{speaker}.tar.gz"] = _tar_bytes(files)

    corpus.mkdir(parents=True, exist_ok=True)
    (corpus / "data_aishell.tgz").write_bytes(_tar_bytes(members))
    if resource:
        (corpus / "resource_aishell.tgz").write_bytes(
            _tar_bytes({"resource_aishell/lexicon.txt": "你好 n i3 h ao3\n".encode("utf-8")})
        )
    return corpus


def _simple_corpus(tmp_path: Path) -> Path:
    speakers = {
        "S0002": {
            "train/S0002/BAC009S0002W0122.wav": _wav_bytes(0.5),
            "train/S0002/BAC009S0002W0123.wav": _wav_bytes(0.25),
        },
        "S0724": {"dev/S0724/BAC009S0724W0121.wav": _wav_bytes(0.3)},
        "S0764": {"test/S0764/BAC009S0764W0121.wav": _wav_bytes(0.4)},
    }
    transcript = (
        "BAC009S0002W0122 而 对 楼市 成交 抑制 作用 最 大 的 限 购\n"
        "BAC009S0002W0123 也 成为 地方 政府 的 眼中 钉\n"
        "BAC009S0724W0121 甚至 出现 交易 几乎 停滞 的 情况\n"
        "BAC009S0764W0121 甚至 出现 交易 几乎 停滞 的 情况\n"
    )
    return _write_corpus(tmp_path / "corpus", speakers, transcript, resource=True)


def _files_under(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file()}


def test_extract_aishell_layout(tmp_path):
    corpus = _simple_corpus(tmp_path)

    result = extract_aishell(corpus)

    wav = corpus / "data_aishell" / "wav"
    assert (wav / "train" / "S0002" / "BAC009S0002W0122.wav").is_file()
    assert (wav / "dev" / "S0724" / "BAC009S0724W0121.wav").is_file()
    assert (corpus / "resource_aishell" / "lexicon.txt").is_file()
    assert result.complete
    assert result.skipped == {}
    assert "data_aishell/wav/S0764.tar.gz" in result.done_archives


def test_extract_aishell_rerun_skips(tmp_path):
    corpus = _simple_corpus(tmp_path)
    extract_aishell(corpus)
    extracted = corpus / "data_aishell" / "wav" / "train" / "S0002" / "BAC009S0002W0122.wav"
    extracted.unlink()

    result = extract_aishell(corpus)

    assert result.complete
    assert not extracted.exists()


def test_extract_aishell_resumes(tmp_path):
    corpus = _simple_corpus(tmp_path)
    extract_aishell(corpus)
    marker = corpus / "data_aishell" / ".extracted.json"
    state = json.loads(marker.read_text())
    state["complete"] = False
    state["done_archives"].remove("data_aishell/wav/S0764.tar.gz")
    marker.write_text(json.dumps(state))
    done_file = corpus / "data_aishell" / "wav" / "train" / "S0002" / "BAC009S0002W0122.wav"
    done_file.unlink()
    pending_file = corpus / "data_aishell" / "wav" / "test" / "S0764" / "BAC009S0764W0121.wav"
    pending_file.unlink()

    extract_aishell(corpus)

    assert pending_file.is_file()
    assert not done_file.exists()


def test_extract_aishell_extracted_tree(tmp_path):
    wav = tmp_path / "corpus" / "data_aishell" / "wav" / "train" / "S0001"
    wav.mkdir(parents=True)
    (wav / "BAC009S0001W0001.wav").write_bytes(_wav_bytes(0.1))

    result = extract_aishell(tmp_path / "corpus")

    assert result.complete
    assert result.done_archives == []


def test_extract_aishell_missing_corpus(tmp_path):
    with pytest.raises(FileNotFoundError, match="data_aishell.tgz"):
        extract_aishell(tmp_path)


def test_extract_aishell_bad_speaker_archive(tmp_path):
    corpus = _simple_corpus(tmp_path)
    extract_aishell(corpus)
    wav = corpus / "data_aishell" / "wav"
    (wav / "S0999.tar.gz").write_bytes(b"\x1f\x8b truncated gzip")
    (corpus / "data_aishell" / ".extracted.json").unlink()

    result = extract_aishell(corpus)

    assert list(result.failed_archives) == ["data_aishell/wav/S0999.tar.gz"]
    assert result.complete


def test_read_transcripts_cases(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("U1 你 好\nU2\n\nU1 重复\nU3  世界 \n", encoding="utf-8")
    report = PrepareReport()

    transcripts = read_transcripts(path, report)

    assert transcripts == {"U1": "你好", "U3": "世界"}
    assert report.ids["empty_transcript"] == ["U2"]
    assert report.ids["duplicate_transcript"] == ["U1"]
    assert report.details["duplicate_transcript"]["U1"] == "line 4"


def test_prepare_aishell_manifests(tmp_path):
    corpus = _simple_corpus(tmp_path)
    extract_aishell(corpus)
    output = tmp_path / "out"

    result = prepare_aishell(corpus, output)

    for kind in ("recordings", "supervisions", "cuts"):
        for split in ("train", "dev", "test"):
            assert (output / f"aishell_{kind}_{split}.jsonl.gz").is_file()
    train = CutSet.from_file(output / "aishell_cuts_train.jsonl.gz").to_eager()
    first = train["BAC009S0002W0122"]
    assert len(train) == 2
    assert first.supervisions[0].text == "而对楼市成交抑制作用最大的限购"
    assert first.supervisions[0].speaker == "S0002"
    assert first.duration == 0.5
    assert first.load_audio().shape == (1, 8000)
    assert result.report.utterances == {"train": 2, "dev": 1, "test": 1}
    assert sum(result.report.counts.values()) == 0


def test_prepare_aishell_acceptance(tmp_path):
    """Every corpus defect is reported by id, the rest is usable, nothing escapes the corpus."""
    speakers = {
        "S0001": {
            "train/S0001/BAC009S0001W0001.wav": _wav_bytes(0.5),
            "train/S0001/BAC009S0001W0002.wav": b"RIFF\x24\x00\x00\x00WAVEjunkjunkjunk" * 4,
            "train/S0001/BAC009S0001W0003.wav": _wav_bytes(0.0),
            "train/S0001/BAC009S0001W0004.wav": _wav_bytes(0.5, sample_rate=44100, channels=2),
            "train/S0001/BAC009S0001W0005.wav": _wav_bytes(0.2),
            "../x": b"escaped",
        },
        "S0002": {"dev/S0002/BAC009S0002W0001.wav": _wav_bytes(0.3)},
        "S0003": {"test/S0003/BAC009S0003W0001.wav": _wav_bytes(0.3)},
    }
    transcript = (
        "BAC009S0001W0001 你 好\n"
        "BAC009S0001W0002 坏 文件\n"
        "BAC009S0001W0003 空 文件\n"
        "BAC009S0001W0004 立体 声\n"
        "BAC009S0001W0099 没有 音频\n"
        "BAC009S0002W0001 你 好 鑫\n"
        "BAC009S0003W0001 你 好\n"
    )
    corpus = _write_corpus(tmp_path / "corpus", speakers, transcript)
    output = tmp_path / "out"
    before_outside = _files_under(tmp_path) - _files_under(corpus)

    status = prepare_main(["aishell", "--corpus-dir", str(corpus), "--output-dir", str(output)])

    assert status == 0
    prepare = json.loads((output / "prepare_report.json").read_text(encoding="utf-8"))
    categories = prepare["categories"]
    assert categories["unsafe_archive_member"]["ids"] == ["data_aishell/wav/S0001.tar.gz:../x"]
    assert categories["unreadable_audio"]["ids"] == ["BAC009S0001W0002"]
    assert categories["empty_audio"]["ids"] == ["BAC009S0001W0003"]
    assert categories["no_transcript"]["ids"] == ["BAC009S0001W0005"]
    assert categories["no_audio"]["ids"] == ["BAC009S0001W0099"]

    train_report = json.loads((output / "validation_train.json").read_text(encoding="utf-8"))
    assert train_report["categories"]["resampled"]["ids"] == ["BAC009S0001W0004"]
    assert train_report["categories"]["downmixed"]["ids"] == ["BAC009S0001W0004"]
    dev_report = json.loads((output / "validation_dev.json").read_text(encoding="utf-8"))
    assert dev_report["categories"]["oov_characters"]["details"] == {"BAC009S0002W0001": "鑫"}

    train = CutSet.from_file(output / "cuts_train.jsonl.gz").to_eager()
    assert sorted(c.id for c in train) == ["BAC009S0001W0001", "BAC009S0001W0004"]
    for cut in train:
        audio = cut.load_audio()
        assert cut.sampling_rate == 16000
        assert audio.shape == (1, cut.num_samples)
    assert train["BAC009S0001W0004"].num_samples == 8000
    assert len(CutSet.from_file(output / "cuts_test.jsonl.gz").to_eager()) == 1

    assert list(tmp_path.rglob("x")) == []
    after_outside = _files_under(tmp_path) - _files_under(corpus) - _files_under(output)
    assert after_outside == before_outside
