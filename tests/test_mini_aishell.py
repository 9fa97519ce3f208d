"""Tests for the synthesized mini AISHELL-1 corpus: layout, audio, splits, text, determinism."""

from __future__ import annotations

import re
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from asr.data.mini_aishell import DATA_ARCHIVE, RESOURCE_ARCHIVE, make_mini_aishell
from asr.data.mini_aishell.archive import ARCHIVE_MTIME, write_tar_gz
from asr.data.mini_aishell.audio import resample
from asr.data.mini_aishell.build import SCALES, STAMP_FILE
from asr.data.mini_aishell.espeak import get_engine
from asr.data.mini_aishell.lexicon import pinyin_to_phones
from asr.data.mini_aishell.numerals import chinese_numeral
from asr.data.mini_aishell.pronunciation import analyze_pronunciations, split_syllables
from asr.data.mini_aishell.speakers import speakers_of_split
from asr.data.mini_aishell.text import MAX_CHARS, MIN_CHARS, load_vocabulary, sentence_pool

TINY_SPLITS = {"S0002": "train", "S0003": "train", "S0724": "dev", "S0764": "test"}
TRANSCRIPT = "data_aishell/transcript/aishell_transcript_v0.8.txt"
ESPEAK_TONES = {"55": "1", "35": "2", "214": "3", "51": "4", "11": "5"}


def _extract(archive: Path, target: Path) -> None:
    with tarfile.open(archive) as tar:
        tar.extractall(target, filter="data")


@pytest.fixture(scope="module")
def tiny_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_mini_aishell(tmp_path_factory.mktemp("tiny"), scale="tiny", seed=0)


