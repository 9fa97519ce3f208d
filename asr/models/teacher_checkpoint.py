"""Save and load HuBERT teachers: our plain format, fairseq HuBERT checkpoints, Hugging Face folders."""

from __future__ import annotations

import argparse
import ast
import collections
import logging
import os
import pickle
import re
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from asr.models.hubert_teacher import NO_DROPOUT, HubertTeacher, hubert_base_config, normalize_config

logger = logging.getLogger(__name__)

TEACHER_FORMAT = "reuseasr-hubert-teacher"
TEACHER_FORMAT_VERSION = 1

# How many missing / unexpected / mismatched keys an error message shows of each kind.
MAX_LISTED_KEYS = 20

_CONV = "feature_extractor.conv_layers"
_POS_CONV = "encoder.transformer.pos_conv_embed.conv"
_WEIGHT_G = "parametrizations.weight.original0"
_WEIGHT_V = "parametrizations.weight.original1"
_LAYER = r"encoder.transformer.layers.\1"

# fairseq HuBERT parameter name -> torchaudio Wav2Vec2Model parameter name (full matches).
FAIRSEQ_KEY_RULES: list[tuple[str, str]] = [
    # Group norm of the first conv ("default" extractor mode).
    (r"feature_extractor\.conv_layers\.0\.2\.(weight|bias)", rf"{_CONV}.0.layer_norm.\1"),
    # Layer norm of every conv ("layer_norm" extractor mode).
    (r"feature_extractor\.conv_layers\.(\d+)\.2\.1\.(weight|bias)", rf"{_CONV}.\1.layer_norm.\2"),
    (r"feature_extractor\.conv_layers\.(\d+)\.0\.(weight|bias)", rf"{_CONV}.\1.conv.\2"),
    (r"layer_norm\.(weight|bias)", r"encoder.feature_projection.layer_norm.\1"),
    (r"post_extract_proj\.(weight|bias)", r"encoder.feature_projection.projection.\1"),
    (r"encoder\.pos_conv\.0\.bias", f"{_POS_CONV}.bias"),
    (r"encoder\.pos_conv\.0\.(weight_g|parametrizations\.weight\.original0)", f"{_POS_CONV}.{_WEIGHT_G}"),
    (r"encoder\.pos_conv\.0\.(weight_v|parametrizations\.weight\.original1)", f"{_POS_CONV}.{_WEIGHT_V}"),
    (r"encoder\.layer_norm\.(weight|bias)", r"encoder.transformer.layer_norm.\1"),
    (r"encoder\.layers\.(\d+)\.self_attn\.(q|k|v|out)_proj\.(weight|bias)",
     rf"{_LAYER}.attention.\2_proj.\3"),
    (r"encoder\.layers\.(\d+)\.self_attn_layer_norm\.(weight|bias)", rf"{_LAYER}.layer_norm.\2"),
    (r"encoder\.layers\.(\d+)\.fc1\.(weight|bias)", rf"{_LAYER}.feed_forward.intermediate_dense.\2"),
    (r"encoder\.layers\.(\d+)\.fc2\.(weight|bias)", rf"{_LAYER}.feed_forward.output_dense.\2"),
    (r"encoder\.layers\.(\d+)\.final_layer_norm\.(weight|bias)", rf"{_LAYER}.final_layer_norm.\2"),
]

# HuBERT's pretraining heads (cluster embeddings and their projection): not part of the encoder.
FAIRSEQ_IGNORED = re.compile(r"label_embs_concat|final_proj\..*")

# fairseq model option -> (torchaudio kwarg, HuBERT Base default used when the option is absent).
FAIRSEQ_CONFIG_FIELDS: dict[str, tuple[str, Any]] = {
    "extractor_mode": ("extractor_mode", "default"),
    "conv_feature_layers": (
        "extractor_conv_layer_config", "[(512,10,5)] + [(512,3,2)] * 4 + [(512,2,2)] * 2"
    ),
    "conv_bias": ("extractor_conv_bias", False),
    "encoder_embed_dim": ("encoder_embed_dim", 768),
    "conv_pos": ("encoder_pos_conv_kernel", 128),
    "conv_pos_groups": ("encoder_pos_conv_groups", 16),
    "encoder_layers": ("encoder_num_layers", 12),
    "encoder_attention_heads": ("encoder_num_heads", 12),
    "encoder_ffn_embed_dim": ("encoder_ff_interm_features", 3072),
    "layer_norm_first": ("encoder_layer_norm_first", False),
}


