"""Int8 quantization of the exported models: dynamic, static QDQ, or mixed.

Three recipes:
  * dynamic: MatMul weights in int8, activations quantized at run time; no calibration data,
    but the subsampling convolutions stay in float32;
  * static: QDQ int8 weights and activations for MatMuls and convolutions, calibrated on
    training audio;
  * mixed: static QDQ for the subsampling convolutions only, dynamic for the MatMuls. The
    convolutions get int8 kernels without Q/DQ pairs around every MatMul.

Only MatMuls with a constant weight and convolutions are quantized. Attention score products
and LayerNorm stay in float32. The custom metadata of the float model is copied into the
quantized one, so sherpa-onnx reads the same keys.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
from collections.abc import Iterator
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
from asr_edge.search import ctc_prefix_beam_search, rescoring_inputs
from asr_onnx.exporter import read_metadata, set_metadata

logger = logging.getLogger(__name__)

# Conv2d subsampling by 4 needs 7 frames for one output frame.
MIN_FRAMES = 7


class _QuantizerAdviceFilter(logging.Filter):
    """Drop the ONNX Runtime quantizer's generic advice, which it logs on the root logger at
    WARNING for every model: shape-inference pre-processing and a reminder about QAT models."""

    ADVICE = ("Please consider", "Please check if the model is already quantized")

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.ADVICE)


@contextlib.contextmanager
def _quiet_quantizer() -> Iterator[None]:
    advice_filter = _QuantizerAdviceFilter()
    root = logging.getLogger()
    root.addFilter(advice_filter)
    try:
        yield
    finally:
        root.removeFilter(advice_filter)


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
    _quantize_dynamic(src, dst, per_channel)
    copy_metadata(src, dst)
    logger.info("Wrote %s (dynamic int8, per_channel=%s)", dst, per_channel)


def _quantize_dynamic(src: Path, dst: Path, per_channel: bool) -> None:
    with _quiet_quantizer():
        quantize_dynamic(
            model_input=str(src),
            model_output=str(dst),
            op_types_to_quantize=["MatMul"],
            per_channel=per_channel,
            weight_type=QuantType.QInt8,
            extra_options={"MatMulConstBOnly": True},
        )


class _FeedListReader(CalibrationDataReader):
    """Calibration reader over a list of feeds built once by the subclass in `_items`."""

    _items: list[dict[str, np.ndarray]]

    def __len__(self) -> int:
        return len(self._items)

    def get_next(self) -> dict[str, np.ndarray] | None:
        """Return the next feed, or None when all utterances have been read."""
        return next(self._iterator, None)

    def rewind(self) -> None:
        """Start again from the first utterance."""
        self._iterator = iter(self._items)


class FbankCalibrationReader(_FeedListReader):
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
        self.rewind()


class DecoderCalibrationReader(_FeedListReader):
    """Feed decoder.onnx what attention rescoring gives it: encoder output and CTC n-best.

    For each utterance of `fbank_reader`, model.onnx gives the encoder output and the CTC
    log-probs, and CTC prefix beam search gives the `beam_size` hypotheses that the decoder
    rescores in one batch.

    Args:
        model_path: float32 model.onnx with ``encoder_out`` and ``encoder_out_lens`` outputs.
        fbank_reader: the utterances, e.g. a `FbankCalibrationReader`.
        beam_size: hypotheses per utterance.
    """

    def __init__(
        self, model_path: Path, fbank_reader: CalibrationDataReader, beam_size: int = 10
    ) -> None:
        import onnxruntime as ort

        session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
        outputs = ["log_probs", "log_probs_len", "encoder_out", "encoder_out_lens"]

        self._items: list[dict[str, np.ndarray]] = []
        fbank_reader.rewind()
        while (feed := fbank_reader.get_next()) is not None:
            log_probs, log_probs_len, encoder_out, encoder_out_lens = session.run(outputs, feed)
            nbest = ctc_prefix_beam_search(log_probs[0, : int(log_probs_len[0])], beam_size)
            if not nbest:
                continue

            hyps_in, hyps_in_lens, _ = rescoring_inputs([hyp for hyp, _ in nbest])
            num_hyps = hyps_in.shape[0]
            self._items.append({
                "encoder_out": np.repeat(encoder_out, num_hyps, axis=0),
                "encoder_out_lens": np.repeat(encoder_out_lens, num_hyps, axis=0),
                "hyps_in": hyps_in,
                "hyps_in_lens": hyps_in_lens,
            })

        if not self._items:
            raise ValueError(f"{model_path} gave no CTC hypothesis for any calibration utterance")
        self.rewind()


def quantize_static_qdq(
    src: Path,
    dst: Path,
    reader: CalibrationDataReader,
    per_channel: bool = False,
    op_types: tuple[str, ...] = ("MatMul", "Conv", "Relu"),
) -> None:
    """Write `dst`: `src` with QDQ int8 weights and activations calibrated on `reader` (MinMax).

    Args:
        src: float32 ONNX model.
        dst: output path, e.g. model.int8.onnx.
        reader: feeds of the model's inputs, such as `FbankCalibrationReader`.
        per_channel: one weight scale per output channel instead of one per tensor.
        op_types: operator types to quantize.
    """
    _quantize_static(src, dst, reader, per_channel, op_types)
    copy_metadata(src, dst)
    logger.info("Wrote %s (static QDQ int8, per_channel=%s)", dst, per_channel)


def _quantize_static(
    src: Path, dst: Path, reader: CalibrationDataReader, per_channel: bool,
    op_types: tuple[str, ...],
) -> None:
    reader.rewind()
    with _quiet_quantizer():
        quantize_static(
            model_input=str(src),
            model_output=str(dst),
            calibration_data_reader=reader,
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=list(op_types),
            per_channel=per_channel,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
            calibration_providers=["CPUExecutionProvider"],
            extra_options={"MatMulConstBOnly": True},
        )


def quantize_mixed_int8(
    src: Path, dst: Path, reader: CalibrationDataReader, per_channel: bool = False
) -> None:
    """Write `dst`: static QDQ convolutions calibrated on `reader`, then dynamic int8 MatMuls.

    On the paper-size model this is the fastest recipe: the subsampling convolutions run as
    int8 kernels, and the MatMuls avoid the Q/DQ pairs that a fully static graph puts around
    each of them.
    """
    with tempfile.TemporaryDirectory() as tmp:
        conv_only = Path(tmp) / "conv_qdq.onnx"
        # With Relu listed, the quantizer drops each Relu after a convolution into the
        # convolution's output range, so no Q/DQ pair is left between the two convolutions.
        _quantize_static(src, conv_only, reader, per_channel, op_types=("Conv", "Relu"))
        _quantize_dynamic(conv_only, dst, per_channel)
    copy_metadata(src, dst)
    logger.info("Wrote %s (mixed int8: static convolutions, dynamic MatMuls)", dst)
