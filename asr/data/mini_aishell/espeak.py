"""ctypes binding to the libespeak-ng of the espeakng-loader wheel: Mandarin audio and phonemes."""

from __future__ import annotations

import ctypes
import logging
from ctypes import POINTER, c_char_p, c_int, c_long, c_short, c_size_t, c_uint, c_void_p
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

ESPEAK_SAMPLE_RATE = 22050

# Constants of speak_lib.h (espeak-ng 1.52).
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_DONT_EXIT = 0x8000
_CHARS_UTF8 = 1
_POS_CHARACTER = 1
_PARAM_RATE = 1
_PARAM_PITCH = 3
_PARAM_RANGE = 4
_EE_OK = 0

_SynthCallback = ctypes.CFUNCTYPE(c_int, POINTER(c_short), c_int, c_void_p)

# Argument and return types of the speak_lib.h functions used here.
_SIGNATURES = {
    "espeak_Initialize": ([c_int, c_int, c_char_p, c_int], c_int),
    "espeak_Info": ([c_void_p], c_char_p),
    "espeak_SetSynthCallback": ([_SynthCallback], None),
    "espeak_SetVoiceByName": ([c_char_p], c_int),
    "espeak_SetParameter": ([c_int, c_int, c_int], c_int),
    "espeak_ng_SetRandSeed": ([c_long], c_int),
    "espeak_Synth": (
        [c_char_p, c_size_t, c_uint, c_int, c_uint, c_uint, c_void_p, c_void_p],
        c_int,
    ),
    "espeak_Synchronize": ([], c_int),
    "espeak_TextToPhonemes": ([POINTER(c_char_p), c_int, c_int], c_char_p),
}

_engine: EspeakEngine | None = None


class EspeakEngine:
    """The process-wide libespeak-ng, in synchronous mode with a callback that collects samples.

    libespeak-ng keeps synthesizer state in C globals (pitch flutter phase, filter memories), so
    the audio of an utterance depends on what the process synthesized before. Callers that need
    reproducible audio must run a fixed sequence of utterances in a fresh process.
    """

    def __init__(self, library_path: str, data_path: str) -> None:
        self._lib = ctypes.CDLL(library_path)
        self._declare_signatures()

        sample_rate = self._lib.espeak_Initialize(
            _AUDIO_OUTPUT_SYNCHRONOUS, 0, data_path.encode(), _INITIALIZE_DONT_EXIT
        )
        if sample_rate != ESPEAK_SAMPLE_RATE:
            raise RuntimeError(
                f"espeak_Initialize with data {data_path} returned {sample_rate}, expected "
                f"sample rate {ESPEAK_SAMPLE_RATE}; reinstall the espeakng-loader package."
            )

        self._chunks: list[np.ndarray] = []
        self._callback = _SynthCallback(self._collect)
        self._lib.espeak_SetSynthCallback(self._callback)
        self._libc_srand = ctypes.CDLL(None).srand
        self.version = self._lib.espeak_Info(None).decode()

        # espeak_TextToPhonemes dereferences the current voice's translator and crashes without one.
        self.set_voice("cmn", rate=175, pitch=50, pitch_range=50)

    def _declare_signatures(self) -> None:
        for name, (argtypes, restype) in _SIGNATURES.items():
            function = getattr(self._lib, name)
            function.argtypes = argtypes
            function.restype = restype

    def _collect(self, samples: POINTER(c_short), num_samples: int, events: int) -> int:
        if num_samples > 0:
            self._chunks.append(np.ctypeslib.as_array(samples, shape=(num_samples,)).copy())
        return 0

    def set_voice(self, name: str, rate: int, pitch: int, pitch_range: int) -> None:
        """Select a voice such as "cmn" or "cmn+f2" and its prosody.

        `rate` is in words per minute; `pitch` and `pitch_range` are on espeak-ng's 0..99 scale.
        """
        if self._lib.espeak_SetVoiceByName(name.encode()) != _EE_OK:
            raise ValueError(
                f"espeak-ng voice {name!r} not found; use a language code plus a variant of "
                "espeak-ng-data/voices/!v, e.g. 'cmn+f2'."
            )

        for parameter, value in (
            (_PARAM_RATE, rate),
            (_PARAM_PITCH, pitch),
            (_PARAM_RANGE, pitch_range),
        ):
            if self._lib.espeak_SetParameter(parameter, value, 0) != _EE_OK:
                raise ValueError(
                    f"espeak-ng rejected parameter {parameter} = {value} for voice {name!r}."
                )

    def synthesize(self, text: str, seed: int) -> np.ndarray:
        """Synthesize `text` with the current voice into int16 samples `(N,)` at 22050 Hz.

        `seed` reseeds espeak-ng's noise generator (breath and Klatt noise). libc `rand()` is
        reseeded as well, because the bundled library imports it.
        """
        self._lib.espeak_ng_SetRandSeed(seed)
        self._libc_srand(seed)
        self._chunks = []

        encoded = text.encode()
        status = self._lib.espeak_Synth(
            encoded, len(encoded) + 1, 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None
        )
        if status != _EE_OK:
            raise RuntimeError(f"espeak_Synth failed with status {status} on text {text!r}.")
        self._lib.espeak_Synchronize()

        if not self._chunks:
            return np.zeros(0, dtype=np.int16)
        return np.concatenate(self._chunks)

    def phonemes(self, text: str) -> str:
        """Translate `text` into espeak-ng phoneme mnemonics in the current voice's language.

        Clauses are joined by spaces and words end with "_|".
        """
        buffer = c_char_p(text.encode())
        cursor = ctypes.pointer(buffer)

        clauses = []
        # Each call translates one clause and advances the cursor, which is NULL after the last one.
        while cursor.contents.value:
            clauses.append(self._lib.espeak_TextToPhonemes(cursor, _CHARS_UTF8, 0).decode())
        return " ".join(clauses)


def espeak_paths() -> tuple[str, str]:
    """Return (library path, data directory) of the libespeak-ng bundled with `espeakng-loader`."""
    try:
        import espeakng_loader
    except ImportError as error:
        raise RuntimeError(
            "The mini AISHELL-1 corpus needs espeak-ng: pip install espeakng-loader"
        ) from error

    library_path = espeakng_loader.get_library_path()
    data_path = espeakng_loader.get_data_path()
    if not (Path(data_path) / "cmn_dict").is_file():
        raise RuntimeError(
            f"{data_path} has no cmn_dict, so espeak-ng cannot speak Mandarin; "
            "reinstall espeakng-loader."
        )
    return library_path, data_path


def get_engine() -> EspeakEngine:
    """Return this process's engine, initializing libespeak-ng on first use."""
    global _engine
    if _engine is None:
        _engine = EspeakEngine(*espeak_paths())
        logger.debug("Loaded libespeak-ng %s", _engine.version)
    return _engine
