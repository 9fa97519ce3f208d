"""Band-limited resampling in numpy by windowed-sinc interpolation."""

from __future__ import annotations

import numpy as np

# Each output sample reads the input over this many zero crossings of the sinc on either side.
ZERO_CROSSINGS = 16

# Low-pass cutoff as a fraction of the lower Nyquist frequency, leaving room for the
# filter's transition band below it.
ROLLOFF = 0.95

CHUNK_SIZE = 16384


def resample(samples: np.ndarray, orig_rate: int, new_rate: int) -> np.ndarray:
    """Resample a mono waveform with Hann-windowed sinc interpolation.

    Output sample n is the input interpolated at time ``n * orig_rate / new_rate`` (in input
    samples) through a low-pass sinc cut at ``ROLLOFF`` times the lower of the two Nyquist
    frequencies. Samples outside the signal count as zero.

    Args:
        samples: (S,) float waveform at ``orig_rate`` Hz.
        orig_rate: Input sample rate in Hz.
        new_rate: Output sample rate in Hz.

    Returns:
        (ceil(S * new_rate / orig_rate),) float32 waveform at ``new_rate`` Hz.
    """
    if orig_rate <= 0 or new_rate <= 0:
        raise ValueError(f"Sample rates must be positive, got {orig_rate} Hz and {new_rate} Hz.")
    if samples.ndim != 1:
        raise ValueError(f"resample expects samples of shape (S,), got {samples.shape}.")
    if orig_rate == new_rate:
        return samples.astype(np.float32, copy=False)

    # Cutoff in cycles per input sample relative to the input Nyquist, so 1.0 keeps everything.
    cutoff = ROLLOFF * min(1.0, new_rate / orig_rate)
    half_width = ZERO_CROSSINGS / cutoff
    offsets = np.arange(-int(np.ceil(half_width)), int(np.ceil(half_width)) + 1)

    signal = samples.astype(np.float64)
    num_in = signal.shape[0]
    num_out = -(-num_in * new_rate // orig_rate)
    output = np.empty(num_out, dtype=np.float32)

    for start in range(0, num_out, CHUNK_SIZE):
        out_index = np.arange(start, min(start + CHUNK_SIZE, num_out))
        times = out_index * (orig_rate / new_rate)
        taps = np.floor(times).astype(np.int64)[:, None] + offsets[None, :]
        distance = times[:, None] - taps

        window = np.where(
            np.abs(distance) < half_width, 0.5 * (1.0 + np.cos(np.pi * distance / half_width)), 0.0
        )
        weights = cutoff * np.sinc(cutoff * distance) * window

        inside = (taps >= 0) & (taps < num_in)
        values = np.where(inside, signal[np.clip(taps, 0, num_in - 1)], 0.0)
        output[out_index] = (values * weights).sum(axis=1)

    return output