class TeacherCheckpointError(ValueError):
    """A teacher file cannot be read, or its weights do not fit the architecture it declares."""


def _fairseq_config_globals() -> list[Any]:
    """Return the classes that a fairseq checkpoint's config pickles: omegaconf and argparse ones.

    NOTE: the list covers what omegaconf 2.3 pickles for an untyped DictConfig and an argparse
    Namespace. No released fairseq checkpoint was available to check it against.
    """
    import omegaconf
    from omegaconf import base, nodes

    return [
        argparse.Namespace,
        omegaconf.DictConfig,
        omegaconf.ListConfig,
        base.ContainerMetadata,
        base.Metadata,
        nodes.AnyNode,
        nodes.StringNode,
        nodes.IntegerNode,
        nodes.FloatNode,
        nodes.BooleanNode,
        typing.Any,
        collections.defaultdict,
        dict,
        list,
        tuple,
        str,
        int,
        float,
        bool,
    ]


class _FairseqPlaceholder:
    """Inert stand-in for an object of a fairseq class when fairseq is not installed."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args = args

    def __setstate__(self, state: Any) -> None:
        self.state = state


class _PlaceholderUnpickler(pickle.Unpickler):
    """Unpickler (unrestricted) that loads classes of an uninstalled fairseq as `_FairseqPlaceholder`."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return super().find_class(module, name)
        except (ImportError, AttributeError):
            if module.split(".")[0] != "fairseq":
                raise
            return _FairseqPlaceholder


def _placeholder_load(file: Any, **kwargs: Any) -> Any:
    return _PlaceholderUnpickler(file, **kwargs).load()


# `torch.load(pickle_module=...)` expects a module-like object with `Unpickler` and `load`.
_placeholder_pickle = types.SimpleNamespace(
    __name__="reuseasr_placeholder_pickle", Unpickler=_PlaceholderUnpickler, load=_placeholder_load
)


def read_checkpoint(path: str | Path, *, trust_checkpoint: bool = False) -> Any:
    """Load a checkpoint onto the CPU with `torch.load`, unpickling fully only when trusted.

    The first try is `weights_only=True`. The second also allows the omegaconf and argparse
    classes that fairseq configs pickle. Only with `trust_checkpoint` does a third try unpickle
    fully, loading classes of an uninstalled fairseq as inert placeholders.

    Raises:
        TeacherCheckpointError: the file needs full unpickling and `trust_checkpoint` is False.
    """
    try:
        return _torch_load(path, weights_only=True)
    except pickle.UnpicklingError:
        pass

    try:
        with torch.serialization.safe_globals(_fairseq_config_globals()):
            return _torch_load(path, weights_only=True)
    except pickle.UnpicklingError as error:
        rejection = error

    if not trust_checkpoint:
        match = re.search(r"Unsupported global: GLOBAL (\S+)", str(rejection))
        rejected = f"the class {match.group(1)}" if match else "objects outside the allowed config classes"
        raise TeacherCheckpointError(
            f"{path}: the checkpoint pickles {rejected}, which the safe loader (weights_only=True "
            f"plus omegaconf/argparse config classes) rejects. Full unpickling can run arbitrary "
            f"code from the file: pass trust_checkpoint=True (--trust on the command line) only if "
            f"you trust its source, ideally once with `python -m asr.bin.convert_teacher` to get "
            f"a plain file."
        ) from rejection

    logger.warning("Unpickling %s fully because trust_checkpoint=True", path)
    return _torch_load(path, weights_only=False, pickle_module=_placeholder_pickle)


