"""Benchmark attention-map reuse in HuBERT students on this CPU: `armhubert` against `maskhubert`,
against `armhubert_noreuse` (same width and FFN, reuse off) and against the HuBERT Base teacher.

Usage::

    python tools/benchmark_students.py --batch 8 --seconds 10 --repeats 5 --threads 2

All models have random weights (speed does not depend on them), run in eval mode under
`torch.inference_mode` and read the same batch of synthetic audio without padding. After one
warm-up pass per model, each repetition runs every model once, in turn, so that drift of a shared
machine affects them alike. The tables give the median of the repetitions.

Each part is timed with forward pre/post hooks and `time.perf_counter` on its modules:

* front end: the conv waveform front end;
* projections: feature norm and projection, query/key/value/output linears, prediction heads;
* attention: each attention module minus its linears, so Q K^T, softmax and P V;
* feed-forward: the FFN of every layer;
* pos conv: the convolutional positional embedding;
* other: total minus the parts (layer norms, residual adds, masking).

Multiply-accumulates (MACs) come from forward hooks on every Linear and Conv1d plus
B x H x T' x T' x D/H for each attention product (Q K^T only where the layer computes its map).
Elementwise ops are left out. Prints Markdown tables on stdout.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import platform
import statistics
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from tqdm import tqdm

from asr.models.hubert_teacher import HubertTeacher, hubert_base_config
from asr.models.student import SSLStudent
from asr.models.student_config import StudentConfig, load_student_config

logger = logging.getLogger("benchmark_students")

SAMPLE_RATE = 16000
PARTS = ("front end", "projections", "attention", "feed-forward", "pos conv")
REUSE_MODEL = "armhubert"
NO_REUSE_MODEL = "armhubert_noreuse"
TARGET_SPEEDUP = 1.1


@dataclass
class AttentionSite:
    """One attention module, the linears inside it, and how it gets its probabilities.

    Attributes:
        module: the attention module; its time minus its linears' is the attention core.
        linears: its query/key/value/output projections (the key and query are absent when
            it reuses).
        kind: "fused" (scaled_dot_product_attention), "explicit" (softmax path that returns the
            map for the next layer) or "reuse" (P V with the previous layer's map).
        heads: attention heads H.
    """

    module: nn.Module
    linears: list[nn.Module]
    kind: str
    heads: int

    @property
    def computes_scores(self) -> bool:
        """Whether the module computes Q K^T itself."""
        return self.kind != "reuse"


@dataclass
class ModelParts:
    """Modules of one model grouped by benchmark part (see the module docstring)."""

    front_end: list[nn.Module]
    projections: list[nn.Module]
    feed_forward: list[nn.Module]
    pos_conv: list[nn.Module]
    attention: list[AttentionSite] = field(default_factory=list)

    def timed_modules(self) -> dict[str, list[nn.Module]]:
        """Map each part to the modules whose summed time is that part.

        "attention" lists whole attention modules; `TimedModel.run` subtracts their linears.
        """
        attention_linears = [linear for site in self.attention for linear in site.linears]
        return {
            "front end": self.front_end,
            "projections": self.projections + attention_linears,
            "attention": [site.module for site in self.attention],
            "feed-forward": self.feed_forward,
            "pos conv": self.pos_conv,
        }


def student_parts(model: SSLStudent) -> ModelParts:
    """Group the modules of an `SSLStudent` by part."""
    projections: list[nn.Module] = [model.feature_norm]
    if model.feature_projection is not None:
        projections.append(model.feature_projection)
    projections.extend(model.heads)

    sites = []
    for layer, need_weights in zip(model.layers, model.need_weights):
        attention = layer.self_attn
        linears = [
            linear
            for linear in (attention.linear_q, attention.linear_k, attention.linear_v,
                           attention.linear_out)
            if linear is not None
        ]
        # Mirrors SSLStudent.forward: a layer returns its map only when the next one reuses it.
        if layer.reuse:
            kind = "reuse"
        elif need_weights:
            kind = "explicit"
        else:
            kind = "fused"
        sites.append(AttentionSite(attention, linears, kind, attention.heads))

    return ModelParts(
        front_end=[model.frontend],
        projections=projections,
        feed_forward=[layer.feed_forward for layer in model.layers],
        pos_conv=[model.pos_conv],
        attention=sites,
    )


def teacher_parts(teacher: HubertTeacher) -> ModelParts:
    """Group the modules of a torchaudio HuBERT inside `HubertTeacher` by part."""
    encoder = teacher.model.encoder
    heads = int(teacher.config["encoder_num_heads"])
    sites = [
        AttentionSite(
            layer.attention,
            [layer.attention.q_proj, layer.attention.k_proj, layer.attention.v_proj,
             layer.attention.out_proj],
            "fused",
            heads,
        )
        for layer in encoder.transformer.layers
    ]
    return ModelParts(
        front_end=[teacher.model.feature_extractor],
        projections=[encoder.feature_projection],
        feed_forward=[layer.feed_forward for layer in encoder.transformer.layers],
        pos_conv=[encoder.transformer.pos_conv_embed],
        attention=sites,
    )


class ModuleTimer:
    """Accumulate wall-clock seconds spent inside given modules, with forward pre/post hooks.

    A hook costs microseconds (an estimate), far below the milliseconds of these modules.
    Eager CPU ops return when their work is done, so `time.perf_counter` around a module call
    times that work.
    """

    def __init__(self, modules: Iterable[nn.Module]) -> None:
        self.seconds: dict[int, float] = {}
        self._start: dict[int, float] = {}
        self._handles = []
        for module in modules:
            self.seconds[id(module)] = 0.0
            self._handles.append(module.register_forward_pre_hook(self._enter))
            self._handles.append(module.register_forward_hook(self._exit))

    def _enter(self, module: nn.Module, inputs) -> None:
        self._start[id(module)] = time.perf_counter()

    def _exit(self, module: nn.Module, inputs, output) -> None:
        self.seconds[id(module)] += time.perf_counter() - self._start[id(module)]

    def reset(self) -> None:
        """Zero the accumulated times."""
        for key in self.seconds:
            self.seconds[key] = 0.0

    def total(self, modules: Iterable[nn.Module]) -> float:
        """Return the seconds accumulated in `modules` since the last reset."""
        return sum(self.seconds[id(module)] for module in modules)

    def remove(self) -> None:
        """Remove the hooks."""
        for handle in self._handles:
            handle.remove()


def layer_macs(module: nn.Module, output: torch.Tensor) -> int:
    """Return the MACs of one Linear or Conv1d call from its output shape, 0 for other modules."""
    if isinstance(module, nn.Linear):
        return output.numel() * module.in_features
    if isinstance(module, nn.Conv1d):
        return output.numel() * (module.in_channels // module.groups) * module.kernel_size[0]
    return 0


@torch.inference_mode()
def count_macs(model: nn.Module, parts: ModelParts, waveforms: torch.Tensor) -> dict[str, int]:
    """Run one forward pass and return the MACs of each part.

    Linear and Conv1d layers count output elements x inputs per output. Each attention
    product (Q K^T, P V) counts B x H x T_q x T_k x D/H.
    """
    macs = dict.fromkeys(PARTS, 0)
    handles = []

    def add_layer_macs(part: str) -> Callable:
        def hook(module: nn.Module, inputs, output) -> None:
            macs[part] += layer_macs(module, output)
        return hook

    def add_product_macs(site: AttentionSite) -> Callable:
        def hook(module: nn.Module, inputs, output) -> None:
            batch, time_steps, width = inputs[0].shape
            products = 2 if site.computes_scores else 1
            macs["attention"] += products * batch * time_steps * time_steps * width
        return hook

    timed = parts.timed_modules()
    for part in ("front end", "projections", "feed-forward", "pos conv"):
        for top in timed[part]:
            for module in top.modules():
                if isinstance(module, (nn.Linear, nn.Conv1d)):
                    handles.append(module.register_forward_hook(add_layer_macs(part)))
    for site in parts.attention:
        handles.append(site.module.register_forward_hook(add_product_macs(site)))

    try:
        model(waveforms)
    finally:
        for handle in handles:
            handle.remove()
    return macs


@dataclass
class PassTimes:
    """Seconds of one forward pass: the total, each part, and the attention core per kind."""

    total: float
    parts: dict[str, float]
    attention_by_kind: dict[str, float]


class TimedModel:
    """A model with its part hooks, timing one forward pass per call.

    Args:
        name: label in the tables.
        model: module in eval mode whose forward takes waveforms (B, N).
        parts: its modules grouped by part.
    """

    def __init__(self, name: str, model: nn.Module, parts: ModelParts) -> None:
        self.name = name
        self.model = model
        self.parts = parts
        self.timed = parts.timed_modules()
        self.timer = ModuleTimer(m for modules in self.timed.values() for m in modules)

    @torch.inference_mode()
    def run(self, waveforms: torch.Tensor) -> PassTimes:
        """Time one forward pass on waveforms (B, N)."""
        self.timer.reset()
        start = time.perf_counter()
        self.model(waveforms)
        total = time.perf_counter() - start

        parts = {part: self.timer.total(modules) for part, modules in self.timed.items()}
        linears = self.timer.total(m for site in self.parts.attention for m in site.linears)
        parts["attention"] -= linears

        by_kind: dict[str, float] = {}
        for site in self.parts.attention:
            core = self.timer.total([site.module]) - self.timer.total(site.linears)
            by_kind[site.kind] = by_kind.get(site.kind, 0.0) + core
        return PassTimes(total, parts, by_kind)


def build_models() -> dict[str, tuple[nn.Module, ModelParts]]:
    """Instantiate the four benchmarked models in eval mode with random weights."""
    armhubert = load_student_config("armhubert")
    no_reuse = dataclasses.replace(
        armhubert, name=NO_REUSE_MODEL, reuse=[False] * armhubert.num_layers
    )
    configs: dict[str, StudentConfig] = {
        "armhubert": armhubert,
        NO_REUSE_MODEL: no_reuse,
        "maskhubert": load_student_config("maskhubert"),
    }

    models: dict[str, tuple[nn.Module, ModelParts]] = {}
    for name, config in configs.items():
        student = SSLStudent(config).eval()
        models[name] = (student, student_parts(student))
    teacher = HubertTeacher(hubert_base_config()).eval()
    models["teacher"] = (teacher, teacher_parts(teacher))
    return models


def synthetic_batch(batch: int, seconds: float, seed: int) -> torch.Tensor:
    """Return (B, N) waveforms: four random tones plus Gaussian noise, peak near 0.5."""
    generator = torch.Generator().manual_seed(seed)
    num_samples = int(round(seconds * SAMPLE_RATE))
    t = torch.arange(num_samples) / SAMPLE_RATE
    freqs = 100.0 + 3000.0 * torch.rand(batch, 4, 1, generator=generator)
    tones = torch.sin(2 * torch.pi * freqs * t).sum(dim=1) / 16
    return tones + 0.05 * torch.randn(batch, num_samples, generator=generator)


def cpu_model() -> str:
    """Return the CPU model name from /proc/cpuinfo, or the platform's processor string."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def median_times(samples: list[PassTimes]) -> PassTimes:
    """Return the median of each field over the repetitions."""
    kinds = samples[0].attention_by_kind
    return PassTimes(
        total=statistics.median(s.total for s in samples),
        parts={p: statistics.median(s.parts[p] for s in samples) for p in samples[0].parts},
        attention_by_kind={k: statistics.median(s.attention_by_kind[k] for s in samples)
                           for k in kinds},
    )


def format_report(
    args: argparse.Namespace,
    models: dict[str, tuple[nn.Module, ModelParts]],
    times: dict[str, PassTimes],
    macs: dict[str, dict[str, int]],
    num_frames: int,
    load: tuple[float, float],
) -> list[str]:
    """Format the setup, times, MACs, ratios, attention kinds and target as Markdown."""
    # glibc's allocator settings change the cost of the large attention buffers, so record them.
    malloc_env = [f"{key}={value}" for key, value in sorted(os.environ.items())
                  if key.startswith("MALLOC_")]
    out = [
        f"Machine: {platform.machine()}, {cpu_model()}, {os.cpu_count()} CPUs; torch "
        f"{torch.__version__}, {torch.get_num_threads()} intra-op threads; "
        f"{' '.join(malloc_env) or 'default glibc malloc settings'}. Batch {args.batch} x "
        f"{args.seconds:g} s, T' = {num_frames} frames; median of {args.repeats} passes after "
        f"one warm-up. 1-minute load average {load[0]:.2f} before, {load[1]:.2f} after.",
        "",
        "| model | params (M) | total ms | "
        + " | ".join(f"{part} ms" for part in PARTS)
        + " | other ms |",
        "|---|---:|---:|" + "---:|" * (len(PARTS) + 1),
    ]
    for name, (model, _) in models.items():
        median = times[name]
        params = sum(p.numel() for p in model.parameters()) / 1e6
        other = median.total - sum(median.parts.values())
        cells = " | ".join(f"{1000 * median.parts[part]:.1f}" for part in PARTS)
        out.append(f"| {name} | {params:.2f} | {1000 * median.total:.1f} | {cells} | "
                   f"{1000 * other:.1f} |")

    out += ["", "| model | total GMAC | " + " | ".join(f"{part} GMAC" for part in PARTS) + " |",
            "|---|---:|" + "---:|" * len(PARTS)]
    for name in models:
        cells = " | ".join(f"{macs[name][part] / 1e9:.2f}" for part in PARTS)
        out.append(f"| {name} | {sum(macs[name].values()) / 1e9:.2f} | {cells} |")

    out += ["", f"| comparison | speed-up ({REUSE_MODEL} faster by) | MAC ratio |",
            "|---|---:|---:|"]
    reuse_macs = sum(macs[REUSE_MODEL].values())
    for other_name in models:
        if other_name == REUSE_MODEL:
            continue
        speedup = times[other_name].total / times[REUSE_MODEL].total
        mac_ratio = sum(macs[other_name].values()) / reuse_macs
        out.append(f"| {REUSE_MODEL} vs {other_name} | {speedup:.2f}x | {mac_ratio:.2f}x |")
    out += ["", f"Speed-up is the other model's time over {REUSE_MODEL}'s, so below 1 means "
            f"{REUSE_MODEL} is slower. MAC ratio is the other model's MACs over {REUSE_MODEL}'s."]

    out += ["", "| model | attention kind | layers | core ms per layer |", "|---|---|---:|---:|"]
    for name, (_, parts) in models.items():
        for kind, seconds in times[name].attention_by_kind.items():
            count = sum(site.kind == kind for site in parts.attention)
            out.append(f"| {name} | {kind} | {count} | {1000 * seconds / count:.1f} |")

    speedup = times[NO_REUSE_MODEL].total / times[REUSE_MODEL].total
    met = "met" if speedup >= TARGET_SPEEDUP else "not met"
    out += ["", "| target | measured | met |", "|---|---:|---|",
            f"| reuse student >= {TARGET_SPEEDUP}x faster than the same-width student without "
            f"reuse ({REUSE_MODEL} vs {NO_REUSE_MODEL}) | {speedup:.2f}x | {met} |"]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batch", type=int, default=8, help="utterances per batch")
    parser.add_argument("--seconds", type=float, default=10.0,
                        help="duration of each utterance in seconds")
    parser.add_argument("--repeats", type=int, default=5,
                        help="timed passes per model (the median is reported)")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument("--seed", type=int, default=0, help="seed of the weights and the audio")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if args.batch < 1 or args.repeats < 1 or args.threads < 1:
        parser.error("--batch, --repeats and --threads must be >= 1")

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    models = build_models()
    waveforms = synthetic_batch(args.batch, args.seconds, args.seed)
    student = models[REUSE_MODEL][0]
    if waveforms.size(1) < student.min_samples:
        parser.error(f"--seconds {args.seconds:g} gives {waveforms.size(1)} samples, fewer than "
                     f"the {student.min_samples} the conv front end needs for one frame")
    num_frames = int(student.num_frames(waveforms.size(1)))

    macs = {name: count_macs(model, parts, waveforms) for name, (model, parts) in models.items()}
    timed = {name: TimedModel(name, model, parts) for name, (model, parts) in models.items()}

    load_before = os.getloadavg()[0]
    logger.info("warm-up pass of %d models", len(timed))
    for model in timed.values():
        model.run(waveforms)

    samples: dict[str, list[PassTimes]] = {name: [] for name in timed}
    for _ in tqdm(range(args.repeats), desc="repetitions"):
        for name, model in timed.items():
            samples[name].append(model.run(waveforms))
    load_after = os.getloadavg()[0]

    times = {name: median_times(values) for name, values in samples.items()}
    report = format_report(args, models, times, macs, num_frames, (load_before, load_after))
    print("\n".join(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
