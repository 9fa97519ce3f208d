"""Log-mel fbank front end that reproduces kaldi-native-fbank as sherpa-onnx configures it.

Training and deployment must see identical features, so this torch implementation follows the
Kaldi algorithm step by step and is tested against kaldi-native-fbank's ``OnlineFbank``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Any, Sequence

import numpy as np
import torch
from lhotse.features.base import FeatureExtractor, register_extractor

from asr.constants import SAMPLE_RATE

# Kaldi floors mel energies at the float32 machine epsilon before taking the log.
FLOAT32_EPSILON = float(np.finfo(np.float32).eps)

WINDOW_TYPES = ("povey", "hann", "hamming", "rectangular")


@dataclass(frozen=True)
class FbankOptions:
    """Fbank settings; the defaults are those of sherpa-onnx's feature extractor.

    sherpa-onnx builds ``knf.FbankOptions()`` and changes only ``dither=0``, ``snip_edges=False``,
    ``num_bins=80`` and ``high_freq=-400``. For WeNet CTC models it also feeds samples scaled to
    the int16 range. Every other field keeps kaldi-native-fbank's default (energy disabled, power
    spectrum, log of mel energies floored at the float32 epsilon).

    Attributes:
        sample_rate: Input sample rate in Hz.
        frame_length_ms: Analysis window length in milliseconds.
        frame_shift_ms: Hop between frames in milliseconds.
        num_mel_bins: Number of triangular mel filters (the feature dimension).
        low_freq: Lower edge of the first mel filter in Hz.
        high_freq: Upper edge of the last mel filter in Hz. A value <= 0 is an offset from the
            Nyquist frequency, so -400 means 7600 Hz at 16 kHz.
        preemph_coeff: Pre-emphasis coefficient.
        remove_dc_offset: Subtract each frame's mean before pre-emphasis.
        window_type: One of "povey", "hann", "hamming", "rectangular".
        round_to_power_of_two: Zero-pad each frame to the next power of two before the FFT.
        snip_edges: If False, frames are centred on multiples of the shift and the signal is
            reflected at both ends. If True, only frames that fit inside the signal are kept.
        input_scale: Factor applied to waveforms in [-1, 1] before analysis (int16 scale).
    """

    sample_rate: int = SAMPLE_RATE
    frame_length_ms: float = 25.0
    frame_shift_ms: float = 10.0
    num_mel_bins: int = 80
    low_freq: float = 20.0
    high_freq: float = -400.0
    preemph_coeff: float = 0.97
    remove_dc_offset: bool = True
    window_type: str = "povey"
    round_to_power_of_two: bool = True
    snip_edges: bool = False
    input_scale: float = 32768.0

    def __post_init__(self) -> None:
        if self.window_type not in WINDOW_TYPES:
            raise ValueError(
                f"Invalid fbank window_type {self.window_type!r}: expected one of {WINDOW_TYPES}."
            )

        nyquist = 0.5 * self.sample_rate
        high_freq = self.high_freq if self.high_freq > 0 else nyquist + self.high_freq
        if not 0.0 <= self.low_freq < high_freq <= nyquist:
            raise ValueError(
                f"Invalid fbank mel range: low_freq={self.low_freq} Hz, high_freq={self.high_freq}"
                f" Hz (resolved to {high_freq} Hz) at sample_rate={self.sample_rate} Hz. Choose"
                " 0 <= low_freq < high_freq <= Nyquist, with high_freq <= 0 meaning Nyquist"
                " plus high_freq."
            )

        if self.frame_shift_samples <= 0 or self.frame_length_samples < self.frame_shift_samples:
            raise ValueError(
                f"Invalid fbank framing: frame_length_ms={self.frame_length_ms} and"
                f" frame_shift_ms={self.frame_shift_ms} give {self.frame_length_samples} and"
                f" {self.frame_shift_samples} samples; the shift must be positive and no longer"
                " than the window."
            )

    @property
    def frame_length_samples(self) -> int:
        """Window length in samples (400 at 16 kHz)."""
        return int(self.sample_rate * 0.001 * self.frame_length_ms)

    @property
    def frame_shift_samples(self) -> int:
        """Hop in samples (160 at 16 kHz)."""
        return int(self.sample_rate * 0.001 * self.frame_shift_ms)

    @property
    def fft_size(self) -> int:
        """FFT length: the window length rounded up to a power of two (512 at 16 kHz)."""
        if not self.round_to_power_of_two:
            return self.frame_length_samples
        return 1 << (self.frame_length_samples - 1).bit_length()

    @property
    def frame_shift_seconds(self) -> float:
        """Hop in seconds."""
        return self.frame_shift_samples / self.sample_rate

    def to_knf(self) -> Any:
        """Build the equivalent ``kaldi_native_fbank.FbankOptions`` with dither 0."""
        import kaldi_native_fbank as knf

        knf_options = knf.FbankOptions()
        knf_options.frame_opts.samp_freq = self.sample_rate
        knf_options.frame_opts.frame_length_ms = self.frame_length_ms
        knf_options.frame_opts.frame_shift_ms = self.frame_shift_ms
        knf_options.frame_opts.dither = 0.0
        knf_options.frame_opts.preemph_coeff = self.preemph_coeff
        knf_options.frame_opts.remove_dc_offset = self.remove_dc_offset
        knf_options.frame_opts.window_type = self.window_type
        knf_options.frame_opts.round_to_power_of_two = self.round_to_power_of_two
        knf_options.frame_opts.snip_edges = self.snip_edges
        knf_options.mel_opts.num_bins = self.num_mel_bins
        knf_options.mel_opts.low_freq = self.low_freq
        knf_options.mel_opts.high_freq = self.high_freq
        knf_options.use_energy = False
        knf_options.use_log_fbank = True
        knf_options.use_power = True
        return knf_options


def num_frames(num_samples: int, options: FbankOptions) -> int:
    """Return the number of fbank frames for ``num_samples`` samples.

    With ``snip_edges=False`` this is ``(S + shift // 2) // shift``, i.e. 100 frames per second
    rounded to the nearest frame. With ``snip_edges=True`` it counts windows that fit in the signal.
    """
    shift = options.frame_shift_samples
    if options.snip_edges:
        length = options.frame_length_samples
        return 0 if num_samples < length else 1 + (num_samples - length) // shift
    return (num_samples + shift // 2) // shift


def mel_banks(options: FbankOptions) -> torch.Tensor:
    """Return Kaldi's triangular mel filters as a (num_mel_bins, fft_size // 2 + 1) float32 tensor.

    Filters are uniform on the mel scale ``1127 ln(1 + f / 700)`` between ``low_freq`` and the
    resolved ``high_freq``. The Nyquist column is all zeros, as in Kaldi.
    """
    banks = _mel_banks_cached(
        options.sample_rate, options.fft_size, options.num_mel_bins, options.low_freq,
        options.high_freq,
    )
    return banks.clone()


@lru_cache(maxsize=8)
def _mel_banks_cached(
    sample_rate: int, fft_size: int, num_bins: int, low_freq: float, high_freq: float
) -> torch.Tensor:
    nyquist = 0.5 * sample_rate
    if high_freq <= 0:
        high_freq += nyquist

    def mel_scale(freq: np.ndarray | float) -> np.ndarray | float:
        return 1127.0 * np.log(1.0 + np.asarray(freq) / 700.0)

    mel_low = mel_scale(low_freq)
    mel_delta = (mel_scale(high_freq) - mel_low) / (num_bins + 1)
    edges = mel_low + mel_delta * np.arange(num_bins + 2)
    left, center, right = edges[:-2, None], edges[1:-1, None], edges[2:, None]

    fft_mel = mel_scale(np.arange(fft_size // 2) * sample_rate / fft_size)[None, :]
    rising = (fft_mel - left) / (center - left)
    falling = (right - fft_mel) / (right - center)
    weights = np.where(fft_mel <= center, rising, falling)
    weights = np.where((fft_mel > left) & (fft_mel < right), weights, 0.0)

    banks = np.zeros((num_bins, fft_size // 2 + 1), dtype=np.float32)
    banks[:, : fft_size // 2] = weights
    return torch.from_numpy(banks)


def _window(options: FbankOptions) -> torch.Tensor:
    length = options.frame_length_samples
    if options.window_type == "rectangular":
        return torch.ones(length)

    # Kaldi's windows are symmetric: the cosine argument divides by (length - 1).
    hann = torch.hann_window(length, periodic=False, dtype=torch.float64)
    if options.window_type == "povey":
        window = hann.pow(0.85)
    elif options.window_type == "hann":
        window = hann
    else:
        window = torch.hamming_window(length, periodic=False, dtype=torch.float64)
    return window.float()


def _reflect(positions: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Map sample positions outside [0, N) back inside by mirror reflection, as Kaldi does.

    Kaldi reflects ``s < 0`` to ``-s - 1`` and ``s >= N`` to ``2N - 1 - s``, repeatedly for
    signals shorter than the overhang. That is periodic with period 2N, which gives a closed form.
    """
    period = 2 * lengths
    wrapped = torch.remainder(positions, period)
    return torch.where(wrapped >= lengths, period - 1 - wrapped, wrapped)


def compute_fbank_batch(
    waveforms: torch.Tensor,
    lengths: torch.Tensor | None = None,
    options: FbankOptions = FbankOptions(),
    dither: float = 0.0,
    generator: torch.Generator | None = None,
    padding_value: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Compute log-mel fbank for a padded batch of waveforms.

    Args:
        waveforms: (B, S) float samples in [-1, 1], multiplied by ``options.input_scale``
            before analysis.
        lengths: (B,) number of valid samples per row, all S when None.
        options: Front-end settings.
        dither: Standard deviation of Gaussian noise added to every frame, in int16 sample units
            (Kaldi's convention). Use 0 for evaluation and export checks.
        generator: Random generator for the dither noise, the global RNG when None.
        padding_value: Value written to frames past each row's own frame count.

    Returns:
        feats: (B, T, num_mel_bins) float32 log-mel energies with T = ``num_frames(max(lengths))``.
        feat_lens: (B,) int64 number of valid frames per row.
    """
    if waveforms.dim() != 2:
        raise ValueError(
            f"compute_fbank_batch expects waveforms of shape (B, S), got {tuple(waveforms.shape)}."
        )

    batch_size, max_samples = waveforms.shape
    device = waveforms.device
    if lengths is None:
        lengths = torch.full((batch_size,), max_samples, dtype=torch.long, device=device)
    lengths = lengths.to(device=device, dtype=torch.long)
    if bool((lengths > max_samples).any()) or bool((lengths < 0).any()):
        raise ValueError(
            f"compute_fbank_batch: lengths {lengths.tolist()} must lie in [0, {max_samples}]."
        )

    feat_lens = torch.tensor(
        [num_frames(int(n), options) for n in lengths.tolist()], dtype=torch.long, device=device
    )
    max_frames = int(feat_lens.max()) if batch_size > 0 else 0
    if max_frames == 0:
        return torch.zeros(batch_size, 0, options.num_mel_bins, device=device), feat_lens

    # Gather every frame's samples at once: build the sample positions each frame covers,
    # reflect those outside the row's own signal, then cut overlapping windows with unfold.
    frame_length = options.frame_length_samples
    frame_shift = options.frame_shift_samples
    first_sample = 0 if options.snip_edges else frame_shift // 2 - frame_length // 2
    span = (max_frames - 1) * frame_shift + frame_length
    positions = first_sample + torch.arange(span, device=device)
    sample_index = _reflect(positions[None, :], lengths.clamp(min=1)[:, None])
    signal = torch.gather(waveforms.float() * options.input_scale, 1, sample_index)
    frames = signal.unfold(1, frame_length, frame_shift)

    if dither != 0.0:
        noise = torch.randn(frames.shape, generator=generator, device=frames.device)
        frames = frames + dither * noise

    if options.remove_dc_offset:
        frames = frames - frames.mean(dim=-1, keepdim=True)

    if options.preemph_coeff != 0.0:
        previous = torch.cat([frames[..., :1], frames[..., :-1]], dim=-1)
        frames = frames - options.preemph_coeff * previous

    frames = frames * _window(options).to(device)
    spectrum = torch.fft.rfft(frames, n=options.fft_size)
    power = spectrum.real.square() + spectrum.imag.square()
    mel_energies = power @ mel_banks(options).to(device).T
    feats = mel_energies.clamp(min=FLOAT32_EPSILON).log()

    valid = torch.arange(max_frames, device=device)[None, :] < feat_lens[:, None]
    feats = feats.masked_fill(~valid[..., None], padding_value)
    return feats, feat_lens


def compute_fbank(
    waveform: torch.Tensor,
    options: FbankOptions = FbankOptions(),
    dither: float = 0.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Compute log-mel fbank of one waveform.

    Args:
        waveform: (S,) float samples in [-1, 1] at ``options.sample_rate``.
        options: Front-end settings.
        dither: Gaussian dither in int16 sample units, 0 for evaluation.
        generator: Random generator for the dither noise, the global RNG when None.

    Returns:
        (T, num_mel_bins) float32 log-mel energies, T = ``num_frames(S, options)``.
    """
    if waveform.dim() != 1:
        raise ValueError(
            f"compute_fbank expects a waveform of shape (S,), got {tuple(waveform.shape)}."
        )

    feats, _ = compute_fbank_batch(waveform[None, :], None, options, dither, generator)
    return feats[0]


@dataclass(frozen=True)
class KaldiNativeCompatibleFbankConfig(FbankOptions):
    """Fbank settings for the lhotse extractor, plus dither in int16 sample units."""

    dither: float = 0.0

    @property
    def options(self) -> FbankOptions:
        """The front-end settings without dither."""
        fields = self.to_dict()
        fields.pop("dither")
        return FbankOptions(**fields)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @staticmethod
    def from_dict(data: dict[str, Any]) -> KaldiNativeCompatibleFbankConfig:
        return KaldiNativeCompatibleFbankConfig(**data)


@register_extractor
class KaldiNativeCompatibleFbank(FeatureExtractor):
    """Lhotse feature extractor producing the same log-mel fbank as kaldi-native-fbank.

    Use it with ``lhotse.dataset.input_strategies.OnTheFlyFeatures`` or ``CutSet.compute_and_store_
    features``. Set ``dither`` > 0 (e.g. 0.1) for training only, because evaluation and the
    deployed runtime use 0.
    Importing this module registers the extractor under the name ``kaldi-native-compatible-fbank``.
    """

    name = "kaldi-native-compatible-fbank"
    config_type = KaldiNativeCompatibleFbankConfig

    def __init__(
        self, config: KaldiNativeCompatibleFbankConfig | None = None, dither: float | None = None
    ) -> None:
        config = config if config is not None else KaldiNativeCompatibleFbankConfig()
        if dither is not None:
            config = KaldiNativeCompatibleFbankConfig(**{**config.to_dict(), "dither": dither})
        super().__init__(config=config)
        self._options = config.options

    @property
    def frame_shift(self) -> float:
        return self._options.frame_shift_seconds

    def feature_dim(self, sampling_rate: int) -> int:
        return self._options.num_mel_bins

    def _check_sampling_rate(self, sampling_rate: int) -> None:
        if sampling_rate != self._options.sample_rate:
            raise ValueError(
                f"{type(self).__name__} is configured for {self._options.sample_rate} Hz but got"
                f" audio at {sampling_rate} Hz; resample the cuts first (CutSet.resample)."
            )

    def extract(
        self, samples: np.ndarray | torch.Tensor, sampling_rate: int
    ) -> np.ndarray | torch.Tensor:
        """Compute (T, num_mel_bins) features from mono samples of shape (S,) or (1, S).

        Returns a numpy array for numpy input and a tensor for tensor input.
        """
        self._check_sampling_rate(sampling_rate)

        is_numpy = not isinstance(samples, torch.Tensor)
        waveform = torch.from_numpy(np.asarray(samples)) if is_numpy else samples
        if waveform.dim() == 2 and waveform.shape[0] == 1:
            waveform = waveform[0]
        if waveform.dim() != 1:
            raise ValueError(
                f"{type(self).__name__} expects mono samples of shape (S,) or (1, S), got"
                f" {tuple(waveform.shape)}; select or mix down a channel first."
            )

        feats = compute_fbank(waveform, self._options, dither=self.config.dither)
        return feats.numpy() if is_numpy else feats

    def extract_batch(
        self,
        samples: np.ndarray | torch.Tensor | Sequence[np.ndarray] | Sequence[torch.Tensor],
        sampling_rate: int,
        lengths: np.ndarray | torch.Tensor | None = None,
    ) -> np.ndarray | torch.Tensor | list[np.ndarray] | list[torch.Tensor]:
        """Compute features for many waveforms in one batched pass.

        Accepts a list of (S,) or (1, S) arrays, which returns a list of (T_i, F) features, or a
        padded (B, S) array with ``lengths``, which returns the (B, T, F) padded batch.
        """
        self._check_sampling_rate(sampling_rate)

        if lengths is not None:
            waveforms = torch.as_tensor(samples)
            feats, _ = compute_fbank_batch(
                waveforms, torch.as_tensor(lengths), self._options, dither=self.config.dither
            )
            return feats if isinstance(samples, torch.Tensor) else feats.numpy()

        is_single = not isinstance(samples, (list, tuple)) and np.ndim(samples) == 1
        items = [samples] if is_single else list(samples)
        if not items:
            return []
        is_torch = any(isinstance(item, torch.Tensor) for item in items)
        waveforms = [torch.as_tensor(np.asarray(item)) for item in items]
        for index, waveform in enumerate(waveforms):
            if waveform.dim() > 2 or (waveform.dim() == 2 and waveform.shape[0] != 1):
                raise ValueError(
                    f"{type(self).__name__}.extract_batch expects mono samples of shape (S,) or"
                    f" (1, S), got {tuple(waveform.shape)} for item {index}."
                )
        waveforms = [waveform.reshape(-1) for waveform in waveforms]

        item_lengths = torch.tensor([w.numel() for w in waveforms], dtype=torch.long)
        padded = torch.nn.utils.rnn.pad_sequence(waveforms, batch_first=True)
        feats, feat_lens = compute_fbank_batch(
            padded, item_lengths, self._options, dither=self.config.dither
        )
        result = [feats[i, : feat_lens[i]] for i in range(len(waveforms))]
        if not is_torch:
            result = [f.numpy() for f in result]
        return result[0] if is_single else result
