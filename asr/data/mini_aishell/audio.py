"""Turns espeak-ng output into a recording: trim, resample to 16 kHz, channel, noise floor."""

from __future__ import annotations

import math

import numpy as np

from asr.data.mini_aishell.speakers import SpeakerProfile

_TARGET_RMS_DBFS = -20.0
_PEAK_LIMIT = 0.98


def _kaiser(x: np.ndarray, beta: float) -> np.ndarray:
    """Kaiser window evaluated at x in [-1, 1] (zero outside)."""
    inside = np.abs(x) <= 1.0
    values = np.zeros_like(x)
    values[inside] = np.i0(beta * np.sqrt(1.0 - x[inside] ** 2)) / np.i0(beta)
    return values


def resample(
    samples: np.ndarray,
    orig_rate: int,
    new_rate: int,
    zero_crossings: int = 16,
    rolloff: float = 0.94,
) -> np.ndarray:
    """Resample float `samples` `(N,)` from `orig_rate` to `new_rate` Hz with a windowed sinc.

    The filter is a Kaiser-windowed sinc of `zero_crossings` zero crossings per side, with its
    cutoff at `rolloff` times the lower Nyquist frequency. Pure numpy, so the output is
    bit-identical from run to run on one machine.
    """
    divisor = math.gcd(orig_rate, new_rate)
    up, down = new_rate // divisor, orig_rate // divisor

    # Filter in input-sample time: cutoff in cycles per input sample, half-width in input samples.
    cutoff = 0.5 * min(1.0, up / down) * rolloff
    half_width = math.ceil(zero_crossings / (2 * cutoff))
    taps = 2 * half_width

    # Output sample n sits at input position n*down/up. Row `phase` of the table contains the taps
    # for the fractional position phase/up.
    offsets = np.arange(up)[:, None] / up + (half_width - 1) - np.arange(taps)[None, :]
    table = 2 * cutoff * np.sinc(2 * cutoff * offsets) * _kaiser(offsets / half_width, beta=8.0)
    table /= table.sum(axis=1, keepdims=True)

    num_out = math.ceil(len(samples) * up / down)
    padded = np.concatenate(
        [np.zeros(half_width), samples.astype(np.float64), np.zeros(half_width + 1)]
    )
    output = np.empty(num_out)
    block = 8192
    for start in range(0, num_out, block):
        positions = np.arange(start, min(start + block, num_out)) * down
        base, phase = positions // up, positions % up
        gathered = padded[base[:, None] + 1 + np.arange(taps)[None, :]]
        output[start : start + len(positions)] = (gathered * table[phase]).sum(axis=1)
    return output


def trim_silence(
    samples: np.ndarray, sample_rate: int, threshold: float = 0.02, margin_s: float = 0.01
) -> np.ndarray:
    """Cut leading and trailing samples below `threshold` times the peak, keeping `margin_s` s."""
    peak = np.max(np.abs(samples)) if len(samples) else 0.0
    if peak == 0.0:
        return samples[:0]
    loud = np.flatnonzero(np.abs(samples) >= threshold * peak)
    margin = int(margin_s * sample_rate)
    return samples[max(0, loud[0] - margin) : loud[-1] + 1 + margin]


def make_recording(
    synthesized: np.ndarray,
    synth_rate: int,
    sample_rate: int,
    profile: SpeakerProfile,
    rng: np.random.Generator,
) -> np.ndarray:
    """Turn int16 synthesizer output `(N,)` into an int16 recording `(M,)` at `sample_rate` Hz.

    The speech is trimmed, colored by the speaker's tilt, set to the speaker's level (with +-1 dB
    per utterance), padded with 0.10-0.30 s of leading and 0.10-0.25 s of trailing silence, and
    mixed with the speaker's white noise floor. `rng` draws the per-utterance values.
    """
    speech = trim_silence(synthesized.astype(np.float64) / 32768.0, synth_rate)
    if len(speech) == 0:
        raise ValueError("espeak-ng returned only silence")
    speech = resample(speech, synth_rate, sample_rate)

    speech[1:] += profile.tilt * speech[:-1]
    level_db = _TARGET_RMS_DBFS + profile.gain_db + rng.uniform(-1.0, 1.0)
    speech *= 10 ** (level_db / 20) / np.sqrt(np.mean(speech**2))

    lead = int(rng.uniform(0.10, 0.30) * sample_rate)
    trail = int(rng.uniform(0.10, 0.25) * sample_rate)
    recording = np.concatenate([np.zeros(lead), speech, np.zeros(trail)])
    recording += rng.standard_normal(len(recording)) * 10 ** (profile.noise_dbfs / 20)

    peak = np.max(np.abs(recording))
    if peak > _PEAK_LIMIT:
        recording *= _PEAK_LIMIT / peak
    return np.round(recording * 32767).astype(np.int16)
