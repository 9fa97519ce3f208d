"""Tests of the HuBERT students: reuse, padding, masking, frame counts, sizes, teacher init."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch.nn.utils import parametrize

from asr.bin import student_params
from asr.models.hubert_teacher import HubertTeacher, hubert_base_config
from asr.models.student import SSLStudent
from asr.models.student_config import StudentConfig, load_student_config
from asr.models.wav_frontend import ValidChannelNorm, conv_min_samples, conv_output_length

HUBERT_LAYOUT = [(10, 5), (3, 2), (3, 2), (3, 2), (3, 2), (2, 2), (2, 2)]
ARMHUBERT_LAYOUT = [(10, 5), (1, 1), (3, 2), (3, 2), (3, 2), (3, 2), (1, 1), (2, 2), (2, 2)]


def tiny_config(**overrides: object) -> StudentConfig:
    """D 48, 4 heads, 4 layers with reuse in layers 2 and 4, ARMHuBERT conv kernels/strides."""
    values: dict[str, object] = {
        "name": "tiny",
        "conv_layers": [(8, 10, 5), (16, 1, 1)] + [(16, 3, 2)] * 4 + [(48, 1, 1)]
        + [(48, 2, 2)] * 2,
        "embed_dim": 48,
        "ffn_dim": 96,
        "num_layers": 4,
        "num_heads": 4,
        "reuse": [False, True, False, True],
        "pos_conv_kernel": 16,
        "pos_conv_groups": 4,
        "head_dim": 24,
        "heads": [(2, 2), (4, 4)],
    }
    values.update(overrides)
    return StudentConfig(**values)


def tiny_teacher() -> HubertTeacher:
    """HuBERT layout with 16 channels, D 48, 2 post-LN layers."""
    config = hubert_base_config()
    config.update(
        extractor_conv_layer_config=[(16, k, s) for k, s in HUBERT_LAYOUT],
        encoder_embed_dim=48,
        encoder_pos_conv_kernel=16,
        encoder_pos_conv_groups=4,
        encoder_num_layers=2,
        encoder_num_heads=4,
        encoder_ff_interm_features=96,
    )
    return HubertTeacher(config).eval()


def student_like_teacher(**overrides: object) -> SSLStudent:
    values: dict[str, object] = {
        "conv_layers": [(16, k, s) for k, s in HUBERT_LAYOUT],
        "num_layers": 2,
        "reuse": [False, False],
        "heads": [(2, 2)],
    }
    values.update(overrides)
    return SSLStudent(tiny_config(**values)).eval()


def manual_reuse_layer(
    student: SSLStudent, hidden: list[torch.Tensor], key_valid: torch.Tensor, corrupt: str = ""
) -> torch.Tensor:
    """Layer 2 of `student` computed by hand from layer 1's attention probabilities."""
    computing = student.layers[0].self_attn
    reusing = student.layers[1]
    batch, time, dim = hidden[0].shape
    heads = computing.heads

    def split(x: torch.Tensor) -> torch.Tensor:
        return x.view(batch, time, heads, dim // heads).transpose(1, 2)

    q = split(hidden[0] @ computing.linear_q.weight.T + computing.linear_q.bias)
    k = split(hidden[0] @ computing.linear_k.weight.T + computing.linear_k.bias)
    scores = q @ k.transpose(-2, -1) / math.sqrt(dim // heads)
    scores = scores.masked_fill(~key_valid[:, None, None, :], float("-inf"))
    probs = torch.softmax(scores, dim=-1)
    if corrupt == "second_softmax":
        probs = torch.softmax(probs, dim=-1)
    elif corrupt == "swap_batch":
        probs = probs.flip(0)
    elif corrupt == "swap_heads":
        probs = probs.flip(1)

    attn = reusing.self_attn
    x = hidden[1]
    v = split(x @ attn.linear_v.weight.T + attn.linear_v.bias)
    context = (probs @ v).transpose(1, 2).reshape(batch, time, dim)
    attended = context @ attn.linear_out.weight.T + attn.linear_out.bias

    y = reusing.norm1(x + attended)
    ffn = reusing.feed_forward
    y = reusing.norm2(y + ffn.w_2(F.gelu(ffn.w_1(y))))
    return y


@pytest.fixture(scope="module")
def two_head_run() -> tuple[SSLStudent, list[torch.Tensor], torch.Tensor]:
    torch.manual_seed(0)
    student = SSLStudent(tiny_config(num_heads=2)).eval()
    lengths = torch.tensor([8000, 5600])
    waveforms = torch.randn(2, 8000)
    waveforms[1, 5600:] = 0.0

    with torch.no_grad():
        out = student(waveforms, lengths)
    return student, out.hidden_states, out.padding_mask


def test_reuse_layer_matches_manual(two_head_run) -> None:
    student, hidden, valid = two_head_run

    with torch.no_grad():
        expected = manual_reuse_layer(student, hidden, valid)

    torch.testing.assert_close(hidden[2], expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("corrupt", ["second_softmax", "swap_batch", "swap_heads"])
def test_reuse_manual_detects_corruption(two_head_run, corrupt: str) -> None:
    student, hidden, valid = two_head_run

    with torch.no_grad():
        wrong = manual_reuse_layer(student, hidden, valid, corrupt)

    assert not torch.allclose(hidden[2], wrong, atol=1e-4)


def test_reuse_layer_has_no_query_key() -> None:
    student = SSLStudent(tiny_config())

    assert student.layers[1].self_attn.linear_q is None


@pytest.mark.parametrize(
    ("reuse", "expected"),
    [
        ([False, True, False, True], [True, False, True, False]),
        ([False, True, True, False], [True, True, False, False]),
        ([False, False, False, False], [False, False, False, False]),
    ],
)
def test_need_weights_only_before_reuse(reuse: list[bool], expected: list[bool]) -> None:
    student = SSLStudent(tiny_config(reuse=reuse))

    assert student.need_weights == expected


def test_padded_batch_matches_single() -> None:
    torch.manual_seed(1)
    student = SSLStudent(tiny_config()).eval()
    short = torch.randn(5000)
    batch = torch.zeros(2, 8000)
    batch[0] = torch.randn(8000)
    batch[1, :5000] = short

    with torch.no_grad():
        padded = student(batch, torch.tensor([8000, 5000]))
        alone = student(short.unsqueeze(0))
    frames = alone.hidden_states[-1].size(1)

    torch.testing.assert_close(
        padded.predictions[-1][1, :frames], alone.predictions[-1][0], atol=1e-5, rtol=1e-5
    )


def test_padded_batch_lengths() -> None:
    student = SSLStudent(tiny_config()).eval()

    with torch.no_grad():
        out = student(torch.randn(2, 8000), torch.tensor([8000, 5000]))

    assert out.lengths.tolist() == [24, 15]


def test_padding_mask_marks_valid_frames() -> None:
    student = SSLStudent(tiny_config()).eval()

    with torch.no_grad():
        out = student(torch.randn(2, 8000), torch.tensor([8000, 5000]))

    assert out.padding_mask.sum(dim=1).tolist() == [24, 15]


def test_output_counts() -> None:
    student = SSLStudent(tiny_config()).eval()

    with torch.no_grad():
        out = student(torch.randn(1, 4000))

    assert (len(out.hidden_states), len(out.predictions)) == (5, 2)


def test_prediction_width() -> None:
    student = SSLStudent(tiny_config()).eval()

    with torch.no_grad():
        out = student(torch.randn(1, 4000))

    assert out.predictions[0].shape == (1, 12, 24)


def test_first_layer_reuse_rejected() -> None:
    with pytest.raises(ValueError, match="'tiny'.*first layer must compute its attention map"):
        tiny_config(reuse=[True, False, True, False])


def test_reuse_length_mismatch_rejected() -> None:
    with pytest.raises(ValueError, match="3 flags but num_layers is 4"):
        tiny_config(reuse=[False, True, False])


@pytest.mark.parametrize("student_layer", [0, 5])
def test_head_layer_out_of_range_rejected(student_layer: int) -> None:
    with pytest.raises(ValueError, match=f"student layer {student_layer}, outside 1..4"):
        tiny_config(heads=[(student_layer, 1)])


@pytest.mark.parametrize(
    ("name", "target"),
    [("armhubert", 26.45e6), ("armhubert_s", 22.39e6), ("maskhubert", 26.64e6)],
)
def test_preset_size_within_one_percent(name: str, target: float) -> None:
    counts = student_params.student_parameter_breakdown(student_params.build_on_meta(name))

    total = sum(counts.values())

    assert abs(total - target) / target < 0.01


def test_distilhubert_size_without_heads() -> None:
    model = student_params.build_on_meta("distilhubert")
    counts = student_params.student_parameter_breakdown(model)

    without_heads = sum(counts.values()) - counts["heads"]

    assert abs(without_heads - 23.49e6) / 23.49e6 < 0.02


def test_breakdown_sums_to_total() -> None:
    model = student_params.build_on_meta("armhubert")

    counts = student_params.student_parameter_breakdown(model)

    assert sum(counts.values()) == sum(p.numel() for p in model.parameters())


def test_armhubert_query_key_hand_computed() -> None:
    counts = student_params.student_parameter_breakdown(student_params.build_on_meta("armhubert"))

    # Only the 6 computing layers hold Linear(480, 480) query and key projections.
    assert counts["attention_qk"] == 6 * 2 * (480 * 480 + 480)


def test_params_cli_prints_paper_diff(capsys: pytest.CaptureFixture[str]) -> None:
    assert student_params.main(["distilhubert"]) == 0

    assert "23.490M (without heads) | +0.01%" in capsys.readouterr().out


def test_one_second_gives_49_frames() -> None:
    student = SSLStudent(tiny_config())

    assert student.num_frames(16000) == 49


def test_one_second_tensor_frames() -> None:
    student = SSLStudent(tiny_config())

    assert student.num_frames(torch.tensor([16000, 399])).tolist() == [49, 0]


def test_frames_match_teacher() -> None:
    teacher = tiny_teacher()
    student = student_like_teacher()

    assert student.num_frames(16000) == teacher.num_frames(16000)


def test_teacher_front_end_gives_49_frames() -> None:
    conv = [(16, k, s) for k, s in HUBERT_LAYOUT]

    assert conv_output_length(16000, conv) == 49


def test_min_samples_is_receptive_field() -> None:
    assert SSLStudent(tiny_config()).min_samples == 400


def test_min_samples_gives_one_frame() -> None:
    student = SSLStudent(tiny_config()).eval()

    with torch.no_grad():
        out = student(torch.randn(1, student.min_samples))

    assert out.hidden_states[-1].size(1) == 1


def test_below_min_samples_gives_zero_frames() -> None:
    layout = [(1, k, s) for k, s in ARMHUBERT_LAYOUT]

    assert conv_output_length(conv_min_samples(layout) - 1, layout) == 0


def test_below_min_samples_rejected() -> None:
    student = SSLStudent(tiny_config())

    with pytest.raises(ValueError, match="399 samples, fewer than the 400"):
        student(torch.randn(1, 399))


def test_frame_mask_inserts_mask_embedding() -> None:
    torch.manual_seed(2)
    student = SSLStudent(tiny_config()).eval()
    captured: list[torch.Tensor] = []
    student.pos_conv.register_forward_pre_hook(lambda _, args: captured.append(args[0]))
    frame_mask = torch.zeros(1, 24, dtype=torch.bool)
    frame_mask[0, 3:13] = True

    with torch.no_grad():
        student(torch.randn(1, 8000), frame_mask=frame_mask)

    torch.testing.assert_close(captured[0][0, 3:13], student.mask_emb.expand(10, -1))


def test_frame_mask_keeps_unmasked_frames() -> None:
    torch.manual_seed(3)
    student = SSLStudent(tiny_config()).eval()
    captured: list[torch.Tensor] = []
    student.pos_conv.register_forward_pre_hook(lambda _, args: captured.append(args[0]))
    frame_mask = torch.zeros(1, 24, dtype=torch.bool)
    frame_mask[0, 3:13] = True
    waveform = torch.randn(1, 8000)

    with torch.no_grad():
        student(waveform, frame_mask=frame_mask)
        student(waveform)

    torch.testing.assert_close(captured[0][0, ~frame_mask[0]], captured[1][0, ~frame_mask[0]])


def test_frame_mask_wrong_shape_rejected() -> None:
    student = SSLStudent(tiny_config())

    with pytest.raises(ValueError, match=r"\(B, T'\) = \(1, 24\)"):
        student(torch.randn(1, 8000), frame_mask=torch.zeros(1, 23, dtype=torch.bool))


def test_valid_channel_norm_matches_group_norm() -> None:
    torch.manual_seed(4)
    norm = ValidChannelNorm(3)
    torch.nn.init.normal_(norm.weight)
    torch.nn.init.normal_(norm.bias)
    x = torch.randn(2, 3, 50)

    torch.testing.assert_close(norm(x, torch.ones(2, 1, 50)), norm(x), atol=1e-5, rtol=1e-5)


def test_init_copies_matching_layer() -> None:
    teacher = tiny_teacher()
    student = SSLStudent(tiny_config(conv_layers=[(16, k, s) for k, s in HUBERT_LAYOUT]))

    student.init_from_teacher(teacher)

    torch.testing.assert_close(
        student.layers[1].feed_forward.w_1.weight,
        teacher.model.encoder.transformer.layers[1].feed_forward.intermediate_dense.weight,
    )


def test_init_reports_copied_names() -> None:
    teacher = tiny_teacher()
    student = SSLStudent(tiny_config(conv_layers=[(16, k, s) for k, s in HUBERT_LAYOUT]))

    copied = set(student.init_from_teacher(teacher))

    expected = {
        "frontend.conv_layers.0.conv.weight",
        "frontend.conv_layers.0.norm.bias",
        "feature_projection.weight",
        "mask_emb",
        "pos_conv.conv.parametrizations.weight.original0",
        "layers.0.self_attn.linear_q.weight",
        "layers.1.self_attn.linear_v.bias",
        "layers.1.norm2.weight",
    }
    assert expected <= copied


def test_init_skips_layers_teacher_lacks() -> None:
    teacher = tiny_teacher()
    student = SSLStudent(tiny_config(conv_layers=[(16, k, s) for k, s in HUBERT_LAYOUT]))

    copied = student.init_from_teacher(teacher)

    assert not [name for name in copied if name.startswith(("layers.2.", "layers.3.", "heads."))]


def test_init_skips_other_conv_layout() -> None:
    teacher = tiny_teacher()
    student = SSLStudent(tiny_config())

    copied = student.init_from_teacher(teacher)

    assert not [name for name in copied if name.startswith(("frontend.", "feature_"))]


def test_init_skips_other_width() -> None:
    teacher = tiny_teacher()
    student = SSLStudent(tiny_config(embed_dim=32, ffn_dim=64, pos_conv_groups=4))

    copied = student.init_from_teacher(teacher)

    assert not [name for name in copied if name.startswith(("layers.", "pos_conv.", "mask_emb"))]


def test_init_from_teacher_reproduces_teacher() -> None:
    torch.manual_seed(5)
    teacher = tiny_teacher()
    student = student_like_teacher()
    student.init_from_teacher(teacher)
    waveform = torch.randn(1, 6000)
    frame_mask = torch.zeros(1, 18, dtype=torch.bool)
    frame_mask[0, 2:12] = True

    with torch.no_grad():
        expected = teacher(waveform, frame_mask=frame_mask).layers[-1]
        got = student(waveform, frame_mask=frame_mask).hidden_states[-1]

    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_init_from_folded_weight_norm() -> None:
    torch.manual_seed(6)
    teacher = tiny_teacher()
    teacher_pos = teacher.model.encoder.transformer.pos_conv_embed
    parametrize.remove_parametrizations(teacher_pos.conv, "weight")
    student = student_like_teacher()
    x = torch.randn(1, 20, 48)

    student.init_from_teacher(teacher)

    with torch.no_grad():
        torch.testing.assert_close(student.pos_conv(x), teacher_pos(x), atol=1e-5, rtol=1e-5)


def test_load_preset_reuse_pattern() -> None:
    config = load_student_config("armhubert")

    assert config.reuse == [index % 2 == 1 for index in range(12)]


def test_config_dict_round_trip() -> None:
    config = load_student_config("distilhubert")

    assert StudentConfig.from_dict(config.to_dict()) == config


def test_unknown_yaml_key_names_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        "name: bad\nconv_layers: [[8, 10, 5]]\nembed_dim: 48\nffn_dim: 96\nnum_layers: 1\n"
        "reuse: [false]\nheads: [[1, 1]]\nnum_head: 4\n",
        encoding="utf-8",
    )

    with pytest.raises(ValueError, match=r"bad\.yaml: unknown key\(s\) \['num_head'\]"):
        load_student_config(path)