def _torch_load(path: str | Path, **kwargs: Any) -> Any:
    """Run `torch.load` onto the CPU and raise TeacherCheckpointError for a file that is no
    checkpoint at all. A checkpoint that the safe loader rejects keeps its UnpicklingError,
    so the caller can try the next loader."""
    try:
        return torch.load(path, map_location="cpu", **kwargs)
    except pickle.UnpicklingError as error:
        if "Unsupported global" in str(error):
            raise
        raise _unreadable(path, error) from error
    except (RuntimeError, OSError, EOFError, IndexError, KeyError, ValueError) as error:
        raise _unreadable(path, error) from error


def _unreadable(path: str | Path, error: Exception) -> TeacherCheckpointError:
    return TeacherCheckpointError(
        f"{path} is not a readable PyTorch checkpoint (torch.load: {type(error).__name__}). Expected "
        "a teacher.pt written by this toolkit, a fairseq HuBERT .pt or a Hugging Face model folder; "
        "a truncated download also gives this error, so fetch or copy the file again."
    )


def save_teacher(teacher: HubertTeacher, path: str | Path) -> None:
    """Write `teacher` in our plain format, readable with `torch.load(weights_only=True)`.

    Contents: format, version, config (the `wav2vec2_model` kwargs, plain Python types),
    state_dict (of `teacher.model`) and mask_emb (D,). The file is replaced atomically.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": TEACHER_FORMAT,
        "version": TEACHER_FORMAT_VERSION,
        "config": normalize_config(teacher.config),
        "state_dict": {key: value.detach().cpu() for key, value in teacher.model.state_dict().items()},
        "mask_emb": teacher.mask_emb.detach().cpu().clone(),
    }

    partial = path.with_name(path.name + ".partial")
    torch.save(payload, partial)
    os.replace(partial, path)


def load_teacher(path: str | Path, *, trust_checkpoint: bool = False) -> HubertTeacher:
    """Load a teacher from our format, a fairseq HuBERT pretraining checkpoint or a HF folder.

    A directory is read as a Hugging Face `HubertModel` folder; a file is read with
    `read_checkpoint` and dispatched on its contents. Returns the teacher in eval mode.

    Raises:
        TeacherCheckpointError: unknown format, or weights that do not fit the declared
            architecture (the message lists missing, unexpected and mismatched keys).
    """
    path = Path(path)
    if path.is_dir():
        return load_huggingface_hubert(path)
    if not path.is_file():
        raise TeacherCheckpointError(f"{path}: teacher file or folder not found")

    checkpoint = read_checkpoint(path, trust_checkpoint=trust_checkpoint)
    if isinstance(checkpoint, Mapping):
        if checkpoint.get("format") == TEACHER_FORMAT:
            return _teacher_from_ours(checkpoint, path)
        if "model" in checkpoint and ("cfg" in checkpoint or "args" in checkpoint):
            return _teacher_from_fairseq(checkpoint, path)

    top: Any = type(checkpoint)
    if isinstance(checkpoint, Mapping):
        top = sorted(map(str, checkpoint))[:MAX_LISTED_KEYS]
    raise TeacherCheckpointError(
        f"{path}: not a teacher checkpoint (top level: {top}); expected our format "
        f"(save_teacher), a fairseq HuBERT checkpoint ('model' plus 'cfg' or 'args') or a "
        f"Hugging Face model folder"
    )


def load_fairseq_hubert(path: str | Path, *, trust_checkpoint: bool = False) -> HubertTeacher:
    """Load a fairseq HuBERT pretraining checkpoint (.pt) without importing fairseq.

    The architecture comes from `cfg["model"]` (fairseq >= 0.10) or `args` (older); weights are
    renamed to torchaudio's names and `mask_emb` is kept. Dropouts are set to 0.
    """
    path = Path(path)
    checkpoint = read_checkpoint(path, trust_checkpoint=trust_checkpoint)
    if not (isinstance(checkpoint, Mapping) and "model" in checkpoint):
        raise TeacherCheckpointError(f"{path}: not a fairseq checkpoint ('model' entry missing)")
    return _teacher_from_fairseq(checkpoint, path)


def load_huggingface_hubert(folder: str | Path) -> HubertTeacher:
    """Load a Hugging Face `HubertModel` folder (config.json + weights), offline.

    Weights go through torchaudio's `import_huggingface_model`; `masked_spec_embed` becomes
    `mask_emb`. Needs the optional package `transformers`. Dropouts are set to 0.
    """
    folder = Path(folder)
    try:
        import transformers
        from torchaudio.models.wav2vec2.utils import import_huggingface_model
    except ImportError as error:
        raise TeacherCheckpointError(
            f"{folder}: reading a Hugging Face model folder needs the optional package "
            f"transformers ({error}); install it or convert the model elsewhere with "
            f"`python -m asr.bin.convert_teacher`"
        ) from error
    if not (folder / "config.json").is_file():
        raise TeacherCheckpointError(f"{folder}: config.json not found; expected a Hugging Face model folder")

    try:
        original = transformers.HubertModel.from_pretrained(folder, local_files_only=True).eval()
    except OSError as error:
        raise TeacherCheckpointError(f"{folder}: failed to load the Hugging Face model: {error}") from error
    config = _config_from_huggingface(original.config, folder)

    mask_emb = getattr(original, "masked_spec_embed", None)
    if mask_emb is None:
        raise TeacherCheckpointError(
            f"{folder}: the model has no masked_spec_embed (mask_emb) because its config sets "
            f"mask_time_prob and mask_feature_prob to 0; use a pretrained HuBERT folder that has it"
        )
    try:
        imported = import_huggingface_model(original)
    except (RuntimeError, KeyError) as error:
        raise TeacherCheckpointError(f"{folder}: torchaudio failed to import this model: {error}") from error

    teacher = HubertTeacher(config)
    state = imported.state_dict()
    _load_checked(teacher, state, mask_emb.detach(), folder)
    return teacher.eval()


def map_fairseq_key(key: str) -> str | None:
    """Return the torchaudio name of fairseq HuBERT parameter `key`, or None for other keys."""
    for pattern, replacement in FAIRSEQ_KEY_RULES:
        if re.fullmatch(pattern, key):
            return re.sub(pattern, replacement, key)
    return None


def parse_conv_layers(spec: str) -> list[tuple[int, int, int]]:
    """Parse fairseq's `conv_feature_layers`, e.g. "[(512,10,5)] + [(512,3,2)] * 4", without eval."""

    def evaluate(node: ast.AST) -> Any:
        if isinstance(node, ast.Constant) and isinstance(node.value, int):
            return node.value
        if isinstance(node, (ast.List, ast.Tuple)):
            items = [evaluate(item) for item in node.elts]
            return items if isinstance(node, ast.List) else tuple(items)
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
            return evaluate(node.left) + evaluate(node.right)
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mult):
            layers, repeat = evaluate(node.left), evaluate(node.right)
            # Bounded so that a crafted config cannot allocate a huge list.
            if not isinstance(layers, list) or not isinstance(repeat, int) or len(layers) * repeat > 100:
                raise ValueError("only list * int with at most 100 layers is supported")
            return layers * repeat
        raise ValueError(f"unsupported expression {ast.dump(node)}")

    try:
        layers = evaluate(ast.parse(spec, mode="eval").body)
        return [(int(c), int(k), int(s)) for c, k, s in layers]
    except (SyntaxError, ValueError, TypeError) as error:
        raise TeacherCheckpointError(
            f"conv_feature_layers {spec!r} is not a list of (channels, kernel, stride): {error}"
        ) from error


