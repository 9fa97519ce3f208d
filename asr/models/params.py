"""Parameter counts of an ASRModel grouped by role (front end, shared blocks, adapters, heads)."""

from __future__ import annotations

from torch import nn

# Group of each parameter, by the first matching name prefix (checked in order). Adapters
# come first because they sit inside the encoder and decoder.
PARAMETER_GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("adapters", ("encoder.adapters.", "decoder.adapters.")),
    ("front_end", ("cmvn.", "encoder.front_end.", "encoder.pos_enc.")),
    ("encoder_blocks", ("encoder.layers.",)),
    ("decoder_blocks", ("decoder.layers.",)),
    ("embeddings_heads", ("decoder.embed.", "decoder.output.", "ctc.")),
)
OTHER_GROUP = "norms_other"


def parameter_group(name: str) -> str:
    """Group of the parameter called `name` in `model.named_parameters()`."""
    for group, prefixes in PARAMETER_GROUPS:
        if name.startswith(prefixes):
            return group
    return OTHER_GROUP


def parameter_breakdown(model: nn.Module) -> dict[str, int]:
    """Count parameters per group; the values sum to the model's total parameter count.

    Groups:
      front_end: conv2d subsampling and its linear (CMVN and the sinusoidal encoding have none).
      encoder_blocks, decoder_blocks: the distinct shared blocks, each counted once.
      adapters: all per-application adapters.
      embeddings_heads: token embedding, decoder output layer and CTC head.
      norms_other: final LayerNorms and any parameter no other group matches.
    """
    counts = {group: 0 for group, _ in PARAMETER_GROUPS}
    counts[OTHER_GROUP] = 0

    for name, parameter in model.named_parameters():
        counts[parameter_group(name)] += parameter.numel()
    return counts
