"""Tests of the BRST model: reuse schedule, adapters, losses, padding and configs."""

from __future__ import annotations

import math

import pytest
import torch

from asr.models.adapter import Adapter
from asr.models.asr_model import ASRModel, add_sos_eos
from asr.models.config import (
    MODEL_CONF_DIR,
    AdapterConfig,
    DecoderConfig,
    EncoderConfig,
    ModelConfig,
    load_model_config,
)
from asr.models.ctc import CTCHead
from asr.models.label_smoothing import LabelSmoothingLoss
from asr.models.reuse import reuse_schedule
from asr.models.subsampling import Conv2dSubsampling4

VOCAB = 11


def tiny_config(
    adapter: AdapterConfig | None = None, reuse_order: str = "sequence"
) -> ModelConfig:
    return ModelConfig(
        vocab_size=VOCAB,
        input_dim=20,
        d_model=16,
        encoder=EncoderConfig(
            num_blocks=2, reuse=2, reuse_order=reuse_order, heads=2, ffn_dim=32, adapter=adapter
        ),
        decoder=DecoderConfig(num_blocks=1, reuse=2, heads=2, ffn_dim=32, adapter=adapter),
    )


def tiny_model(adapter: AdapterConfig | None = None, reuse_order: str = "sequence") -> ASRModel:
    torch.manual_seed(0)
    return ASRModel(tiny_config(adapter, reuse_order)).eval()


def tiny_batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    torch.manual_seed(1)
    feats = torch.randn(2, 50, 20)
    feat_lens = torch.tensor([50, 37])
    tokens = torch.tensor([[3, 4, 5, 6], [7, 8, -1, -1]])
    token_lens = torch.tensor([4, 2])
    return feats, feat_lens, tokens, token_lens


@pytest.mark.parametrize(
    ("order", "expected"),
    [
        ("sequence", (0, 0, 1, 1)),
        ("cycle", (0, 1, 0, 1)),
    ],
)
def test_schedule_two_blocks(order: str, expected: tuple[int, ...]) -> None:
    assert reuse_schedule(2, 2, order) == expected


def test_schedule_three_blocks_cycle() -> None:
    assert reuse_schedule(3, 2, "cycle") == (0, 1, 2, 0, 1, 2)


def test_schedule_single_block() -> None:
    assert reuse_schedule(1, 12, "sequence") == (0,) * 12


def test_schedule_unknown_order_raises() -> None:
    with pytest.raises(ValueError, match="reuse order"):
        reuse_schedule(2, 2, "random")


@pytest.mark.parametrize(
    ("order", "expected"),
    [
        ("sequence", [0, 0, 1, 1]),
        ("cycle", [0, 1, 0, 1]),
    ],
)
def test_encoder_runs_schedule(order: str, expected: list[int]) -> None:
    model = tiny_model(reuse_order=order)
    calls: list[int] = []
    for index, layer in enumerate(model.encoder.layers):
        layer.register_forward_hook(lambda *_, index=index: calls.append(index))
    feats, feat_lens, _, _ = tiny_batch()

    model.encode(feats, feat_lens)

    assert calls == expected


def test_encode_exports_dynamic_shapes() -> None:
    # The encoder must trace into one graph valid for any batch size and length; T >= 11 keeps
    # the subsampled length T' >= 2, because export specialises a dynamic dimension of size 1.
    model = tiny_model(AdapterConfig(bottleneck=4))
    feats, feat_lens, _, _ = tiny_batch()
    wrapper = EncodeCTC(model)
    dynamic_shapes = (
        {0: torch.export.Dim("batch"), 1: torch.export.Dim("time", min=11)},
        {0: torch.export.Dim("batch")},
    )
    program = torch.export.export(wrapper, (feats, feat_lens), dynamic_shapes=dynamic_shapes)
    other_feats = torch.randn(3, 81, 20)
    other_lens = torch.tensor([81, 60, 9])

    expected, expected_lens = wrapper(other_feats, other_lens)
    exported, exported_lens = program.module()(other_feats, other_lens)

    torch.testing.assert_close(exported, expected)
    assert exported_lens.tolist() == expected_lens.tolist()


