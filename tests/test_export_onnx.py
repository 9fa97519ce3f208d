"""Tests of the ONNX export: parity with PyTorch, metadata, int8 models and sherpa-onnx loading."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import soundfile as sf
import torch
from lhotse import CutSet, Recording, RecordingSet

from asr.constants import SOS_EOS_ID
from asr.features.fbank import compute_fbank
from asr.models.asr_model import ASRModel
from asr.models.config import load_model_config
from asr.text.tokenizer import Tokenizer
from asr.training.checkpoint import save_model
from asr_onnx.cli import ExportOptions, export_onnx
from asr_onnx.exporter import (
    ParityError,
    ParityOptions,
    check_ctc_parity,
    check_decoder_parity,
    fold_weight_transposes,
    read_metadata,
)
from asr_onnx.quantize import (
    DecoderCalibrationReader,
    FbankCalibrationReader,
    quantize_mixed_int8,
    quantize_static_qdq,
)

VOCAB_SIZE = 40
SAMPLE_RATE = 16000


def _tone(seconds: float, seed: int) -> np.ndarray:
    """A 16 kHz tone plus noise in [-1, 1], float32."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    wave = 0.3 * np.sin(2 * math.pi * 440.0 * t) + 0.05 * rng.standard_normal(t.size)
    return wave.astype(np.float32)


