"""Torch-free runtime that transcribes audio files with an exported ONNX CTC model.

It needs only onnxruntime, numpy, soundfile and kaldi-native-fbank, so it runs on edge devices.
"""

from __future__ import annotations

from asr_edge.audio import AudioError, load_audio
from asr_edge.recognizer import DECODING_MODES, ModelError, Recognizer, Result
from asr_edge.tokens import TokenTable, TokensError, read_tokens

__all__ = [
    "DECODING_MODES",
    "AudioError",
    "ModelError",
    "Recognizer",
    "Result",
    "TokenTable",
    "TokensError",
    "load_audio",
    "read_tokens",
]
