"""Size, attention-reuse pattern and prediction heads of a distilled HuBERT student.

Each field maps 1:1 to a key of a `conf/student/*.yaml` file.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

# conf/student/ at the repository root (the package is installed editable).
STUDENT_CONF_DIR = Path(__file__).resolve().parents[2] / "conf" / "student"

_SIZE_FIELDS = (
    "embed_dim", "ffn_dim", "num_layers", "num_heads", "pos_conv_kernel", "pos_conv_groups",
    "head_dim",
)
_DROPOUT_FIELDS = ("dropout", "attention_dropout", "activation_dropout", "input_dropout")


@dataclass(kw_only=True)
class StudentConfig:
    """A HuBERT-style student: conv waveform front end, post-LN Transformer, prediction heads.

    Attributes:
        name: config name, used in messages and tables.
        conv_layers: (channels, kernel, stride) of each front-end conv, in samples.
        embed_dim: Transformer width D.
        ffn_dim: hidden width of each feed-forward network.
        num_layers: number of Transformer layers L.
        num_heads: attention heads H; D must be divisible by H.
        reuse: one flag per layer; reuse[i] True makes layer i + 1 (1-based) apply layer i's
            attention probabilities instead of computing its own. reuse[0] must be False.
        pos_conv_kernel: kernel of the convolutional positional embedding, in frames.
        pos_conv_groups: groups of that convolution; D must be divisible by it.
        head_dim: output width of each prediction head (the teacher's width).
        heads: (student layer, teacher layer), both 1-based: one Linear(D, head_dim) reads the
            output of that student layer and predicts that teacher layer.
        dropout: dropout on each sub-layer output and after the positional embedding.
        attention_dropout: dropout on the attention probabilities.
        activation_dropout: dropout on the feed-forward hidden activations.
        input_dropout: dropout on the projected conv features.
    """

    name: str
    conv_layers: list[tuple[int, int, int]]
    embed_dim: int
    ffn_dim: int
    num_layers: int
    num_heads: int = 12
    reuse: list[bool]
    pos_conv_kernel: int = 128
    pos_conv_groups: int = 16
    head_dim: int = 768
    heads: list[tuple[int, int]]
    dropout: float = 0.1
    attention_dropout: float = 0.1
    activation_dropout: float = 0.1
    input_dropout: float = 0.05

    def __post_init__(self) -> None:
        self.conv_layers = [
            _int_tuple(layer, 3, self._where("conv_layers")) for layer in self.conv_layers
        ]
        self.reuse = [bool(flag) for flag in self.reuse]
        self.heads = [_int_tuple(pair, 2, self._where("heads")) for pair in self.heads]

        self._check_sizes()
        for field_name in _DROPOUT_FIELDS:
            value = getattr(self, field_name)
            if not 0.0 <= value < 1.0:
                raise ValueError(f"{self._where(field_name)} must be in [0, 1), got {value}")
        self._check_reuse()
        self._check_heads()

    def _where(self, field_name: str) -> str:
        return f"student config '{self.name}': {field_name}"

    def _check_sizes(self) -> None:
        if not self.conv_layers:
            raise ValueError(f"{self._where('conv_layers')} is empty; give at least one layer")
        for layer in self.conv_layers:
            if min(layer) < 1:
                raise ValueError(
                    f"{self._where('conv_layers')} has {layer}; channels, kernel and stride "
                    "must all be >= 1"
                )

        for field_name in _SIZE_FIELDS:
            value = getattr(self, field_name)
            if value < 1:
                raise ValueError(f"{self._where(field_name)} must be >= 1, got {value}")
        for divisor in ("num_heads", "pos_conv_groups"):
            if self.embed_dim % getattr(self, divisor) != 0:
                raise ValueError(
                    f"{self._where('embed_dim')} ({self.embed_dim}) must be divisible by "
                    f"{divisor} ({getattr(self, divisor)})"
                )

    def _check_reuse(self) -> None:
        if len(self.reuse) != self.num_layers:
            raise ValueError(
                f"{self._where('reuse')} has {len(self.reuse)} flags but num_layers is "
                f"{self.num_layers}; give one flag per layer"
            )
        if self.reuse and self.reuse[0]:
            raise ValueError(
                f"{self._where('reuse')}[0] is true, but the first layer must compute its "
                "attention map (there is no previous layer to reuse); set it to false"
            )

    def _check_heads(self) -> None:
        if not self.heads:
            raise ValueError(
                f"{self._where('heads')} is empty; give at least one (student, teacher) pair"
            )
        for student_layer, teacher_layer in self.heads:
            if not 1 <= student_layer <= self.num_layers:
                raise ValueError(
                    f"{self._where('heads')} reads student layer {student_layer}, outside "
                    f"1..{self.num_layers} (num_layers)"
                )
            if teacher_layer < 1:
                raise ValueError(
                    f"{self._where('heads')} predicts teacher layer {teacher_layer}; teacher "
                    "layers are numbered from 1"
                )

    @property
    def teacher_layers(self) -> list[int]:
        """Teacher layer (1-based) predicted by each head, in head order."""
        return [teacher_layer for _, teacher_layer in self.heads]

    def to_dict(self) -> dict[str, Any]:
        """Plain Python types (lists, ints, floats), e.g. for yaml or checkpoints."""
        data = dataclasses.asdict(self)
        data["conv_layers"] = [list(layer) for layer in self.conv_layers]
        data["heads"] = [list(pair) for pair in self.heads]
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StudentConfig:
        """Build from a plain or OmegaConf mapping; unknown or missing keys raise ValueError."""
        if not isinstance(data, Mapping):
            raise ValueError(f"student config must be a mapping, got {type(data).__name__}")

        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(str(key) for key in data if key not in fields)
        if unknown:
            raise ValueError(
                f"unknown key(s) {unknown} in student config; valid keys are {sorted(fields)}"
            )
        missing = sorted(
            name
            for name, f in fields.items()
            if name not in data and f.default is dataclasses.MISSING
            and f.default_factory is dataclasses.MISSING
        )
        if missing:
            raise ValueError(f"missing required key(s) {missing} in student config")
        return cls(**dict(data))


def _int_tuple(values: Sequence[Any], size: int, where: str) -> tuple[int, ...]:
    if isinstance(values, (str, bytes)) or len(values) != size:
        raise ValueError(f"{where} entry {values!r} must have {size} integers")
    return tuple(int(value) for value in values)


def resolve_student_config_path(name_or_path: str | Path) -> Path:
    """Map a config name ("armhubert") to conf/student/NAME.yaml; pass .yaml paths through."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml"):
        if not path.is_file():
            raise FileNotFoundError(f"student config file not found: {path}")
        return path

    candidate = STUDENT_CONF_DIR / f"{name_or_path}.yaml"
    if not candidate.is_file():
        available = sorted(p.stem for p in STUDENT_CONF_DIR.glob("*.yaml"))
        raise FileNotFoundError(
            f"student config '{name_or_path}' not found in {STUDENT_CONF_DIR}; "
            f"available: {available}, or pass a path to a .yaml file"
        )
    return candidate


def load_student_config(name_or_path: str | Path) -> StudentConfig:
    """Read a student yaml: a name under conf/student/ or a path to a .yaml file."""
    path = resolve_student_config_path(name_or_path)
    with path.open(encoding="utf-8") as f:
        data = yaml.safe_load(f) or {}

    try:
        return StudentConfig.from_dict(data)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{path}: {e}") from e
