"""Distillation of HuBERT-style teachers into compact students: masking, losses, data, training."""
