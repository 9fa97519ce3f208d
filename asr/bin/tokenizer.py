"""Train a tokenizer from a Kaldi-style text file and write its ``tokens.txt``.

Usage::

    python -m asr.bin.tokenizer train --text data/train/text --model-prefix data/lang_char/tokenizer

Each line of ``--text`` is ``utt_id transcript`` (pass ``--no-utt-id`` for bare transcripts).
Writes ``PREFIX.model``, ``PREFIX.vocab`` and ``tokens.txt`` beside them.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from asr.text.tokenizer import MODEL_TYPES, Tokenizer

logger = logging.getLogger(__name__)


def read_transcripts(path: Path, has_utt_id: bool) -> list[str]:
    """Read transcripts from ``path``, dropping the leading utterance id when ``has_utt_id``."""
    texts = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if has_utt_id:
            fields = line.split(maxsplit=1)
            texts.append(fields[1] if len(fields) == 2 else "")
        else:
            texts.append(line)
    return texts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train a SentencePiece char or BPE model")
    train.add_argument("--text", type=Path, required=True, help="transcript file, one per line")
    train.add_argument("--model-prefix", type=Path, required=True,
                       help="output path without extension (PREFIX.model, PREFIX.vocab)")
    train.add_argument("--model-type", choices=MODEL_TYPES, default="char",
                       help="char units (Mandarin) or BPE (default: char)")
    train.add_argument("--vocab-size", type=int, default=None,
                       help="total ids including the 3 special symbols (required for bpe,"
                       " default for char: every character)")
    train.add_argument("--tokens", type=Path, default=None,
                       help="tokens.txt output path (default: tokens.txt beside the model)")
    train.add_argument("--no-utt-id", action="store_true",
                       help="lines are bare transcripts without a leading utterance id")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )

    if not args.text.is_file():
        parser.error(f"transcript file {args.text} not found")
    texts = read_transcripts(args.text, has_utt_id=not args.no_utt_id)

    tokenizer = Tokenizer.train(texts, args.model_prefix, args.model_type, args.vocab_size)
    tokens_path = args.tokens or args.model_prefix.parent / "tokens.txt"
    tokenizer.export_tokens(tokens_path)

    print(f"Wrote {args.model_prefix}.model and {tokens_path} ({tokenizer.vocab_size} tokens).")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
