"""Read Lightning checkpoints, average them, and load a plain ASRModel from either kind."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import torch

from asr.models.asr_model import ASRModel
from asr.models.config import ModelConfig

logger = logging.getLogger(__name__)

_MODEL_PREFIX = "model."
_VAL_LOSS = re.compile(r"val_loss(\d+(?:\.\d+)?)")


def read_lightning_checkpoint(path: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Return ``(model_config_dict, model_state_dict)`` of a checkpoint written by training."""
    # Lightning checkpoints hold hyper-parameter objects besides tensors; they are the user's own
    # training output, so they are loaded the way Lightning loads them.
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    if "state_dict" not in ckpt or "hyper_parameters" not in ckpt:
        raise ValueError(f"{path} is not a training checkpoint of this toolkit (no state_dict).")
    state = {
        key[len(_MODEL_PREFIX) :]: value
        for key, value in ckpt["state_dict"].items()
        if key.startswith(_MODEL_PREFIX)
    }
    return dict(ckpt["hyper_parameters"]["model"]), state


def select_checkpoints(ckpt_dir: Path, mode: str, num: int) -> list[Path]:
    """Pick the ``num`` checkpoints to average.

    ``mode="best"`` takes the lowest validation losses from ``ckpt_dir/best``; ``mode="last"``
    takes the most recent epochs from ``ckpt_dir/epochs``.
    """
    if mode == "best":
        candidates = list((ckpt_dir / "best").glob("*.ckpt"))
        scored = []
        for path in candidates:
            match = _VAL_LOSS.search(path.name)
            if match is None:
                logger.warning("Skipping %s: no val_loss in its name", path)
                continue
            scored.append((float(match.group(1)), path))
        chosen = [path for _, path in sorted(scored)[:num]]
    elif mode == "last":
        candidates = list((ckpt_dir / "epochs").glob("*.ckpt"))
        chosen = sorted(candidates, key=_step_of)[-num:]
    else:
        raise ValueError(f"Unknown averaging mode {mode!r}: expected 'best' or 'last'.")

    if not chosen:
        raise FileNotFoundError(f"No checkpoints found for mode={mode!r} under {ckpt_dir}.")
    if len(chosen) < num:
        logger.warning("Only %d checkpoints available for mode=%s, averaging them", len(chosen), mode)
    return chosen


def average_checkpoints(paths: list[Path]) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Average the model weights of ``paths`` element-wise (integer buffers come from the last)."""
    config, total = read_lightning_checkpoint(paths[0])
    total = {k: v.clone().double() if v.is_floating_point() else v for k, v in total.items()}
    for path in paths[1:]:
        other_config, state = read_lightning_checkpoint(path)
        if other_config != config:
            raise ValueError(f"{path} has a different model config from {paths[0]}; cannot average.")
        for key, value in state.items():
            if value.is_floating_point():
                total[key] += value.double()
            else:
                total[key] = value
    averaged = {
        k: (v / len(paths)).float() if v.is_floating_point() else v for k, v in total.items()
    }
    return config, averaged


def save_model(path: Path, config: dict[str, Any], state: dict[str, torch.Tensor], **info: Any) -> None:
    """Write a plain model file (config + weights) that loads with ``weights_only=True``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model_config": config, "state_dict": state, "info": info}, path)


def load_model(path: str | Path, device: str | torch.device = "cpu") -> ASRModel:
    """Build an :class:`ASRModel` in eval mode from a ``.ckpt`` or an averaged ``.pt`` file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Model file {path} not found.")
    if path.suffix == ".ckpt":
        config, state = read_lightning_checkpoint(path)
    else:
        package = torch.load(path, map_location="cpu", weights_only=True)
        config, state = package["model_config"], package["state_dict"]
    model = ASRModel(ModelConfig.from_dict(config))
    model.load_state_dict(state)
    return model.to(device).eval()


def _step_of(path: Path) -> int:
    match = re.search(r"step(\d+)", path.name)
    return int(match.group(1)) if match else -1
