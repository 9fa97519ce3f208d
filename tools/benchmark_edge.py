"""Benchmark edge deployment of one model config: eager PyTorch, float and int8 ONNX, the
toolkit runtime and sherpa-onnx, on one utterance of synthetic audio, on 1 and 2 threads.

Usage::

    python tools/benchmark_edge.py --model brst_adm --vocab-size 4233 --threads 1 2 --repeats 5 \
        --work-dir exp/bench_edge

The model has random weights (speed does not depend on them). One run exports it with the
project's exporter and writes three int8 copies: dynamic, static QDQ and mixed (static QDQ
convolutions, dynamic MatMuls; the recipe's default, which the runtime and sherpa-onnx rows
load). Calibration uses ``--calibration-cuts`` or, when that manifest is absent, random
fbank-like features.

Each configuration runs in its own subprocess: one warm-up call, then the median of
``--repeats`` timed calls, and the peak resident memory (VmHWM of /proc/self/status, which
includes the interpreter and the imported libraries). Model-only timings take fbank computed
once; end-to-end timings (toolkit runtime, sherpa-onnx) start from the waveform and include
fbank and CTC greedy search. Prints Markdown tables on stdout.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

logger = logging.getLogger("benchmark_edge")

SAMPLE_RATE = 16000
DEFAULT_CUTS = Path(__file__).resolve().parents[1] / "recipes/aishell1/data_mini/manifests/cuts_train.jsonl.gz"
GEMM_SIZE = 1024

# name -> (table label, file in the model folder)
CONFIGS = {
    "torch": ("eager PyTorch encoder+CTC", "model.pt"),
    "onnx_float": ("ONNX float32", "model.onnx"),
    "onnx_int8_dynamic": ("ONNX int8 dynamic", "model.dynamic.int8.onnx"),
    "onnx_int8_static": ("ONNX int8 static QDQ", "model.static.int8.onnx"),
    "onnx_int8_mixed": ("ONNX int8 mixed", "model.int8.onnx"),
    "runtime_float": ("asr_edge runtime float, end to end", "model.onnx"),
    "runtime_int8": ("asr_edge runtime int8 mixed, end to end", "model.int8.onnx"),
    "sherpa_float": ("sherpa-onnx float, end to end", "model.onnx"),
    "sherpa_int8": ("sherpa-onnx int8 mixed, end to end", "model.int8.onnx"),
}


def synthetic_waveform(seconds: float, seed: int = 0) -> np.ndarray:
    """(S,) float32 at 16 kHz: a voiced-like harmonic chirp plus noise, peak below 0.5."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    f0 = 120.0 + 40.0 * np.sin(2 * np.pi * 0.5 * t)
    phase = 2 * np.pi * np.cumsum(f0) / SAMPLE_RATE
    voiced = sum(np.sin(k * phase) / k for k in range(1, 8))
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 3.0 * t) ** 2
    wave = 0.1 * envelope * voiced + 0.01 * rng.standard_normal(t.size)
    return wave.astype(np.float32)


def vm_hwm_mib() -> float:
    """Peak resident set size of this process in MiB (VmHWM)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("/proc/self/status has no VmHWM line; run on Linux")


def cpu_model() -> str:
    """CPU model name from /proc/cpuinfo, or "unknown CPU"."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return "unknown CPU"


def median_seconds(fn, repeats: int) -> float:
    """Median wall-clock seconds of `repeats` calls of `fn`, after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def ort_session(path: Path, threads: int, profile_prefix: str | None = None):
    """onnxruntime CPU session with `threads` intra-op threads, as the runtime opens it."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    if profile_prefix is not None:
        options.enable_profiling = True
        options.profile_file_prefix = profile_prefix
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def make_timed_call(name: str, work_dir: Path, threads: int):
    """Return a no-argument callable that processes the benchmark utterance once."""
    path = work_dir / CONFIGS[name][1]
    feats = np.load(work_dir / "feats.npy")
    wave = np.load(work_dir / "wave.npy")
    feed = {"x": feats[None], "x_lens": np.array([feats.shape[0]], dtype=np.int64)}

    if name == "torch":
        import torch

        from asr.training.checkpoint import load_model

        torch.set_num_threads(threads)
        model = load_model(path)
        x, x_lens = torch.from_numpy(feed["x"]), torch.from_numpy(feed["x_lens"])

        def call() -> None:
            with torch.inference_mode():
                enc_out, _ = model.encode(x, x_lens)
                model.ctc_log_probs(enc_out)

        return call

    if name.startswith("onnx_"):
        session = ort_session(path, threads)
        return lambda: session.run(["log_probs", "log_probs_len"], feed)

    if name.startswith("runtime_"):
        from asr_edge.recognizer import Recognizer

        recognizer = Recognizer(work_dir, num_threads=threads, int8=name.endswith("int8"))
        return lambda: recognizer.transcribe_samples(wave)

    import sherpa_onnx

    recognizer = sherpa_onnx.OfflineRecognizer.from_wenet_ctc(
        model=str(path), tokens=str(work_dir / "tokens.txt"), num_threads=threads
    )

    def call() -> None:
        stream = recognizer.create_stream()
        stream.accept_waveform(SAMPLE_RATE, wave)
        recognizer.decode_stream(stream)

    return call


