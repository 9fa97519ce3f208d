"""Print the parameter breakdown of model configs: `python -m asr.bin.params brst_adm`."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from asr.models.asr_model import ASRModel
from asr.models.config import MODEL_CONF_DIR, load_model_config
from asr.models.params import parameter_breakdown

COLUMNS = (
    ("front_end", "front end"),
    ("encoder_blocks", "enc blocks"),
    ("decoder_blocks", "dec blocks"),
    ("adapters", "adapters"),
    ("embeddings_heads", "emb + heads"),
    ("norms_other", "norms/other"),
)


def _millions(count: int) -> str:
    return f"{count / 1e6:.3f}M"


def format_table(rows: Sequence[tuple[str, dict[str, int]]]) -> str:
    """Render (config name, breakdown) rows as a Markdown table with a total column."""
    header = ["config", *(title for _, title in COLUMNS), "total", "total (exact)"]
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|",
    ]

    for name, counts in rows:
        total = sum(counts.values())
        groups = [_millions(counts[key]) for key, _ in COLUMNS]
        cells = [name, *groups, _millions(total), f"{total:,}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Build each requested config at the given vocabulary size and print its breakdown."""
    parser = argparse.ArgumentParser(
        description="Print the parameter count per group of model configs.",
    )
    parser.add_argument(
        "configs",
        nargs="*",
        help=f"config names under {MODEL_CONF_DIR} (e.g. brst_adm) or paths to .yaml files",
    )
    parser.add_argument(
        "--vocab-size",
        type=int,
        default=4233,
        help="vocabulary size including <blank>, <unk> and <sos/eos> "
        "(default: 4233, the AISHELL-1 character vocabulary)",
    )
    parser.add_argument("--all", action="store_true", help=f"every config in {MODEL_CONF_DIR}")
    args = parser.parse_args(argv)

    names = list(args.configs)
    if args.all:
        names += sorted(path.stem for path in MODEL_CONF_DIR.glob("*.yaml"))
    if not names:
        parser.error("name at least one config, or pass --all")

    rows = []
    for name in names:
        try:
            config = load_model_config(name, vocab_size=args.vocab_size)
        except (FileNotFoundError, ValueError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        rows.append((name, parameter_breakdown(ASRModel(config))))

    print(f"Parameters at vocab_size {args.vocab_size}:\n")
    print(format_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