@pytest.fixture(scope="module")
def corpus(tiny_build: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny corpus unpacked the way Kaldi and lhotse unpack AISHELL-1."""
    root = tmp_path_factory.mktemp("corpus")
    _extract(tiny_build / DATA_ARCHIVE, root)
    _extract(tiny_build / RESOURCE_ARCHIVE, root)
    wav_dir = root / "data_aishell" / "wav"
    for speaker_archive in sorted(wav_dir.glob("*.tar.gz")):
        _extract(speaker_archive, wav_dir)
    return root


def _transcripts(corpus: Path) -> dict[str, list[str]]:
    lines = (corpus / TRANSCRIPT).read_text(encoding="utf-8").splitlines()
    return {line.split()[0]: line.split()[1:] for line in lines}


def _member_names(archive: Path) -> list[str]:
    with tarfile.open(archive) as tar:
        return tar.getnames()


def test_data_archive_members(tiny_build: Path) -> None:
    expected = [
        "data_aishell",
        "data_aishell/transcript",
        TRANSCRIPT,
        "data_aishell/wav",
        *(f"data_aishell/wav/{speaker}.tar.gz" for speaker in sorted(TINY_SPLITS)),
    ]
    assert _member_names(tiny_build / DATA_ARCHIVE) == expected


def test_speaker_archive_members(corpus: Path) -> None:
    for speaker, split in TINY_SPLITS.items():
        names = _member_names(corpus / "data_aishell" / "wav" / f"{speaker}.tar.gz")
        assert names[:2] == [split, f"{split}/{speaker}"]
        wav_names = names[2:]
        assert len(wav_names) >= 3
        for name in wav_names:
            assert re.fullmatch(rf"{split}/{speaker}/BAC009{speaker}W\d{{4}}\.wav", name), name


def test_resource_archive_members(tiny_build: Path) -> None:
    names = _member_names(tiny_build / RESOURCE_ARCHIVE)
    assert names == [
        "resource_aishell",
        "resource_aishell/lexicon.txt",
        "resource_aishell/speaker.info",
    ]


def test_speaker_info_lists_tiny_speakers(corpus: Path) -> None:
    lines = (corpus / "resource_aishell" / "speaker.info").read_text(encoding="utf-8").splitlines()
    assert lines == ["0002 F", "0003 M", "0724 F", "0764 F"]


def test_lexicon_covers_transcript_characters(corpus: Path) -> None:
    lines = (corpus / "resource_aishell" / "lexicon.txt").read_text(encoding="utf-8").splitlines()
    assert lines[:2] == ["SIL sil", "<SPOKEN_NOISE> sil"]

    entries = {line.split()[0] for line in lines}
    characters = {
        char for words in _transcripts(corpus).values() for word in words for char in word
    }
    assert characters - entries == set()


def test_wavs_are_16k_mono_int16(corpus: Path) -> None:
    paths = sorted((corpus / "data_aishell" / "wav").rglob("*.wav"))
    assert len(paths) == 14
    for path in paths:
        info = sf.info(path)
        assert info.samplerate == 16000, path
        assert info.channels == 1, path
        assert info.subtype == "PCM_16", path
        assert info.duration > 1.0, path


def test_wav_has_speech_above_noise(corpus: Path) -> None:
    path = next((corpus / "data_aishell" / "wav" / "train" / "S0002").glob("*.wav"))
    samples, _ = sf.read(path, dtype="float64")
    # Every recording starts with at least 0.1 s of noise floor before the speech.
    lead_rms = np.sqrt(np.mean(samples[:1600] ** 2))
    total_rms = np.sqrt(np.mean(samples**2))
    assert lead_rms > 0.0
    assert lead_rms < 0.05 * total_rms


def test_transcript_matches_wavs(corpus: Path) -> None:
    transcripts = _transcripts(corpus)
    wav_ids = {path.stem for path in (corpus / "data_aishell" / "wav").rglob("*.wav")}
    assert set(transcripts) == wav_ids
    assert list(transcripts) == sorted(transcripts)
    for utterance, words in transcripts.items():
        assert re.fullmatch(r"BAC009S\d{4}W\d{4}", utterance)
        assert MIN_CHARS <= len("".join(words)) <= MAX_CHARS, utterance


def test_split_by_speaker(corpus: Path) -> None:
    wav_dir = corpus / "data_aishell" / "wav"
    for speaker, split in TINY_SPLITS.items():
        homes = [
            candidate
            for candidate in ("train", "dev", "test")
            if (wav_dir / candidate / speaker).is_dir()
        ]
        assert homes == [split], speaker


def test_dev_test_text_not_in_train(corpus: Path) -> None:
    texts = {split: set() for split in ("train", "dev", "test")}
    for utterance, words in _transcripts(corpus).items():
        texts[TINY_SPLITS[utterance[6:11]]].add("".join(words))
    assert texts["dev"] & texts["train"] == set()
    assert texts["test"] & texts["train"] == set()


def test_build_is_deterministic(tiny_build: Path, tmp_path: Path) -> None:
    again = make_mini_aishell(tmp_path, scale="tiny", seed=0, workers=1)
    assert (again / DATA_ARCHIVE).read_bytes() == (tiny_build / DATA_ARCHIVE).read_bytes()
    assert (again / RESOURCE_ARCHIVE).read_bytes() == (tiny_build / RESOURCE_ARCHIVE).read_bytes()


def test_build_skips_when_stamp_matches(tiny_build: Path) -> None:
    before = (tiny_build / DATA_ARCHIVE).stat().st_mtime_ns
    time.sleep(0.01)
    make_mini_aishell(tiny_build, scale="tiny", seed=0)
    assert (tiny_build / DATA_ARCHIVE).stat().st_mtime_ns == before


def test_build_reruns_for_other_seed(tmp_path: Path) -> None:
    make_mini_aishell(tmp_path, scale="tiny", seed=0)
    first = (tmp_path / DATA_ARCHIVE).read_bytes()
    make_mini_aishell(tmp_path, scale="tiny", seed=1)
    assert (tmp_path / DATA_ARCHIVE).read_bytes() != first
    assert '"seed": 1' in (tmp_path / STAMP_FILE).read_text(encoding="utf-8")


def test_lhotse_prepare_reads_corpus(corpus: Path) -> None:
    from lhotse.recipes.aishell import prepare_aishell

    manifests = prepare_aishell(corpus)
    assert len(manifests["train"]["recordings"]) == 8
    assert len(manifests["dev"]["recordings"]) == 3
    assert len(manifests["test"]["supervisions"]) == 3


def test_full_scale_speakers_per_split() -> None:
    splits = SCALES["full"].splits
    assert splits["train"][0] == len(speakers_of_split("train"))
    assert splits["dev"][0] == len(speakers_of_split("dev"))
    assert splits["test"][0] == len(speakers_of_split("test"))


def test_held_out_speakers_inside_train_range() -> None:
    train = speakers_of_split("train")
    for profile in speakers_of_split("dev") + speakers_of_split("test"):
        assert profile.variant not in {speaker.variant for speaker in train}, profile.speaker
        for setting in ("rate", "pitch", "pitch_range", "gain_db", "noise_dbfs", "tilt"):
            values = [getattr(speaker, setting) for speaker in train]
            assert min(values) <= getattr(profile, setting) <= max(values), (
                profile.speaker,
                setting,
            )


def test_sentence_pool_distinct_and_seeded() -> None:
    pool = sentence_pool(300, seed=7)
    texts = ["".join(words) for words in pool]
    assert len(set(texts)) == 300
    assert all(MIN_CHARS <= len(text) <= MAX_CHARS for text in texts)
    assert sentence_pool(300, seed=7) == pool
    assert sentence_pool(300, seed=8) != pool


def test_vocabulary_has_no_homophones() -> None:
    sentences = ["".join(words) for words in sentence_pool(2000, seed=0)]
    report = analyze_pronunciations(sentences, get_engine())
    assert report.unaligned == []
    assert report.homophones() == {}
    assert len(report.surfaces) >= 300


def test_word_pinyin_tones_match_espeak() -> None:
    engine = get_engine()
    for word in load_vocabulary().words:
        syllables = split_syllables(engine.phonemes(word.text))
        assert len(syllables) == len(word.text), word.text
        tones = [ESPEAK_TONES.get(re.search(r"\d+", syllable).group()) for syllable in syllables]
        assert tones == [syllable[-1] for syllable in word.pinyin], word.text


@pytest.mark.parametrize(
    ("phonemes", "expected"),
    [
        ("ji51n'iE35n_|", ["ji51", "niE35n"]),
        ("ji35nX'A35N_|", ["ji35n", "XA35N"]),
        ("sa55nt'iE214n_| w'u214_|", ["sa55n", "tiE214n", "wu214"]),
        ("X'@214n_| 'a55n_|", ["X@214n", "a55n"]),
        ("s.'i.51_|", ["s.i.51"]),
    ],
)
def test_split_syllables_cases(phonemes: str, expected: list[str]) -> None:
    assert split_syllables(phonemes) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0, "零"),
        (10, "十"),
        (15, "十五"),
        (20, "二十"),
        (105, "一百零五"),
        (110, "一百一十"),
        (220, "两百二十"),
        (1050, "一千零五十"),
        (2008, "两千零八"),
        (10010, "一万零一十"),
        (20500, "两万零五百"),
        (150000, "十五万"),
    ],
)
def test_chinese_numeral_cases(value: int, expected: str) -> None:
    assert chinese_numeral(value) == expected


def test_chinese_numeral_rejects_negative() -> None:
    with pytest.raises(ValueError, match="-1"):
        chinese_numeral(-1)


@pytest.mark.parametrize(
    ("syllable", "expected"),
    [
        ("hang2", ("h", "ang2")),
        ("yuan2", ("vv", "van2")),
        ("you3", ("ii", "iu3")),
        ("yi1", ("ii", "i1")),
        ("wan4", ("uu", "uan4")),
        ("wei2", ("uu", "ui2")),
        ("er4", ("ee", "er4")),
        ("an1", ("aa", "an1")),
        ("shi4", ("sh", "ix4")),
        ("si1", ("s", "iy1")),
        ("ju1", ("j", "v1")),
        ("xue2", ("x", "ve2")),
        ("lv4", ("l", "v4")),
        ("zhong1", ("zh", "ong1")),
        ("de5", ("d", "e5")),
    ],
)
def test_pinyin_to_phones_cases(syllable: str, expected: tuple[str, str]) -> None:
    assert pinyin_to_phones(syllable) == expected


def test_pinyin_to_phones_rejects_missing_tone() -> None:
    with pytest.raises(ValueError, match="'hang'"):
        pinyin_to_phones("hang")


def test_resample_keeps_sine() -> None:
    times = np.arange(22050) / 22050
    output = resample(np.sin(2 * np.pi * 1000 * times), 22050, 16000)
    expected = np.sin(2 * np.pi * 1000 * np.arange(16000) / 16000)
    assert len(output) == 16000
    assert np.abs(output - expected)[100:-100].max() < 1e-3


def test_resample_removes_alias() -> None:
    times = np.arange(22050) / 22050
    output = resample(np.sin(2 * np.pi * 9000 * times), 22050, 16000)
    assert np.sqrt(np.mean(output[100:-100] ** 2)) < 1e-3


def test_write_tar_gz_reproducible(tmp_path: Path) -> None:
    files = {"b/y.txt": b"y", "a/x.txt": b"x"}
    write_tar_gz(tmp_path / "one.tar.gz", files)
    write_tar_gz(tmp_path / "two.tar.gz", dict(reversed(list(files.items()))))
    assert (tmp_path / "one.tar.gz").read_bytes() == (tmp_path / "two.tar.gz").read_bytes()

    with tarfile.open(tmp_path / "one.tar.gz") as tar:
        members = tar.getmembers()
    assert [member.name for member in members] == ["a", "a/x.txt", "b", "b/y.txt"]
    assert {member.mtime for member in members} == {ARCHIVE_MTIME}
    assert {member.uid for member in members} == {0}
