"""Read ``tokens.txt`` (one ``symbol id`` line per token) and map token ids to text."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

BLANK_ID = 0
UNK_ID = 1
SOS_EOS_ID = 2

SPECIAL_SYMBOLS = {BLANK_ID: "<blank>", UNK_ID: "<unk>", SOS_EOS_ID: "<sos/eos>"}

# SentencePiece's word-boundary marker, which becomes a space in the text.
WORD_BOUNDARY = "\u2581"


class TokensError(ValueError):
    """A ``tokens.txt`` file is missing or malformed."""


@dataclass(frozen=True)
class TokenTable:
    """Token symbols indexed by id, with ``<blank>``, ``<unk>`` and ``<sos/eos>`` at ids 0, 1, 2."""

    symbols: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.symbols)

    def to_text(self, token_ids: Sequence[int]) -> str:
        """Join the symbols of ``token_ids``, skipping blank and sos/eos, with ``▁`` as a space."""
        pieces = [
            self.symbols[i] for i in token_ids if i not in (BLANK_ID, SOS_EOS_ID)
        ]
        return "".join(pieces).replace(WORD_BOUNDARY, " ").strip()


def read_tokens(path: str | Path) -> TokenTable:
    """Read a token table, checking that ids run 0..V-1 once each with the fixed special symbols.

    Raises:
        TokensError: naming the file and line of the first problem.
    """
    path = Path(path)
    if not path.is_file():
        raise TokensError(f"{path}: token table not found. Export the model with its tokens.txt.")

    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as error:
        raise TokensError(f"{path}: token table is not valid UTF-8 ({error}).") from error

    symbol_of_id: dict[int, str] = {}
    id_of_symbol: dict[str, int] = {}
    line_of_id: dict[int, int] = {}
    for line_number, line in enumerate(lines, start=1):
        where = f"{path}:{line_number}"
        fields = line.split()
        if len(fields) != 2:
            raise TokensError(
                f"{where}: expected 'symbol id', got {line!r} ({len(fields)} fields)."
            )

        symbol, id_text = fields
        if not id_text.isdigit():
            raise TokensError(f"{where}: token id {id_text!r} is not a non-negative integer.")
        token_id = int(id_text)
        if token_id in symbol_of_id:
            raise TokensError(
                f"{where}: id {token_id} is already used by {symbol_of_id[token_id]!r}."
            )
        if symbol in id_of_symbol:
            raise TokensError(f"{where}: symbol {symbol!r} already has id {id_of_symbol[symbol]}.")
        symbol_of_id[token_id] = symbol
        id_of_symbol[symbol] = token_id
        line_of_id[token_id] = line_number

    if not symbol_of_id:
        raise TokensError(f"{path}: token table is empty.")
    missing = sorted(set(range(len(symbol_of_id))) - set(symbol_of_id))
    if missing:
        raise TokensError(
            f"{path}: ids must run from 0 to {len(symbol_of_id) - 1} without gaps, but id"
            f" {missing[0]} is missing."
        )
    for token_id, expected in SPECIAL_SYMBOLS.items():
        actual = symbol_of_id[token_id]
        if actual != expected:
            raise TokensError(
                f"{path}:{line_of_id[token_id]}: id {token_id} must be {expected!r}, got"
                f" {actual!r}. Export tokens.txt with the project's tokenizer."
            )

    return TokenTable(tuple(symbol_of_id[i] for i in range(len(symbol_of_id))))