def _features(lengths: tuple[int, ...], seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    generator = torch.Generator().manual_seed(seed)
    feats = torch.zeros(len(lengths), max(lengths), 80)
    for i, length in enumerate(lengths):
        feats[i, :length] = torch.randn(length, 80, generator=generator) * 3.0 + 8.0
    return feats.numpy(), np.array(lengths, dtype=np.int64)


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A random mini model with 40 ids exported with dynamic int8 quantization."""
    root = tmp_path_factory.mktemp("onnx_export")

    # 37 distinct characters + 3 special ids = 40 ids.
    chars = "".join(chr(0x4E00 + 7 * i) for i in range(37))
    texts = [chars[i : i + 9] for i in range(0, 37, 3)] + [chars]
    tokenizer = Tokenizer.train(texts, root / "lang" / "tokenizer", "char")

    torch.manual_seed(0)
    config = load_model_config("mini", vocab_size=VOCAB_SIZE)
    model = ASRModel(config).eval()
    model.cmvn.set_stats(torch.full((80,), 8.0), torch.full((80,), 0.3))
    model_path = root / "avg_best5.pt"
    save_model(model_path, config.to_dict(), model.state_dict())

    out_dir = root / "onnx"
    paths = export_onnx(model_path, root / "lang" / "tokenizer.model", out_dir, ExportOptions())
    return {
        "root": root,
        "model": model,
        "model_path": model_path,
        "tokenizer": tokenizer,
        "paths": paths,
    }


def test_export_writes_files(exported: dict) -> None:
    names = sorted(path.name for path in exported["paths"].values())
    assert names == [
        "decoder.int8.onnx",
        "decoder.onnx",
        "model.int8.onnx",
        "model.onnx",
        "tokens.txt",
    ]


def test_export_io_names(exported: dict) -> None:
    session = ort.InferenceSession(str(exported["paths"]["model"]), providers=["CPUExecutionProvider"])
    outputs = [value.name for value in session.get_outputs()]
    assert outputs == ["log_probs", "log_probs_len", "encoder_out", "encoder_out_lens"]


def test_export_metadata(exported: dict) -> None:
    metadata = read_metadata(exported["paths"]["model"])
    expected = {"model_type": "wenet_ctc", "vocab_size": "40", "subsampling_factor": "4",
                "version": "1"}
    assert {key: metadata[key] for key in expected} == expected


def test_export_comment_names_checkpoint(exported: dict) -> None:
    metadata = read_metadata(exported["paths"]["model"])
    assert "avg_best5.pt" in metadata["comment"]


def test_export_tokens_txt(exported: dict) -> None:
    lines = exported["paths"]["tokens"].read_text(encoding="utf-8").splitlines()
    assert lines[:3] == ["<blank> 0", "<unk> 1", "<sos/eos> 2"]


def test_export_weights_are_matmul_constants(exported: dict) -> None:
    # Every reused Linear weight must reach MatMul as an initializer, or int8 skips it.
    proto = onnx.load(str(exported["paths"]["model"]))
    initializers = {tensor.name for tensor in proto.graph.initializer}
    weight_transposes = [
        node for node in proto.graph.node
        if node.op_type == "Transpose" and node.input[0] in initializers
    ]
    assert weight_transposes == []


def test_parity_other_lengths(exported: dict) -> None:
    options = ParityOptions(lengths=(7, 8, 99, 250), batch_lengths=(250, 7, 99, 8))
    diff = check_ctc_parity(exported["model"], exported["paths"]["model"], options)
    assert diff < 1e-3


def test_parity_decoder_lengths(exported: dict) -> None:
    options = ParityOptions(batch_lengths=(57, 300), hyp_lengths=(2, 1, 9, 30))
    diff = check_decoder_parity(exported["model"], exported["paths"]["decoder"], options)
    assert diff < 1e-3


def test_parity_detects_mismatch(exported: dict) -> None:
    model = ASRModel(exported["model"].config).eval()
    model.load_state_dict(exported["model"].state_dict())
    with torch.no_grad():
        model.ctc.proj.bias[3] += 1.0
    with pytest.raises(ParityError, match="differ from PyTorch"):
        check_ctc_parity(model, exported["paths"]["model"], ParityOptions(lengths=(20,)))


def test_int8_smaller(exported: dict) -> None:
    paths = exported["paths"]
    assert paths["model_int8"].stat().st_size < 0.5 * paths["model"].stat().st_size


def test_int8_decoder_smaller(exported: dict) -> None:
    paths = exported["paths"]
    assert paths["decoder_int8"].stat().st_size < 0.5 * paths["decoder"].stat().st_size


def test_int8_keeps_metadata(exported: dict) -> None:
    paths = exported["paths"]
    assert read_metadata(paths["model_int8"]) == read_metadata(paths["model"])


def test_int8_close_to_float(exported: dict) -> None:
    paths = exported["paths"]
    feed = dict(zip(("x", "x_lens"), _features((300,))))
    float_out = ort.InferenceSession(str(paths["model"]), providers=["CPUExecutionProvider"])
    int8_out = ort.InferenceSession(str(paths["model_int8"]), providers=["CPUExecutionProvider"])
    expected = float_out.run(["log_probs"], feed)[0]
    actual = int8_out.run(["log_probs"], feed)[0]
    assert np.abs(expected - actual).max() < 0.2


def test_sherpa_decodes_waveform(exported: dict) -> None:
    sherpa_onnx = pytest.importorskip("sherpa_onnx")
    paths = exported["paths"]
    recognizer = sherpa_onnx.OfflineRecognizer.from_wenet_ctc(
        model=str(paths["model"]), tokens=str(paths["tokens"]), num_threads=1
    )
    stream = recognizer.create_stream()
    stream.accept_waveform(SAMPLE_RATE, _tone(1.5, seed=3))
    recognizer.decode_stream(stream)
    assert isinstance(stream.result.text, str)


def test_sherpa_matches_greedy(exported: dict) -> None:
    # Same fbank (int16 sample scale) and same graph: sherpa-onnx's greedy search must give
    # the text of a greedy CTC search over ONNX Runtime log-probs of our own fbank.
    sherpa_onnx = pytest.importorskip("sherpa_onnx")
    paths = exported["paths"]
    wave = _tone(1.5, seed=0)

    feats = compute_fbank(torch.from_numpy(wave)).unsqueeze(0).numpy()
    session = ort.InferenceSession(str(paths["model"]), providers=["CPUExecutionProvider"])
    log_probs = session.run(["log_probs"], {"x": feats, "x_lens": np.array([feats.shape[1]])})[0]
    best = log_probs[0].argmax(axis=-1).tolist()
    ids = [t for i, t in enumerate(best) if t != 0 and (i == 0 or t != best[i - 1])]
    expected = exported["tokenizer"].decode(ids)

    recognizer = sherpa_onnx.OfflineRecognizer.from_wenet_ctc(
        model=str(paths["model"]), tokens=str(paths["tokens"]), num_threads=1
    )
    stream = recognizer.create_stream()
    stream.accept_waveform(SAMPLE_RATE, wave)
    recognizer.decode_stream(stream)
    assert stream.result.text == expected


def test_sherpa_loads_int8(exported: dict) -> None:
    sherpa_onnx = pytest.importorskip("sherpa_onnx")
    paths = exported["paths"]
    recognizer = sherpa_onnx.OfflineRecognizer.from_wenet_ctc(
        model=str(paths["model_int8"]), tokens=str(paths["tokens"]), num_threads=1
    )
    stream = recognizer.create_stream()
    stream.accept_waveform(SAMPLE_RATE, _tone(0.8, seed=4))
    recognizer.decode_stream(stream)
    assert isinstance(stream.result.text, str)


def test_export_refuses_overwrite(exported: dict) -> None:
    root = exported["root"]
    with pytest.raises(FileExistsError, match="already exist"):
        export_onnx(exported["model_path"], root / "lang" / "tokenizer.model", root / "onnx")


def test_export_rejects_vocab_mismatch(exported: dict, tmp_path: Path) -> None:
    Tokenizer.train(["一二三四五"], tmp_path / "small", "char")
    with pytest.raises(ValueError, match="vocab_size 40"):
        export_onnx(exported["model_path"], tmp_path / "small.model", tmp_path / "onnx",
                    ExportOptions(quantize="none"))


def test_fold_transposes_shared_weight() -> None:
    # y = x @ W^T computed twice from one Transpose each: both fold into one initializer.
    weight = np.arange(6, dtype=np.float32).reshape(2, 3)
    graph = onnx.helper.make_graph(
        [
            onnx.helper.make_node("Transpose", ["w"], ["wt1"], perm=[1, 0]),
            onnx.helper.make_node("Transpose", ["w"], ["wt2"], perm=[1, 0]),
            onnx.helper.make_node("MatMul", ["x", "wt1"], ["h"]),
            onnx.helper.make_node("MatMul", ["x", "wt2"], ["y0"]),
            onnx.helper.make_node("Add", ["h", "y0"], ["y"]),
        ],
        "g",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 3])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 2])],
        [onnx.numpy_helper.from_array(weight, "w")],
    )
    proto = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 18)])

    removed = fold_weight_transposes(proto)

    assert removed == 2
    assert len(proto.graph.initializer) == 1
    folded = onnx.numpy_helper.to_array(proto.graph.initializer[0])
    assert folded.tolist() == [[0.0, 3.0], [1.0, 4.0], [2.0, 5.0]]
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    (y,) = session.run(None, {"x": np.array([[1.0, 1.0, 1.0]], dtype=np.float32)})
    # Each MatMul gives the row sums of W, which are 3 and 12, and the Add doubles them.
    assert y.tolist() == [[6.0, 24.0]]


def _write_cuts(root: Path, seconds: list[float]) -> Path:
    recordings = []
    for i, duration in enumerate(seconds):
        path = root / f"utt{i}.wav"
        sf.write(path, _tone(duration, seed=10 + i), SAMPLE_RATE, subtype="PCM_16")
        recordings.append(Recording.from_file(path, recording_id=f"utt{i}"))
    cuts = CutSet.from_manifests(recordings=RecordingSet.from_recordings(recordings))
    cuts_path = root / "cuts_train.jsonl.gz"
    cuts.to_file(cuts_path)
    return cuts_path


def test_calibration_reader_skips_short(tmp_path: Path) -> None:
    # 0.04 s gives 4 fbank frames, under the 7 the subsampling needs.
    reader = FbankCalibrationReader(_write_cuts(tmp_path, [1.0, 0.04, 0.5]), num_cuts=3)
    assert (len(reader), reader.skipped) == (2, 1)


def test_calibration_reader_feed_shape(tmp_path: Path) -> None:
    reader = FbankCalibrationReader(_write_cuts(tmp_path, [1.0]), num_cuts=1)
    feed = reader.get_next()
    # 1 s at a 10 ms shift without edge snipping: 100 frames.
    assert (feed["x"].shape, feed["x_lens"].tolist()) == ((1, 100, 80), [100])


def test_static_qdq_close_to_float(exported: dict, tmp_path: Path) -> None:
    paths = exported["paths"]
    reader = FbankCalibrationReader(_write_cuts(tmp_path, [1.0, 0.7, 1.3]), num_cuts=3)
    static_path = tmp_path / "model.int8.onnx"
    quantize_static_qdq(paths["model"], static_path, reader)

    feats = compute_fbank(torch.from_numpy(_tone(1.1, seed=20)))
    feed = {"x": feats.unsqueeze(0).numpy(), "x_lens": np.array([feats.size(0)], dtype=np.int64)}
    float_out = ort.InferenceSession(str(paths["model"]), providers=["CPUExecutionProvider"])
    qdq_out = ort.InferenceSession(str(static_path), providers=["CPUExecutionProvider"])
    expected = float_out.run(["log_probs"], feed)[0]
    actual = qdq_out.run(["log_probs"], feed)[0]
    assert np.abs(expected - actual).max() < 0.2
    assert read_metadata(static_path)["model_type"] == "wenet_ctc"


def _op_types(path: Path) -> set[str]:
    return {node.op_type for node in onnx.load(str(path)).graph.node}


def _max_log_prob_diff(float_path: Path, int8_path: Path) -> float:
    feats = compute_fbank(torch.from_numpy(_tone(1.1, seed=20)))
    feed = {"x": feats.unsqueeze(0).numpy(), "x_lens": np.array([feats.size(0)], dtype=np.int64)}
    expected = ort.InferenceSession(str(float_path), providers=["CPUExecutionProvider"])
    actual = ort.InferenceSession(str(int8_path), providers=["CPUExecutionProvider"])
    return float(np.abs(expected.run(["log_probs"], feed)[0] - actual.run(["log_probs"], feed)[0]).max())


def test_mixed_int8_close_to_float(exported: dict, tmp_path: Path) -> None:
    paths = exported["paths"]
    reader = FbankCalibrationReader(_write_cuts(tmp_path, [1.0, 0.7, 1.3]), num_cuts=3)
    mixed_path = tmp_path / "model.int8.onnx"
    quantize_mixed_int8(paths["model"], mixed_path, reader)
    assert _max_log_prob_diff(paths["model"], mixed_path) < 0.2


def test_mixed_int8_quantizes_conv_and_matmul(exported: dict, tmp_path: Path) -> None:
    paths = exported["paths"]
    reader = FbankCalibrationReader(_write_cuts(tmp_path, [1.0, 0.7]), num_cuts=2)
    mixed_path = tmp_path / "model.int8.onnx"
    quantize_mixed_int8(paths["model"], mixed_path, reader)
    ops = _op_types(mixed_path)
    # Convolutions get QDQ pairs; MatMul weights become int8 with run-time activation scales.
    assert {"QuantizeLinear", "DequantizeLinear", "Conv", "MatMulInteger"} <= ops
    assert read_metadata(mixed_path)["model_type"] == "wenet_ctc"


def test_decoder_calibration_feed(exported: dict, tmp_path: Path) -> None:
    paths = exported["paths"]
    fbank = FbankCalibrationReader(_write_cuts(tmp_path, [1.0, 0.7]), num_cuts=2)
    reader = DecoderCalibrationReader(paths["model"], fbank, beam_size=3)
    feed = reader.get_next()
    num_hyps = feed["hyps_in"].shape[0]
    assert feed["encoder_out"].shape[0] == num_hyps
    assert feed["hyps_in_lens"].shape == (num_hyps,)
    assert (feed["hyps_in"][:, 0] == SOS_EOS_ID).all()


def test_static_decoder_close_to_float(exported: dict, tmp_path: Path) -> None:
    paths = exported["paths"]
    fbank = FbankCalibrationReader(_write_cuts(tmp_path, [1.0, 0.7]), num_cuts=2)
    reader = DecoderCalibrationReader(paths["model"], fbank, beam_size=3)
    static_path = tmp_path / "decoder.int8.onnx"
    quantize_static_qdq(paths["decoder"], static_path, reader, op_types=("MatMul",))

    reader.rewind()
    feed = reader.get_next()
    expected = ort.InferenceSession(str(paths["decoder"]), providers=["CPUExecutionProvider"])
    actual = ort.InferenceSession(str(static_path), providers=["CPUExecutionProvider"])
    diff = np.abs(expected.run(["log_probs"], feed)[0] - actual.run(["log_probs"], feed)[0])
    assert diff.max() < 0.5
    assert "QuantizeLinear" in _op_types(static_path)
