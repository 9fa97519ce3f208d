"""Train the tokenizer on the training transcripts and check dev/test text against it.

Usage::

    python -m asr.bin.lang --manifest-dir data/manifests --lang-dir data/lang_char

Writes ``LANG_DIR/tokenizer.model``, ``LANG_DIR/tokens.txt`` (``symbol id`` lines, ``<blank>``
at id 0) and ``LANG_DIR/oov_report.json``. The report lists, per split, the utterances with
characters outside the vocabulary. Those characters map to ``<unk>`` at training time.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from lhotse import CutSet

from asr.text.tokenizer import Tokenizer

logger = logging.getLogger(__name__)


def find_oov(cuts: CutSet, units: set[str]) -> dict[str, list[str]]:
    """Map each utterance id whose text has characters outside ``units`` to those characters."""
    oov: dict[str, list[str]] = {}
    for cut in cuts:
        for supervision in cut.supervisions:
            missing = sorted({ch for ch in supervision.text if ch not in units and not ch.isspace()})
            if missing:
                oov[cut.id] = missing
    return oov


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--manifest-dir", type=Path, required=True,
                        help="directory with cuts_{train,dev,test}.jsonl.gz")
    parser.add_argument("--lang-dir", type=Path, required=True, help="output directory")
    parser.add_argument("--model-type", choices=["char", "bpe"], default="char",
                        help="character model (Mandarin) or BPE (English)")
    parser.add_argument("--vocab-size", type=int, default=None, help="BPE vocabulary size")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    train_path = args.manifest_dir / "cuts_train.jsonl.gz"
    if not train_path.is_file():
        logger.error("%s not found: run data preparation (recipe stage 1) first.", train_path)
        return 1
    train_cuts = CutSet.from_file(train_path)
    texts = [s.text for cut in train_cuts for s in cut.supervisions]
    if not texts:
        raise SystemExit(f"No transcripts in {args.manifest_dir / 'cuts_train.jsonl.gz'}.")

    args.lang_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = Tokenizer.train(
        texts, args.lang_dir / "tokenizer", model_type=args.model_type, vocab_size=args.vocab_size
    )
    tokenizer.export_tokens(args.lang_dir / "tokens.txt")
    logger.info("Tokenizer: %d units from %d transcripts", tokenizer.vocab_size, len(texts))

    report = {}
    for split in ("dev", "test"):
        path = args.manifest_dir / f"cuts_{split}.jsonl.gz"
        if not path.is_file():
            continue
        oov = find_oov(CutSet.from_file(path), tokenizer.units)
        report[split] = {"num_utterances": len(oov), "utterances": oov}
        if oov:
            logger.warning("%s: %d utterances have characters outside the vocabulary "
                           "(mapped to <unk>), e.g. %s", split, len(oov), next(iter(oov.items())))
    (args.lang_dir / "oov_report.json").write_text(json.dumps(report, ensure_ascii=False, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
