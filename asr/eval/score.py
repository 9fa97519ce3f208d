"""CER/WER scoring of hypotheses against references, with per-utterance alignments."""

from __future__ import annotations

import logging
import math
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

import jiwer

from asr.eval.normalize import ScoringMode, tokenize_for_scoring

logger = logging.getLogger(__name__)

# Alignment operations, in the letters that scoring tools print.
CORRECT = "C"
SUBSTITUTION = "S"
DELETION = "D"
INSERTION = "I"

_JIWER_OPS = {
    "equal": CORRECT,
    "substitute": SUBSTITUTION,
    "delete": DELETION,
    "insert": INSERTION,
}
_MAX_LOGGED_IDS = 10
_TEXT_LINE = re.compile(r"(\S+)(?:\s+(.*))?")


def _error_rate(errors: int, ref_length: int) -> float:
    """Return ``100 * errors / ref_length``, or 0.0 when both are 0 and ``inf`` when only N is."""
    if ref_length > 0:
        return 100.0 * errors / ref_length
    return 0.0 if errors == 0 else math.inf


def _display_width(token: str) -> int:
    """Return the terminal width of ``token``: 2 columns for wide and full-width characters."""
    return sum(2 if unicodedata.east_asian_width(char) in "WF" else 1 for char in token)


@dataclass
class UtteranceAlignment:
    """Token-level alignment of one utterance.

    ``ref``, ``hyp`` and ``ops`` have equal length, and slot ``i`` has op ``C``, ``S``, ``D`` or
    ``I``. The hypothesis slot of a deletion and the reference slot of an insertion are ``""``.
    """

    utt_id: str
    ref: list[str]
    hyp: list[str]
    ops: list[str]
    missing_hyp: bool = False

    def count(self, op: str) -> int:
        """Return how many slots carry ``op`` (one of ``C``, ``S``, ``D``, ``I``)."""
        return self.ops.count(op)

    @property
    def ref_length(self) -> int:
        """Number of reference tokens (N)."""
        return len(self.ops) - self.count(INSERTION)

    @property
    def errors(self) -> int:
        """Substitutions plus deletions plus insertions."""
        return len(self.ops) - self.count(CORRECT)

    @property
    def error_rate(self) -> float:
        """Error rate of this utterance in percent."""
        return _error_rate(self.errors, self.ref_length)

    def format(self, metric: str = "WER") -> str:
        """Format as WeNet-like ``utt:``, ``WER:`` (or ``CER:``), ``lab:`` and ``rec:`` lines."""
        header = f"utt: {self.utt_id}"
        if self.missing_hyp:
            header += " (missing from hypotheses)"

        counts = (
            f"{metric}: {self.error_rate:.2f} % N={self.ref_length} C={self.count(CORRECT)} "
            f"S={self.count(SUBSTITUTION)} D={self.count(DELETION)} I={self.count(INSERTION)}"
        )

        lab_cells = []
        rec_cells = []
        for ref_token, hyp_token in zip(self.ref, self.hyp):
            width = max(_display_width(ref_token), _display_width(hyp_token))
            lab_cells.append(ref_token + " " * (width - _display_width(ref_token)))
            rec_cells.append(hyp_token + " " * (width - _display_width(hyp_token)))

        lab = ("lab: " + " ".join(lab_cells)).rstrip()
        rec = ("rec: " + " ".join(rec_cells)).rstrip()
        return "\n".join([header, counts, lab, rec])


@dataclass
class ScoreResult:
    """Corpus-level CER/WER with its counts and the per-utterance alignments.

    ``ref_length`` (N) counts reference tokens, so ``error_rate`` is
    ``100 * (substitutions + deletions + insertions) / ref_length`` in percent.
    ``num_utterances`` counts every reference, including those without hypothesis.
    """

    error_rate: float
    correct: int
    substitutions: int
    deletions: int
    insertions: int
    ref_length: int
    num_utterances: int
    alignments: list[UtteranceAlignment] = field(default_factory=list)
    missing_hyp_ids: list[str] = field(default_factory=list)
    extra_hyp_ids: list[str] = field(default_factory=list)
    # "CER" for char mode and "WER" for word mode, as printed in the details.
    metric: str = "CER"

    def summary(self) -> str:
        """Format the WeNet-like ``Overall -> ...`` line and an utterance count line."""
        overall = (
            f"Overall -> {self.error_rate:.2f} % N={self.ref_length} C={self.correct} "
            f"S={self.substitutions} D={self.deletions} I={self.insertions}"
        )
        utterances = (
            f"Utterances -> scored: {self.num_utterances}, "
            f"without hypothesis (scored as deletions): {len(self.missing_hyp_ids)}, "
            f"hypotheses without reference (ignored): {len(self.extra_hyp_ids)}"
        )
        return f"{overall}\n{utterances}"

    def format_details(self) -> str:
        """Format every utterance alignment followed by the summary, as a details file holds."""
        blocks = [alignment.format(self.metric) for alignment in self.alignments]
        lines = ["\n\n".join(blocks), "", "=" * 75, self.summary()]
        if self.extra_hyp_ids:
            lines.append("Hypotheses without reference: " + " ".join(self.extra_hyp_ids))
        return "\n".join(lines) + "\n"


