"""Block-reusing speech Transformer (BRST) with per-application adapters and CTC/attention heads."""

from asr.models.asr_model import ASRModel
from asr.models.attention import MultiHeadAttention
from asr.models.cmvn import GlobalCMVN
from asr.models.config import (
    AdapterConfig,
    DecoderConfig,
    EncoderConfig,
    ModelConfig,
    load_model_config,
)
from asr.models.params import parameter_breakdown

__all__ = [
    "ASRModel",
    "AdapterConfig",
    "DecoderConfig",
    "EncoderConfig",
    "GlobalCMVN",
    "ModelConfig",
    "MultiHeadAttention",
    "load_model_config",
    "parameter_breakdown",
]