def run_worker(name: str, work_dir: Path, threads: int, repeats: int) -> None:
    """Time one configuration in this process and print {"seconds", "peak_mib"} as JSON."""
    call = make_timed_call(name, work_dir, threads)
    seconds = median_seconds(call, repeats)
    print(json.dumps({"seconds": seconds, "peak_mib": vm_hwm_mib()}))


def measure_in_subprocess(name: str, work_dir: Path, threads: int, repeats: int) -> dict:
    """Run `run_worker` in a fresh interpreter, so that its peak memory is its own."""
    command = [sys.executable, __file__, "--worker", name, "--work-dir", str(work_dir),
               "--threads", str(threads), "--repeats", str(repeats)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"Worker {name} ({threads} threads) failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


class RandomFbankReader:
    """Calibration feeds of random fbank-like features: `num` utterances of 3 to 10 s."""

    def __init__(self, num: int = 10, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self._items = []
        for i in range(num):
            frames = int(300 + 700 * i / max(num - 1, 1))
            # Rough range of speech log-mel energies (an estimate), with a per-bin offset.
            x = rng.normal(-4.0, 3.0, size=(1, frames, 80)) + rng.normal(0.0, 1.0, size=(1, 1, 80))
            self._items.append({"x": x.astype(np.float32),
                                "x_lens": np.array([frames], dtype=np.int64)})
        self.rewind()

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._iterator, None)

    def rewind(self) -> None:
        self._iterator = iter(self._items)


def prepare_models(args: argparse.Namespace, work_dir: Path) -> str:
    """Write model.pt, tokenizer, the exported ONNX files and the static QDQ copy; return the
    name of the calibration data used."""
    import torch
    from onnxruntime.quantization import CalibrationDataReader

    from asr.models.asr_model import ASRModel
    from asr.models.config import load_model_config
    from asr.text.tokenizer import Tokenizer
    from asr.training.checkpoint import save_model
    from asr_onnx.cli import ExportOptions, export_onnx
    from asr_onnx.quantize import FbankCalibrationReader, quantize_mixed_int8, quantize_static_qdq

    torch.manual_seed(0)
    config = load_model_config(args.model, vocab_size=args.vocab_size)
    model = ASRModel(config).eval()
    save_model(work_dir / "model.pt", config.to_dict(), model.state_dict())

    num_chars = args.vocab_size - 3
    chars = [chr(0x4E00 + i) for i in range(num_chars)]
    texts = ["".join(chars[i : i + 20]) for i in range(0, num_chars, 20)]
    Tokenizer.train(texts, work_dir / "tokenizer")

    export_onnx(work_dir / "model.pt", work_dir / "tokenizer.model", work_dir,
                ExportOptions(quantize="dynamic", overwrite=True))
    (work_dir / "model.int8.onnx").replace(work_dir / "model.dynamic.int8.onnx")

    if args.calibration_cuts.is_file():
        reader = FbankCalibrationReader(args.calibration_cuts, args.num_calibration_cuts)
        calibration = f"{len(reader)} utterances of {args.calibration_cuts}"
    else:
        logger.warning("Calibration manifest %s not found; calibrating on random features",
                       args.calibration_cuts)
        reader = type("Reader", (RandomFbankReader, CalibrationDataReader), {})()
        calibration = "10 utterances of random fbank-like features (manifest absent)"
    quantize_static_qdq(work_dir / "model.onnx", work_dir / "model.static.int8.onnx", reader)
    quantize_mixed_int8(work_dir / "model.onnx", work_dir / "model.int8.onnx", reader)
    return calibration


def count_macs(work_dir: Path, num_frames: int) -> tuple[int, int]:
    """Multiply-accumulates of CMVN + encoder + CTC on (1, num_frames, 80) fbank.

    Forward hooks count Linear and Conv2d layers exactly, as output elements times the inputs
    of one output. Attention adds T_q * T_k * D for the scores and as many for the context.
    Elementwise ops, softmax and normalization are not counted.

    Returns:
        (encoder MACs without the CTC projection, CTC projection MACs).
    """
    import torch

    from asr.models.attention import MultiHeadAttention
    from asr.training.checkpoint import load_model

    model = load_model(work_dir / "model.pt")
    counts = {"encoder": 0, "ctc": 0}

    def hook(part: str):
        def count(module, inputs, output) -> None:
            if isinstance(module, torch.nn.Linear):
                counts[part] += output.numel() * module.in_features
            elif isinstance(module, torch.nn.Conv2d):
                kernel = module.kernel_size[0] * module.kernel_size[1]
                counts[part] += output.numel() * kernel * module.in_channels // module.groups
            elif isinstance(module, MultiHeadAttention):
                query, key = inputs[0], inputs[1]
                counts[part] += 2 * query.size(1) * key.size(1) * module.d_model
        return count

    for module in model.encoder.modules():
        if isinstance(module, (torch.nn.Linear, torch.nn.Conv2d, MultiHeadAttention)):
            module.register_forward_hook(hook("encoder"))
    model.ctc.proj.register_forward_hook(hook("ctc"))

    with torch.inference_mode():
        x = torch.randn(1, num_frames, 80)
        enc_out, _ = model.encode(x, torch.tensor([num_frames]))
        model.ctc_log_probs(enc_out)
    return counts["encoder"], counts["ctc"]


def gemm_throughput(threads: int, repeats: int) -> tuple[float, float]:
    """onnxruntime float32 MatMul and int8 MatMulInteger (uint8 x int8) on 1024^3, in GMAC/s."""
    import onnx
    from onnx import TensorProto, helper

    n = GEMM_SIZE
    rng = np.random.default_rng(0)
    results = []
    for op, a_type, b_type, out_type in (
        ("MatMul", TensorProto.FLOAT, TensorProto.FLOAT, TensorProto.FLOAT),
        ("MatMulInteger", TensorProto.UINT8, TensorProto.INT8, TensorProto.INT32),
    ):
        graph = helper.make_graph(
            [helper.make_node(op, ["A", "B"], ["C"])], f"gemm_{op}",
            [helper.make_tensor_value_info("A", a_type, [n, n]),
             helper.make_tensor_value_info("B", b_type, [n, n])],
            [helper.make_tensor_value_info("C", out_type, [n, n])],
        )
        proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
        with tempfile.NamedTemporaryFile(suffix=".onnx") as f:
            onnx.save(proto, f.name)
            session = ort_session(Path(f.name), threads)
        if op == "MatMul":
            feed = {"A": rng.standard_normal((n, n), dtype=np.float32),
                    "B": rng.standard_normal((n, n), dtype=np.float32)}
        else:
            feed = {"A": rng.integers(0, 255, (n, n), dtype=np.uint8),
                    "B": rng.integers(-127, 127, (n, n), dtype=np.int8)}
        seconds = median_seconds(lambda: session.run(None, feed), repeats)
        results.append(n**3 / seconds / 1e9)
    return results[0], results[1]


def profile_ops(path: Path, feed: dict, threads: int, repeats: int, top: int) -> list[tuple]:
    """Per-op-type time of one call from onnxruntime's profiler: (op, ms, share, nodes)."""
    with tempfile.TemporaryDirectory() as tmp:
        session = ort_session(path, threads, profile_prefix=str(Path(tmp) / "profile"))
        for _ in range(repeats + 1):
            session.run(["log_probs", "log_probs_len"], feed)
        events = json.loads(Path(session.end_profiling()).read_text())

    # The first call is a warm-up, so its nodes (the first 1 / (repeats + 1) of the events) are dropped.
    node_events = [e for e in events if e.get("cat") == "Node" and e["name"].endswith("_kernel_time")]
    per_call = len(node_events) // (repeats + 1)
    totals: dict[str, float] = {}
    nodes: dict[str, set[str]] = {}
    for event in node_events[per_call:]:
        op = event["args"]["op_name"]
        totals[op] = totals.get(op, 0.0) + event["dur"] / 1000 / repeats
        nodes.setdefault(op, set()).add(event["name"])
    total = sum(totals.values())
    ranked = sorted(totals.items(), key=lambda item: -item[1])[:top]
    return [(op, ms, ms / total, len(nodes[op])) for op, ms in ranked] + [("all", total, 1.0, 0)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="brst_adm", help="config name under conf/model/")
    parser.add_argument("--vocab-size", type=int, default=4233, help="vocabulary size")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the utterance in s")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="thread counts")
    parser.add_argument("--repeats", type=int, default=5, help="timed repetitions (median reported)")
    parser.add_argument("--work-dir", type=Path, default=None,
                        help="folder for the model files (default: a temporary folder)")
    parser.add_argument("--calibration-cuts", type=Path, default=DEFAULT_CUTS,
                        help="lhotse cuts for static QDQ calibration (default %(default)s)")
    parser.add_argument("--num-calibration-cuts", type=int, default=20,
                        help="utterances used for static calibration")
    parser.add_argument("--profile", choices=("auto", "always", "never"), default="auto",
                        help="onnxruntime per-op profile of float and int8 ONNX: when a target "
                        "is missed (auto), always or never")
    parser.add_argument("--worker", choices=sorted(CONFIGS), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker is not None:
        run_worker(args.worker, args.work_dir, args.threads[0], args.repeats)
        return 0

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logger.setLevel(logging.INFO)
    from tqdm import tqdm

    from asr_edge.features import compute_fbank

    work_dir = args.work_dir or Path(tempfile.mkdtemp(prefix="bench_edge_"))
    work_dir.mkdir(parents=True, exist_ok=True)
    calibration = prepare_models(args, work_dir)

    wave = synthetic_waveform(args.seconds)
    feats = compute_fbank(wave).astype(np.float32)
    np.save(work_dir / "wave.npy", wave)
    np.save(work_dir / "feats.npy", feats)

    load_before = os.getloadavg()[0]
    results: dict[tuple[str, int], dict] = {}
    jobs = [(name, threads) for threads in args.threads for name in CONFIGS]
    for name, threads in tqdm(jobs, desc="configurations"):
        results[name, threads] = measure_in_subprocess(name, work_dir, threads, args.repeats)

    load_after = os.getloadavg()[0]
    encoder_macs, ctc_macs = count_macs(work_dir, feats.shape[0])
    macs_per_audio_s = (encoder_macs + ctc_macs) / args.seconds
    gemm = {threads: gemm_throughput(threads, args.repeats) for threads in args.threads}

    out = []
    out.append(f"Model `{args.model}`, vocab {args.vocab_size}, {args.seconds:g} s synthetic audio "
               f"({feats.shape[0]} fbank frames), median of {args.repeats} after 1 warm-up.")
    out.append(f"Machine: {platform.machine()}, {cpu_model()}, {os.cpu_count()} CPUs; "
               f"Python {platform.python_version()}. Static QDQ calibration: {calibration}.")
    out.append(f"1-minute load average before / after the timings: {load_before:.2f} / "
               f"{load_after:.2f} (above 0 means other processes shared the CPUs).")
    out.append("")
    header = "| configuration | " + " | ".join(f"{t} thr ms | {t} thr RTF | {t} thr peak MiB"
                                              for t in args.threads) + " | file MiB |"
    out.append(header)
    out.append("|---|" + "---:|" * (3 * len(args.threads) + 1))
    for name, (description, file_name) in CONFIGS.items():
        cells = []
        for threads in args.threads:
            r = results[name, threads]
            cells += [f"{1000 * r['seconds']:.1f}", f"{r['seconds'] / args.seconds:.4f}",
                      f"{r['peak_mib']:.0f}"]
        size = (work_dir / file_name).stat().st_size / 2**20
        out.append(f"| {description} | " + " | ".join(cells) + f" | {size:.2f} |")

    out.append("")
    out.append(f"MACs of CMVN+encoder+CTC (forward hooks on Linear/Conv2d plus attention "
               f"products): encoder {encoder_macs / 1e9:.3f} G + CTC projection "
               f"{ctc_macs / 1e9:.3f} G per utterance = {macs_per_audio_s / 1e6:.0f} M per second "
               "of audio.")
    out.append("")
    int8_names = ("onnx_int8_dynamic", "onnx_int8_static", "onnx_int8_mixed")
    out.append("| threads | float GEMM GMAC/s | int8 GEMM GMAC/s | ONNX float GMAC/s (share) | "
               + " | ".join(f"{CONFIGS[n][0]} GMAC/s (share)" for n in int8_names) + " |")
    out.append("|---:|---:|---:|---:|" + "---:|" * len(int8_names))
    total_macs = encoder_macs + ctc_macs
    for threads in args.threads:
        float_peak, int8_peak = gemm[threads]
        cells = []
        for name, peak in (("onnx_float", float_peak), *((n, int8_peak) for n in int8_names)):
            rate = total_macs / results[name, threads]["seconds"] / 1e9
            cells.append(f"{rate:.1f} ({100 * rate / peak:.0f}%)")
        out.append(f"| {threads} | {float_peak:.1f} | {int8_peak:.1f} | " + " | ".join(cells) + " |")

    out.append("")
    ratio_names = {
        "dynamic vs float ONNX": ("onnx_float", "onnx_int8_dynamic"),
        "static vs float ONNX": ("onnx_float", "onnx_int8_static"),
        "mixed vs float ONNX": ("onnx_float", "onnx_int8_mixed"),
        "dynamic vs eager": ("torch", "onnx_int8_dynamic"),
        "static vs eager": ("torch", "onnx_int8_static"),
        "mixed vs eager": ("torch", "onnx_int8_mixed"),
        "float ONNX vs eager": ("torch", "onnx_float"),
        "runtime/sherpa float": ("runtime_float", "sherpa_float"),
        "runtime/sherpa int8": ("runtime_int8", "sherpa_int8"),
    }
    out.append("| threads | " + " | ".join(ratio_names) + " |")
    out.append("|---:|" + "---:|" * len(ratio_names))
    ratios = {}
    for threads in args.threads:
        s = {name: results[name, threads]["seconds"] for name in CONFIGS}
        ratios[threads] = {label: s[a] / s[b] for label, (a, b) in ratio_names.items()}
        out.append(f"| {threads} | " + " | ".join(f"{v:.2f}x" for v in ratios[threads].values()) + " |")
    out.append("")
    out.append("Speed-ups are slower time / faster time; runtime/sherpa is a time ratio (above 1 = "
               "runtime slower).")

    r1 = ratios[min(args.threads)]
    best_int8 = max(r1[f"{n} vs float ONNX"] for n in ("dynamic", "static", "mixed"))
    best_int8_eager = max(r1[f"{n} vs eager"] for n in ("dynamic", "static", "mixed"))
    targets = [
        ("best int8 >= 2x faster than float ONNX, 1 thread", best_int8 >= 2.0, f"{best_int8:.2f}x"),
        ("best int8 >= 3x faster than eager PyTorch, 1 thread", best_int8_eager >= 3.0,
         f"{best_int8_eager:.2f}x"),
        ("runtime within 1.1x of sherpa-onnx (float and int8, all threads)",
         all(r["runtime/sherpa float"] <= 1.1 and r["runtime/sherpa int8"] <= 1.1
             for r in ratios.values()),
         ", ".join(f"{r['runtime/sherpa float']:.2f}/{r['runtime/sherpa int8']:.2f}"
                   for r in ratios.values())),
    ]
    out.append("")
    out.append("| target | measured | met |")
    out.append("|---|---:|---|")
    for target, met, value in targets:
        out.append(f"| {target} | {value} | {'met' if met else 'not met'} |")

    missed = not all(met for _, met, _ in targets)
    if args.profile == "always" or (args.profile == "auto" and missed):
        feed = {"x": feats[None], "x_lens": np.array([feats.shape[0]], dtype=np.int64)}
        for file_name in ("model.onnx", "model.dynamic.int8.onnx", "model.static.int8.onnx",
                          "model.int8.onnx"):
            rows = profile_ops(work_dir / file_name, feed, min(args.threads), args.repeats, 8)
            out.append("")
            out.append(f"Profile of {file_name}, {min(args.threads)} thread, ms per call by op type:")
            out.append("")
            out.append("| op | ms | share | nodes |")
            out.append("|---|---:|---:|---:|")
            for op, ms, share, count in rows:
                out.append(f"| {op} | {ms:.2f} | {100 * share:.0f}% | {count or ''} |")

    print("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
