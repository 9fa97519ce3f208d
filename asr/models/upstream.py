"""A distilled student as an s3prl-style upstream, for SUPERB downstream tasks."""

from __future__ import annotations

import torch
from torch import nn

from asr.models.student import SSLStudent

DOWNSAMPLE_RATE = 320  # samples per frame at 16 kHz (20 ms)


class StudentUpstream(nn.Module):
    """Wrap an `SSLStudent` in the interface s3prl expects of a custom upstream.

    `forward` takes a list of 1-D 16 kHz waveforms of any lengths and returns
    ``{"hidden_states": [...]}``: the input of the first Transformer layer followed by each
    layer's output, every one (B, T', D), padded frames zeroed. A downstream learns a softmax-
    weighted sum of them.
    """

    def __init__(self, student: SSLStudent) -> None:
        super().__init__()
        self.student = student

    def get_downsample_rates(self, key: str = "hidden_states") -> int:
        """Samples per output frame, for every key."""
        return DOWNSAMPLE_RATE

    def forward(self, wavs: list[torch.Tensor]) -> dict[str, list[torch.Tensor]]:
        """Hidden states of a batch of (S_i,) waveforms."""
        if not wavs:
            raise ValueError("StudentUpstream got an empty list of waveforms")
        lengths = torch.tensor([wav.numel() for wav in wavs], device=wavs[0].device)
        too_short = [i for i, n in enumerate(lengths.tolist()) if n < self.student.min_samples]
        if too_short:
            raise ValueError(
                f"Waveforms {too_short} have fewer than {self.student.min_samples} samples, the "
                "shortest input the conv front end accepts; drop or pad them"
            )

        waveforms = nn.utils.rnn.pad_sequence([wav.flatten() for wav in wavs], batch_first=True)
        output = self.student(waveforms, lengths)
        valid = output.padding_mask.unsqueeze(-1)  # (B, T', 1)
        return {"hidden_states": [hidden * valid for hidden in output.hidden_states]}
