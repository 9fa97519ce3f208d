"""Tests of MultiHeadAttention: fused vs explicit paths, padding, given probabilities, masks."""

from __future__ import annotations

import math

import pytest
import torch

from asr.models.attention import MultiHeadAttention
from asr.models.mask import causal_mask, lengths_to_mask

D_MODEL = 16
HEADS = 4


@pytest.fixture
def attention() -> MultiHeadAttention:
    torch.manual_seed(0)
    return MultiHeadAttention(D_MODEL, HEADS).eval()


def reference_attention(
    module: MultiHeadAttention, x: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """softmax(Q K^T / sqrt(d_k)) V written out with the module's weights, mask (B, T_q|1, T_k)."""
    batch, time, _ = x.shape
    head_dim = D_MODEL // HEADS

    def heads(t: torch.Tensor) -> torch.Tensor:
        return t.view(batch, time, HEADS, head_dim).permute(0, 2, 1, 3)

    q = heads(x @ module.linear_q.weight.T + module.linear_q.bias)
    k = heads(x @ module.linear_k.weight.T + module.linear_k.bias)
    v = heads(x @ module.linear_v.weight.T + module.linear_v.bias)

    scores = q @ k.transpose(-1, -2) / math.sqrt(head_dim)
    scores = scores.masked_fill(~mask.unsqueeze(1), float("-inf"))
    context = torch.softmax(scores, dim=-1) @ v

    merged = context.permute(0, 2, 1, 3).reshape(batch, time, D_MODEL)
    return merged @ module.linear_out.weight.T + module.linear_out.bias


def padded_batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    torch.manual_seed(1)
    lengths = torch.tensor([7, 4])
    x = torch.randn(2, 7, D_MODEL)
    return x, lengths, lengths_to_mask(lengths, 7).unsqueeze(1)


def test_fused_matches_reference_padded(attention: MultiHeadAttention) -> None:
    x, lengths, mask = padded_batch()

    fused, probs = attention(x, x, x, mask)
    expected = reference_attention(attention, x, mask)

    assert probs is None
    torch.testing.assert_close(fused, expected, rtol=1e-5, atol=1e-5)


def test_weights_path_matches_fused(attention: MultiHeadAttention) -> None:
    x, _, mask = padded_batch()

    fused, _ = attention(x, x, x, mask)
    explicit, probs = attention(x, x, x, mask, need_weights=True)

    torch.testing.assert_close(explicit, fused, rtol=1e-5, atol=1e-5)
    assert probs.shape == (2, HEADS, 7, 7)


def test_fused_matches_reference_causal(attention: MultiHeadAttention) -> None:
    x, lengths, _ = padded_batch()
    mask = lengths_to_mask(lengths, 7).unsqueeze(1) & causal_mask(7)

    fused, _ = attention(x, x, x, mask)
    expected = reference_attention(attention, x, mask)

    torch.testing.assert_close(fused, expected, rtol=1e-5, atol=1e-5)


def test_probs_masked_and_normalised(attention: MultiHeadAttention) -> None:
    x, _, mask = padded_batch()

    _, probs = attention(x, x, x, mask, need_weights=True)

    torch.testing.assert_close(probs.sum(dim=-1), torch.ones(2, HEADS, 7))
    assert torch.all(probs[1, :, :, 4:] == 0)


def test_padded_utterance_equals_alone(attention: MultiHeadAttention) -> None:
    x, _, mask = padded_batch()
    short = x[1:, :4]

    batched, _ = attention(x, x, x, mask)
    alone, _ = attention(short, short, short, torch.ones(1, 1, 4, dtype=torch.bool))

    torch.testing.assert_close(batched[1, :4], alone[0], rtol=1e-5, atol=1e-5)


def test_given_probs_reproduce_output(attention: MultiHeadAttention) -> None:
    x, _, mask = padded_batch()
    computed, probs = attention(x, x, x, mask, need_weights=True)

    reused, returned = attention(x, x, x, attn_probs=probs, need_weights=True)

    torch.testing.assert_close(reused, computed, rtol=1e-5, atol=1e-5)
    assert returned is probs


def test_given_identity_probs_skip_softmax(attention: MultiHeadAttention) -> None:
    # Identity probabilities copy each frame's value: output = W_o (W_v x + b_v) + b_o. A second
    # softmax would turn the identity into a near-uniform mix and break this equality.
    x, _, _ = padded_batch()
    identity = torch.eye(7).expand(2, HEADS, 7, 7)

    output, _ = attention(x, x, x, attn_probs=identity)
    expected = attention.linear_out(attention.linear_v(x))

    torch.testing.assert_close(output, expected, rtol=1e-5, atol=1e-5)


def test_value_only_uses_given_probs() -> None:
    torch.manual_seed(2)
    teacher = MultiHeadAttention(D_MODEL, HEADS).eval()
    student = MultiHeadAttention(D_MODEL, HEADS, query_key=False).eval()
    student.linear_v.load_state_dict(teacher.linear_v.state_dict())
    student.linear_out.load_state_dict(teacher.linear_out.state_dict())
    x, _, mask = padded_batch()

    expected, probs = teacher(x, x, x, mask, need_weights=True)
    output, _ = student(x, x, x, attn_probs=probs)

    torch.testing.assert_close(output, expected, rtol=1e-5, atol=1e-5)


def test_value_only_has_no_query_key() -> None:
    student = MultiHeadAttention(D_MODEL, HEADS, query_key=False)

    names = {name for name, _ in student.named_parameters()}

    assert names == {"linear_v.weight", "linear_v.bias", "linear_out.weight", "linear_out.bias"}


def test_value_only_without_probs_raises() -> None:
    student = MultiHeadAttention(D_MODEL, HEADS, query_key=False)
    x = torch.randn(1, 3, D_MODEL)

    with pytest.raises(ValueError, match="attn_probs"):
        student(x, x, x)


def test_given_probs_wrong_shape_raises(attention: MultiHeadAttention) -> None:
    x = torch.randn(1, 3, D_MODEL)

    with pytest.raises(ValueError, match="attn_probs has shape"):
        attention(x, x, x, attn_probs=torch.ones(1, 1, 3, 3))


@pytest.mark.parametrize("need_weights", [False, True])
def test_fully_masked_row_finite(attention: MultiHeadAttention, need_weights: bool) -> None:
    x = torch.randn(2, 5, D_MODEL)
    mask = lengths_to_mask(torch.tensor([5, 0]), 5).unsqueeze(1)

    output, _ = attention(x, x, x, mask, need_weights=need_weights)

    assert torch.isfinite(output).all()
    torch.testing.assert_close(output[1], attention.linear_out.bias.expand(5, D_MODEL))


def test_fully_masked_row_zero_probs(attention: MultiHeadAttention) -> None:
    x = torch.randn(1, 3, D_MODEL)
    mask = torch.tensor([[[True, False, False], [False, False, False], [True, True, True]]])

    _, probs = attention(x, x, x, mask, need_weights=True)

    assert torch.all(probs[0, :, 1] == 0)


def test_heads_must_divide_width() -> None:
    with pytest.raises(ValueError, match="divisible"):
        MultiHeadAttention(10, 4)
