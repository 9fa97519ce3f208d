"""Tests for scoring normalization, CER/WER counts, text file parsing and the score CLI."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from asr.bin.score import main
from asr.eval.normalize import normalize_for_scoring, tokenize_for_scoring
from asr.eval.score import align_tokens, read_text_file, score


def write_text(path: Path, lines: list[str]) -> Path:
    """Write a Kaldi-style text file of ``utt_id text`` lines."""
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


# Tokenization


def test_tokenize_chinese_one_token_per_char():
    assert tokenize_for_scoring("今天天气") == ["今", "天", "天", "气"]


def test_tokenize_mixed_latin_run():
    assert tokenize_for_scoring("我用iPhone打电话") == ["我", "用", "iphone", "打", "电", "话"]


def test_tokenize_letters_and_digits_merge():
    assert tokenize_for_scoring("买iPhone12吧") == ["买", "iphone12", "吧"]


def test_tokenize_digit_run():
    assert tokenize_for_scoring("打12345号") == ["打", "12345", "号"]


def test_tokenize_full_width_punctuation_dropped():
    text = "“你好”，世界！（测试）《三体》【注】、；：‘啊’…。？"
    assert tokenize_for_scoring(text) == ["你", "好", "世", "界", "测", "试", "三", "体", "注", "啊"]


def test_tokenize_ascii_punctuation_separates():
    assert tokenize_for_scoring('"Hello,world!" (ok)?') == ["hello", "world", "ok"]


def test_tokenize_full_width_latin_folded():
    # NFKC maps full-width letters and digits to ASCII before lowercasing.
    assert tokenize_for_scoring("ＡＢｃ１２") == ["abc12"]


def test_tokenize_apostrophe_inside_word_kept():
    assert tokenize_for_scoring("Don't 'quote'") == ["don't", "quote"]


def test_tokenize_tags_removed():
    assert tokenize_for_scoring("<unk>你好<noise> <sil>") == ["你", "好"]


def test_tokenize_word_mode_splits_whitespace():
    assert tokenize_for_scoring("今天 天气，很好", mode="word") == ["今天", "天气", "很好"]


def test_tokenize_empty_text():
    assert tokenize_for_scoring("  ，。 ") == []


def test_tokenize_invalid_mode_raises():
    with pytest.raises(ValueError, match="'phone'"):
        tokenize_for_scoring("你好", mode="phone")


def test_normalize_collapses_spaces():
    assert normalize_for_scoring("  Hello\t， WORLD  ") == "hello world"


# Alignment and scoring


def test_score_one_substitution():
    # 今天天气很好 vs 今天天汽很好: N=6, 气->汽 is S=1, C=5, so CER = 1/6 = 16.67 %.
    result = score({"u1": "今天天气很好"}, {"u1": "今天天汽很好"})
    assert result.ref_length == 6
    assert result.correct == 5
    assert result.substitutions == 1
    assert result.deletions == 0
    assert result.insertions == 0
    assert result.error_rate == pytest.approx(100 / 6)


def test_score_one_deletion():
    # 我们去吃饭 vs 我去吃饭: N=5, 们 deleted, so CER = 1/5 = 20 %.
    result = score({"u1": "我们去吃饭"}, {"u1": "我去吃饭"})
    assert result.deletions == 1
    assert result.substitutions == 0
    assert result.insertions == 0
    assert result.correct == 4
    assert result.error_rate == pytest.approx(20.0)


def test_score_one_insertion():
    # 你好 vs 你很好: N=2, 很 inserted, so CER = 1/2 = 50 %.
    result = score({"u1": "你好"}, {"u1": "你很好"})
    assert result.insertions == 1
    assert result.substitutions == 0
    assert result.deletions == 0
    assert result.ref_length == 2
    assert result.error_rate == pytest.approx(50.0)


def test_score_corpus_sums_utterances():
    # N = 6 + 5 + 2 = 13 and one S, one D, one I, so C = 13 - 2 = 11 and CER = 3/13 = 23.08 %.
    refs = {"u1": "今天天气很好", "u2": "我们去吃饭", "u3": "你好"}
    hyps = {"u1": "今天天汽很好", "u2": "我去吃饭", "u3": "你很好"}
    result = score(refs, hyps)
    assert result.ref_length == 13
    assert result.correct == 11
    assert result.num_utterances == 3
    assert result.error_rate == pytest.approx(300 / 13)
    assert result.summary().splitlines()[0] == "Overall -> 23.08 % N=13 C=11 S=1 D=1 I=1"


def test_score_mixed_chinese_english_zero_errors():
    result = score({"u1": "我用iPhone打电话"}, {"u1": "我用 iphone 打电话"})
    assert result.ref_length == 6
    assert result.error_rate == 0.0


def test_score_full_width_punctuation_ignored():
    # Reference has 4 characters once ， and ！ are dropped.
    result = score({"u1": "你好，世界！"}, {"u1": "你好世界"})
    assert result.ref_length == 4
    assert result.error_rate == 0.0


def test_score_empty_hypothesis_all_deletions():
    # 北京欢迎你: N=5, empty hypothesis deletes all 5, so CER = 100 %.
    result = score({"u1": "北京欢迎你"}, {"u1": ""})
    assert result.deletions == 5
    assert result.error_rate == pytest.approx(100.0)
    assert result.missing_hyp_ids == []


def test_score_missing_hypothesis_counted():
    # a: 你好 is correct (C=2) and b: 再见 has no hypothesis (D=2). N=4, so CER = 2/4 = 50 %.
    result = score({"a": "你好", "b": "再见"}, {"a": "你好", "x": "多余"})
    assert result.deletions == 2
    assert result.correct == 2
    assert result.num_utterances == 2
    assert result.error_rate == pytest.approx(50.0)
    assert result.missing_hyp_ids == ["b"]
    assert result.alignments[1].missing_hyp


def test_score_extra_hypothesis_ignored(caplog):
    result = score({"a": "你好"}, {"a": "你好", "x": "多余"})
    assert result.extra_hyp_ids == ["x"]
    assert result.insertions == 0
    assert "x" in caplog.text


def test_score_missing_ids_logged(caplog):
    score({"a": "你好", "b": "再见"}, {"a": "你好"})
    assert "without hypothesis (scored as all deletions): 1, ids: b" in caplog.text


def test_score_empty_reference_insertions():
    # b has no reference tokens, so its hypothesis 啊 is I=1. N=2 from a, so CER = 1/2 = 50 %.
    result = score({"a": "你好", "b": ""}, {"a": "你好", "b": "啊"})
    assert result.insertions == 1
    assert result.ref_length == 2
    assert result.error_rate == pytest.approx(50.0)


def test_score_only_empty_reference_is_infinite():
    result = score({"a": ""}, {"a": "啊"})
    assert math.isinf(result.error_rate)


def test_score_both_empty_is_zero():
    result = score({"a": "。"}, {"a": ""})
    assert result.error_rate == 0.0


def test_score_digit_run_substitution():
    # 打 12345 号 vs 打 12346 号: N=3 tokens, the digit run is one S, so CER = 1/3.
    result = score({"u1": "打12345号"}, {"u1": "打12346号"})
    assert result.ref_length == 3
    assert result.substitutions == 1
    assert result.error_rate == pytest.approx(100 / 3)


def test_score_case_insensitive():
    result = score({"u1": "Hello World"}, {"u1": "hello WORLD"}, mode="word")
    assert result.error_rate == 0.0


def test_score_word_mode_english():
    # the cat sat on the mat vs the cat sit on mat: N=6, sat->sit S=1, second "the" D=1.
    result = score({"u1": "the cat sat on the mat"}, {"u1": "the cat sit on mat"}, mode="word")
    assert result.ref_length == 6
    assert result.substitutions == 1
    assert result.deletions == 1
    assert result.error_rate == pytest.approx(200 / 6)


def test_score_word_mode_chinese_words():
    # Word mode: 今天 天气 很好 has N=3 and 天汽 is S=1, so WER = 1/3.
    result = score({"u1": "今天 天气 很好"}, {"u1": "今天 天汽 很好"}, mode="word")
    assert result.ref_length == 3
    assert result.error_rate == pytest.approx(100 / 3)


def test_score_char_mode_chinese_words():
    # Char mode on the same pair: N=6 characters and 汽 is S=1, so CER = 1/6.
    result = score({"u1": "今天 天气 很好"}, {"u1": "今天 天汽 很好"}, mode="char")
    assert result.ref_length == 6
    assert result.error_rate == pytest.approx(100 / 6)


def test_align_tokens_ops():
    alignment = align_tokens("u1", ["a", "b", "c"], ["a", "x", "c", "d"])
    assert alignment.ops == ["C", "S", "C", "I"]
    assert alignment.ref == ["a", "b", "c", ""]
    assert alignment.hyp == ["a", "x", "c", "d"]


def test_alignment_format_pads_wide_tokens():
    # The inserted 很 leaves an empty reference slot padded to 2 columns.
    alignment = score({"u1": "你好"}, {"u1": "你很好"}).alignments[0]
    lines = alignment.format().splitlines()
    assert lines[0] == "utt: u1"
    assert lines[1] == "WER: 50.00 % N=2 C=2 S=0 D=0 I=1"
    assert lines[2] == "lab: 你    好"
    assert lines[3] == "rec: 你 很 好"


def test_alignment_format_mixed_widths():
    # iphone (6 columns) over iphonex (7 columns) pads the reference cell by one space.
    alignment = score({"u1": "用iPhone打"}, {"u1": "用iPhoneX打"}).alignments[0]
    lines = alignment.format().splitlines()
    assert lines[2] == "lab: 用 iphone  打"
    assert lines[3] == "rec: 用 iphonex 打"


# Text files


def test_read_text_file_parses_lines(tmp_path):
    path = tmp_path / "text"
    path.write_bytes("u1 你好 世界 \nu2\tabc\r\nu3\nu4 \n".encode())
    texts = read_text_file(path)
    assert texts == {"u1": "你好 世界", "u2": "abc", "u3": "", "u4": ""}


def test_read_text_file_keeps_order(tmp_path):
    path = write_text(tmp_path / "text", ["b 一", "a 二", "c 三"])
    assert list(read_text_file(path)) == ["b", "a", "c"]


def test_read_text_file_missing_id_raises(tmp_path):
    path = write_text(tmp_path / "text", ["u1 你好", " 没有编号"])
    with pytest.raises(ValueError, match=r"text:2: malformed line"):
        read_text_file(path)


def test_read_text_file_skips_blank_lines(tmp_path):
    path = write_text(tmp_path / "text", ["u1 你好", "", "u2 再见", "  "])
    assert read_text_file(path) == {"u1": "你好", "u2": "再见"}


def test_read_text_file_duplicate_id_raises(tmp_path):
    path = write_text(tmp_path / "text", ["u1 你好", "u1 再见"])
    with pytest.raises(ValueError, match=r"text:2: duplicate utterance id 'u1'"):
        read_text_file(path)


def test_read_text_file_invalid_utf8_raises(tmp_path):
    path = tmp_path / "text"
    path.write_bytes("u1 你好\n".encode() + b"u2 \xff\xfe\n")
    with pytest.raises(ValueError, match=r"text:2: invalid UTF-8"):
        read_text_file(path)


def test_read_text_file_strips_bom(tmp_path):
    path = tmp_path / "text"
    path.write_bytes(b"\xef\xbb\xbf" + "u1 你好\n".encode())
    assert list(read_text_file(path)) == ["u1"]


# CLI


def test_cli_prints_summary(tmp_path, capsys):
    ref = write_text(tmp_path / "ref", ["u1 今天天气很好", "u2 我们去吃饭"])
    hyp = write_text(tmp_path / "hyp", ["u1 今天天汽很好", "u2 我去吃饭"])
    assert main(["--ref", str(ref), "--hyp", str(hyp)]) == 0
    # N = 6 + 5 = 11, S=1 and D=1, so CER = 2/11 = 18.18 %.
    first_line = capsys.readouterr().out.splitlines()[0]
    assert first_line == "Overall -> 18.18 % N=11 C=9 S=1 D=1 I=0"


def test_cli_writes_details(tmp_path, capsys):
    ref = write_text(tmp_path / "ref", ["u1 你好", "u2 再见"])
    hyp = write_text(tmp_path / "hyp", ["u1 你很好"])
    details = tmp_path / "out" / "details.txt"
    assert main(["--ref", str(ref), "--hyp", str(hyp), "--details", str(details)]) == 0

    lines = details.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "utt: u1"
    assert lines[1] == "CER: 50.00 % N=2 C=2 S=0 D=0 I=1"
    assert lines[2] == "lab: 你    好"
    assert lines[3] == "rec: 你 很 好"
    assert "utt: u2 (missing from hypotheses)" in lines
    # N = 2 + 2 = 4 with I=1 from u1 and D=2 from u2, so CER = 3/4 = 75 %.
    assert "Overall -> 75.00 % N=4 C=2 S=0 D=2 I=1" in lines


def test_cli_word_mode(tmp_path, capsys):
    ref = write_text(tmp_path / "ref", ["u1 今天 天气 很好"])
    hyp = write_text(tmp_path / "hyp", ["u1 今天 天汽 很好"])
    assert main(["--ref", str(ref), "--hyp", str(hyp), "--mode", "word"]) == 0
    assert capsys.readouterr().out.startswith("Overall -> 33.33 % N=3 C=2 S=1 D=0 I=0")


def test_cli_malformed_file_fails(tmp_path, caplog):
    ref = write_text(tmp_path / "ref", ["u1 你好", "u1 再见"])
    hyp = write_text(tmp_path / "hyp", ["u1 你好"])
    assert main(["--ref", str(ref), "--hyp", str(hyp)]) == 1
    assert "duplicate utterance id 'u1'" in caplog.text


def test_cli_missing_file_fails(tmp_path):
    hyp = write_text(tmp_path / "hyp", ["u1 你好"])
    assert main(["--ref", str(tmp_path / "absent"), "--hyp", str(hyp)]) == 1
