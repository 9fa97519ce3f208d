"""Int8 quantization of the exported models: dynamic MatMul weights or static QDQ calibrated on fbank.

Only MatMuls with a constant weight (and, for static QDQ, the subsampling convolutions) are
quantized. Attention score products and LayerNorm stay in float32. The custom metadata of the
float model is copied into the quantized one, so sherpa-onnx reads the same keys.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from lhotse import CutSet
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_dynamic,
    quantize_static,
)
from tqdm import tqdm

from asr.constants import SAMPLE_RATE
from asr.features.fbank import compute_fbank
from asr_onnx.exporter import read_metadata, set_metadata

logger = logging.getLogger(__name__)

# Conv2d subsampling by 4 needs 7 frames for one output frame.
MIN_FRAMES = 7


def copy_metadata(src: Path, dst: Path) -> None:
    """Replace the custom metadata map of the ONNX file `dst` with that of `src`."""
    set_metadata(dst, read_metadata(src))


def quantize_dynamic_int8(src: Path, dst: Path, per_channel: bool = False) -> None:
    """Write `dst`: `src` with int8 MatMul weights and activations quantized at run time.

    Args:
        src: float32 ONNX model.
        dst: output path, e.g. model.int8.onnx.
        per_channel: one scale per output channel of each weight instead of one per tensor.
    """
    quantize_dynamic(
        model_input=str(src),
        model_output=str(dst),
        op_types_to_quantize=["MatMul"],
        per_channel=per_channel,
        weight_type=QuantType.QInt8,
        extra_options={"MatMulConstBOnly": True},
    )
    copy_metadata(src, dst)
    logger.info("Wrote %s (dynamic int8, per_channel=%s)", dst, per_channel)


class FbankCalibrationReader(CalibrationDataReader):
    """Feed model.onnx inputs computed from the first `num_cuts` cuts of a lhotse manifest.

    Each item is one utterance: ``x`` float32 (1, T, 80) fbank without dither, ``x_lens`` int64
    (1,), from the first channel. Cuts not at 16 kHz or shorter than 7 frames are skipped,
    logged and counted.

    Args:
        cuts_path: lhotse CutSet manifest (e.g. cuts_train.jsonl.gz) whose audio is readable.
        num_cuts: number of utterances to use.
    """

    def __init__(self, cuts_path: str | Path, num_cuts: int = 100) -> None:
        cuts_path = Path(cuts_path)
        if not cuts_path.is_file():
            raise FileNotFoundError(
                f"Calibration manifest {cuts_path} not found; pass a lhotse cuts file such as "
                "data/manifests/cuts_train.jsonl.gz"
            )

        self.skipped = 0
        self._items: list[dict[str, np.ndarray]] = []
        cuts = CutSet.from_file(cuts_path)
        for cut in tqdm(cuts.subset(first=num_cuts), total=num_cuts, desc="calibration fbank"):
            if cut.sampling_rate != SAMPLE_RATE:
                logger.warning("Skipping cut %s: sampling rate %d Hz, expected %d Hz",
                               cut.id, cut.sampling_rate, SAMPLE_RATE)
                self.skipped += 1
                continue

            waveform = torch.from_numpy(cut.load_audio()[0])
            feats = compute_fbank(waveform)
            if feats.size(0) < MIN_FRAMES:
                logger.warning("Skipping cut %s: %d fbank frames, need at least %d",
                               cut.id, feats.size(0), MIN_FRAMES)
                self.skipped += 1
                continue

            self._items.append({
                "x": feats.unsqueeze(0).numpy(),
                "x_lens": np.array([feats.size(0)], dtype=np.int64),
            })

        if not self._items:
            raise ValueError(
                f"No usable calibration utterance in the first {num_cuts} cuts of {cuts_path} "
                f"({self.skipped} skipped); pass a manifest of 16 kHz speech"
            )
        if self.skipped:
            logger.warning("Skipped %d of %d calibration cuts", self.skipped,
                           self.skipped + len(self._items))
        self._iterator = iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def get_next(self) -> dict[str, np.ndarray] | None:
        """Next input feed, or None when all utterances have been read."""
        return next(self._iterator, None)

    def rewind(self) -> None:
        """Start again from the first utterance."""
        self._iterator = iter(self._items)


def quantize_static_qdq(
    src: Path, dst: Path, reader: CalibrationDataReader, per_channel: bool = False
) -> None:
    """Write `dst`: `src` with QDQ int8 weights and activations calibrated on `reader` (MinMax).

    Args:
        src: float32 model.onnx.
        dst: output path, e.g. model.int8.onnx.
        reader: feeds of the model's inputs, such as `FbankCalibrationReader`.
        per_channel: one weight scale per output channel instead of one per tensor.
    """
    quantize_static(
        model_input=str(src),
        model_output=str(dst),
        calibration_data_reader=reader,
        quant_format=QuantFormat.QDQ,
        op_types_to_quantize=["MatMul", "Conv"],
        per_channel=per_channel,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        calibrate_method=CalibrationMethod.MinMax,
        calibration_providers=["CPUExecutionProvider"],
        extra_options={"MatMulConstBOnly": True},
    )
    copy_metadata(src, dst)
    logger.info("Wrote %s (static QDQ int8, per_channel=%s)", dst, per_channel)

