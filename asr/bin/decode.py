"""Decode a CutSet with a trained model in one or more search modes.

Usage::

    python -m asr.bin.decode --model exp/mini/avg_best5.pt --cuts data/manifests/cuts_test.jsonl.gz \
        --tokenizer data/lang_char/tokenizer.model --out-dir exp/mini/decode_test \
        --modes ctc_greedy_search ctc_prefix_beam_search attention attention_rescoring

Writes ``OUT_DIR/<mode>/text`` (``utt text`` lines), ``OUT_DIR/ref.txt`` and ``OUT_DIR/rtf.json``.
The encoder runs once per batch and all modes share its output. Each mode's real-time factor
counts the encoder time plus the time of its own search.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import torch
from lhotse import CutSet
from lhotse.dataset import SimpleCutSampler
from tqdm import tqdm

from asr.decode.attention import attention_beam_search, attention_rescoring
from asr.decode.ctc import ctc_greedy_search, ctc_prefix_beam_search
from asr.text.tokenizer import Tokenizer
from asr.training.checkpoint import load_model
from asr.training.dataset import ASRDataset

logger = logging.getLogger(__name__)

MODES = ("ctc_greedy_search", "ctc_prefix_beam_search", "attention", "attention_rescoring")


def decode(
    model_path: Path,
    cuts_path: Path,
    tokenizer_path: Path,
    out_dir: Path,
    modes: list[str],
    beam_size: int = 10,
    ctc_weight: float = 0.5,
    max_duration: float = 100.0,
    device: str = "cpu",
) -> dict[str, float]:
    """Decode every cut in ``cuts_path`` and return the real-time factor of each mode."""
    model = load_model(model_path, device)
    tokenizer = Tokenizer.load(tokenizer_path)
    cuts = CutSet.from_file(cuts_path)
    sampler = SimpleCutSampler(cuts, max_duration=max_duration, shuffle=False)
    loader = torch.utils.data.DataLoader(ASRDataset(tokenizer), sampler=sampler, batch_size=None)

    hyps: dict[str, dict[str, str]] = {mode: {} for mode in modes}
    refs: dict[str, str] = {}
    seconds = {mode: 0.0 for mode in modes}
    audio_seconds = 0.0

    with torch.inference_mode():
        for batch in tqdm(loader, desc="decode", unit="batch"):
            feats = batch["feats"].to(device)
            feat_lens = batch["feat_lens"].to(device)
            audio_seconds += float(batch["feat_lens"].sum()) / 100.0
            refs.update(zip(batch["ids"], batch["texts"]))

            start = time.perf_counter()
            enc_out, enc_lens = model.encode(feats, feat_lens)
            log_probs = model.ctc_log_probs(enc_out)
            encoder_seconds = time.perf_counter() - start

            results, timing = _search_all(model, enc_out, enc_lens, log_probs, modes, beam_size, ctc_weight)
            for mode in modes:
                seconds[mode] += encoder_seconds + timing[mode]
                for utt, token_ids in zip(batch["ids"], results[mode]):
                    hyps[mode][utt] = tokenizer.decode(token_ids)

    out_dir.mkdir(parents=True, exist_ok=True)
    _write_text(out_dir / "ref.txt", refs)
    for mode in modes:
        _write_text(out_dir / mode / "text", hyps[mode])
    rtf = {mode: seconds[mode] / max(audio_seconds, 1e-9) for mode in modes}
    (out_dir / "rtf.json").write_text(
        json.dumps({"audio_seconds": audio_seconds, "rtf": rtf}, indent=2) + "\n"
    )
    for mode in modes:
        logger.info("%s: %d utterances, RTF %.4f", mode, len(hyps[mode]), rtf[mode])
    return rtf


def _search_all(model, enc_out, enc_lens, log_probs, modes, beam_size, ctc_weight):
    results: dict[str, list[list[int]]] = {}
    timing: dict[str, float] = {}
    nbest = None
    nbest_seconds = 0.0

    if "ctc_greedy_search" in modes:
        start = time.perf_counter()
        results["ctc_greedy_search"] = ctc_greedy_search(log_probs, enc_lens)
        timing["ctc_greedy_search"] = time.perf_counter() - start

    if "ctc_prefix_beam_search" in modes or "attention_rescoring" in modes:
        start = time.perf_counter()
        nbest = [
            ctc_prefix_beam_search(log_probs[i, : int(enc_lens[i])], beam_size)
            for i in range(log_probs.shape[0])
        ]
        nbest_seconds = time.perf_counter() - start
        if "ctc_prefix_beam_search" in modes:
            results["ctc_prefix_beam_search"] = [list(hyps[0][0]) if hyps else [] for hyps in nbest]
            timing["ctc_prefix_beam_search"] = nbest_seconds

    if "attention" in modes:
        start = time.perf_counter()
        results["attention"] = attention_beam_search(model, enc_out, enc_lens, beam_size)
        timing["attention"] = time.perf_counter() - start

    if "attention_rescoring" in modes:
        start = time.perf_counter()
        results["attention_rescoring"] = attention_rescoring(model, enc_out, enc_lens, nbest, ctc_weight)
        # Rescoring needs the prefix beam search n-best, so it pays for it too.
        timing["attention_rescoring"] = nbest_seconds + time.perf_counter() - start

    return results, timing


def _write_text(path: Path, texts: dict[str, str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for utt in sorted(texts):
            f.write(f"{utt} {texts[utt]}\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True, help="averaged .pt or training .ckpt")
    parser.add_argument("--cuts", type=Path, required=True, help="lhotse CutSet manifest to decode")
    parser.add_argument("--tokenizer", type=Path, required=True, help="SentencePiece model file")
    parser.add_argument("--out-dir", type=Path, required=True, help="directory for hypothesis files")
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES), help="search modes")
    parser.add_argument("--beam-size", type=int, default=10, help="beam size of the beam searches")
    parser.add_argument("--ctc-weight", type=float, default=0.5,
                        help="weight of the CTC score in attention rescoring")
    parser.add_argument("--max-duration", type=float, default=100.0,
                        help="seconds of audio per batch")
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda:0")
    parser.add_argument("--num-threads", type=int, default=0,
                        help="torch intra-op threads (0 keeps torch's default)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    if args.beam_size < 1:
        parser.error(f"--beam-size must be at least 1, got {args.beam_size}")
    if args.num_threads > 0:
        torch.set_num_threads(args.num_threads)
    for path, what in ((args.model, "model"), (args.cuts, "manifest"), (args.tokenizer, "tokenizer")):
        if not path.is_file():
            logger.error("The %s file %s was not found: check --%s.", what, path,
                         "cuts" if what == "manifest" else what)
            return 1
    try:
        decode(args.model, args.cuts, args.tokenizer, args.out_dir, args.modes,
               beam_size=args.beam_size, ctc_weight=args.ctc_weight,
               max_duration=args.max_duration, device=args.device)
    except ValueError as error:
        logger.error("Decoding failed: %s", error)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