class EncodeCTC(torch.nn.Module):
    """CMVN + encoder + CTC log-softmax, the graph that export traces."""

    def __init__(self, model: ASRModel) -> None:
        super().__init__()
        self.model = model

    def forward(
        self, feats: torch.Tensor, feat_lens: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        enc_out, enc_lens = self.model.encode(feats, feat_lens)
        return self.model.ctc_log_probs(enc_out), enc_lens


def test_model_attributes() -> None:
    model = tiny_model()

    assert (model.vocab_size, model.blank_id, model.sos_id, model.eos_id) == (VOCAB, 0, 2, 2)
    assert model.ignore_id == -1
    assert (model.subsampling_rate, model.right_context) == (4, 6)


def test_subsampling_lengths() -> None:
    lengths = torch.tensor([0, 6, 7, 10, 11, 37, 50])

    output = Conv2dSubsampling4.output_lengths(lengths)

    assert output.tolist() == [0, 0, 1, 1, 2, 8, 11]


def test_encode_shapes() -> None:
    model = tiny_model()
    feats, feat_lens, _, _ = tiny_batch()

    enc_out, enc_lens = model.encode(feats, feat_lens)

    assert enc_out.shape == (2, 11, 16)
    assert enc_lens.tolist() == [11, 8]


def test_encode_padded_equals_alone() -> None:
    model = tiny_model(AdapterConfig(bottleneck=4))
    feats, feat_lens, _, _ = tiny_batch()

    batched, _ = model.encode(feats, feat_lens)
    long_alone, _ = model.encode(feats[:1], feat_lens[:1])
    short_alone, short_lens = model.encode(feats[1:, :37], feat_lens[1:])

    torch.testing.assert_close(batched[0], long_alone[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(batched[1, :8], short_alone[0], rtol=1e-5, atol=1e-5)
    assert short_lens.tolist() == [8]


def test_decode_attention_padded_equals_alone() -> None:
    model = tiny_model()
    feats, feat_lens, _, _ = tiny_batch()
    enc_out, enc_lens = model.encode(feats, feat_lens)
    ys_in = torch.tensor([[2, 3, 4, 5], [2, 7, 2, 2]])
    ys_in_lens = torch.tensor([4, 2])

    batched = model.decode_attention(enc_out, enc_lens, ys_in, ys_in_lens)
    alone = model.decode_attention(enc_out[1:, :8], enc_lens[1:], ys_in[1:, :2], ys_in_lens[1:])

    torch.testing.assert_close(batched[1, :2], alone[0], rtol=1e-5, atol=1e-5)


def test_decode_attention_log_softmax() -> None:
    model = tiny_model()
    enc_out = torch.randn(3, 6, 16)

    log_probs = model.decode_attention(
        enc_out, torch.tensor([6, 4, 1]), torch.full((3, 5), 2), torch.tensor([5, 3, 1])
    )

    assert log_probs.shape == (3, 5, VOCAB)
    torch.testing.assert_close(log_probs.logsumexp(dim=-1), torch.zeros(3, 5))


def test_ctc_log_probs_normalised() -> None:
    model = tiny_model()

    log_probs = model.ctc_log_probs(torch.randn(2, 6, 16))

    assert log_probs.shape == (2, 6, VOCAB)
    torch.testing.assert_close(log_probs.logsumexp(dim=-1), torch.zeros(2, 6))


def test_forward_backward_finite() -> None:
    model = tiny_model(AdapterConfig(bottleneck=4)).train()
    feats, feat_lens, tokens, token_lens = tiny_batch()

    outputs = model(feats, feat_lens, tokens, token_lens)
    outputs["loss"].backward()

    assert set(outputs) == {"loss", "loss_ctc", "loss_att", "accuracy"}
    assert torch.isfinite(outputs["loss"])
    assert 0.0 <= outputs["accuracy"].item() <= 1.0
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_loss_combines_ctc_and_att() -> None:
    model = tiny_model()
    feats, feat_lens, tokens, token_lens = tiny_batch()

    outputs = model(feats, feat_lens, tokens, token_lens)
    expected = 0.3 * outputs["loss_ctc"] + 0.7 * outputs["loss_att"]

    torch.testing.assert_close(outputs["loss"], expected)


def test_ctc_loss_hand_computed() -> None:
    # Uniform posteriors over V=4 tokens, 2 frames, target [3]: the alignments 33, _3 and 3_
    # each have probability 1/16, so the loss is -log(3/16) per utterance.
    ctc = CTCHead(d_model=16, vocab_size=4)
    torch.nn.init.zeros_(ctc.proj.weight)
    torch.nn.init.zeros_(ctc.proj.bias)

    loss = ctc.loss(
        torch.randn(2, 2, 16),
        torch.tensor([2, 2]),
        torch.tensor([[3, -1], [3, -1]]),
        torch.tensor([1, 1]),
    )

    assert loss.item() == pytest.approx(-math.log(3 / 16), rel=1e-5)


def test_label_smoothing_hand_computed() -> None:
    # Uniform logits over V=4 with eps=0.1: q = (0.9, 0.1/3, 0.1/3, 0.1/3) and
    # KL(q || uniform) = sum q log q + log 4 per counted token.
    criterion = LabelSmoothingLoss(vocab_size=4, smoothing=0.1)
    targets = torch.tensor([[1, 2, -1], [3, -1, -1]])

    loss = criterion(torch.zeros(2, 3, 4), targets)

    per_token = 0.9 * math.log(0.9) + 0.1 * math.log(0.1 / 3) + math.log(4)
    assert loss.item() == pytest.approx(3 * per_token / 2, rel=1e-5)


def test_add_sos_eos_hand_computed() -> None:
    tokens = torch.tensor([[3, 4, 5], [6, -1, -1]])

    ys_in, ys_out = add_sos_eos(tokens, torch.tensor([3, 1]), sos_eos_id=2, ignore_id=-1)

    assert ys_in.tolist() == [[2, 3, 4, 5], [2, 6, 2, 2]]
    assert ys_out.tolist() == [[3, 4, 5, 2], [6, 2, -1, -1]]


@pytest.mark.parametrize("placement", ["block_output", "ffn"])
def test_fresh_adapters_are_identity(placement: str) -> None:
    plain = tiny_model()
    adapted = tiny_model(AdapterConfig(bottleneck=4, placement=placement))
    missing, unexpected = adapted.load_state_dict(plain.state_dict(), strict=False)
    feats, feat_lens, _, _ = tiny_batch()
    ys_in = torch.tensor([[2, 3, 4], [2, 7, 2]])
    ys_in_lens = torch.tensor([3, 2])

    plain_out, enc_lens = plain.encode(feats, feat_lens)
    adapted_out, _ = adapted.encode(feats, feat_lens)
    plain_dec = plain.decode_attention(plain_out, enc_lens, ys_in, ys_in_lens)
    adapted_dec = adapted.decode_attention(adapted_out, enc_lens, ys_in, ys_in_lens)

    assert unexpected == []
    assert all(".adapters." in name for name in missing)
    torch.testing.assert_close(adapted_out, plain_out)
    torch.testing.assert_close(adapted_dec, plain_dec)


def test_adapters_one_per_application() -> None:
    model = tiny_model(AdapterConfig(bottleneck=4))

    encoder_adapters = list(model.encoder.adapters)
    weights = [adapter.down.weight for adapter in encoder_adapters + list(model.decoder.adapters)]

    assert len(encoder_adapters) == 4
    assert len(model.decoder.adapters) == 2
    assert len({w.data_ptr() for w in weights}) == 6


def test_trained_adapter_changes_output() -> None:
    model = tiny_model(AdapterConfig(bottleneck=4))
    feats, feat_lens, _, _ = tiny_batch()
    before, _ = model.encode(feats, feat_lens)

    torch.nn.init.normal_(model.encoder.adapters[3].up.weight)
    after, _ = model.encode(feats, feat_lens)

    assert not torch.allclose(before, after)


def test_adapter_without_norm_identity() -> None:
    adapter = Adapter(8, 2, layer_norm=False)
    x = torch.randn(3, 5, 8)

    torch.testing.assert_close(adapter(x), x)


def test_cmvn_applied_first() -> None:
    model = tiny_model()
    feats, feat_lens, _, _ = tiny_batch()
    mean, istd = torch.randn(20), torch.rand(20) + 0.5

    expected, _ = model.encode((feats - mean) * istd, feat_lens)
    model.cmvn.set_stats(mean, istd)
    output, _ = model.encode(feats, feat_lens)

    torch.testing.assert_close(output, expected)


def test_cmvn_in_state_dict() -> None:
    state = tiny_model().state_dict()

    assert state["cmvn.mean"].shape == (20,)
    assert state["cmvn.istd"].shape == (20,)


def test_cmvn_wrong_shape_raises() -> None:
    model = tiny_model()

    with pytest.raises(ValueError, match="expected"):
        model.cmvn.set_stats(torch.zeros(80), torch.ones(80))


def test_config_unknown_key_raises() -> None:
    with pytest.raises(ValueError, match="unknown key"):
        ModelConfig.from_dict({"d_model": 256, "num_layers": 12})


def test_config_unknown_nested_key_raises() -> None:
    with pytest.raises(ValueError, match="'encoder.adapter'"):
        ModelConfig.from_dict({"encoder": {"adapter": {"size": 64}}})


def test_config_bad_order_raises() -> None:
    with pytest.raises(ValueError, match="reuse_order"):
        ModelConfig.from_dict({"encoder": {"reuse_order": "shuffle"}})


def test_config_heads_divide_width() -> None:
    with pytest.raises(ValueError, match="divisible"):
        ModelConfig(d_model=100, encoder=EncoderConfig(heads=8))


def test_config_bad_placement_raises() -> None:
    with pytest.raises(ValueError, match="placement"):
        AdapterConfig(placement="attention")


def test_config_dict_round_trip() -> None:
    config = tiny_config(AdapterConfig(bottleneck=4, placement="ffn"))

    assert ModelConfig.from_dict(config.to_dict()) == config


def test_model_requires_vocab_size() -> None:
    with pytest.raises(ValueError, match="vocab_size"):
        ASRModel(ModelConfig())


@pytest.mark.parametrize("name", sorted(p.stem for p in MODEL_CONF_DIR.glob("*.yaml")))
def test_yaml_configs_load(name: str) -> None:
    config = load_model_config(name)

    assert config.vocab_size is None


def test_yaml_configs_present() -> None:
    names = {p.stem for p in MODEL_CONF_DIR.glob("*.yaml")}

    assert {"brst", "brst_adm", "universal", "transformer", "mini"} <= names


def test_yaml_vocab_override() -> None:
    assert load_model_config("mini", vocab_size=400).vocab_size == 400


def test_yaml_missing_name_raises() -> None:
    with pytest.raises(FileNotFoundError, match="available"):
        load_model_config("no_such_model")


def test_subsampling_channels_shrink_front_end() -> None:
    from asr.models.subsampling import Conv2dSubsampling4

    narrow = Conv2dSubsampling4(80, 144, channels=64)
    assert narrow.conv[2].out_channels == 64
    assert narrow.out.in_features == 64 * 19
    out, lengths = narrow(torch.randn(2, 50, 80), torch.tensor([50, 37]))
    assert out.shape == (2, 11, 144)
    assert lengths.tolist() == [11, 8]