def config_from_fairseq(model_cfg: Mapping[str, Any], source: str | Path) -> dict[str, Any]:
    """Build `wav2vec2_model` kwargs (dropouts 0) from a fairseq HuBERT model config.

    Options absent from `model_cfg` take their HuBERT Base value, with a warning. Options that
    describe a layout torchaudio does not build raise `TeacherCheckpointError`.
    """
    for option, supported in (("layer_type", "transformer"), ("activation_fn", "gelu")):
        if model_cfg.get(option, supported) != supported:
            raise TeacherCheckpointError(
                f"{source}: {option}={model_cfg.get(option)!r} is not supported; the teacher is a "
                f"{supported} HuBERT"
            )
    if int(model_cfg.get("pos_conv_depth", 1) or 1) != 1:
        raise TeacherCheckpointError(
            f"{source}: pos_conv_depth={model_cfg['pos_conv_depth']} is not supported (only 1)"
        )

    config = dict(hubert_base_config())
    defaulted = []
    for option, (kwarg, default) in FAIRSEQ_CONFIG_FIELDS.items():
        value = model_cfg.get(option)
        if value is None:
            value = default
            defaulted.append(option)
        config[kwarg] = value
    if defaulted:
        logger.warning("%s: config is missing %s, so HuBERT Base values are used", source, defaulted)

    modes = {"default": "group_norm", "layer_norm": "layer_norm"}
    if config["extractor_mode"] not in modes:
        raise TeacherCheckpointError(
            f"{source}: extractor_mode={config['extractor_mode']!r}, expected one of {sorted(modes)}"
        )
    config["extractor_mode"] = modes[config["extractor_mode"]]
    config["extractor_conv_layer_config"] = parse_conv_layers(str(config["extractor_conv_layer_config"]))
    for kwarg in ("extractor_conv_bias", "encoder_layer_norm_first"):
        config[kwarg] = bool(config[kwarg])
    return normalize_config(config)


