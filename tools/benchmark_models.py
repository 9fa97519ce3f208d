"""Benchmark training throughput and decoding real-time factor of model configs on this CPU.

Usage::

    python tools/benchmark_models.py --models brst_adm transformer --threads 2 --repeats 5

Both models run in the same process on the same synthetic batches, alternating per repetition so
that machine drift affects them alike. Inputs are random 80-dim fbank features with AISHELL-1-like
durations (3-7 s) and 15 tokens per 4.5 s; speed does not depend on the feature values.

Training throughput is seconds of audio per wall-clock second of forward, backward and Adam step.
Decoding RTF is wall-clock seconds per second of audio on a batch of one utterance, for encoder +
CTC greedy search, and for encoder + attention rescoring of a fixed 10-best list (10 hypotheses of
the utterance's token count). The n-best list is fixed because an untrained model's CTC output,
and so the prefix beam search's work, depends on its random weights rather than on its size.
Prints a Markdown table with medians and the ratio of each model to the first one.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch

from asr.decode.attention import attention_rescoring
from asr.decode.ctc import ctc_greedy_search
from asr.models.asr_model import ASRModel
from asr.models.config import load_model_config

FRAMES_PER_SECOND = 100


def make_batch(durations: list[float], vocab_size: int, generator: torch.Generator):
    """Return a padded synthetic batch: feats (B, T, 80), feat_lens, tokens (B, U), token_lens."""
    feat_lens = torch.tensor([int(d * FRAMES_PER_SECOND) for d in durations])
    feats = torch.randn(len(durations), int(feat_lens.max()), 80, generator=generator)
    token_lens = torch.tensor([max(1, int(d / 4.5 * 15)) for d in durations])
    tokens = torch.full((len(durations), int(token_lens.max())), -1, dtype=torch.int64)
    for i, length in enumerate(token_lens.tolist()):
        tokens[i, :length] = torch.randint(3, vocab_size, (length,), generator=generator)
    return feats, feat_lens, tokens, token_lens


def time_training(model, optimizer, batch, steps: int) -> float:
    """Return seconds of audio trained per wall-clock second over ``steps`` steps."""
    feats, feat_lens, tokens, token_lens = batch
    model.train()
    start = time.perf_counter()
    for _ in range(steps):
        optimizer.zero_grad(set_to_none=True)
        loss = model(feats, feat_lens, tokens, token_lens)["loss"]
        loss.backward()
        optimizer.step()
    elapsed = time.perf_counter() - start
    return steps * float(feat_lens.sum()) / FRAMES_PER_SECOND / elapsed


@torch.inference_mode()
def time_decoding(model, feats, feat_lens, mode: str, nbest=None) -> float:
    """Return the real-time factor of decoding one utterance batch with ``mode``."""
    model.eval()
    start = time.perf_counter()
    enc_out, enc_lens = model.encode(feats, feat_lens)
    log_probs = model.ctc_log_probs(enc_out)
    if mode == "ctc_greedy_search":
        ctc_greedy_search(log_probs, enc_lens)
    else:
        attention_rescoring(model, enc_out, enc_lens, nbest, 0.5)
    elapsed = time.perf_counter() - start
    return elapsed / (float(feat_lens.sum()) / FRAMES_PER_SECOND)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["brst_adm", "transformer"],
                        help="config names under conf/model/; the first is the baseline of the ratios")
    parser.add_argument("--vocab-size", type=int, default=4233, help="vocabulary size")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument("--repeats", type=int, default=5, help="timed repetitions (median reported)")
    parser.add_argument("--train-steps", type=int, default=3, help="training steps per repetition")
    parser.add_argument("--batch-size", type=int, default=8, help="utterances per training batch")
    parser.add_argument("--decode-seconds", type=float, default=5.0,
                        help="duration of the decoded utterance in seconds")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    durations = [3.0 + 4.0 * i / max(args.batch_size - 1, 1) for i in range(args.batch_size)]
    train_batch = make_batch(durations, args.vocab_size, generator)
    decode_feats, decode_lens, decode_tokens, _ = make_batch(
        [args.decode_seconds], args.vocab_size, generator
    )
    # 10 hypotheses: the reference tokens with one token changed in each.
    reference = decode_tokens[0].tolist()
    nbest = [[(tuple(reference[:i] + [3 + i] + reference[i + 1 :]), -float(i)) for i in range(10)]]

    models, optimizers = {}, {}
    for name in args.models:
        models[name] = ASRModel(load_model_config(name, vocab_size=args.vocab_size))
        optimizers[name] = torch.optim.Adam(models[name].parameters(), lr=1e-4)

    # Warm-up: first calls allocate memory and pick kernels.
    for name in args.models:
        time_training(models[name], optimizers[name], train_batch, 1)
        time_decoding(models[name], decode_feats, decode_lens, "ctc_greedy_search")
        time_decoding(models[name], decode_feats, decode_lens, "attention_rescoring", nbest)

    samples = {name: {"train": [], "greedy": [], "rescore": []} for name in args.models}
    for _ in range(args.repeats):
        for name in args.models:
            samples[name]["train"].append(
                time_training(models[name], optimizers[name], train_batch, args.train_steps)
            )
            samples[name]["greedy"].append(
                time_decoding(models[name], decode_feats, decode_lens, "ctc_greedy_search")
            )
            samples[name]["rescore"].append(
                time_decoding(models[name], decode_feats, decode_lens, "attention_rescoring", nbest)
            )

    medians = {
        name: {key: statistics.median(values) for key, values in per_model.items()}
        for name, per_model in samples.items()
    }
    base = medians[args.models[0]]
    print(f"Machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}; median of {args.repeats} repetitions")
    print()
    print("| model | params (M) | train audio s/s | x baseline | RTF greedy | x baseline "
          "| RTF rescoring | x baseline |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name in args.models:
        m = medians[name]
        params = sum(p.numel() for p in models[name].parameters()) / 1e6
        print(
            f"| {name} | {params:.2f} | {m['train']:.1f} | {m['train'] / base['train']:.2f} "
            f"| {m['greedy']:.4f} | {m['greedy'] / base['greedy']:.2f} "
            f"| {m['rescore']:.4f} | {m['rescore'] / base['rescore']:.2f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
