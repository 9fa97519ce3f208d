"""Export a trained model to an ONNX folder for sherpa-onnx and the edge runtime.

Usage:
    python -m asr_onnx.cli --model exp/mini/avg_best5.pt --tokenizer data/lang_char/tokenizer.model \
        --out-dir exp/mini/onnx [--quantize dynamic|static|mixed|none] [--calibration-cuts F]
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass, field
from pathlib import Path

from asr.models.asr_model import ASRModel
from asr.text.tokenizer import Tokenizer
from asr.training.checkpoint import load_model
from asr_onnx.exporter import (
    MIN_OPSET,
    ParityError,
    ParityOptions,
    check_ctc_parity,
    check_decoder_parity,
    export_ctc_model,
    export_decoder,
)
from asr_onnx.quantize import (
    DecoderCalibrationReader,
    FbankCalibrationReader,
    quantize_dynamic_int8,
    quantize_mixed_int8,
    quantize_static_qdq,
)

logger = logging.getLogger(__name__)

QUANTIZE_MODES = ("none", "dynamic", "static", "mixed")
CALIBRATED_MODES = ("static", "mixed")


@dataclass
class ExportOptions:
    """Options of `export_onnx`.

    Attributes:
        quantize: "none"; "dynamic" (int8 MatMul weights); "static" (QDQ MatMuls and
            convolutions of both graphs, calibrated); "mixed" (calibrated QDQ convolutions,
            dynamic MatMuls; the decoder, which has no convolution, is dynamic).
        calibration_cuts: lhotse manifest for calibration ("static" and "mixed").
        num_calibration_cuts: utterances used for calibration.
        per_channel: per-channel weight scales in the int8 models.
        opset: ONNX opset, at least 18.
        overwrite: replace existing output files.
        parity: inputs and tolerance of the ONNX Runtime vs PyTorch check.
    """

    quantize: str = "dynamic"
    calibration_cuts: Path | None = None
    num_calibration_cuts: int = 100
    per_channel: bool = False
    opset: int = MIN_OPSET
    overwrite: bool = False
    parity: ParityOptions = field(default_factory=ParityOptions)


def output_paths(out_dir: Path, quantize: str) -> dict[str, Path]:
    """Files `export_onnx` writes into `out_dir`, by role."""
    paths = {
        "model": out_dir / "model.onnx",
        "decoder": out_dir / "decoder.onnx",
        "tokens": out_dir / "tokens.txt",
    }
    if quantize != "none":
        paths["model_int8"] = out_dir / "model.int8.onnx"
        paths["decoder_int8"] = out_dir / "decoder.int8.onnx"
    return paths


def describe(model: ASRModel, model_path: Path) -> str:
    """One-line `comment` metadata naming the architecture and the checkpoint file."""
    config = model.config
    enc, dec = config.encoder, config.decoder
    adapters = "with adapters" if enc.adapter is not None or dec.adapter is not None else "no adapters"
    return (
        f"ReuseASR BRST d_model={config.d_model} encoder={enc.num_blocks}x{enc.reuse} "
        f"({enc.reuse_order}) decoder={dec.num_blocks}x{dec.reuse} ({dec.reuse_order}), "
        f"{adapters}, vocab_size={config.vocab_size}; checkpoint {model_path.name}"
    )


def export_onnx(
    model_path: Path, tokenizer_path: Path, out_dir: Path, options: ExportOptions | None = None
) -> dict[str, Path]:
    """Export, check parity with PyTorch, write tokens.txt and optionally quantize.

    Returns:
        the written files by role ("model", "decoder", "tokens", "model_int8", "decoder_int8").

    Raises:
        FileExistsError: an output exists and `options.overwrite` is False.
        ValueError: tokenizer and model vocabulary sizes differ, or bad options.
        ParityError: ONNX Runtime disagrees with PyTorch.
    """
    options = options or ExportOptions()
    if options.quantize not in QUANTIZE_MODES:
        raise ValueError(
            f"Invalid quantize mode {options.quantize!r}: expected one of {QUANTIZE_MODES}"
        )
    if options.quantize in CALIBRATED_MODES and options.calibration_cuts is None:
        raise ValueError(
            f"Missing calibration cuts: --quantize {options.quantize} needs a lhotse cuts "
            "manifest of training audio (--calibration-cuts)"
        )

    paths = output_paths(out_dir, options.quantize)
    existing = [str(p) for p in paths.values() if p.exists()]
    if existing and not options.overwrite:
        raise FileExistsError(
            f"Output files already exist: {existing}. Pass --overwrite to replace them."
        )

    model = load_model(model_path)
    tokenizer = Tokenizer.load(tokenizer_path)
    if tokenizer.vocab_size != model.vocab_size:
        raise ValueError(
            f"Tokenizer {tokenizer_path} has {tokenizer.vocab_size} ids but model {model_path} "
            f"has vocab_size {model.vocab_size}; pass the tokenizer the model was trained with"
        )

    out_dir.mkdir(parents=True, exist_ok=True)
    comment = describe(model, model_path)
    export_ctc_model(model, paths["model"], comment, options.opset)
    export_decoder(model, paths["decoder"], comment, options.opset)
    tokenizer.export_tokens(paths["tokens"])

    ctc_diff = check_ctc_parity(model, paths["model"], options.parity)
    decoder_diff = check_decoder_parity(model, paths["decoder"], options.parity)
    logger.info("Parity with PyTorch: model.onnx %.2e, decoder.onnx %.2e (tolerance %.1e)",
                ctc_diff, decoder_diff, options.parity.tolerance)

    if options.quantize != "none":
        quantize_graphs(paths, options)
    return paths


def quantize_graphs(paths: dict[str, Path], options: ExportOptions) -> None:
    """Write model.int8.onnx and decoder.int8.onnx with the recipe `options.quantize`."""
    per_channel = options.per_channel
    if options.quantize == "dynamic":
        quantize_dynamic_int8(paths["model"], paths["model_int8"], per_channel)
        quantize_dynamic_int8(paths["decoder"], paths["decoder_int8"], per_channel)
        return

    reader = FbankCalibrationReader(options.calibration_cuts, options.num_calibration_cuts)
    if options.quantize == "mixed":
        quantize_mixed_int8(paths["model"], paths["model_int8"], reader, per_channel)
        quantize_dynamic_int8(paths["decoder"], paths["decoder_int8"], per_channel)
        return

    quantize_static_qdq(paths["model"], paths["model_int8"], reader, per_channel)
    decoder_reader = DecoderCalibrationReader(paths["model"], reader)
    quantize_static_qdq(paths["decoder"], paths["decoder_int8"], decoder_reader, per_channel,
                        op_types=("MatMul",))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m asr_onnx.cli",
        description="Export a trained model to model.onnx (sherpa-onnx wenet_ctc), "
        "decoder.onnx and tokens.txt, check them against PyTorch, and quantize to int8.",
    )
    parser.add_argument("--model", type=Path, required=True,
                        help="averaged .pt or Lightning .ckpt model file")
    parser.add_argument("--tokenizer", type=Path, required=True, help="tokenizer.model")
    parser.add_argument("--out-dir", type=Path, required=True, help="output folder")
    parser.add_argument("--quantize", choices=QUANTIZE_MODES, default="dynamic",
                        help="int8 quantization of model.onnx and decoder.onnx: dynamic (default, no "
                        "calibration), static (QDQ) or mixed (QDQ convolutions, dynamic "
                        "MatMuls; fastest); static and mixed need --calibration-cuts")
    parser.add_argument("--calibration-cuts", type=Path, default=None,
                        help="lhotse cuts manifest of training audio for --quantize static or mixed")
    parser.add_argument("--num-calibration-cuts", type=int, default=100,
                        help="utterances used for calibration (default 100)")
    parser.add_argument("--per-channel", action="store_true",
                        help="per-channel int8 weight scales")
    parser.add_argument("--opset", type=int, default=MIN_OPSET,
                        help=f"ONNX opset, at least {MIN_OPSET} (default {MIN_OPSET})")
    parser.add_argument("--tolerance", type=float, default=ParityOptions.tolerance,
                        help="largest allowed |log-prob difference| between ONNX Runtime and "
                        "PyTorch (default %(default)s)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    # onnx_ir and the ONNX Runtime quantizer log each pass at INFO, so only this toolkit's
    # loggers are raised to INFO.
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for name in ("asr", "asr_onnx", __name__):
        logging.getLogger(name).setLevel(logging.INFO)

    options = ExportOptions(
        quantize=args.quantize,
        calibration_cuts=args.calibration_cuts,
        num_calibration_cuts=args.num_calibration_cuts,
        per_channel=args.per_channel,
        opset=args.opset,
        overwrite=args.overwrite,
        parity=ParityOptions(tolerance=args.tolerance),
    )
    try:
        paths = export_onnx(args.model, args.tokenizer, args.out_dir, options)
    except (FileExistsError, FileNotFoundError, ValueError, ParityError) as e:
        raise SystemExit(f"error: {e}") from e
    for role, path in paths.items():
        size_mb = path.stat().st_size / 2**20
        print(f"{role:13s} {path} ({size_mb:.2f} MiB)")


if __name__ == "__main__":
    main()
