"""Export an ASRModel to ONNX (sherpa-onnx wenet_ctc layout) and check it against PyTorch.

Files and interfaces:

* ``model.onnx``: CMVN + encoder + CTC log-softmax.
  Inputs ``x`` float32 (N, T, 80) fbank, ``x_lens`` int64 (N,).
  Outputs, in this order: ``log_probs`` float32 (N, T', V), ``log_probs_len`` int64 (N,),
  ``encoder_out`` float32 (N, T', D), ``encoder_out_lens`` int64 (N,), with
  T' = ((T - 1) // 2 - 1) // 2 and T >= 7. sherpa-onnx's wenet_ctc model fetches every output
  but reads only the first two by position (their names do not matter to it), so the two extra
  outputs cost nothing there and spare attention rescoring a second copy of the encoder weights.
  Metadata: ``model_type=wenet_ctc``, ``vocab_size``, ``subsampling_factor=4``, ``version=1``,
  ``comment`` and a few keys for the edge runtime. sherpa-onnx reads only ``vocab_size`` and
  ``subsampling_factor``, because its offline wenet_ctc model has no left or right context.
* ``decoder.onnx``: the attention decoder scoring M hypotheses at once.
  Inputs ``encoder_out`` float32 (M, T', D) and ``encoder_out_lens`` int64 (M,): the caller
  repeats an utterance's encoder output once per hypothesis. ``hyps_in`` int64 (M, L) starts
  with sos and is padded with eos, and ``hyps_in_lens`` int64 (M,) counts the sos.
  Output ``log_probs`` float32 (M, L, V): position l scores the token after hyps_in[:, :l + 1].
* ``tokens.txt``: ``symbol id`` per line, ``<blank>`` at id 0.

The graphs come from the torch.export-based exporter (``dynamo=True``): the TorchScript exporter
produced a model that runs on any length but disagrees with PyTorch, so it is not used. That
exporter emits opset 18 at the lowest.
"""

from __future__ import annotations

import json
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

from asr.constants import BLANK_ID, SOS_EOS_ID
from asr.models.asr_model import ASRModel

logger = logging.getLogger(__name__)

MODEL_INPUTS = ("x", "x_lens")
MODEL_OUTPUTS = ("log_probs", "log_probs_len", "encoder_out", "encoder_out_lens")
DECODER_INPUTS = ("encoder_out", "encoder_out_lens", "hyps_in", "hyps_in_lens")
DECODER_OUTPUTS = ("log_probs",)

MIN_OPSET = 18
METADATA_VERSION = 1


class ParityError(RuntimeError):
    """ONNX Runtime and PyTorch disagree by more than the tolerance."""


@dataclass(frozen=True)
class ParityOptions:
    """Inputs and tolerance of the ONNX Runtime vs PyTorch check.

    Attributes:
        lengths: single-utterance fbank lengths in frames, each >= 7. The longest default,
            18,000 frames, is 3 minutes of audio.
        batch_lengths: lengths of one padded batch.
        hyp_lengths: decoder hypothesis lengths (sos included) of one padded batch.
        tolerance: largest allowed absolute difference of log-probabilities on valid frames.
        seed: seed of the random features and hypotheses.
    """

    lengths: tuple[int, ...] = (11, 57, 403, 1500, 18000)
    batch_lengths: tuple[int, ...] = (403, 57, 11)
    hyp_lengths: tuple[int, ...] = (1, 6, 17)
    tolerance: float = 1e-3
    seed: int = 0


