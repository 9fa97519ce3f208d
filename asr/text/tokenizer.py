"""SentencePiece tokenizer with the project's fixed special ids: character units or BPE.

Ids 0, 1 and 2 are always ``<blank>``, ``<unk>`` and ``<sos/eos>``, and the modelling units
follow, most frequent first. SentencePiece's own bos/eos pieces are disabled.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Iterable, Sequence

import sentencepiece as spm

from asr.constants import (
    BLANK_ID,
    BLANK_SYMBOL,
    SOS_EOS_ID,
    SOS_EOS_SYMBOL,
    UNK_ID,
    UNK_SYMBOL,
)

logger = logging.getLogger(__name__)

MODEL_TYPES = ("char", "bpe")

def _strip_whitespace(text: str) -> str:
    return "".join(text.split())


class Tokenizer:
    """Text to token ids and back, backed by a SentencePiece model.

    In ``char`` mode (Mandarin) every character is one unit, whitespace is removed before
    training and encoding, and each out-of-vocabulary character maps to its own ``<unk>``.
    In ``bpe`` mode SentencePiece's usual whitespace handling (the ``▁`` word-boundary marker)
    applies.

    ``decode`` skips ``<blank>`` and ``<sos/eos>`` and renders ``<unk>`` literally, as
    sherpa-onnx does when it maps ids through ``tokens.txt``.
    """

    def __init__(self, processor: spm.SentencePieceProcessor, model_type: str) -> None:
        if model_type not in MODEL_TYPES:
            raise ValueError(
                f"Invalid tokenizer model_type {model_type!r}: expected one of {MODEL_TYPES}."
            )
        self.processor = processor
        self.model_type = model_type
        self._check_special_ids()

        specials = {BLANK_SYMBOL, UNK_SYMBOL, SOS_EOS_SYMBOL}
        self._piece_ids = {
            processor.id_to_piece(i): i for i in range(processor.get_piece_size())
        }
        self._units = frozenset(piece for piece in self._piece_ids if piece not in specials)

    def _check_special_ids(self) -> None:
        for expected_id, symbol in (
            (BLANK_ID, BLANK_SYMBOL),
            (UNK_ID, UNK_SYMBOL),
            (SOS_EOS_ID, SOS_EOS_SYMBOL),
        ):
            actual = self.processor.id_to_piece(expected_id)
            if actual != symbol:
                raise ValueError(
                    f"Tokenizer model has {actual!r} at id {expected_id}, expected {symbol!r}."
                    " Retrain it with Tokenizer.train."
                )

    @classmethod
    def train(
        cls,
        texts: Iterable[str],
        model_prefix: str | Path,
        model_type: str = "char",
        vocab_size: int | None = None,
    ) -> Tokenizer:
        """Train a model on ``texts`` and write ``<model_prefix>.model`` and ``.vocab``.

        Args:
            texts: Transcripts, one utterance per string.
            model_prefix: Output path without extension. Its parent directory is created.
            model_type: "char" (every character is a unit) or "bpe".
            vocab_size: Total ids including the 3 special symbols. Required for "bpe". For
                "char", None keeps every character (character coverage 1.0).

        Training is single-threaded over all sentences, so equal input gives an equal model.
        """
        if model_type not in MODEL_TYPES:
            raise ValueError(
                f"Invalid tokenizer model_type {model_type!r}: expected one of {MODEL_TYPES}."
            )

        is_char = model_type == "char"
        sentences = [_strip_whitespace(t) if is_char else t.strip() for t in texts]
        sentences = [s for s in sentences if s]
        if not sentences:
            raise ValueError("Cannot train a tokenizer: all training texts are empty.")

        if is_char:
            max_vocab_size = len(set("".join(sentences))) + 3
            if vocab_size is None:
                vocab_size = max_vocab_size
            elif vocab_size > max_vocab_size:
                raise ValueError(
                    f"Char tokenizer vocab_size={vocab_size} exceeds the {max_vocab_size} ids"
                    " available (distinct characters + 3 specials); pass None to keep them all."
                )
        elif vocab_size is None:
            raise ValueError("A BPE tokenizer needs vocab_size, e.g. 500 or 5000.")

        model_prefix = Path(model_prefix)
        model_prefix.parent.mkdir(parents=True, exist_ok=True)
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(sentences),
            model_prefix=str(model_prefix),
            model_type=model_type,
            vocab_size=vocab_size,
            character_coverage=1.0,
            pad_id=BLANK_ID,
            pad_piece=BLANK_SYMBOL,
            unk_id=UNK_ID,
            unk_piece=UNK_SYMBOL,
            unk_surface=UNK_SYMBOL,
            bos_id=-1,
            eos_id=-1,
            user_defined_symbols=[SOS_EOS_SYMBOL],
            add_dummy_prefix=not is_char,
            # Text normalization belongs to data preparation, so char units stay as given.
            normalization_rule_name="identity" if is_char else "nmt_nfkc",
            num_threads=1,
            minloglevel=2,
        )
        logger.info("Trained %s tokenizer %s.model with %d ids from %d sentences.",
                    model_type, model_prefix, vocab_size, len(sentences))
        return cls.load(f"{model_prefix}.model")

    @classmethod
    def load(cls, model_path: str | Path) -> Tokenizer:
        """Load a ``.model`` file written by ``Tokenizer.train``."""
        model_path = Path(model_path)
        if not model_path.is_file():
            raise FileNotFoundError(
                f"Tokenizer model {model_path} not found. Train one with Tokenizer.train or"
                " python -m asr.bin.tokenizer train."
            )

        processor = spm.SentencePieceProcessor(model_file=str(model_path))
        return cls(processor, _model_type(processor, model_path))

    @property
    def vocab_size(self) -> int:
        """Number of ids, special symbols included."""
        return self.processor.get_piece_size()

    @property
    def units(self) -> frozenset[str]:
        """Modelling units: every piece except the three special symbols."""
        return self._units

    def id_to_piece(self, token_id: int) -> str:
        """Return the piece of ``token_id``."""
        if not 0 <= token_id < self.vocab_size:
            raise IndexError(f"Token id {token_id} is outside [0, {self.vocab_size}).")
        return self.processor.id_to_piece(token_id)

    def piece_to_id(self, piece: str) -> int:
        """Return the id of ``piece``, or the unk id 1 if it is not in the vocabulary."""
        return self._piece_ids.get(piece, UNK_ID)

    def encode(self, text: str) -> list[int]:
        """Map text to token ids, with unknown characters mapped to the unk id 1."""
        if self.model_type == "char":
            # A per-character lookup, because SentencePiece merges a run of unknown characters
            # into a single <unk> and the targets need one id per character.
            return [self._piece_ids.get(ch, UNK_ID) for ch in _strip_whitespace(text)]
        return self.processor.encode(text, out_type=int)

    def decode(self, token_ids: Sequence[int]) -> str:
        """Map ids to text, skipping ``<blank>`` and ``<sos/eos>``; ``<unk>`` stays literal."""
        unit_ids = [int(i) for i in token_ids if int(i) not in (BLANK_ID, SOS_EOS_ID)]
        if self.model_type == "char":
            return "".join(self.id_to_piece(i) for i in unit_ids)
        return self.processor.decode(unit_ids)

    def export_tokens(self, path: str | Path) -> None:
        """Write ``tokens.txt``: one ``symbol id`` line per id, as WeNet and sherpa-onnx read it."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        lines = [f"{self.processor.id_to_piece(i)} {i}\n" for i in range(self.vocab_size)]
        path.write_text("".join(lines), encoding="utf-8")


def _model_type(processor: spm.SentencePieceProcessor, model_path: Path) -> str:
    # The model type lives only in the serialized trainer spec.
    from sentencepiece import sentencepiece_model_pb2

    proto = sentencepiece_model_pb2.ModelProto()
    proto.ParseFromString(processor.serialized_model_proto())
    model_type = sentencepiece_model_pb2.TrainerSpec.ModelType.Name(proto.trainer_spec.model_type)
    if model_type.lower() not in MODEL_TYPES:
        raise ValueError(
            f"Tokenizer model {model_path} is a SentencePiece {model_type} model. Only char and"
            " bpe models are supported."
        )
    return model_type.lower()
