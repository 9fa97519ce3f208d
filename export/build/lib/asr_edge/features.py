"""Log-mel fbank with kaldi-native-fbank, configured exactly as sherpa-onnx configures it."""

from __future__ import annotations

import kaldi_native_fbank as knf
import numpy as np

SAMPLE_RATE = 16000
NUM_MEL_BINS = 80

# sherpa-onnx feeds WeNet CTC models samples at int16 scale, not in [-1, 1].
INT16_SCALE = 32768.0


def fbank_options() -> knf.FbankOptions:
    """Build kaldi-native-fbank options for 16 kHz: 25 ms povey window, 10 ms shift, no dither.

    Pre-emphasis 0.97, mel filters from 20 Hz to Nyquist - 400 Hz, ``snip_edges=False``
    (100 frames per second, centred on multiples of the shift), log of the power spectrum,
    energy not used.
    """
    options = knf.FbankOptions()
    options.frame_opts.samp_freq = SAMPLE_RATE
    options.frame_opts.frame_length_ms = 25.0
    options.frame_opts.frame_shift_ms = 10.0
    options.frame_opts.dither = 0.0
    options.frame_opts.preemph_coeff = 0.97
    options.frame_opts.remove_dc_offset = True
    options.frame_opts.window_type = "povey"
    options.frame_opts.snip_edges = False
    options.mel_opts.num_bins = NUM_MEL_BINS
    options.mel_opts.low_freq = 20.0
    options.mel_opts.high_freq = -400.0
    options.use_energy = False
    options.use_log_fbank = True
    options.use_power = True
    return options


def num_frames(num_samples: int) -> int:
    """Return the fbank frame count of ``num_samples`` samples at 16 kHz (``snip_edges=False``)."""
    shift = SAMPLE_RATE // 100
    return (num_samples + shift // 2) // shift


def compute_fbank(samples: np.ndarray) -> np.ndarray:
    """Compute log-mel fbank of one mono 16 kHz waveform.

    Args:
        samples: (S,) float samples in [-1, 1]. They are scaled to the int16 range here.

    Returns:
        (T, 80) float32 features with T = ``num_frames(S)``.
    """
    if samples.ndim != 1:
        raise ValueError(f"compute_fbank expects samples of shape (S,), got {samples.shape}.")

    extractor = knf.OnlineFbank(fbank_options())
    extractor.accept_waveform(SAMPLE_RATE, (samples * INT16_SCALE).astype(np.float32).tolist())
    extractor.input_finished()

    count = extractor.num_frames_ready
    if count == 0:
        return np.zeros((0, NUM_MEL_BINS), dtype=np.float32)
    frames = [extractor.get_frame(i) for i in range(count)]
    return np.asarray(frames, dtype=np.float32)
