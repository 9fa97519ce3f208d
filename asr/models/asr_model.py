"""Hybrid CTC/attention ASR model: global CMVN, block-reusing encoder, CTC head and decoder."""

from __future__ import annotations

import torch
from torch import nn

from asr.constants import BLANK_ID, IGNORE_ID, SOS_EOS_ID
from asr.models.cmvn import GlobalCMVN
from asr.models.config import ModelConfig
from asr.models.ctc import CTCHead
from asr.models.decoder import build_decoder
from asr.models.encoder import build_encoder
from asr.models.label_smoothing import LabelSmoothingLoss
from asr.models.mask import lengths_to_mask
from asr.models.subsampling import Conv2dSubsampling4


def add_sos_eos(
    tokens: torch.Tensor, token_lens: torch.Tensor, sos_eos_id: int, ignore_id: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Build decoder inputs and targets from padded token sequences.

    Args:
        tokens: (B, U) int64, entries at or beyond `token_lens` are padding.
        token_lens: (B,).

    Returns:
        ys_in (B, U + 1): sos + tokens, padded with eos;
        ys_out (B, U + 1): tokens + eos, padded with `ignore_id`.
    """
    batch = tokens.size(0)
    valid = lengths_to_mask(token_lens, tokens.size(1))

    sos = tokens.new_full((batch, 1), sos_eos_id)
    ys_in = torch.cat((sos, tokens.masked_fill(~valid, sos_eos_id)), dim=1)

    padding = tokens.new_full((batch, 1), ignore_id)
    ys_out = torch.cat((tokens.masked_fill(~valid, ignore_id), padding), dim=1)
    ys_out[torch.arange(batch, device=tokens.device), token_lens] = sos_eos_id
    return ys_in, ys_out


class ASRModel(nn.Module):
    """CTC/attention model of `ModelConfig`; the loss is ctc_weight * CTC + (1 - ctc_weight) * att.

    Token ids: blank 0, sos = eos = 2, target padding -1.
    """

    blank_id = BLANK_ID
    sos_id = SOS_EOS_ID
    eos_id = SOS_EOS_ID
    ignore_id = IGNORE_ID
    subsampling_rate = Conv2dSubsampling4.subsampling_rate
    right_context = Conv2dSubsampling4.right_context

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        if config.vocab_size is None:
            raise ValueError(
                "ModelConfig.vocab_size is None; set it to the tokenizer's vocabulary size "
                "before building ASRModel"
            )

        self.config = config
        self.vocab_size = config.vocab_size
        self.ctc_weight = config.ctc_weight

        self.cmvn = GlobalCMVN(config.input_dim)
        self.encoder = build_encoder(config.encoder, config.input_dim, config.d_model)
        self.ctc = CTCHead(config.d_model, config.vocab_size, config.encoder.dropout)
        self.decoder = build_decoder(config.decoder, config.vocab_size, config.d_model)
        self.att_loss = LabelSmoothingLoss(config.vocab_size, config.lsm_weight, IGNORE_ID)

    def encode(
        self, feats: torch.Tensor, feat_lens: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Fbank (B, T, 80) float, (B,) int64 -> enc_out (B, T', D), enc_lens (B,).

        T' = ((T - 1) // 2 - 1) // 2 (about T / 4); T must be at least 7 frames.
        """
        return self.encoder(self.cmvn(feats), feat_lens)

    def ctc_log_probs(self, enc_out: torch.Tensor) -> torch.Tensor:
        """(B, T', D) -> (B, T', V) CTC log-probabilities."""
        return self.ctc.log_probs(enc_out)

    def decode_attention(
        self,
        enc_out: torch.Tensor,
        enc_lens: torch.Tensor,
        ys_in: torch.Tensor,
        ys_in_lens: torch.Tensor,
    ) -> torch.Tensor:
        """Decoder log-probabilities for sos-prefixed hypotheses.

        Args:
            enc_out: (N, T', D); enc_lens: (N,).
            ys_in: (N, L) int64, sos-prefixed and padded with eos_id.
            ys_in_lens: (N,).

        Returns:
            (N, L, V) log-softmax; position l scores the token after ys_in[:, :l + 1].
        """
        logits = self.decoder(enc_out, enc_lens, ys_in, ys_in_lens)
        return torch.log_softmax(logits, dim=-1)

    def forward(
        self,
        feats: torch.Tensor,
        feat_lens: torch.Tensor,
        tokens: torch.Tensor,
        token_lens: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        """Compute the hybrid loss on a padded batch.

        Args:
            feats: (B, T, 80) float; feat_lens: (B,) int64.
            tokens: (B, U) int64 padded with -1; token_lens: (B,) int64.

        Returns:
            dict with scalar tensors `loss`, `loss_ctc`, `loss_att` (both per utterance) and
            `accuracy` (detached decoder token accuracy over non-padding targets, eos included).
        """
        enc_out, enc_lens = self.encode(feats, feat_lens)

        # NOTE: both branches always run, even when ctc_weight is 0 or 1, so that every
        # parameter receives a gradient and the returned keys do not depend on the config.
        loss_ctc = self.ctc.loss(enc_out, enc_lens, tokens, token_lens)

        ys_in, ys_out = add_sos_eos(tokens, token_lens, self.sos_id, self.ignore_id)
        logits = self.decoder(enc_out, enc_lens, ys_in, token_lens + 1)
        loss_att = self.att_loss(logits, ys_out)

        loss = self.ctc_weight * loss_ctc + (1.0 - self.ctc_weight) * loss_att
        return {
            "loss": loss,
            "loss_ctc": loss_ctc,
            "loss_att": loss_att,
            "accuracy": token_accuracy(logits.detach(), ys_out, self.ignore_id),
        }


def token_accuracy(logits: torch.Tensor, targets: torch.Tensor, ignore_id: int) -> torch.Tensor:
    """Fraction of non-ignored positions where argmax(logits (B, L, V)) equals targets (B, L)."""
    valid = targets != ignore_id
    correct = (logits.argmax(dim=-1) == targets) & valid
    return correct.sum().float() / valid.sum().clamp(min=1).float()