def _fairseq_model_config(checkpoint: Mapping[str, Any], source: Path) -> Mapping[str, Any]:
    """Return the model options of a fairseq checkpoint as a plain mapping, from cfg or args."""
    cfg = checkpoint.get("cfg")
    if cfg is not None:
        from omegaconf import OmegaConf
        from omegaconf.errors import OmegaConfBaseException

        if OmegaConf.is_config(cfg):
            # An interpolation into a section the file lacks cannot resolve. Raw values are then
            # kept, which is enough for the architecture options.
            try:
                cfg = OmegaConf.to_container(cfg, resolve=True)
            except OmegaConfBaseException:
                cfg = OmegaConf.to_container(cfg, resolve=False)
        if isinstance(cfg, Mapping) and isinstance(cfg.get("model"), Mapping):
            return cfg["model"]

    args = checkpoint.get("args")
    if isinstance(args, argparse.Namespace):
        return vars(args)
    if isinstance(args, Mapping):
        return args
    raise TeacherCheckpointError(
        f"{source}: fairseq checkpoint without a model config (cfg['model'] or args); "
        f"cannot tell its architecture"
    )


def _teacher_from_fairseq(checkpoint: Mapping[str, Any], source: Path) -> HubertTeacher:
    """Build a teacher from a loaded fairseq checkpoint dict."""
    weights = checkpoint["model"]
    if any(key.startswith("w2v_encoder.") for key in weights):
        raise TeacherCheckpointError(
            f"{source}: this is a fine-tuned (CTC) fairseq checkpoint; use the pretraining "
            f"checkpoint, which keeps mask_emb"
        )
    config = config_from_fairseq(_fairseq_model_config(checkpoint, source), source)

    state: dict[str, torch.Tensor] = {}
    unknown = []
    for key, value in weights.items():
        name = map_fairseq_key(key)
        if name is not None:
            state[name] = value
        elif key != "mask_emb" and not FAIRSEQ_IGNORED.fullmatch(key):
            unknown.append(key)

    teacher = HubertTeacher(config)
    _load_checked(teacher, state, weights.get("mask_emb"), source, unexpected=unknown)
    logger.info("Loaded fairseq HuBERT %s: %d layers, D %d", source, teacher.num_layers, teacher.embed_dim)
    return teacher.eval()


def _teacher_from_ours(checkpoint: Mapping[str, Any], source: Path) -> HubertTeacher:
    """Build a teacher from a dict written by `save_teacher`."""
    version = checkpoint.get("version")
    if version != TEACHER_FORMAT_VERSION:
        raise TeacherCheckpointError(
            f"{source}: unsupported teacher format version {version}; this code reads version "
            f"{TEACHER_FORMAT_VERSION}. Convert the teacher again with this version."
        )
    try:
        teacher = HubertTeacher(checkpoint["config"])
    except (KeyError, ValueError, TypeError) as error:
        raise TeacherCheckpointError(f"{source}: invalid teacher config: {error}") from error
    _load_checked(teacher, checkpoint.get("state_dict", {}), checkpoint.get("mask_emb"), source)
    return teacher.eval()


