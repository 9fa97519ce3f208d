"""Tests for the SentencePiece tokenizer with fixed special ids."""

from __future__ import annotations

import pytest

from asr.bin.tokenizer import main as tokenizer_cli
from asr.text.tokenizer import Tokenizer

MANDARIN = [
    "今天天气很好",
    "我们去公园散步",
    "天气预报说明天下雨",
    "好好学习 天天向上",
]

ENGLISH = [
    "the cat sat on the mat",
    "the dog sat on the log",
    "a cat and a dog met on the mat",
    "the log and the mat",
] * 5


@pytest.fixture
def char_tokenizer(tmp_path) -> Tokenizer:
    return Tokenizer.train(MANDARIN, tmp_path / "lang" / "tokenizer")


def test_char_special_ids(char_tokenizer):
    assert char_tokenizer.id_to_piece(0) == "<blank>"
    assert char_tokenizer.id_to_piece(1) == "<unk>"
    assert char_tokenizer.id_to_piece(2) == "<sos/eos>"
    assert char_tokenizer.piece_to_id("<sos/eos>") == 2


def test_char_vocab_is_all_characters(char_tokenizer):
    characters = set("".join(MANDARIN).replace(" ", ""))

    assert char_tokenizer.units == characters
    assert char_tokenizer.vocab_size == len(characters) + 3


def test_char_most_frequent_first(char_tokenizer):
    # 天 occurs 6 times, more than any other character.
    assert char_tokenizer.id_to_piece(3) == "天"


def test_char_no_word_boundary_pieces(char_tokenizer):
    assert not any("\u2581" in unit for unit in char_tokenizer.units)


def test_char_round_trip(char_tokenizer):
    text = "明天天气很好"

    ids = char_tokenizer.encode(text)

    assert len(ids) == 6
    assert all(i > 2 for i in ids)
    assert char_tokenizer.decode(ids) == text


def test_char_encode_drops_spaces(char_tokenizer):
    assert char_tokenizer.encode("天 气") == char_tokenizer.encode("天气")


def test_char_oov_maps_to_unk_each(char_tokenizer):
    ids = char_tokenizer.encode("今天猫狗好")

    assert ids[2:4] == [1, 1]
    assert len(ids) == 5


def test_char_decode_skips_blank_and_sos_eos(char_tokenizer):
    ids = [0, 2] + char_tokenizer.encode("好") + [0, 1, 2]

    assert char_tokenizer.decode(ids) == "好<unk>"


def test_char_piece_to_id_unknown(char_tokenizer):
    assert char_tokenizer.piece_to_id("猫") == 1


def test_char_vocab_size_too_large(tmp_path):
    with pytest.raises(ValueError, match="exceeds"):
        Tokenizer.train(MANDARIN, tmp_path / "tokenizer", vocab_size=1000)


def test_tokens_txt_content(char_tokenizer, tmp_path):
    path = tmp_path / "tokens.txt"

    char_tokenizer.export_tokens(path)
    lines = path.read_text(encoding="utf-8").splitlines()

    assert lines[:4] == ["<blank> 0", "<unk> 1", "<sos/eos> 2", "天 3"]
    assert len(lines) == char_tokenizer.vocab_size
    assert lines[-1].split()[1] == str(char_tokenizer.vocab_size - 1)


def test_training_deterministic(tmp_path):
    first = Tokenizer.train(MANDARIN, tmp_path / "a" / "tokenizer")
    second = Tokenizer.train(MANDARIN, tmp_path / "b" / "tokenizer")

    first.export_tokens(tmp_path / "a" / "tokens.txt")
    second.export_tokens(tmp_path / "b" / "tokens.txt")

    first_tokens = (tmp_path / "a" / "tokens.txt").read_bytes()
    assert first_tokens == (tmp_path / "b" / "tokens.txt").read_bytes()


def test_load_restores_char_mode(char_tokenizer, tmp_path):
    loaded = Tokenizer.load(tmp_path / "lang" / "tokenizer.model")

    assert loaded.model_type == "char"
    assert loaded.encode("今天猫好") == char_tokenizer.encode("今天猫好")


def test_load_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.model"):
        Tokenizer.load(tmp_path / "missing.model")


def test_bpe_special_ids_and_round_trip(tmp_path):
    tokenizer = Tokenizer.train(ENGLISH, tmp_path / "bpe", model_type="bpe", vocab_size=30)
    text = "the cat sat on the log"

    ids = tokenizer.encode(text)

    assert [tokenizer.id_to_piece(i) for i in range(3)] == ["<blank>", "<unk>", "<sos/eos>"]
    assert tokenizer.vocab_size == 30
    assert Tokenizer.load(tmp_path / "bpe.model").model_type == "bpe"
    assert min(ids) > 2
    assert tokenizer.decode(ids) == text


def test_bpe_needs_vocab_size(tmp_path):
    with pytest.raises(ValueError, match="vocab_size"):
        Tokenizer.train(ENGLISH, tmp_path / "bpe", model_type="bpe")


def test_cli_train_writes_model_and_tokens(tmp_path):
    text_file = tmp_path / "text"
    text_file.write_text(
        "".join(f"utt{i} {line}\n" for i, line in enumerate(MANDARIN)), encoding="utf-8"
    )

    model_prefix = tmp_path / "out" / "tok"
    tokenizer_cli(["train", "--text", str(text_file), "--model-prefix", str(model_prefix)])
    lines = (tmp_path / "out" / "tokens.txt").read_text(encoding="utf-8").splitlines()

    assert (tmp_path / "out" / "tok.model").is_file()
    assert lines[3] == "天 3"
    assert "utt0" not in Tokenizer.load(tmp_path / "out" / "tok.model").units
