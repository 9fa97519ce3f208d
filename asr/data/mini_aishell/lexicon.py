"""AISHELL-1 style lexicon: words as initials and toned finals, e.g. 银行 -> ii in2 h ang2."""

from __future__ import annotations

import re

from asr.data.mini_aishell.text import Vocabulary

# Two-letter initials first so that "zh" is not read as "z".
_INITIALS = tuple("zh ch sh b p m f d t n l g k h j q x r z c s".split())
_Y_FINALS = {
    "i": "i",
    "a": "ia",
    "e": "ie",
    "ao": "iao",
    "ou": "iu",
    "an": "ian",
    "in": "in",
    "ang": "iang",
    "ing": "ing",
    "ong": "iong",
}
_W_FINALS = {
    "u": "u",
    "a": "ua",
    "o": "uo",
    "ai": "uai",
    "ei": "ui",
    "an": "uan",
    "en": "un",
    "ang": "uang",
    "eng": "ueng",
}
_SYLLABLE_RE = re.compile(r"([a-z]+)([1-5])")


def pinyin_to_phones(syllable: str) -> tuple[str, str]:
    """Convert a toned pinyin syllable to (initial, final+tone) as in AISHELL's lexicon.txt.

    Input spells ü as v (lv4). Zero-initial syllables get the pseudo initials aa/ee/oo/ii/uu/vv,
    the u that pinyin writes after j/q/x becomes v, and the apical vowel is ix after zh/ch/sh/r
    and iy after z/c/s: yuan2 -> (vv, van2), ju1 -> (j, v1), shi4 -> (sh, ix4).
    """
    match = _SYLLABLE_RE.fullmatch(syllable)
    if match is None:
        raise ValueError(
            f"Invalid pinyin syllable {syllable!r}; expected letters then a tone 1-5, e.g. 'hang2'."
        )
    letters, tone = match.groups()

    if letters.startswith("yu"):
        return "vv", "v" + letters[2:] + tone
    if letters.startswith("y"):
        rest = letters[1:]
        return "ii", _Y_FINALS.get(rest, rest) + tone
    if letters.startswith("w"):
        rest = letters[1:]
        return "uu", _W_FINALS.get(rest, rest) + tone
    if letters[0] in "aeo":
        return letters[0] * 2, letters + tone

    initial = next((prefix for prefix in _INITIALS if letters.startswith(prefix)), None)
    if initial is None:
        raise ValueError(f"Pinyin syllable {syllable!r} starts with no Mandarin initial.")
    final = letters[len(initial) :]
    if final == "i" and initial in ("zh", "ch", "sh", "r"):
        final = "ix"
    elif final == "i" and initial in ("z", "c", "s"):
        final = "iy"
    elif initial in ("j", "q", "x") and final.startswith("u"):
        final = "v" + final[1:]
    return initial, final + tone


def lexicon_lines(vocabulary: Vocabulary) -> list[str]:
    """Return lexicon.txt lines: SIL and <SPOKEN_NOISE>, then all words and characters, sorted.

    A character gets one line per reading it has in the word list.
    """
    entries: set[tuple[str, tuple[str, ...]]] = set()
    for word in vocabulary.words:
        entries.add((word.text, word.pinyin))
        if len(word.text) > 1:
            entries.update((char, (syllable,)) for char, syllable in zip(word.text, word.pinyin))

    lines = ["SIL sil", "<SPOKEN_NOISE> sil"]
    for text, pinyin in sorted(entries):
        phones = [phone for syllable in pinyin for phone in pinyin_to_phones(syllable)]
        lines.append(" ".join([text, *phones]))
    return lines