def _config_from_huggingface(hf_config: Any, source: Path) -> dict[str, Any]:
    """Build `wav2vec2_model` kwargs (dropouts 0) from a `transformers.HubertConfig`."""
    unsupported = {
        "feat_proj_layer_norm": (getattr(hf_config, "feat_proj_layer_norm", True), True),
        "conv_pos_batch_norm": (getattr(hf_config, "conv_pos_batch_norm", False), False),
        "feat_extract_activation": (hf_config.feat_extract_activation, "gelu"),
        "hidden_act": (hf_config.hidden_act, "gelu"),
    }
    for option, (value, supported) in unsupported.items():
        if value != supported:
            raise TeacherCheckpointError(
                f"{source}: {option}={value!r} is not supported (expected {supported!r})"
            )

    conv_layers = list(zip(hf_config.conv_dim, hf_config.conv_kernel, hf_config.conv_stride))
    return normalize_config({
        "extractor_mode": f"{hf_config.feat_extract_norm}_norm",
        "extractor_conv_layer_config": conv_layers,
        "extractor_conv_bias": bool(hf_config.conv_bias),
        "encoder_embed_dim": hf_config.hidden_size,
        "encoder_pos_conv_kernel": hf_config.num_conv_pos_embeddings,
        "encoder_pos_conv_groups": hf_config.num_conv_pos_embedding_groups,
        "encoder_num_layers": hf_config.num_hidden_layers,
        "encoder_num_heads": hf_config.num_attention_heads,
        "encoder_ff_interm_features": hf_config.intermediate_size,
        "encoder_layer_norm_first": bool(hf_config.do_stable_layer_norm),
        "aux_num_out": None,
        **NO_DROPOUT,
    })


def _listed(keys: list[str]) -> str:
    """Format the total count and the first MAX_LISTED_KEYS of `keys`."""
    listed = ", ".join(keys[:MAX_LISTED_KEYS])
    more = f", ... ({len(keys) - MAX_LISTED_KEYS} more)" if len(keys) > MAX_LISTED_KEYS else ""
    return f"{len(keys)}: [{listed}{more}]"


def _load_checked(
    teacher: HubertTeacher,
    state: Mapping[str, torch.Tensor],
    mask_emb: torch.Tensor | None,
    source: str | Path,
    unexpected: list[str] | None = None,
) -> None:
    """Load `state` and `mask_emb` into `teacher`, or raise one error listing every bad key.

    `unexpected` adds source keys that had no torchaudio name.
    """
    expected = teacher.model.state_dict()
    missing = [key for key in expected if key not in state]
    unexpected = list(unexpected or []) + [key for key in state if key not in expected]
    mismatched = [
        f"{key} {tuple(state[key].shape)} != {tuple(value.shape)}"
        for key, value in expected.items()
        if key in state and tuple(state[key].shape) != tuple(value.shape)
    ]
    if mask_emb is None:
        missing.append("mask_emb")
    elif tuple(mask_emb.shape) != (teacher.embed_dim,):
        mismatched.append(f"mask_emb {tuple(mask_emb.shape)} != ({teacher.embed_dim},)")

    kinds = {"missing keys": missing, "unexpected keys": unexpected, "shape mismatches": mismatched}
    problems = [f"{kind} {_listed(keys)}" for kind, keys in kinds.items() if keys]
    if problems:
        config = teacher.config
        raise TeacherCheckpointError(
            f"{source}: weights do not fit the architecture its config declares "
            f"(conv {config['extractor_conv_layer_config']}, D {config['encoder_embed_dim']}, "
            f"{config['encoder_num_layers']} layers, {config['encoder_num_heads']} heads, "
            f"FFN {config['encoder_ff_interm_features']}, pos conv kernel "
            f"{config['encoder_pos_conv_kernel']} groups {config['encoder_pos_conv_groups']}); "
            f"{'; '.join(problems)} (mapped keys in "
            f"torchaudio's names). Check that the file is a HuBERT pretraining checkpoint and "
            f"that its config matches its weights."
        )

    teacher.model.load_state_dict(state)
    with torch.no_grad():
        teacher.mask_emb.copy_(mask_emb)
