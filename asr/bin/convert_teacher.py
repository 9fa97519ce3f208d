"""Convert a fairseq HuBERT checkpoint or a Hugging Face HuBERT folder into our plain teacher file.

Usage::

    python -m asr.bin.convert_teacher hubert_base_ls960.pt exp/teacher/hubert_base.pt
    python -m asr.bin.convert_teacher models/hubert-base-ls960 exp/teacher/hubert_base.pt

The output loads with `torch.load(weights_only=True)`, so later runs never unpickle the original.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from asr.models.teacher_checkpoint import TeacherCheckpointError, load_teacher, save_teacher

logger = logging.getLogger(__name__)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("src", type=Path, help="fairseq .pt, Hugging Face model folder, or a teacher file")
    parser.add_argument("out", type=Path, help="teacher file to write (.pt)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    parser.add_argument(
        "--trust",
        action="store_true",
        help="allow full unpickling of SRC when the safe loader rejects it. This can run code "
        "stored in the file, so use it only for files from a source you trust.",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    if args.out.exists() and not args.overwrite:
        parser.error(f"{args.out} exists; pass --overwrite to replace it.")
    try:
        teacher = load_teacher(args.src, trust_checkpoint=args.trust)
    except TeacherCheckpointError as error:
        logger.error("%s", error)
        return 1

    save_teacher(teacher, args.out)
    num_params = sum(p.numel() for p in teacher.parameters())
    print(
        f"Wrote {args.out}: {teacher.num_layers} layers, D {teacher.embed_dim}, "
        f"{num_params / 1e6:.2f}M parameters"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
