"""Tests of the torch-free edge runtime in export/asr_edge on tiny hand-built ONNX graphs."""

from __future__ import annotations

import logging
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import soundfile as sf
from onnx import TensorProto, helper, numpy_helper

from asr_edge.audio import AudioError, load_audio
from asr_edge.cli import main as cli_main
from asr_edge.features import compute_fbank, num_frames
from asr_edge.recognizer import ModelError, Recognizer
from asr_edge.resample import resample
from asr_edge.search import attention_rescoring, ctc_greedy_search, ctc_prefix_beam_search
from asr_edge.tokens import TokensError, read_tokens

EXPORT_ROOT = Path(__file__).resolve().parents[1] / "export"
SYMBOLS = ["<blank>", "<unk>", "<sos/eos>", "你", "好", "\u2581hi"]
VOCAB_SIZE = len(SYMBOLS)
ENCODER_DIM = 4

# 7 fbank frames (the minimum for subsampling by 4) need (S + 80) // 160 >= 7 samples.
MIN_SAMPLES = 1040


# ---------------------------------------------------------------------------------------------
# Fixture builders


def write_tokens(path: Path, symbols: list[str] = SYMBOLS) -> None:
    path.write_text("".join(f"{s} {i}\n" for i, s in enumerate(symbols)), encoding="utf-8")


def _int_const(name: str, value: int) -> onnx.NodeProto:
    return helper.make_node(
        "Constant", [], [name], value=numpy_helper.from_array(np.array(value, dtype=np.int64))
    )


def _subsample_nodes(lens_in: str, lens_out: str) -> list[onnx.NodeProto]:
    """Frames of x[:, ::4][:, :T'] and lengths ((L - 1) // 2 - 1) // 2, as conv2d subsampling."""
    return [
        _int_const("one", 1),
        _int_const("two", 2),
        helper.make_node("Sub", [lens_in, "one"], ["l1"]),
        helper.make_node("Div", ["l1", "two"], ["l2"]),
        helper.make_node("Sub", ["l2", "one"], ["l3"]),
        helper.make_node("Div", ["l3", "two"], [lens_out]),
        helper.make_node("Shape", ["x"], ["x_shape"]),
        helper.make_node("Gather", ["x_shape", "one"], ["t_in"], axis=0),
        helper.make_node("Sub", ["t_in", "one"], ["t1"]),
        helper.make_node("Div", ["t1", "two"], ["t2"]),
        helper.make_node("Sub", ["t2", "one"], ["t3"]),
        helper.make_node("Div", ["t3", "two"], ["t_out"]),
        helper.make_node("Unsqueeze", ["t_out", "axes0"], ["end"]),
        helper.make_node("Slice", ["x", "zero1", "end", "axes1", "four1"], ["x_sub"]),
    ]


