"""The mini AISHELL-1 corpus: Mandarin speech synthesized by espeak-ng, in the AISHELL-1 layout."""

from asr.data.mini_aishell.build import (
    DATA_ARCHIVE,
    GENERATOR_VERSION,
    RESOURCE_ARCHIVE,
    SCALES,
    make_mini_aishell,
)

__all__ = ["DATA_ARCHIVE", "GENERATOR_VERSION", "RESOURCE_ARCHIVE", "SCALES", "make_mini_aishell"]
