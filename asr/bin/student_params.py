"""Print the parameter breakdown of student configs: `python -m asr.bin.student_params --all`."""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from asr.models.student import SSLStudent
from asr.models.student_config import STUDENT_CONF_DIR, load_student_config

# Group of each parameter, by the first pattern that matches its name (checked in order).
PARAMETER_GROUPS: tuple[tuple[str, str, str], ...] = (
    ("conv", "conv front end", r"frontend\."),
    ("projection_norms", "feature proj + norms",
     r"(feature_norm|feature_projection|layer_norm)\.|layers\.\d+\.norm[12]\."),
    ("pos_conv", "pos conv", r"pos_conv\."),
    ("attention_qk", "attn q/k", r"layers\.\d+\.self_attn\.linear_[qk]\."),
    ("attention_v_out", "attn v/out", r"layers\.\d+\.self_attn\.linear_(v|out)\."),
    ("feed_forward", "FFN", r"layers\.\d+\.feed_forward\."),
    ("heads", "pred heads", r"heads\."),
    ("mask_emb", "mask emb", r"mask_emb$"),
)


@dataclass(frozen=True)
class PaperCount:
    """Parameter count reported where a config was introduced, and whether it includes the
    prediction heads."""

    params: float
    includes_heads: bool


# From the ARMHuBERT paper (armhubert, armhubert_s, maskhubert) and the DistilHuBERT paper.
PAPER_COUNTS = {
    "armhubert": PaperCount(26.45e6, includes_heads=True),
    "armhubert_s": PaperCount(22.39e6, includes_heads=True),
    "maskhubert": PaperCount(26.64e6, includes_heads=True),
    "distilhubert": PaperCount(23.49e6, includes_heads=False),
}


def student_parameter_breakdown(model: nn.Module) -> dict[str, int]:
    """Count an `SSLStudent`'s parameters per group; the values sum to its total.

    Raises:
        ValueError: a parameter matches no group (the grouping needs a new pattern).
    """
    counts = {key: 0 for key, _, _ in PARAMETER_GROUPS}

    for name, parameter in model.named_parameters():
        group = next((key for key, _, pattern in PARAMETER_GROUPS if re.match(pattern, name)), None)
        if group is None:
            raise ValueError(f"parameter {name!r} matches no group of {PARAMETER_GROUPS}")
        counts[group] += parameter.numel()
    return counts


def build_on_meta(name_or_path: str) -> SSLStudent:
    """Build a student without allocating its weights (enough for counting)."""
    config = load_student_config(name_or_path)
    with torch.device("meta"):
        return SSLStudent(config)


def _millions(count: float) -> str:
    # Groups of a few thousand parameters (the mask embedding) would print as 0.000M.
    if count < 10_000:
        return f"{int(count):,}"
    return f"{count / 1e6:.3f}M"


def format_table(rows: Sequence[tuple[str, dict[str, int]]]) -> str:
    """Render (config name, breakdown) rows as a Markdown table.

    The last columns give the published count (ARMHuBERT and DistilHuBERT papers) and the
    relative difference from our total with or without heads, whichever that count includes.
    """
    header = [
        "config",
        *(title for _, title, _ in PARAMETER_GROUPS),
        "total",
        "without heads",
        "paper",
        "diff",
    ]
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|",
    ]

    for name, counts in rows:
        total = sum(counts.values())
        without_heads = total - counts["heads"]
        paper = PAPER_COUNTS.get(name)
        paper_cells = ["-", "-"]
        if paper is not None:
            ours = total if paper.includes_heads else without_heads
            scope = "with heads" if paper.includes_heads else "without heads"
            paper_cells = [
                f"{_millions(paper.params)} ({scope})",
                f"{(ours - paper.params) / paper.params:+.2%}",
            ]
        groups = [_millions(counts[key]) for key, _, _ in PARAMETER_GROUPS]
        cells = [name, *groups, _millions(total), _millions(without_heads), *paper_cells]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Count each requested student config and print the table."""
    parser = argparse.ArgumentParser(
        description="Print the parameter count per group of student configs.",
    )
    parser.add_argument(
        "configs",
        nargs="*",
        help=f"config names under {STUDENT_CONF_DIR} (e.g. armhubert) or paths to .yaml files",
    )
    parser.add_argument("--all", action="store_true", help=f"every config in {STUDENT_CONF_DIR}")
    args = parser.parse_args(argv)

    names = list(args.configs)
    if args.all:
        names += sorted(path.stem for path in STUDENT_CONF_DIR.glob("*.yaml"))
    if not names:
        parser.error("name at least one config, or pass --all")

    rows = []
    for name in names:
        try:
            model = build_on_meta(name)
        except (FileNotFoundError, ValueError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        rows.append((model.config.name, student_parameter_breakdown(model)))

    print(format_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
