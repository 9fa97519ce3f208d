"""Per-character syllables as espeak-ng speaks them, to find homophones a model cannot separate."""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from asr.data.mini_aishell.espeak import EspeakEngine

# Vowel letters of espeak-ng's Mandarin phonemes. A syllable's tone digits follow its vowel.
_VOWELS = frozenset("aAeEiIoOuUy@&3V")
_TONE_RE = re.compile(r"(\D*?)(\d+)")


def split_syllables(phonemes: str) -> list[str]:
    """Split espeak-ng Mandarin phonemes into syllables such as "tS;iA55" or "XA35N", unstressed.

    espeak-ng writes the tone digits after the vowel and a nasal coda after the tone, so an "n"
    after the digits ends the syllable unless a vowel follows it ("ji51n'iE35n" is yi4 + nian2).
    """
    syllables: list[str] = []
    for word in re.split(r"[_| ]+", phonemes):
        word = word.replace("'", "").replace(",", "")
        if not word:
            continue

        parts = _TONE_RE.findall(word)
        tail = word[sum(len(onset) + len(tone) for onset, tone in parts) :]
        word_syllables: list[str] = []
        for onset, tone in parts:
            starts_with_coda = onset[:1] == "N" or (
                onset[:1] == "n" and onset[1:2] != "" and onset[1] not in _VOWELS
            )
            if word_syllables and starts_with_coda:
                word_syllables[-1] += onset[0]
                onset = onset[1:]
            word_syllables.append(onset + tone)
        if word_syllables and tail:
            word_syllables[-1] += tail
        syllables.extend(word_syllables)
    return syllables


@dataclass
class PronunciationReport:
    """Spoken syllables of each character over a set of sentences, and the unaligned sentences."""

    surfaces: dict[str, Counter] = field(default_factory=dict)
    unaligned: list[str] = field(default_factory=list)

    def homophones(self) -> dict[str, list[str]]:
        """Return syllable -> characters for every syllable spoken for two or more characters."""
        by_syllable: dict[str, list[str]] = defaultdict(list)
        for char in sorted(self.surfaces):
            for syllable in sorted(self.surfaces[char]):
                by_syllable[syllable].append(char)
        return {
            syllable: chars for syllable, chars in sorted(by_syllable.items()) if len(chars) > 1
        }

    def variable_characters(self) -> dict[str, Counter]:
        """Return the characters spoken as several syllables (neutral tone, sandhi, polyphones)."""
        return {char: counts for char, counts in sorted(self.surfaces.items()) if len(counts) > 1}


def analyze_pronunciations(sentences: Iterable[str], engine: EspeakEngine) -> PronunciationReport:
    """Align each sentence's characters with espeak-ng's syllables and collect them per character.

    A sentence whose syllable count differs from its character count is listed in `unaligned`.
    """
    surfaces: dict[str, Counter] = defaultdict(Counter)
    unaligned = []
    for sentence in sentences:
        syllables = split_syllables(engine.phonemes(sentence))
        if len(syllables) != len(sentence):
            unaligned.append(sentence)
            continue
        for char, syllable in zip(sentence, syllables):
            surfaces[char][syllable] += 1
    return PronunciationReport(surfaces=dict(surfaces), unaligned=unaligned)
