"""Seeded news-style Mandarin sentences from the hand-written word list and templates."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources

from asr.data.mini_aishell.numerals import DIGITS, chinese_numeral

MIN_CHARS = 5
MAX_CHARS = 15
_RESOURCE_DIR = ("resources", "mini_aishell")


@dataclass(frozen=True)
class Word:
    """One vocabulary entry: its characters, one pinyin syllable per character, and its category."""

    text: str
    pinyin: tuple[str, ...]
    category: str


@dataclass(frozen=True)
class Vocabulary:
    """The word list and sentence templates of the corpus."""

    words: tuple[Word, ...]
    templates: tuple[tuple[str, ...], ...]

    def category(self, name: str) -> list[str]:
        """Return the words of category `name` and of its subcategories `name.*`, in file order."""
        return [
            word.text
            for word in self.words
            if word.category == name or word.category.startswith(name + ".")
        ]

    def characters(self) -> list[str]:
        """Return the sorted characters of all words."""
        return sorted({char for word in self.words for char in word.text})


def _resource_lines(name: str) -> list[tuple[int, list[str]]]:
    text = resources.files("asr").joinpath(*_RESOURCE_DIR, name).read_text(encoding="utf-8")
    lines = []
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.split("#", 1)[0].split()
        if fields:
            lines.append((number, fields))
    return lines


def load_vocabulary() -> Vocabulary:
    """Read words.txt and templates.txt from asr/resources/mini_aishell and check they agree."""
    words = []
    for number, fields in _resource_lines("words.txt"):
        category, text, *pinyin = fields
        if len(pinyin) != len(text):
            raise ValueError(
                f"words.txt line {number}: {text!r} has {len(text)} characters but "
                f"{len(pinyin)} pinyin syllables; give one syllable per character."
            )
        words.append(Word(text=text, pinyin=tuple(pinyin), category=category))

    known_words = {word.text for word in words}
    known_slots = (
        {word.category for word in words}
        | {word.category.split(".")[0] for word in words}
        | set(_BUILT_SLOTS)
    )
    templates = []
    for number, tokens in _resource_lines("templates.txt"):
        for token in tokens:
            is_slot = token.startswith("{") and token.endswith("}")
            if is_slot and token[1:-1] not in known_slots:
                raise ValueError(
                    f"templates.txt line {number}: unknown slot {token}; add words of that "
                    "category to words.txt."
                )
            if not is_slot and token not in known_words:
                raise ValueError(
                    f"templates.txt line {number}: word {token!r} is missing from words.txt."
                )
        templates.append(tuple(tokens))

    return Vocabulary(words=tuple(words), templates=tuple(templates))


def _count(rng: random.Random, low: int, high: int) -> str:
    value = rng.randint(low, high)
    return "两" if value == 2 else chinese_numeral(value)


def _percent(rng: random.Random, vocabulary: Vocabulary) -> list[str]:
    number = chinese_numeral(rng.randint(1, 99))
    if rng.random() < 0.3:
        number += "点" + DIGITS[rng.randint(1, 9)]
    return ["百分之", number]


def _money(rng: random.Random, vocabulary: Vocabulary) -> list[str]:
    if rng.random() < 0.5:
        return [chinese_numeral(rng.randint(1, 999)), "万", "元"]
    return [chinese_numeral(rng.randint(10, 9999)), "元"]


def _verb_object(rng: random.Random, vocabulary: Vocabulary, objects: int) -> list[str]:
    classes = sorted(
        {
            word.category.split(".", 1)[1]
            for word in vocabulary.words
            if word.category.startswith("verb.")
        }
    )
    kind = rng.choice(classes)
    verb = rng.choice(vocabulary.category("verb." + kind))
    chosen = rng.sample(vocabulary.category("obj." + kind), objects)
    if objects == 2:
        return [verb, chosen[0], "和", chosen[1]]
    if rng.random() < 0.25:
        return [verb, rng.choice(vocabulary.category("adj")), chosen[0]]
    return [verb, chosen[0]]


_BUILT_SLOTS: dict[str, Callable[[random.Random, Vocabulary], list[str]]] = {
    "vo": lambda rng, vocabulary: _verb_object(rng, vocabulary, 1),
    "vo2": lambda rng, vocabulary: _verb_object(rng, vocabulary, 2),
    "percent": _percent,
    "tenths": lambda rng, vocabulary: [DIGITS[rng.randint(1, 9)], "成"],
    "money": _money,
    "bignum": lambda rng, vocabulary: [chinese_numeral(rng.randint(2, 9999)), "万"],
    "degrees": lambda rng, vocabulary: [chinese_numeral(rng.randint(5, 39)), "度"],
    "date": lambda rng, vocabulary: [
        chinese_numeral(rng.randint(1, 12)),
        "月",
        chinese_numeral(rng.randint(1, 28)),
        "号",
    ],
    "orgs": lambda rng, vocabulary: [
        _count(rng, 2, 99),
        "家",
        rng.choice(vocabulary.category("org")),
    ],
    "crowd": lambda rng, vocabulary: [
        _count(rng, 2, 999),
        "个",
        rng.choice(vocabulary.category("people")),
    ],
    "goods_count": lambda rng, vocabulary: [
        _count(rng, 2, 20),
        "个",
        rng.choice(vocabulary.category("obj.goods")),
    ],
}


def generate_sentence(rng: random.Random, vocabulary: Vocabulary) -> list[str]:
    """Draw one sentence of MIN_CHARS..MAX_CHARS characters as words, segmented as in AISHELL."""
    while True:
        words: list[str] = []
        for token in rng.choice(vocabulary.templates):
            if not (token.startswith("{") and token.endswith("}")):
                words.append(token)
            elif token[1:-1] in _BUILT_SLOTS:
                words.extend(_BUILT_SLOTS[token[1:-1]](rng, vocabulary))
            else:
                words.append(rng.choice(vocabulary.category(token[1:-1])))

        if MIN_CHARS <= sum(len(word) for word in words) <= MAX_CHARS:
            return words


def sentence_pool(count: int, seed: int, vocabulary: Vocabulary | None = None) -> list[list[str]]:
    """Draw `count` sentences whose character strings are pairwise distinct, in a seeded order."""
    vocabulary = vocabulary or load_vocabulary()
    rng = random.Random(seed)

    seen: set[str] = set()
    pool = []
    # Repeats become common only when `count` nears the number of sentences the templates can make.
    max_draws = 50 * count + 1000
    for _ in range(max_draws):
        if len(pool) == count:
            break
        words = generate_sentence(rng, vocabulary)
        text = "".join(words)
        if text not in seen:
            seen.add(text)
            pool.append(words)

    if len(pool) < count:
        raise RuntimeError(
            f"Only {len(pool)} distinct sentences after {max_draws} draws, {count} requested; "
            "add words or templates under asr/resources/mini_aishell."
        )
    return pool
