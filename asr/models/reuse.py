"""Order in which M shared blocks are applied R times each."""

from __future__ import annotations


def reuse_schedule(num_blocks: int, reuse: int, order: str) -> tuple[int, ...]:
    """Block index for each of the M * R application steps.

    "sequence" applies each block R times before moving on: M=2, R=2 -> (0, 0, 1, 1).
    "cycle" runs all M blocks, R rounds: M=2, R=2 -> (0, 1, 0, 1).
    """
    if num_blocks < 1 or reuse < 1:
        raise ValueError(f"num_blocks and reuse must be >= 1, got {num_blocks} and {reuse}")

    if order == "sequence":
        return tuple(block for block in range(num_blocks) for _ in range(reuse))
    if order == "cycle":
        return tuple(block for _ in range(reuse) for block in range(num_blocks))
    raise ValueError(f"reuse order must be 'sequence' or 'cycle', got {order!r}")
