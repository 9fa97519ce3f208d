"""Offline recognizer: audio file -> fbank -> ONNX CTC model -> search -> text."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
from onnxruntime.capi import onnxruntime_pybind11_state as ort_errors

from asr_edge.audio import load_audio
from asr_edge.features import SAMPLE_RATE, compute_fbank
from asr_edge.search import attention_rescoring, ctc_greedy_search, ctc_prefix_beam_search
from asr_edge.tokens import read_tokens

logger = logging.getLogger(__name__)

DECODING_MODES = ("ctc_greedy_search", "ctc_prefix_beam_search", "attention_rescoring")

MODEL_FILE = "model.onnx"
ENCODER_FILE = "encoder.onnx"
DECODER_FILE = "decoder.onnx"
# The exporter writes int8 copies next to the float models under these suffixes.
INT8_SUFFIX = ".int8.onnx"
TOKENS_FILE = "tokens.txt"
MODEL_TYPE = "wenet_ctc"

# Minimum fbank frames per subsampling factor, so that one encoder frame is left. Conv2d
# subsampling by 4 keeps ((T - 1) // 2 - 1) // 2 frames, which is 1 for T = 7.
MIN_FRAMES = {4: 7}

# onnxruntime's load errors derive from Exception only, so they are listed one by one.
_SESSION_ERRORS = (
    ort_errors.Fail,
    ort_errors.InvalidArgument,
    ort_errors.InvalidGraph,
    ort_errors.InvalidProtobuf,
    ort_errors.NoSuchFile,
    ort_errors.NotImplemented,
    ort_errors.RuntimeException,
)


class ModelError(ValueError):
    """An exported model directory is incomplete, corrupt or inconsistent."""


@dataclass(frozen=True)
class Result:
    """Recognition result of one audio file.

    Attributes:
        text: Recognized text.
        tokens: Token symbols of the hypothesis.
        token_ids: Token ids of the hypothesis.
        duration: Audio length in seconds.
        seconds: Wall-clock processing time in seconds, from reading the file to the text.
    """

    text: str
    tokens: tuple[str, ...]
    token_ids: tuple[int, ...]
    duration: float
    seconds: float

    @property
    def rtf(self) -> float:
        """Real-time factor: processing time divided by audio length."""
        return self.seconds / self.duration


def _open_session(path: Path, num_threads: int) -> ort.InferenceSession:
    if not path.is_file():
        raise ModelError(f"{path}: ONNX model not found. Export the model into this directory.")

    options = ort.SessionOptions()
    options.intra_op_num_threads = num_threads
    options.inter_op_num_threads = 1
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except _SESSION_ERRORS as error:
        raise ModelError(
            f"{path}: onnxruntime cannot load the model, the file is corrupt or not ONNX"
            f" ({error}). Export it again."
        ) from error


def _require_names(
    session: ort.InferenceSession, path: Path, inputs: set[str], outputs: set[str]
) -> None:
    input_names = {node.name for node in session.get_inputs()}
    output_names = {node.name for node in session.get_outputs()}
    missing = sorted(inputs - input_names) + sorted(outputs - output_names)
    if missing:
        raise ModelError(
            f"{path}: graph is missing {', '.join(missing)}. It has inputs {sorted(input_names)} and"
            f" outputs {sorted(output_names)}. Export it with the project's exporter."
        )


def _metadata_int(metadata: dict[str, str], key: str, path: Path) -> int:
    if key not in metadata:
        raise ModelError(f"{path}: metadata lacks {key!r}. Export it with the project's exporter.")
    try:
        return int(metadata[key])
    except ValueError as error:
        raise ModelError(
            f"{path}: metadata {key}={metadata[key]!r} is not an integer."
        ) from error


class Recognizer:
    """Transcribe audio files with an exported model, using onnxruntime on the CPU only.

    ``model_dir`` must contain ``model.onnx`` (inputs ``x`` (N, T, 80) float32 and ``x_lens``
    (N,) int64, outputs ``log_probs`` (N, T', V) and ``log_probs_len`` (N,)) and ``tokens.txt``.
    Attention rescoring also needs ``decoder.onnx`` and an ``encoder_out`` output, taken from
    ``model.onnx`` if it has one and from ``encoder.onnx`` otherwise.

    Args:
        model_dir: Exported model directory.
        num_threads: onnxruntime intra-op threads per session.
        decoding: One of ``DECODING_MODES``.
        beam_size: Beam of the prefix beam search, also the n-best size for rescoring.
        ctc_weight: Weight of the CTC score in attention rescoring.
        int8: Load ``model.int8.onnx`` (and ``decoder.int8.onnx``, ``encoder.int8.onnx``)
            in place of the float models.

    Raises:
        ModelError: naming the file, if a needed file is missing or corrupt, lacks an input,
            output or metadata key, or its vocab_size differs from the size of ``tokens.txt``.
        TokensError: if ``tokens.txt`` is missing or malformed.
    """

    def __init__(
        self,
        model_dir: str | Path,
        num_threads: int = 1,
        decoding: str = "ctc_greedy_search",
        beam_size: int = 10,
        ctc_weight: float = 0.5,
        int8: bool = False,
    ) -> None:
        if decoding not in DECODING_MODES:
            raise ValueError(f"Invalid decoding {decoding!r}: expected one of {DECODING_MODES}.")
        if beam_size < 1:
            raise ValueError(f"beam_size must be at least 1, got {beam_size}.")
        if num_threads < 1:
            raise ValueError(f"num_threads must be at least 1, got {num_threads}.")

        self.model_dir = Path(model_dir)
        self.decoding = decoding
        self.beam_size = beam_size
        self.ctc_weight = ctc_weight
        self.int8 = int8

        self.tokens = read_tokens(self.model_dir / TOKENS_FILE)
        model_path = self._model_path(MODEL_FILE)
        self._model = _open_session(model_path, num_threads)
        _require_names(self._model, model_path, {"x", "x_lens"}, {"log_probs", "log_probs_len"})
        self._check_metadata(model_path)

        self._encoder: ort.InferenceSession | None = None
        self._decoder: ort.InferenceSession | None = None
        if decoding == "attention_rescoring":
            self._open_rescoring_sessions(num_threads)

    def _model_path(self, file_name: str) -> Path:
        if self.int8:
            file_name = file_name.removesuffix(".onnx") + INT8_SUFFIX
        return self.model_dir / file_name

    def _check_vocab_size(self, metadata: dict[str, str], path: Path) -> None:
        vocab_size = _metadata_int(metadata, "vocab_size", path)
        if vocab_size != len(self.tokens):
            raise ModelError(
                f"{path}: metadata vocab_size={vocab_size} but {self.model_dir / TOKENS_FILE}"
                f" has {len(self.tokens)} tokens. Export the model and its tokens.txt together."
            )

    def _check_metadata(self, model_path: Path) -> None:
        metadata = self._model.get_modelmeta().custom_metadata_map

        model_type = metadata.get("model_type")
        if model_type != MODEL_TYPE:
            raise ModelError(
                f"{model_path}: metadata model_type={model_type!r}, expected {MODEL_TYPE!r}."
            )

        self._check_vocab_size(metadata, model_path)

        self.subsampling_factor = _metadata_int(metadata, "subsampling_factor", model_path)
        if self.subsampling_factor not in MIN_FRAMES:
            raise ModelError(
                f"{model_path}: unsupported subsampling_factor={self.subsampling_factor},"
                f" expected one of {sorted(MIN_FRAMES)}."
            )

        # With snip_edges=False, S samples give (S + 80) // 160 frames.
        shift = SAMPLE_RATE // 100
        self.min_samples = MIN_FRAMES[self.subsampling_factor] * shift - shift // 2

    def _open_rescoring_sessions(self, num_threads: int) -> None:
        encoder_outputs = {"encoder_out", "encoder_out_lens"}
        model_outputs = {node.name for node in self._model.get_outputs()}
        if encoder_outputs <= model_outputs:
            self._encoder = self._model
        else:
            encoder_path = self._model_path(ENCODER_FILE)
            self._encoder = _open_session(encoder_path, num_threads)
            _require_names(self._encoder, encoder_path, {"x", "x_lens"}, encoder_outputs)

        decoder_path = self._model_path(DECODER_FILE)
        self._decoder = _open_session(decoder_path, num_threads)
        _require_names(
            self._decoder,
            decoder_path,
            {"encoder_out", "encoder_out_lens", "hyps_in", "hyps_in_lens"},
            {"log_probs"},
        )

        # Hand-built decoders may carry no metadata, so only a stated vocab_size is checked.
        decoder_metadata = self._decoder.get_modelmeta().custom_metadata_map
        if "vocab_size" in decoder_metadata:
            self._check_vocab_size(decoder_metadata, decoder_path)

    def transcribe(self, path: str | Path) -> Result:
        """Recognize one audio file of any sample rate and channel count (see ``load_audio``).

        Raises:
            AudioError: naming the file, if it is missing, unreadable or too short.
        """
        start = time.perf_counter()
        samples = load_audio(path, min_samples=self.min_samples)
        return self._recognize(samples, start)

    def transcribe_samples(self, samples: np.ndarray) -> Result:
        """Recognize a (S,) float32 waveform in [-1, 1] at 16 kHz."""
        if samples.ndim != 1 or samples.shape[0] < self.min_samples:
            raise ValueError(
                f"Expected a (S,) waveform of at least {self.min_samples} samples, got shape"
                f" {samples.shape}."
            )
        return self._recognize(samples, time.perf_counter())

    def _recognize(self, samples: np.ndarray, start: float) -> Result:
        feats = compute_fbank(samples)
        inputs = {
            "x": feats[None].astype(np.float32),
            "x_lens": np.array([feats.shape[0]], dtype=np.int64),
        }

        if self.decoding == "attention_rescoring":
            token_ids = self._rescore(inputs)
        else:
            log_probs, log_probs_len = self._model.run(["log_probs", "log_probs_len"], inputs)
            frames = log_probs[0, : int(log_probs_len[0])]
            if self.decoding == "ctc_greedy_search":
                token_ids = tuple(ctc_greedy_search(frames))
            else:
                token_ids = ctc_prefix_beam_search(frames, self.beam_size)[0][0]

        return Result(
            text=self.tokens.to_text(token_ids),
            tokens=tuple(self.tokens.symbols[i] for i in token_ids),
            token_ids=tuple(token_ids),
            duration=samples.shape[0] / SAMPLE_RATE,
            seconds=time.perf_counter() - start,
        )

    def _rescore(self, inputs: dict[str, np.ndarray]) -> tuple[int, ...]:
        if self._encoder is None or self._decoder is None:
            raise RuntimeError(
                "Rescoring sessions are not open because decoding is not attention_rescoring."
            )

        encoder_names = {node.name for node in self._encoder.get_outputs()}
        if {"log_probs", "log_probs_len"} <= encoder_names:
            log_probs, log_probs_len, encoder_out, encoder_out_lens = self._encoder.run(
                ["log_probs", "log_probs_len", "encoder_out", "encoder_out_lens"], inputs
            )
        else:
            log_probs, log_probs_len = self._model.run(["log_probs", "log_probs_len"], inputs)
            encoder_out, encoder_out_lens = self._encoder.run(
                ["encoder_out", "encoder_out_lens"], inputs
            )

        decoder = self._decoder
        nbest = ctc_prefix_beam_search(log_probs[0, : int(log_probs_len[0])], self.beam_size)

        def decode(hyps_in: np.ndarray, hyps_in_lens: np.ndarray) -> np.ndarray:
            num_hyps = hyps_in.shape[0]
            feeds = {
                "encoder_out": np.repeat(encoder_out, num_hyps, axis=0),
                "encoder_out_lens": np.repeat(encoder_out_lens, num_hyps, axis=0),
                "hyps_in": hyps_in,
                "hyps_in_lens": hyps_in_lens,
            }
            return decoder.run(["log_probs"], feeds)[0]

        return attention_rescoring(nbest, decode, self.ctc_weight)
