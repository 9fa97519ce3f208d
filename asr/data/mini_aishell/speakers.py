"""The synthetic speakers of the mini AISHELL-1 corpus: espeak-ng voice, prosody and channel."""

from __future__ import annotations

from dataclasses import dataclass

SPLITS = ("train", "dev", "test")


@dataclass(frozen=True)
class SpeakerProfile:
    """Voice and channel settings that make one synthetic speaker.

    `variant` is an espeak-ng voice variant of the Mandarin voice ("f2" gives "cmn+f2"). `rate` is
    in words per minute, and `pitch` and `pitch_range` are on espeak-ng's 0..99 scale. `gain_db`
    is the speech level relative to -20 dBFS RMS and `noise_dbfs` the RMS of the white noise
    floor. `tilt` colors the channel as y[n] = x[n] + tilt * x[n-1] (positive: duller).
    """

    speaker: str
    split: str
    gender: str
    variant: str
    rate: int
    pitch: int
    pitch_range: int
    gain_db: float
    noise_dbfs: float
    tilt: float

    @property
    def voice(self) -> str:
        """Return the espeak-ng voice name, e.g. "cmn+f2"."""
        return f"cmn+{self.variant}"


# Dev and test speakers use variants no training speaker has, with prosody and channel settings
# inside the range spanned by the training speakers.
SPEAKERS: tuple[SpeakerProfile, ...] = (
    SpeakerProfile("S0002", "train", "F", "f1", 170, 50, 50, -1.0, -58.0, 0.0),
    SpeakerProfile("S0003", "train", "M", "m1", 165, 40, 45, -3.0, -62.0, 0.2),
    SpeakerProfile("S0004", "train", "F", "f2", 185, 60, 60, 0.0, -52.0, -0.3),
    SpeakerProfile("S0005", "train", "M", "m2", 180, 35, 35, -5.0, -55.0, 0.4),
    SpeakerProfile("S0006", "train", "F", "linda", 160, 45, 65, -2.0, -65.0, -0.1),
    SpeakerProfile("S0007", "train", "M", "m3", 175, 55, 55, 1.0, -48.0, 0.1),
    SpeakerProfile("S0008", "train", "F", "f4", 190, 65, 40, -4.0, -60.0, 0.3),
    SpeakerProfile("S0009", "train", "M", "klatt", 170, 45, 50, -6.0, -50.0, -0.2),
    SpeakerProfile("S0010", "train", "F", "belinda", 175, 40, 45, 2.0, -56.0, 0.5),
    SpeakerProfile("S0011", "train", "M", "m6", 160, 60, 70, -1.5, -45.0, -0.4),
    SpeakerProfile("S0012", "train", "F", "aunty", 165, 55, 30, -3.5, -63.0, 0.0),
    SpeakerProfile("S0013", "train", "M", "m8", 185, 30, 60, 0.5, -54.0, -0.5),
    SpeakerProfile("S0014", "train", "F", "steph", 195, 50, 55, -2.5, -49.0, 0.2),
    SpeakerProfile("S0015", "train", "M", "klatt3", 155, 65, 40, -4.5, -59.0, -0.3),
    SpeakerProfile("S0724", "dev", "F", "f3", 172, 52, 48, -2.0, -57.0, 0.1),
    SpeakerProfile("S0725", "dev", "M", "m4", 182, 42, 52, -3.0, -53.0, -0.2),
    SpeakerProfile("S0764", "test", "F", "f5", 178, 48, 54, -1.0, -55.0, -0.1),
    SpeakerProfile("S0765", "test", "M", "m7", 168, 58, 46, -2.5, -60.0, 0.2),
)


def speakers_of_split(split: str, limit: int | None = None) -> list[SpeakerProfile]:
    """Return the first `limit` speakers (all when None) of `split`, in speaker id order."""
    if split not in SPLITS:
        raise ValueError(f"Unknown split {split!r}; expected one of {SPLITS}.")
    speakers = sorted(
        (profile for profile in SPEAKERS if profile.split == split),
        key=lambda profile: profile.speaker,
    )
    return speakers if limit is None else speakers[:limit]