def build_ctc_model(
    path: Path,
    bias: np.ndarray,
    weight: np.ndarray | None = None,
    metadata: dict[str, str] | None = None,
    with_encoder_out: bool = False,
    with_log_probs: bool = True,
) -> None:
    """Write an ONNX CTC model: log_softmax(x[:, ::4] @ weight + bias) with subsampled lengths."""
    weight = np.zeros((80, VOCAB_SIZE), np.float32) if weight is None else weight
    initializers = [
        numpy_helper.from_array(weight.astype(np.float32), "weight"),
        numpy_helper.from_array(bias.astype(np.float32), "bias"),
        numpy_helper.from_array(np.full((80, ENCODER_DIM), 0.01, np.float32), "enc_weight"),
        numpy_helper.from_array(np.array([0], np.int64), "zero1"),
        numpy_helper.from_array(np.array([1], np.int64), "axes1"),
        numpy_helper.from_array(np.array([4], np.int64), "four1"),
        numpy_helper.from_array(np.array([0], np.int64), "axes0"),
    ]
    nodes = _subsample_nodes("x_lens", "log_probs_len" if with_log_probs else "encoder_out_lens")
    outputs = []
    if with_log_probs:
        nodes += [
            helper.make_node("MatMul", ["x_sub", "weight"], ["logits0"]),
            helper.make_node("Add", ["logits0", "bias"], ["logits"]),
            helper.make_node("LogSoftmax", ["logits"], ["log_probs"], axis=-1),
        ]
        outputs += [
            helper.make_tensor_value_info(
                "log_probs", TensorProto.FLOAT, ["N", "T_out", VOCAB_SIZE]
            ),
            helper.make_tensor_value_info("log_probs_len", TensorProto.INT64, ["N"]),
        ]
    if with_encoder_out:
        nodes.append(helper.make_node("MatMul", ["x_sub", "enc_weight"], ["encoder_out"]))
        if with_log_probs:
            nodes.append(helper.make_node("Identity", ["log_probs_len"], ["encoder_out_lens"]))
        outputs += [
            helper.make_tensor_value_info(
                "encoder_out", TensorProto.FLOAT, ["N", "T_out", ENCODER_DIM]
            ),
            helper.make_tensor_value_info("encoder_out_lens", TensorProto.INT64, ["N"]),
        ]

    graph = helper.make_graph(
        nodes,
        "tiny_ctc",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", "T", 80]),
            helper.make_tensor_value_info("x_lens", TensorProto.INT64, ["N"]),
        ],
        outputs,
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    if metadata is None:
        metadata = {
            "model_type": "wenet_ctc",
            "vocab_size": str(VOCAB_SIZE),
            "subsampling_factor": "4",
        }
    helper.set_model_props(model, metadata)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def build_decoder(path: Path, bias: np.ndarray, metadata: dict[str, str] | None = None) -> None:
    """Write an ONNX decoder whose log-probs are log_softmax(bias) at every position."""
    nodes = [
        helper.make_node("Cast", ["hyps_in"], ["hyps_float"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["hyps_float", "axes2"], ["hyps_3d"]),
        helper.make_node("Mul", ["hyps_3d", "zero_f"], ["zeros"]),
        helper.make_node("Add", ["zeros", "bias"], ["logits"]),
        helper.make_node("LogSoftmax", ["logits"], ["log_probs"], axis=-1),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_decoder",
        [
            helper.make_tensor_value_info(
                "encoder_out", TensorProto.FLOAT, ["M", "T", ENCODER_DIM]
            ),
            helper.make_tensor_value_info("encoder_out_lens", TensorProto.INT64, ["M"]),
            helper.make_tensor_value_info("hyps_in", TensorProto.INT64, ["M", "L"]),
            helper.make_tensor_value_info("hyps_in_lens", TensorProto.INT64, ["M"]),
        ],
        [helper.make_tensor_value_info("log_probs", TensorProto.FLOAT, ["M", "L", VOCAB_SIZE])],
        [
            numpy_helper.from_array(bias.astype(np.float32), "bias"),
            numpy_helper.from_array(np.array([2], np.int64), "axes2"),
            numpy_helper.from_array(np.array(0.0, np.float32), "zero_f"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    if metadata is not None:
        helper.set_model_props(model, metadata)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


# Every CTC frame has log-probs -2.713 (blank), -0.713 ("你", id 3) and -0.813 ("好", id 4).
CTC_BIAS = np.array([0.0, -9.0, -9.0, 2.0, 1.9, -9.0])
# Every decoder position has log-probs -2.129 (eos), -6.129 ("你") and -0.129 ("好").
DECODER_BIAS = np.array([-9.0, -9.0, 1.0, -3.0, 3.0, -9.0])


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "model"
    directory.mkdir()
    build_ctc_model(directory / "model.onnx", CTC_BIAS, with_encoder_out=True)
    build_decoder(directory / "decoder.onnx", DECODER_BIAS)
    write_tokens(directory / "tokens.txt")
    return directory


def write_wav(
    path: Path, num_samples: int = 16000, rate: int = 16000, channels: int = 1,
    subtype: str = "PCM_16",
) -> np.ndarray:
    """Write Gaussian noise (std 0.1) and return it as (num_samples, channels) float32."""
    rng = np.random.default_rng(0)
    data = (0.1 * rng.standard_normal((num_samples, channels))).astype(np.float32)
    sf.write(str(path), data, rate, subtype=subtype)
    return data


# ---------------------------------------------------------------------------------------------
# Features and resampling


def test_fbank_matches_torch_frontend() -> None:
    torch = pytest.importorskip("torch")
    from asr.features.fbank import compute_fbank as torch_fbank

    samples = np.random.default_rng(1).uniform(-0.5, 0.5, 16123).astype(np.float32)
    expected = torch_fbank(torch.from_numpy(samples)).numpy()
    actual = compute_fbank(samples)
    assert actual.shape == expected.shape
    assert np.allclose(actual, expected, atol=2e-3)


def test_fbank_frame_count() -> None:
    feats = compute_fbank(np.zeros(MIN_SAMPLES, np.float32) + 0.01)
    assert feats.shape == (7, 80)
    assert num_frames(MIN_SAMPLES - 1) == 6


def test_resample_sine_accuracy() -> None:
    times = np.arange(44100) / 44100
    sine = np.sin(2 * np.pi * 440 * times).astype(np.float32)
    output = resample(sine, 44100, 16000)
    expected = np.sin(2 * np.pi * 440 * np.arange(16000) / 16000)
    assert output.shape == (16000,)
    assert np.abs(output - expected)[200:-200].max() < 1e-3


# ---------------------------------------------------------------------------------------------
# Audio input checks


def test_audio_missing(tmp_path: Path) -> None:
    with pytest.raises(AudioError, match="not found"):
        load_audio(tmp_path / "absent.wav")


def test_audio_empty(tmp_path: Path) -> None:
    path = tmp_path / "empty.wav"
    path.write_bytes(b"")
    with pytest.raises(AudioError, match="empty"):
        load_audio(path)


def test_audio_corrupt_header(tmp_path: Path) -> None:
    path = tmp_path / "corrupt.wav"
    path.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(range(200)))
    with pytest.raises(AudioError, match="corrupt.wav: not a readable audio file"):
        load_audio(path)


def test_audio_non_audio_file(tmp_path: Path) -> None:
    path = tmp_path / "notes.wav"
    path.write_text("hello world\n" * 20)
    with pytest.raises(AudioError, match="notes.wav"):
        load_audio(path)


def test_audio_no_samples(tmp_path: Path) -> None:
    path = tmp_path / "zero.wav"
    sf.write(str(path), np.zeros((0, 1), np.float32), 16000)
    with pytest.raises(AudioError, match="no samples"):
        load_audio(path)


def test_audio_too_short(tmp_path: Path) -> None:
    path = tmp_path / "short.wav"
    write_wav(path, num_samples=MIN_SAMPLES - 1)
    with pytest.raises(AudioError, match="shorter than the model's minimum of 0.065 s"):
        load_audio(path, min_samples=MIN_SAMPLES)


def test_audio_minimum_length_accepted(tmp_path: Path) -> None:
    path = tmp_path / "minimum.wav"
    write_wav(path, num_samples=MIN_SAMPLES)
    assert load_audio(path, min_samples=MIN_SAMPLES).shape == (MIN_SAMPLES,)


def test_audio_44k_resampled(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "cd.wav"
    write_wav(path, num_samples=44100, rate=44100)
    with caplog.at_level(logging.WARNING):
        samples = load_audio(path)
    assert samples.shape == (16000,)
    assert "resampling from 44100 Hz" in caplog.text


def test_audio_stereo_averaged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "stereo.wav"
    data = write_wav(path, channels=2, subtype="FLOAT")
    with caplog.at_level(logging.WARNING):
        samples = load_audio(path)
    assert np.allclose(samples, data.mean(axis=1))
    assert "averaging 2 channels" in caplog.text


@pytest.mark.parametrize("bad_value", [np.nan, np.inf])
def test_audio_non_finite(tmp_path: Path, bad_value: float) -> None:
    path = tmp_path / "nan.wav"
    data = np.zeros((4000, 1), np.float32)
    data[123, 0] = bad_value
    sf.write(str(path), data, 16000, subtype="FLOAT")
    with pytest.raises(AudioError, match="first at sample 123"):
        load_audio(path)


# ---------------------------------------------------------------------------------------------
# Token table


def test_tokens_read_and_text(tmp_path: Path) -> None:
    path = tmp_path / "tokens.txt"
    write_tokens(path)
    table = read_tokens(path)
    assert len(table) == VOCAB_SIZE
    assert table.to_text([3, 0, 4, 2]) == "你好"
    assert table.to_text([5, 1]) == "hi<unk>"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("<blank> 0\n<unk> 1\n<sos/eos> 2\na 4\n", "id 3 is missing"),
        ("<blank> 0\n<unk> 1\n<sos/eos> 2\na 3\nb 3\n", r"tokens.txt:5: id 3 is already used"),
        ("<blank> 0\n<unk> 1\n<sos/eos> 2\na 3\na 4\n", r"tokens.txt:5: symbol 'a' already"),
        ("<blank> 0\n<unk> 1\n<sos/eos> 2\na b 3\n", r"tokens.txt:4: expected 'symbol id'"),
        ("<blank> 0\n<unk> 1\n<sos/eos> 2\na x\n", r"tokens.txt:4: token id 'x'"),
        ("<blank> 0\n<sos/eos> 1\n<unk> 2\n", r"tokens.txt:2: id 1 must be '<unk>'"),
        ("", "empty"),
    ],
)
def test_tokens_malformed(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "tokens.txt"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(TokensError, match=message):
        read_tokens(path)


# ---------------------------------------------------------------------------------------------
# Searches


def test_greedy_collapses_repeats() -> None:
    best = [3, 3, 0, 3, 4, 4, 0]
    log_probs = np.log(np.full((len(best), VOCAB_SIZE), 0.01))
    log_probs[np.arange(len(best)), best] = np.log(0.9)
    assert ctc_greedy_search(log_probs) == [3, 3, 4]


def test_greedy_no_frames() -> None:
    assert ctc_greedy_search(np.zeros((0, VOCAB_SIZE))) == []


def test_prefix_beam_sums_alignments() -> None:
    # P(blank) = 0.6 and P(a) = 0.4 on both frames: greedy returns "", but
    # P("a") = 0.4 * 0.4 + 0.4 * 0.6 + 0.6 * 0.4 = 0.64 beats P("") = 0.36.
    log_probs = np.log(np.array([[0.6, 0.4], [0.6, 0.4]]))
    nbest = ctc_prefix_beam_search(log_probs, beam_size=2)
    assert [hyp for hyp, _ in nbest] == [(1,), ()]
    assert math.isclose(nbest[0][1], math.log(0.64), rel_tol=1e-9)
    assert math.isclose(nbest[1][1], math.log(0.36), rel_tol=1e-9)
    assert ctc_greedy_search(log_probs) == []


def test_prefix_beam_repeated_label() -> None:
    # Three frames of P(blank) = P(a) = 0.5: "a" has 6 of the 8 alignments, "" and "aa" one each.
    log_probs = np.log(np.full((3, 2), 0.5))
    scores = dict(ctc_prefix_beam_search(log_probs, beam_size=3))
    assert math.isclose(scores[(1,)], math.log(0.75), rel_tol=1e-9)
    assert math.isclose(scores[()], math.log(0.125), rel_tol=1e-9)
    assert math.isclose(scores[(1, 1)], math.log(0.125), rel_tol=1e-9)


def test_prefix_beam_no_frames() -> None:
    assert ctc_prefix_beam_search(np.zeros((0, 3)), beam_size=4) == [((), 0.0)]


def test_rescoring_inputs_and_choice() -> None:
    seen = {}

    def decoder(hyps_in: np.ndarray, hyps_in_lens: np.ndarray) -> np.ndarray:
        seen["hyps_in"] = hyps_in
        seen["hyps_in_lens"] = hyps_in_lens
        return np.broadcast_to(np.log(np.array([0.05, 0.05, 0.3, 0.1, 0.5])), (2, 3, 5))

    # Decoder: (3,) -> log 0.1 + log 0.3, (4, 4) -> 2 log 0.5 + log 0.3, so (4, 4) wins by
    # log 2.5 = 0.92 unless the CTC gap (1.0 per unit of weight) outweighs it.
    nbest = [((3,), -1.0), ((4, 4), -2.0)]
    assert attention_rescoring(nbest, decoder, ctc_weight=0.5) == (4, 4)
    assert attention_rescoring(nbest, decoder, ctc_weight=1.0) == (3,)
    assert seen["hyps_in"].tolist() == [[2, 3, 2], [2, 4, 4]]
    assert seen["hyps_in_lens"].tolist() == [2, 3]


# ---------------------------------------------------------------------------------------------
# Recognizer


# The shortest accepted audio gives one encoder frame, so the CTC n-best is each token alone.
# Rescoring with ctc_weight 0.5: "好" -0.129 - 2.129 + 0.5 * -0.813 = -2.66 beats
# "" -2.129 + 0.5 * -2.713 = -3.49 and "你" -6.129 - 2.129 + 0.5 * -0.713 = -8.61.
@pytest.mark.parametrize(
    ("decoding", "expected"),
    [
        ("ctc_greedy_search", "你"),
        ("ctc_prefix_beam_search", "你"),
        ("attention_rescoring", "好"),
    ],
)
def test_recognizer_decodings(
    model_dir: Path, tmp_path: Path, decoding: str, expected: str
) -> None:
    wav = tmp_path / "utt.wav"
    write_wav(wav, num_samples=MIN_SAMPLES)
    result = Recognizer(model_dir, decoding=decoding, beam_size=4).transcribe(wav)
    assert result.text == expected
    assert result.tokens == (expected,)
    assert result.duration == MIN_SAMPLES / 16000
    assert result.seconds > 0


def test_recognizer_separate_encoder(model_dir: Path, tmp_path: Path) -> None:
    build_ctc_model(model_dir / "model.onnx", CTC_BIAS)
    with pytest.raises(ModelError, match="encoder.onnx: ONNX model not found"):
        Recognizer(model_dir, decoding="attention_rescoring")

    build_ctc_model(
        model_dir / "encoder.onnx", CTC_BIAS, with_encoder_out=True, with_log_probs=False
    )
    wav = tmp_path / "utt.wav"
    write_wav(wav, num_samples=MIN_SAMPLES)
    recognizer = Recognizer(model_dir, decoding="attention_rescoring")
    assert recognizer.transcribe(wav).text == "好"


def test_recognizer_linear_model_matches_numpy(model_dir: Path, tmp_path: Path) -> None:
    weight = np.random.default_rng(2).standard_normal((80, VOCAB_SIZE)).astype(np.float32) * 0.1
    build_ctc_model(model_dir / "model.onnx", np.zeros(VOCAB_SIZE), weight=weight)
    wav = tmp_path / "utt.wav"
    write_wav(wav, num_samples=16000)

    feats = compute_fbank(load_audio(wav))
    num_out = ((feats.shape[0] - 1) // 2 - 1) // 2
    logits = feats[::4][:num_out] @ weight
    expected = ctc_greedy_search(logits)
    assert Recognizer(model_dir).transcribe(wav).token_ids == tuple(expected)


def test_recognizer_rejects_short_audio(model_dir: Path, tmp_path: Path) -> None:
    wav = tmp_path / "short.wav"
    write_wav(wav, num_samples=MIN_SAMPLES - 1)
    with pytest.raises(AudioError, match="short.wav"):
        Recognizer(model_dir).transcribe(wav)


def test_recognizer_missing_model(tmp_path: Path) -> None:
    write_tokens(tmp_path / "tokens.txt")
    with pytest.raises(ModelError, match="model.onnx: ONNX model not found"):
        Recognizer(tmp_path)


def test_recognizer_corrupt_model(model_dir: Path) -> None:
    (model_dir / "model.onnx").write_bytes(b"\x08\x07garbage" * 10)
    with pytest.raises(ModelError, match="model.onnx: onnxruntime cannot load"):
        Recognizer(model_dir)


def test_recognizer_vocab_mismatch(model_dir: Path) -> None:
    write_tokens(model_dir / "tokens.txt", SYMBOLS[:-1])
    with pytest.raises(ModelError, match="vocab_size=6 but .*tokens.txt has 5 tokens"):
        Recognizer(model_dir)


def test_recognizer_decoder_vocab_mismatch(model_dir: Path) -> None:
    build_decoder(model_dir / "decoder.onnx", DECODER_BIAS, metadata={"vocab_size": "7"})
    with pytest.raises(ModelError, match="decoder.onnx: metadata vocab_size=7"):
        Recognizer(model_dir, decoding="attention_rescoring")


def test_recognizer_missing_metadata(model_dir: Path) -> None:
    build_ctc_model(model_dir / "model.onnx", CTC_BIAS, metadata={"model_type": "wenet_ctc"})
    with pytest.raises(ModelError, match="metadata lacks 'vocab_size'"):
        Recognizer(model_dir)


def test_recognizer_int8_files(model_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="model.int8.onnx: ONNX model not found"):
        Recognizer(model_dir, int8=True)

    shutil.copy(model_dir / "model.onnx", model_dir / "model.int8.onnx")
    shutil.copy(model_dir / "decoder.onnx", model_dir / "decoder.int8.onnx")
    wav = tmp_path / "utt.wav"
    write_wav(wav, num_samples=MIN_SAMPLES)
    recognizer = Recognizer(model_dir, decoding="attention_rescoring", int8=True)
    assert recognizer.transcribe(wav).text == "好"


def test_recognizer_missing_decoder(model_dir: Path) -> None:
    (model_dir / "decoder.onnx").unlink()
    with pytest.raises(ModelError, match="decoder.onnx: ONNX model not found"):
        Recognizer(model_dir, decoding="attention_rescoring")


# ---------------------------------------------------------------------------------------------
# Command line


def test_cli_skips_bad_files(
    model_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    good = tmp_path / "good.wav"
    write_wav(good)
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    wav_scp = tmp_path / "wav.scp"
    wav_scp.write_text(f"utt1 {good}\nutt2 {empty}\nutt3 {tmp_path / 'absent.wav'}\nutt4 {good}\n")
    output = tmp_path / "out" / "text"

    with caplog.at_level(logging.ERROR):
        status = cli_main(
            ["--model-dir", str(model_dir), "--wav-scp", str(wav_scp), "--output", str(output),
             "--rtf"]
        )
    assert status == 1
    assert output.read_text(encoding="utf-8") == "utt1 你\nutt4 你\n"
    assert "utt2" in caplog.text
    assert "absent.wav" in caplog.text


def test_cli_positional_wavs(model_dir: Path, tmp_path: Path) -> None:
    wav = tmp_path / "spk1_utt.wav"
    write_wav(wav)
    output = tmp_path / "text"
    status = cli_main(["--model-dir", str(model_dir), str(wav), "--output", str(output)])
    assert status == 0
    assert output.read_text(encoding="utf-8") == "spk1_utt 你\n"


def test_cli_imports_no_torch() -> None:
    python_path = os.pathsep.join([str(EXPORT_ROOT), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "PYTHONPATH": python_path}
    code = "import asr_edge.cli, sys; assert 'torch' not in sys.modules"
    completed = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True
    )
    assert completed.returncode == 0, completed.stderr
