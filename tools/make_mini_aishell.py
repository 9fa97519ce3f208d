"""Generate the mini AISHELL-1 corpus archives.

Usage: python tools/make_mini_aishell.py --out-dir DIR [--seed N] [--scale full|tiny]
"""

from asr.data.mini_aishell.cli import main

if __name__ == "__main__":
    main()
