"""Size and regularisation options of the block-reusing CTC/attention model.

Each dataclass maps 1:1 to a section of a `conf/model/*.yaml` file.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from asr.constants import SOS_EOS_ID

REUSE_ORDERS = ("sequence", "cycle")
ADAPTER_PLACEMENTS = ("block_output", "ffn")

# conf/model/ at the repository root (the package is installed editable).
MODEL_CONF_DIR = Path(__file__).resolve().parents[2] / "conf" / "model"

# Conv2d subsampling by 4 needs at least 7 feature bins to keep one output bin.
_MIN_INPUT_DIM = 7

T = TypeVar("T")


def _check_range(owner: str, name: str, value: float, low: float, high: float) -> None:
    if not low <= value < high:
        raise ValueError(f"{owner}.{name} must be in [{low}, {high}), got {value!r}")


def _check_positive(owner: str, name: str, value: int) -> None:
    if value < 1:
        raise ValueError(f"{owner}.{name} must be >= 1, got {value!r}")


@dataclass
class AdapterConfig:
    """Bottleneck adapter added once per application of a shared block.

    Attributes:
        bottleneck: hidden size of the down-projection.
        placement: "block_output" (after the whole block) or "ffn" (on the FFN output,
            before its residual add).
        layer_norm: apply a LayerNorm before the down-projection.
    """

    bottleneck: int = 64
    placement: str = "block_output"
    layer_norm: bool = True

    def __post_init__(self) -> None:
        _check_positive("AdapterConfig", "bottleneck", self.bottleneck)
        if self.placement not in ADAPTER_PLACEMENTS:
            raise ValueError(
                f"AdapterConfig.placement must be one of {ADAPTER_PLACEMENTS}, "
                f"got {self.placement!r}"
            )


@dataclass
class _StackConfig:
    """Options shared by the encoder and decoder stacks.

    Attributes:
        num_blocks: M, number of distinct (shared) blocks.
        reuse: R, number of applications of each block, so the stack runs M * R layers.
        reuse_order: "sequence" applies each block R times before the next (1,1,2,2);
            "cycle" runs the M blocks in turn, R rounds (1,2,1,2).
        heads: attention heads.
        ffn_dim: hidden size of the position-wise feed-forward network.
        dropout: dropout on each sub-layer output before its residual add.
        attention_dropout: dropout on the attention probabilities.
        positional_dropout: dropout after adding the positional encoding.
        adapter: one adapter per application when set, none when null.
    """

    num_blocks: int = 1
    reuse: int = 1
    reuse_order: str = "sequence"
    heads: int = 4
    ffn_dim: int = 2048
    dropout: float = 0.1
    attention_dropout: float = 0.0
    positional_dropout: float = 0.1
    adapter: AdapterConfig | None = None

    def __post_init__(self) -> None:
        owner = type(self).__name__
        _check_positive(owner, "num_blocks", self.num_blocks)
        _check_positive(owner, "reuse", self.reuse)
        _check_positive(owner, "heads", self.heads)
        _check_positive(owner, "ffn_dim", self.ffn_dim)
        if self.reuse_order not in REUSE_ORDERS:
            raise ValueError(
                f"{owner}.reuse_order must be one of {REUSE_ORDERS}, got {self.reuse_order!r}"
            )
        _check_range(owner, "dropout", self.dropout, 0.0, 1.0)
        _check_range(owner, "attention_dropout", self.attention_dropout, 0.0, 1.0)
        _check_range(owner, "positional_dropout", self.positional_dropout, 0.0, 1.0)

    @property
    def num_applications(self) -> int:
        """Number of layers the stack runs (M * R)."""
        return self.num_blocks * self.reuse


@dataclass
class EncoderConfig(_StackConfig):
    """Encoder stack: M distinct self-attention blocks, each applied R times.

    Attributes:
        subsampling_channels: channels of the two conv2d subsampling layers; null uses d_model
            as WeNet does. The second 3x3 conv costs channels^2 multiply-adds per output point,
            so small models spend most of their compute there unless this is reduced.
    """

    num_blocks: int = 12
    subsampling_channels: int | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.subsampling_channels is not None:
            _check_positive(type(self).__name__, "subsampling_channels", self.subsampling_channels)


@dataclass
class DecoderConfig(_StackConfig):
    """Decoder stack: M' distinct self/source-attention blocks, each applied R' times."""

    num_blocks: int = 6


@dataclass
class ModelConfig:
    """Hybrid CTC/attention model.

    Attributes:
        vocab_size: number of tokens including <blank>=0, <unk>=1, <sos/eos>=2. May stay
            None in yaml; training sets it from the tokenizer before building the model.
        input_dim: fbank bins per frame.
        d_model: width of the encoder and decoder.
        encoder, decoder: stack options.
        ctc_weight: loss = ctc_weight * CTC + (1 - ctc_weight) * attention.
        lsm_weight: label smoothing of the attention loss.
    """

    vocab_size: int | None = None
    input_dim: int = 80
    d_model: int = 256
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    ctc_weight: float = 0.3
    lsm_weight: float = 0.1

    def __post_init__(self) -> None:
        if self.vocab_size is not None and self.vocab_size <= SOS_EOS_ID + 1:
            raise ValueError(
                f"ModelConfig.vocab_size must be > {SOS_EOS_ID + 1} (ids 0-{SOS_EOS_ID} are "
                f"reserved for <blank>, <unk>, <sos/eos>), got {self.vocab_size!r}"
            )
        if self.input_dim < _MIN_INPUT_DIM:
            raise ValueError(
                f"ModelConfig.input_dim must be >= {_MIN_INPUT_DIM} for conv2d subsampling "
                f"by 4, got {self.input_dim!r}"
            )
        _check_positive("ModelConfig", "d_model", self.d_model)
        for name, stack in (("encoder", self.encoder), ("decoder", self.decoder)):
            if self.d_model % stack.heads != 0:
                raise ValueError(
                    f"ModelConfig.d_model ({self.d_model}) must be divisible by "
                    f"{name}.heads ({stack.heads})"
                )
        if not 0.0 <= self.ctc_weight <= 1.0:
            raise ValueError(f"ModelConfig.ctc_weight must be in [0, 1], got {self.ctc_weight!r}")
        _check_range("ModelConfig", "lsm_weight", self.lsm_weight, 0.0, 1.0)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelConfig:
        """Build from a plain or OmegaConf mapping; unknown keys raise ValueError."""
        values = _known_values(cls, data, "model config")

        for name, stack_cls in (("encoder", EncoderConfig), ("decoder", DecoderConfig)):
            if name in values:
                values[name] = _stack_from_dict(stack_cls, values[name], name)

        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """Return nested plain dicts, the inverse of `from_dict` (e.g. for checkpoints)."""
        return dataclasses.asdict(self)


def _known_values(cls: type, data: Mapping[str, Any], section: str) -> dict[str, Any]:
    if not isinstance(data, Mapping):
        raise ValueError(f"{section} must be a mapping, got {type(data).__name__}")

    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(str(key) for key in data if key not in names)
    if unknown:
        raise ValueError(
            f"unknown key(s) {unknown} in {section}; valid keys are {sorted(names)}"
        )
    return dict(data)


def _stack_from_dict(cls: type[T], data: Mapping[str, Any] | T, section: str) -> T:
    if isinstance(data, cls):
        return data

    values = _known_values(cls, data, f"model config section '{section}'")
    adapter = values.get("adapter")
    if adapter is not None and not isinstance(adapter, AdapterConfig):
        values["adapter"] = AdapterConfig(
            **_known_values(AdapterConfig, adapter, f"model config section '{section}.adapter'")
        )
    return cls(**values)


def resolve_model_config_path(name_or_path: str | Path) -> Path:
    """Map a config name ("brst_adm") to conf/model/NAME.yaml; pass existing paths through."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml"):
        if not path.is_file():
            raise FileNotFoundError(f"model config file not found: {path}")
        return path

    candidate = MODEL_CONF_DIR / f"{name_or_path}.yaml"
    if not candidate.is_file():
        available = sorted(p.stem for p in MODEL_CONF_DIR.glob("*.yaml"))
        raise FileNotFoundError(
            f"model config '{name_or_path}' not found in {MODEL_CONF_DIR}; "
            f"available: {available}, or pass a path to a .yaml file"
        )
    return candidate


def load_model_config(name_or_path: str | Path, vocab_size: int | None = None) -> ModelConfig:
    """Read a model yaml (name under conf/model/ or a path); `vocab_size` overrides the file's."""
    path = resolve_model_config_path(name_or_path)
    with path.open(encoding="utf-8") as f:
        data = yaml.safe_load(f) or {}

    if vocab_size is not None:
        data["vocab_size"] = vocab_size
    try:
        return ModelConfig.from_dict(data)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from e
