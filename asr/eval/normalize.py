"""Text normalization and tokenization for CER/WER scoring, compatible with WeNet's scorer.

Rules, applied in order by :func:`normalize_for_scoring`:

1. Unicode NFKC, so full-width Latin letters and digits (``ｉＰ１２``) become ASCII and
   compatibility ideographs become their unified form.
2. Tags such as ``<unk>`` or ``<noise>`` are removed, as WeNet's ``compute-wer.py`` does.
3. Lowercase. WeNet uppercases instead, but either choice gives the same scores.
4. Punctuation (Unicode categories P*, ASCII and full-width CJK alike, such as ``，。！？、《》…``)
   and symbols (S*: ``+ = $ %`` ...) become spaces, so they separate tokens and never count.
   An apostrophe between two letters or digits (``don't``, ``xi'an``) stays in the word.
5. Whitespace runs collapse to one space.

Character mode (CER) splits like WeNet's ``compute-wer.py --char=1``. Every "other letter"
(category Lo: CJK ideographs, kana, Hangul) is one token, and a run of the remaining letters
and digits is one token. Letters and digits merge, so ``iPhone12`` is the single token
``iphone12``, as in WeNet, where any run of non-space ASCII characters is one token. Unlike
WeNet, punctuation inside such a run splits it (``12.5`` gives ``12`` and ``5``). Word mode
(WER) splits the normalized text on whitespace.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Literal

ScoringMode = Literal["char", "word"]
SCORING_MODES: tuple[str, ...] = ("char", "word")

# A tag has no whitespace inside its brackets, so "a < b > c" is left alone.
_TAG_PATTERN = re.compile(r"<[^<>\s]+>")
_APOSTROPHES = frozenset("'\u2019")


def _is_word_character(char: str) -> bool:
    """Return whether ``char`` belongs in a run token: a letter, digit or mark that is not Lo."""
    category = unicodedata.category(char)
    return category[0] in "LNM" and category != "Lo"


def _keeps_apostrophe(text: str, index: int) -> bool:
    """Return whether the apostrophe at ``text[index]`` sits inside a word, as in ``don't``."""
    if index == 0 or index == len(text) - 1:
        return False
    return _is_word_character(text[index - 1]) and _is_word_character(text[index + 1])


def normalize_for_scoring(text: str) -> str:
    """Normalize ``text`` for scoring: NFKC, drop tags, lowercase, punctuation to spaces.

    Returns the normalized text with single spaces between chunks and no leading or trailing
    space. An empty or punctuation-only text returns ``""``.
    """
    text = unicodedata.normalize("NFKC", text)
    text = _TAG_PATTERN.sub(" ", text)
    text = text.lower()

    pieces = []
    for index, char in enumerate(text):
        category = unicodedata.category(char)

        if char in _APOSTROPHES and _keeps_apostrophe(text, index):
            pieces.append("'")
        elif category == "Cf":
            # Zero-width format characters (U+200B, U+FEFF, ...) join their neighbors.
            continue
        elif category[0] in "PSZC":
            pieces.append(" ")
        else:
            pieces.append(char)

    return " ".join("".join(pieces).split())


def _split_characters(chunk: str) -> list[str]:
    """Split one whitespace-free chunk into Lo characters and runs of other word characters."""
    tokens: list[str] = []
    run: list[str] = []

    for char in chunk:
        category = unicodedata.category(char)

        if category == "Lo":
            if run:
                tokens.append("".join(run))
                run = []
            tokens.append(char)
        elif category[0] == "M" and not run and tokens:
            # A combining mark after an Lo character (Devanagari vowel signs) stays with it.
            tokens[-1] += char
        else:
            run.append(char)

    if run:
        tokens.append("".join(run))
    return tokens


def tokenize_for_scoring(text: str, mode: ScoringMode = "char") -> list[str]:
    """Normalize ``text`` and split it into scoring tokens.

    Args:
        text: reference or hypothesis text of one utterance, possibly empty.
        mode: ``"char"`` for CER tokens (one per CJK character, one per Latin letter/digit run)
            or ``"word"`` for WER tokens (whitespace split).

    Returns:
        The tokens, none empty and none containing whitespace.

    Example:
        ``tokenize_for_scoring("我用iPhone12，打电话!")`` returns
        ``["我", "用", "iphone12", "打", "电", "话"]``.
    """
    if mode not in SCORING_MODES:
        raise ValueError(f"Invalid scoring mode {mode!r}: expected one of {SCORING_MODES}.")

    chunks = normalize_for_scoring(text).split()
    if mode == "word":
        return chunks

    # NOTE: Lo also covers caseless alphabets such as Arabic, Hebrew and Thai, whose letters
    # become one token each here, as in WeNet's scorer. Use word mode for them.
    tokens: list[str] = []
    for chunk in chunks:
        tokens.extend(_split_characters(chunk))
    return tokens