def align_tokens(utt_id: str, ref: list[str], hyp: list[str]) -> UtteranceAlignment:
    """Align reference and hypothesis tokens by minimum edit distance (jiwer).

    Tokens must be non-empty and free of whitespace, as :func:`tokenize_for_scoring` returns
    them. Among alignments of equal cost, jiwer's choice decides how errors split into S, D
    and I, so the split can differ from WeNet's while the error total is the same.
    """
    output = jiwer.process_words(" ".join(ref), " ".join(hyp))

    aligned_ref: list[str] = []
    aligned_hyp: list[str] = []
    ops: list[str] = []
    for chunk in output.alignments[0]:
        op = _JIWER_OPS[chunk.type]
        ref_span = ref[chunk.ref_start_idx : chunk.ref_end_idx]
        hyp_span = hyp[chunk.hyp_start_idx : chunk.hyp_end_idx]
        length = max(len(ref_span), len(hyp_span))

        aligned_ref.extend(ref_span if ref_span else [""] * length)
        aligned_hyp.extend(hyp_span if hyp_span else [""] * length)
        ops.extend([op] * length)

    return UtteranceAlignment(utt_id=utt_id, ref=aligned_ref, hyp=aligned_hyp, ops=ops)


def _log_ids(message: str, ids: list[str]) -> None:
    """Log a warning with the number of ``ids`` and the first few of them."""
    shown_ids = " ".join(ids[:_MAX_LOGGED_IDS])
    if len(ids) > _MAX_LOGGED_IDS:
        shown_ids += " ..."
    logger.warning("%s: %d, ids: %s", message, len(ids), shown_ids)


def score(refs: dict[str, str], hyps: dict[str, str], mode: ScoringMode = "char") -> ScoreResult:
    """Score hypotheses against references and align every utterance.

    Args:
        refs: utterance id to reference text. Every reference is scored, in this order.
        hyps: utterance id to hypothesis text. An empty text is a valid hypothesis.
        mode: ``"char"`` for CER or ``"word"`` for WER, see :func:`tokenize_for_scoring`.

    Returns:
        The corpus counts and error rate in percent. A reference without a hypothesis is
        scored as all deletions and listed in ``missing_hyp_ids``. A hypothesis without a
        reference is ignored and listed in ``extra_hyp_ids``. Both cases are logged.
    """
    alignments = []
    missing_hyp_ids = []
    for utt_id, ref_text in refs.items():
        missing = utt_id not in hyps
        if missing:
            missing_hyp_ids.append(utt_id)

        ref_tokens = tokenize_for_scoring(ref_text, mode)
        hyp_tokens = tokenize_for_scoring(hyps.get(utt_id, ""), mode)
        alignment = align_tokens(utt_id, ref_tokens, hyp_tokens)
        alignment.missing_hyp = missing
        alignments.append(alignment)

    extra_hyp_ids = [utt_id for utt_id in hyps if utt_id not in refs]
    if missing_hyp_ids:
        _log_ids("References without hypothesis (scored as all deletions)", missing_hyp_ids)
    if extra_hyp_ids:
        _log_ids("Hypotheses without reference (ignored)", extra_hyp_ids)

    correct = sum(alignment.count(CORRECT) for alignment in alignments)
    substitutions = sum(alignment.count(SUBSTITUTION) for alignment in alignments)
    deletions = sum(alignment.count(DELETION) for alignment in alignments)
    insertions = sum(alignment.count(INSERTION) for alignment in alignments)
    ref_length = correct + substitutions + deletions

    return ScoreResult(
        error_rate=_error_rate(substitutions + deletions + insertions, ref_length),
        correct=correct,
        substitutions=substitutions,
        deletions=deletions,
        insertions=insertions,
        ref_length=ref_length,
        num_utterances=len(refs),
        alignments=alignments,
        missing_hyp_ids=missing_hyp_ids,
        extra_hyp_ids=extra_hyp_ids,
        metric="CER" if mode == "char" else "WER",
    )


def read_text_file(path: str | Path) -> dict[str, str]:
    """Read a Kaldi-style text file of ``utt_id text`` lines into an ordered dict.

    The id is the first whitespace-free field and the text is the rest of the line with
    surrounding whitespace stripped, possibly empty. Blank lines are skipped. Raises
    ``ValueError`` naming the file and line number for a line that starts with whitespace
    before its text (no id), a duplicate id or bytes that are not UTF-8.
    """
    path = Path(path)
    texts: dict[str, str] = {}

    with path.open("rb") as stream:
        for line_number, raw_line in enumerate(stream, start=1):
            # Decoding line by line puts the exact line number into the error.
            encoding = "utf-8-sig" if line_number == 1 else "utf-8"
            try:
                line = raw_line.decode(encoding).rstrip("\r\n")
            except UnicodeDecodeError as error:
                raise ValueError(
                    f"{path}:{line_number}: invalid UTF-8 ({error.reason}). "
                    "Re-encode the file as UTF-8."
                ) from error

            if not line.strip():
                continue

            match = _TEXT_LINE.fullmatch(line)
            if match is None:
                raise ValueError(
                    f"{path}:{line_number}: malformed line {line!r}: expected "
                    "'<utt_id> <text>' with the id at the start of the line."
                )

            utt_id, text = match.group(1), (match.group(2) or "").strip()
            if utt_id in texts:
                raise ValueError(
                    f"{path}:{line_number}: duplicate utterance id {utt_id!r}. "
                    "Each id must appear once per file, so remove or rename the duplicate."
                )
            texts[utt_id] = text

    return texts
