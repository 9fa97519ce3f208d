"""ONNX export of ReuseASR models for sherpa-onnx (wenet_ctc) and the edge runtime, with int8 quantization."""

from asr_onnx.exporter import (
    DECODER_INPUTS,
    DECODER_OUTPUTS,
    MODEL_INPUTS,
    MODEL_OUTPUTS,
    ParityError,
    ParityOptions,
    check_ctc_parity,
    check_decoder_parity,
    export_ctc_model,
    export_decoder,
    read_metadata,
)
from asr_onnx.quantize import FbankCalibrationReader, quantize_dynamic_int8, quantize_static_qdq

__all__ = [
    "DECODER_INPUTS",
    "DECODER_OUTPUTS",
    "MODEL_INPUTS",
    "MODEL_OUTPUTS",
    "FbankCalibrationReader",
    "ParityError",
    "ParityOptions",
    "check_ctc_parity",
    "check_decoder_parity",
    "export_ctc_model",
    "export_decoder",
    "quantize_dynamic_int8",
    "quantize_static_qdq",
    "read_metadata",
]
