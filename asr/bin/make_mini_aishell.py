"""Build the embedded mini AISHELL-1 corpus: ``python -m asr.bin.make_mini_aishell --out-dir DIR``."""

from asr.data.mini_aishell.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