class CTCExportModule(nn.Module):
    """CMVN + encoder + CTC log-softmax of `model`, the graph of model.onnx."""

    def __init__(self, model: ASRModel) -> None:
        super().__init__()
        self.model = model

    def forward(
        self, x: torch.Tensor, x_lens: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(N, T, 80), (N,) -> log_probs (N, T', V), lengths (N,), encoder_out (N, T', D), lengths."""
        encoder_out, encoder_out_lens = self.model.encode(x, x_lens)
        log_probs = self.model.ctc_log_probs(encoder_out)
        return log_probs, encoder_out_lens, encoder_out, encoder_out_lens


class DecoderExportModule(nn.Module):
    """Attention decoder log-probabilities of `model`, the graph of decoder.onnx."""

    def __init__(self, model: ASRModel) -> None:
        super().__init__()
        self.model = model

    def forward(
        self,
        encoder_out: torch.Tensor,
        encoder_out_lens: torch.Tensor,
        hyps_in: torch.Tensor,
        hyps_in_lens: torch.Tensor,
    ) -> torch.Tensor:
        """(M, T', D), (M,), (M, L) int64, (M,) -> (M, L, V) log-softmax."""
        return self.model.decode_attention(encoder_out, encoder_out_lens, hyps_in, hyps_in_lens)


def model_metadata(model: ASRModel, comment: str) -> dict[str, str]:
    """Metadata of model.onnx: the keys sherpa-onnx reads plus what the edge runtime needs."""
    return {
        "model_type": "wenet_ctc",
        "version": str(METADATA_VERSION),
        "vocab_size": str(model.vocab_size),
        "subsampling_factor": str(model.subsampling_rate),
        "comment": comment,
        "feature_dim": str(model.config.input_dim),
        "d_model": str(model.config.d_model),
        "blank_id": str(BLANK_ID),
        "sos_eos_id": str(SOS_EOS_ID),
        "model_config": json.dumps(model.config.to_dict(), sort_keys=True),
    }


def set_metadata(path: Path, metadata: dict[str, str]) -> None:
    """Replace the custom metadata map of the ONNX file at `path`."""
    proto = onnx.load(str(path))
    del proto.metadata_props[:]
    onnx.helper.set_model_props(proto, metadata)
    onnx.save(proto, str(path))


def read_metadata(path: Path) -> dict[str, str]:
    """Custom metadata map of the ONNX file at `path`."""
    proto = onnx.load(str(path), load_external_data=False)
    return {prop.key: prop.value for prop in proto.metadata_props}


def fold_weight_transposes(proto: onnx.ModelProto) -> int:
    """Replace each Transpose of a weight initializer with a transposed initializer, in place.

    The exporter leaves ``Transpose(weight)`` in front of every MatMul whose Linear layer runs
    more than once (block reuse), because constant folding skips shared inputs. Folding makes
    those weights constant inputs of MatMul, which int8 quantization needs, and still stores
    each transposed weight once.

    Returns:
        the number of Transpose nodes removed.
    """
    graph = proto.graph
    initializers = {tensor.name: tensor for tensor in graph.initializer}
    graph_outputs = {value.name for value in graph.output}

    folded: dict[tuple[str, tuple[int, ...]], str] = {}
    renamed: dict[str, str] = {}
    remaining_nodes = []
    for node in graph.node:
        source = node.input[0] if node.input else ""
        if (
            node.op_type != "Transpose"
            or source not in initializers
            or node.output[0] in graph_outputs
        ):
            remaining_nodes.append(node)
            continue

        weight = onnx.numpy_helper.to_array(initializers[source])
        perm = next(
            (tuple(attr.ints) for attr in node.attribute if attr.name == "perm"),
            tuple(reversed(range(weight.ndim))),
        )
        key = (source, perm)
        if key not in folded:
            name = f"{source}.perm{''.join(map(str, perm))}"
            tensor = onnx.numpy_helper.from_array(np.ascontiguousarray(weight.transpose(perm)), name)
            graph.initializer.append(tensor)
            folded[key] = name
        renamed[node.output[0]] = folded[key]

    for node in remaining_nodes:
        for index, name in enumerate(node.input):
            if name in renamed:
                node.input[index] = renamed[name]
    del graph.node[:]
    graph.node.extend(remaining_nodes)

    used = {name for node in graph.node for name in node.input} | graph_outputs
    unused = [tensor for tensor in graph.initializer if tensor.name not in used]
    for tensor in unused:
        graph.initializer.remove(tensor)
    stale = [value for value in graph.value_info if value.name in renamed]
    for value in stale:
        graph.value_info.remove(value)
    return len(renamed)


class QuietExporter(warnings.catch_warnings):
    """Silence the messages torch's exporter prints on every export that a user cannot act on: the
    absence of torchvision, a deprecation inside torch's pytree, and dynamic axes merged
    because the batch of `x` and `x_lens` is the same dimension."""

    def __enter__(self) -> None:
        super().__enter__()
        warnings.filterwarnings("ignore", message=r".*LeafSpec.*", category=FutureWarning)
        warnings.filterwarnings("ignore", message=r"# The axis name", category=UserWarning)
        self._registration = logging.getLogger("torch.onnx._internal.exporter._registration")
        self._level = self._registration.level
        self._registration.setLevel(logging.ERROR)

    def __exit__(self, *exc_info) -> None:
        self._registration.setLevel(self._level)
        super().__exit__(*exc_info)


def _export(
    module: nn.Module,
    example: tuple[torch.Tensor, ...],
    path: Path,
    input_names: tuple[str, ...],
    output_names: tuple[str, ...],
    dynamic_shapes: dict[str, dict[int, torch.export.Dim]],
    opset: int,
    metadata: dict[str, str],
) -> None:
    if opset < MIN_OPSET:
        raise ValueError(
            f"opset {opset} is below {MIN_OPSET}, the lowest the torch.export-based ONNX "
            f"exporter writes; pass --opset {MIN_OPSET} or higher"
        )

    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad(), QuietExporter():
        program = torch.onnx.export(
            module.eval(),
            example,
            input_names=list(input_names),
            output_names=list(output_names),
            dynamic_shapes=dynamic_shapes,
            opset_version=opset,
            dynamo=True,
            optimize=True,
            verbose=False,
        )

    proto = program.model_proto
    folded = fold_weight_transposes(proto)
    logger.debug("Folded %d weight transposes in %s", folded, path.name)
    onnx.helper.set_model_props(proto, metadata)

    # sherpa-onnx reads the model from one buffer, so the weights stay inside the file.
    onnx.save(proto, str(path))
    onnx.checker.check_model(str(path))
    logger.info("Wrote %s", path)


def export_ctc_model(model: ASRModel, path: Path, comment: str = "", opset: int = MIN_OPSET) -> None:
    """Write model.onnx (see the module docstring) with dynamic N and T, T >= 7."""
    batch = torch.export.Dim("N", min=1)
    frames = torch.export.Dim("T", min=model.right_context + 1)

    # A batch of 2 with unequal lengths keeps the exporter from specialising either axis.
    example = (torch.randn(2, 100, model.config.input_dim), torch.tensor([100, 80]))
    _export(
        CTCExportModule(model),
        example,
        path,
        MODEL_INPUTS,
        MODEL_OUTPUTS,
        {"x": {0: batch, 1: frames}, "x_lens": {0: batch}},
        opset,
        model_metadata(model, comment),
    )


def export_decoder(model: ASRModel, path: Path, comment: str = "", opset: int = MIN_OPSET) -> None:
    """Write decoder.onnx (see the module docstring) with dynamic M, T' and L."""
    hyps = torch.export.Dim("M", min=1)
    frames = torch.export.Dim("T_enc", min=1)
    tokens = torch.export.Dim("L", min=1)

    metadata = {
        "model_type": "attention_decoder",
        "version": str(METADATA_VERSION),
        "vocab_size": str(model.vocab_size),
        "sos_eos_id": str(SOS_EOS_ID),
        "comment": comment,
    }
    example = (
        torch.randn(2, 25, model.config.d_model),
        torch.tensor([25, 20]),
        torch.randint(SOS_EOS_ID + 1, model.vocab_size, (2, 6)),
        torch.tensor([6, 4]),
    )
    _export(
        DecoderExportModule(model),
        example,
        path,
        DECODER_INPUTS,
        DECODER_OUTPUTS,
        {
            "encoder_out": {0: hyps, 1: frames},
            "encoder_out_lens": {0: hyps},
            "hyps_in": {0: hyps, 1: tokens},
            "hyps_in_lens": {0: hyps},
        },
        opset,
        metadata,
    )


def _session(path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _padded_features(
    lengths: tuple[int, ...], dim: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random (N, max(lengths), dim) features padded as sherpa-onnx pads, and (N,) lengths."""
    feats = torch.full((len(lengths), max(lengths), dim), -23.025850929940457)
    for i, length in enumerate(lengths):
        feats[i, :length] = torch.randn(length, dim, generator=generator) * 3.0 + 8.0
    return feats, torch.tensor(lengths, dtype=torch.int64)


def _max_valid_diff(
    expected: torch.Tensor, actual: np.ndarray, lengths: torch.Tensor
) -> float:
    """Largest |expected - actual| over the first lengths[i] rows of each batch entry."""
    worst = 0.0
    for i, length in enumerate(lengths.tolist()):
        diff = np.abs(expected[i, :length].numpy() - actual[i, :length])
        worst = max(worst, float(diff.max()) if diff.size else 0.0)
    return worst


def check_ctc_parity(
    model: ASRModel, path: Path, options: ParityOptions = ParityOptions()
) -> float:
    """Compare model.onnx with PyTorch on `options.lengths` and one padded batch.

    Returns:
        the largest absolute log-probability difference over valid frames.

    Raises:
        ParityError: when lengths differ or the difference exceeds `options.tolerance`.
    """
    session = _session(path)
    generator = torch.Generator().manual_seed(options.seed)
    cases = [(length,) for length in options.lengths] + [tuple(options.batch_lengths)]

    worst = 0.0
    for lengths in cases:
        feats, feat_lens = _padded_features(lengths, model.config.input_dim, generator)
        with torch.no_grad():
            expected, expected_lens, _, _ = CTCExportModule(model)(feats, feat_lens)
        log_probs, log_probs_len, _, _ = session.run(
            None, {"x": feats.numpy(), "x_lens": feat_lens.numpy()}
        )

        if not np.array_equal(log_probs_len, expected_lens.numpy()):
            raise ParityError(
                f"{path}: log_probs_len {log_probs_len.tolist()} differs from PyTorch's "
                f"{expected_lens.tolist()} for input lengths {list(lengths)}; re-export the model"
            )
        diff = _max_valid_diff(expected, log_probs, expected_lens)
        logger.info("Parity %s, lengths %s: max |diff| %.2e", path.name, list(lengths), diff)
        worst = max(worst, diff)

    if worst > options.tolerance:
        raise ParityError(
            f"{path}: ONNX Runtime log_probs differ from PyTorch by up to {worst:.3e}, above the "
            f"tolerance {options.tolerance:.1e}; the exported graph is wrong for some lengths"
        )
    return worst


def check_decoder_parity(
    model: ASRModel, path: Path, options: ParityOptions = ParityOptions()
) -> float:
    """Compare decoder.onnx with PyTorch on a padded batch of `options.hyp_lengths` hypotheses.

    The encoder output comes from the PyTorch model on random features of
    `options.batch_lengths` frames, one utterance per hypothesis.

    Returns:
        the largest absolute log-probability difference over valid positions.

    Raises:
        ParityError: when the difference exceeds `options.tolerance`.
    """
    session = _session(path)
    generator = torch.Generator().manual_seed(options.seed)

    num_hyps = len(options.hyp_lengths)
    frame_lengths = tuple(options.batch_lengths[i % len(options.batch_lengths)] for i in range(num_hyps))
    feats, feat_lens = _padded_features(frame_lengths, model.config.input_dim, generator)

    hyps_lens = torch.tensor(options.hyp_lengths, dtype=torch.int64)
    hyps_in = torch.randint(
        SOS_EOS_ID + 1, model.vocab_size, (num_hyps, max(options.hyp_lengths)), generator=generator
    )
    hyps_in[:, 0] = SOS_EOS_ID
    padding = torch.arange(hyps_in.size(1)).unsqueeze(0) >= hyps_lens.unsqueeze(1)
    hyps_in = hyps_in.masked_fill(padding, SOS_EOS_ID)

    with torch.no_grad():
        encoder_out, encoder_out_lens = model.encode(feats, feat_lens)
        expected = model.decode_attention(encoder_out, encoder_out_lens, hyps_in, hyps_lens)
    (log_probs,) = session.run(
        None,
        {
            "encoder_out": encoder_out.numpy(),
            "encoder_out_lens": encoder_out_lens.numpy(),
            "hyps_in": hyps_in.numpy(),
            "hyps_in_lens": hyps_lens.numpy(),
        },
    )

    worst = _max_valid_diff(expected, log_probs, hyps_lens)
    logger.info("Parity %s, hypothesis lengths %s: max |diff| %.2e",
                path.name, list(options.hyp_lengths), worst)
    if worst > options.tolerance:
        raise ParityError(
            f"{path}: ONNX Runtime decoder log_probs differ from PyTorch by up to {worst:.3e}, "
            f"above the tolerance {options.tolerance:.1e}; the exported graph is wrong"
        )
    return worst
