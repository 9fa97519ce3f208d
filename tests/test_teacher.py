"""Tests of the HuBERT teacher and its loaders: our format, fairseq checkpoints, HF folders."""

from __future__ import annotations

import argparse
import re
import sys
import types
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from asr.bin import convert_teacher
from asr.models.hubert_teacher import HubertTeacher, hubert_base_config
from asr.models.teacher_checkpoint import (
    TEACHER_FORMAT,
    TeacherCheckpointError,
    load_teacher,
    parse_conv_layers,
    save_teacher,
)

# Tiny HuBERT: stride 5 * 2 * 2 = 20 samples, receptive field 30 samples.
TINY = {
    **hubert_base_config(),
    "extractor_conv_layer_config": [(32, 10, 5), (32, 3, 2), (32, 2, 2)],
    "encoder_embed_dim": 32,
    "encoder_pos_conv_kernel": 16,
    "encoder_pos_conv_groups": 4,
    "encoder_num_layers": 2,
    "encoder_num_heads": 4,
    "encoder_ff_interm_features": 64,
}

# The same architecture as fairseq HuBERT model options.
FAIRSEQ_MODEL_CFG = {
    "_name": "hubert",
    "extractor_mode": "default",
    "conv_feature_layers": "[(32,10,5)] + [(32,3,2)] + [(32,2,2)]",
    "conv_bias": False,
    "encoder_embed_dim": 32,
    "encoder_layers": 2,
    "encoder_attention_heads": 4,
    "encoder_ffn_embed_dim": 64,
    "layer_norm_first": False,
    "conv_pos": 16,
    "conv_pos_groups": 4,
    "activation_fn": "gelu",
    "dropout": 0.1,
}


@pytest.fixture
def teacher() -> HubertTeacher:
    torch.manual_seed(0)
    model = HubertTeacher(TINY).eval()
    # Non-trivial norms and biases, so that a wrongly mapped key changes the outputs.
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("bias") or "norm" in name:
                param.add_(0.1 * torch.randn_like(param))
    return model


@pytest.fixture
def batch() -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(1)
    return torch.randn(2, 800), torch.tensor([800, 500])


# Hand-written inverse of the loader's mapping: torchaudio name prefix -> fairseq HuBERT prefix.
TO_FAIRSEQ = [
    (r"feature_extractor\.conv_layers\.0\.layer_norm\.", "feature_extractor.conv_layers.0.2."),
    (r"feature_extractor\.conv_layers\.(\d+)\.conv\.", r"feature_extractor.conv_layers.\1.0."),
    (r"encoder\.feature_projection\.layer_norm\.", "layer_norm."),
    (r"encoder\.feature_projection\.projection\.", "post_extract_proj."),
    (r"encoder\.transformer\.pos_conv_embed\.conv\.parametrizations\.weight\.original0", "encoder.pos_conv.0.weight_g"),
    (r"encoder\.transformer\.pos_conv_embed\.conv\.parametrizations\.weight\.original1", "encoder.pos_conv.0.weight_v"),
    (r"encoder\.transformer\.pos_conv_embed\.conv\.", "encoder.pos_conv.0."),
    (r"encoder\.transformer\.layer_norm\.", "encoder.layer_norm."),
    (r"encoder\.transformer\.layers\.(\d+)\.attention\.", r"encoder.layers.\1.self_attn."),
    (r"encoder\.transformer\.layers\.(\d+)\.layer_norm\.", r"encoder.layers.\1.self_attn_layer_norm."),
    (r"encoder\.transformer\.layers\.(\d+)\.feed_forward\.intermediate_dense\.", r"encoder.layers.\1.fc1."),
    (r"encoder\.transformer\.layers\.(\d+)\.feed_forward\.output_dense\.", r"encoder.layers.\1.fc2."),
    (r"encoder\.transformer\.layers\.(\d+)\.final_layer_norm\.", r"encoder.layers.\1.final_layer_norm."),
]


# In fairseq's "layer_norm" extractor mode every conv has a LayerNorm, inside a Sequential.
TO_FAIRSEQ_LAYER_NORM = [(r"feature_extractor\.conv_layers\.(\d+)\.layer_norm\.", r"feature_extractor.conv_layers.\1.2.1.")]


def to_fairseq_name(name: str, layer_norm_mode: bool) -> str:
    rules = TO_FAIRSEQ_LAYER_NORM + TO_FAIRSEQ if layer_norm_mode else TO_FAIRSEQ
    for pattern, replacement in rules:
        if re.match(pattern, name):
            return re.sub(pattern, replacement, name, count=1)
    raise AssertionError(f"no fairseq name for {name}")


def fairseq_state(teacher: HubertTeacher) -> dict[str, torch.Tensor]:
    """The teacher's weights under fairseq names, plus HuBERT's pretraining heads and mask_emb."""
    layer_norm_mode = teacher.config["extractor_mode"] == "layer_norm"
    state = {to_fairseq_name(k, layer_norm_mode): v.clone() for k, v in teacher.model.state_dict().items()}
    state["mask_emb"] = teacher.mask_emb.detach().clone()
    state["label_embs_concat"] = torch.randn(10, 16)
    state["final_proj.weight"] = torch.randn(16, 32)
    state["final_proj.bias"] = torch.zeros(16)
    return state


def save_fairseq(path: Path, state: dict[str, torch.Tensor], model_cfg: dict, as_args: bool = False) -> Path:
    """Write a fairseq-style checkpoint: omegaconf cfg (fairseq >= 0.10) or argparse args (older)."""
    if as_args:
        checkpoint = {"args": argparse.Namespace(**model_cfg), "cfg": None, "model": state}
    else:
        cfg = OmegaConf.create({"model": model_cfg, "task": {"_name": "hubert_pretraining", "labels": ["km"]}})
        checkpoint = {"args": None, "cfg": cfg, "model": state, "optimizer_history": []}
    torch.save(checkpoint, path)
    return path


def layers_of(model: HubertTeacher, batch: tuple[torch.Tensor, torch.Tensor]) -> list[torch.Tensor]:
    with torch.no_grad():
        return model(*batch).layers


# --- teacher ---------------------------------------------------------------------------------


def test_num_frames_int(teacher: HubertTeacher) -> None:
    # (400 - 10) // 5 + 1 = 79; (79 - 3) // 2 + 1 = 39; (39 - 2) // 2 + 1 = 19.
    assert teacher.num_frames(400) == 19


def test_num_frames_tensor(teacher: HubertTeacher) -> None:
    # 30 samples is the receptive field (1 frame). 5 samples give none (clamped at 0).
    frames = teacher.num_frames(torch.tensor([400, 30, 29, 5]))
    assert frames.tolist() == [19, 1, 0, 0]


def test_num_frames_base() -> None:
    # HuBERT Base's front end: one second of 16 kHz audio gives 49 frames of 20 ms. One
    # Transformer layer keeps the model small, and the frame count does not depend on it.
    assert HubertTeacher({**hubert_base_config(), "encoder_num_layers": 1}).num_frames(16000) == 49


def test_forward_matches_torchaudio(teacher: HubertTeacher, batch) -> None:
    # Full-length utterances: no padding, so the padding-aware norm is torchaudio's own.
    waveforms = batch[0]
    lengths = torch.full((waveforms.shape[0],), waveforms.shape[1])
    reference, reference_lengths = teacher.model.extract_features(waveforms, lengths)
    output = teacher(waveforms, lengths)
    assert len(output.layers) == 2
    for ours, theirs in zip(output.layers, reference):
        torch.testing.assert_close(ours, theirs, atol=1e-6, rtol=1e-5)
    assert output.lengths.tolist() == reference_lengths.tolist()


def test_forward_padded_equals_alone(teacher: HubertTeacher, batch) -> None:
    waveforms, lengths = batch
    short = int(lengths.argmin())
    alone = teacher(waveforms[short : short + 1, : lengths[short]], lengths[short : short + 1])
    padded = teacher(waveforms, lengths)
    frames = int(alone.lengths[0])
    torch.testing.assert_close(padded.layers[-1][short, :frames], alone.layers[-1][0], atol=1e-5, rtol=1e-4)


def test_forward_no_lengths(teacher: HubertTeacher, batch) -> None:
    output = teacher(batch[0])
    assert output.lengths is None


def test_frame_mask_all_false_is_unmasked(teacher: HubertTeacher, batch) -> None:
    frames = teacher.num_frames(batch[0].shape[1])
    masked = teacher(*batch, frame_mask=torch.zeros(2, frames, dtype=torch.bool)).layers
    plain = teacher(*batch).layers
    torch.testing.assert_close(masked[-1], plain[-1], atol=0.0, rtol=0.0)


def test_frame_mask_changes_output(teacher: HubertTeacher, batch) -> None:
    frames = teacher.num_frames(batch[0].shape[1])
    frame_mask = torch.zeros(2, frames, dtype=torch.bool)
    frame_mask[:, 5:15] = True
    masked = teacher(*batch, frame_mask=frame_mask).layers
    plain = teacher(*batch).layers
    assert not torch.allclose(masked[0][0, 5:15], plain[0][0, 5:15])


def test_frame_mask_inserts_mask_emb(teacher: HubertTeacher, batch) -> None:
    # Two all-masked utterances of equal length see the same input, whatever the audio.
    frames = teacher.num_frames(batch[0].shape[1])
    output = teacher(batch[0], frame_mask=torch.ones(2, frames, dtype=torch.bool))
    torch.testing.assert_close(output.layers[-1][0], output.layers[-1][1])


def test_frame_mask_bad_shape(teacher: HubertTeacher, batch) -> None:
    with pytest.raises(ValueError, match="frame_mask"):
        teacher(*batch, frame_mask=torch.zeros(2, 3, dtype=torch.bool))


def test_config_unknown_key() -> None:
    with pytest.raises(ValueError, match="encoder_depth"):
        HubertTeacher({**TINY, "encoder_depth": 3})


# --- our format ------------------------------------------------------------------------------


def test_save_weights_only(teacher: HubertTeacher, tmp_path: Path) -> None:
    save_teacher(teacher, tmp_path / "t.pt")
    checkpoint = torch.load(tmp_path / "t.pt", weights_only=True)
    assert checkpoint["format"] == TEACHER_FORMAT


def test_round_trip_outputs(teacher: HubertTeacher, batch, tmp_path: Path) -> None:
    save_teacher(teacher, tmp_path / "t.pt")
    loaded = load_teacher(tmp_path / "t.pt")
    for ours, theirs in zip(layers_of(loaded, batch), layers_of(teacher, batch)):
        torch.testing.assert_close(ours, theirs, atol=0.0, rtol=0.0)


def test_round_trip_mask_emb(teacher: HubertTeacher, tmp_path: Path) -> None:
    save_teacher(teacher, tmp_path / "t.pt")
    assert torch.equal(load_teacher(tmp_path / "t.pt").mask_emb, teacher.mask_emb)


def test_round_trip_config(teacher: HubertTeacher, tmp_path: Path) -> None:
    save_teacher(teacher, tmp_path / "t.pt")
    assert load_teacher(tmp_path / "t.pt").config == teacher.config


def test_ours_missing_key(teacher: HubertTeacher, tmp_path: Path) -> None:
    save_teacher(teacher, tmp_path / "t.pt")
    checkpoint = torch.load(tmp_path / "t.pt", weights_only=True)
    del checkpoint["state_dict"]["encoder.transformer.layers.1.attention.q_proj.weight"]
    torch.save(checkpoint, tmp_path / "t.pt")
    with pytest.raises(TeacherCheckpointError, match=r"missing keys 1: \[encoder\.transformer\.layers\.1"):
        load_teacher(tmp_path / "t.pt")


# --- fairseq ---------------------------------------------------------------------------------


def test_parse_conv_layers_base() -> None:
    layers = parse_conv_layers("[(512,10,5)] + [(512,3,2)] * 4 + [(512,2,2)] * 2")
    assert layers == [(512, 10, 5)] + [(512, 3, 2)] * 4 + [(512, 2, 2)] * 2


def test_parse_conv_layers_rejects_code() -> None:
    with pytest.raises(TeacherCheckpointError, match="conv_feature_layers"):
        parse_conv_layers("__import__('os').getcwd()")


def test_parse_conv_layers_rejects_huge() -> None:
    with pytest.raises(TeacherCheckpointError, match="at most 100 layers"):
        parse_conv_layers("[(512,3,2)] * 1000000000")


def test_fairseq_outputs(teacher: HubertTeacher, batch, tmp_path: Path) -> None:
    path = save_fairseq(tmp_path / "hubert.pt", fairseq_state(teacher), FAIRSEQ_MODEL_CFG)
    loaded = load_teacher(path)
    for ours, theirs in zip(layers_of(loaded, batch), layers_of(teacher, batch)):
        torch.testing.assert_close(ours, theirs, atol=1e-6, rtol=0.0)


def test_fairseq_mask_emb(teacher: HubertTeacher, tmp_path: Path) -> None:
    path = save_fairseq(tmp_path / "hubert.pt", fairseq_state(teacher), FAIRSEQ_MODEL_CFG)
    assert torch.equal(load_teacher(path).mask_emb, teacher.mask_emb)


def test_fairseq_config(teacher: HubertTeacher, tmp_path: Path) -> None:
    path = save_fairseq(tmp_path / "hubert.pt", fairseq_state(teacher), FAIRSEQ_MODEL_CFG)
    assert load_teacher(path).config == teacher.config


def test_fairseq_layer_norm_mode(batch, tmp_path: Path) -> None:
    # HuBERT Large's layout: LayerNorm in every conv, conv bias, pre-LayerNorm Transformer.
    options = {"extractor_mode": "layer_norm", "extractor_conv_bias": True, "encoder_layer_norm_first": True}
    torch.manual_seed(3)
    teacher = HubertTeacher({**TINY, **options}).eval()
    cfg = {**FAIRSEQ_MODEL_CFG, "extractor_mode": "layer_norm", "conv_bias": True, "layer_norm_first": True}
    path = save_fairseq(tmp_path / "hubert.pt", fairseq_state(teacher), cfg)
    loaded = load_teacher(path)
    for ours, theirs in zip(layers_of(loaded, batch), layers_of(teacher, batch)):
        torch.testing.assert_close(ours, theirs, atol=1e-6, rtol=0.0)


def test_fairseq_args_namespace(teacher: HubertTeacher, batch, tmp_path: Path) -> None:
    path = save_fairseq(tmp_path / "hubert.pt", fairseq_state(teacher), FAIRSEQ_MODEL_CFG, as_args=True)
    loaded = load_teacher(path)
    torch.testing.assert_close(layers_of(loaded, batch)[-1], layers_of(teacher, batch)[-1], atol=1e-6, rtol=0.0)


def test_fairseq_missing_key(teacher: HubertTeacher, tmp_path: Path) -> None:
    state = fairseq_state(teacher)
    del state["encoder.layers.1.fc1.weight"]
    path = save_fairseq(tmp_path / "hubert.pt", state, FAIRSEQ_MODEL_CFG)
    with pytest.raises(TeacherCheckpointError, match=r"missing keys 1: \[encoder\.transformer\.layers\.1\.feed"):
        load_teacher(path)


def test_fairseq_missing_mask_emb(teacher: HubertTeacher, tmp_path: Path) -> None:
    state = fairseq_state(teacher)
    del state["mask_emb"]
    path = save_fairseq(tmp_path / "hubert.pt", state, FAIRSEQ_MODEL_CFG)
    with pytest.raises(TeacherCheckpointError, match=r"missing keys 1: \[mask_emb\]"):
        load_teacher(path)


def test_fairseq_config_more_layers(teacher: HubertTeacher, tmp_path: Path) -> None:
    # The config declares 3 layers but the weights contain 2, so layer 2's 16 tensors are missing.
    path = save_fairseq(tmp_path / "hubert.pt", fairseq_state(teacher), {**FAIRSEQ_MODEL_CFG, "encoder_layers": 3})
    with pytest.raises(TeacherCheckpointError, match=r"missing keys 16: \[encoder\.transformer\.layers\.2\."):
        load_teacher(path)


def test_fairseq_config_fewer_layers(teacher: HubertTeacher, tmp_path: Path) -> None:
    path = save_fairseq(tmp_path / "hubert.pt", fairseq_state(teacher), {**FAIRSEQ_MODEL_CFG, "encoder_layers": 1})
    with pytest.raises(TeacherCheckpointError, match=r"unexpected keys 16: \[encoder\.transformer\.layers\.1\."):
        load_teacher(path)


def test_fairseq_wrong_ffn(teacher: HubertTeacher, tmp_path: Path) -> None:
    # fc1 weight, fc1 bias and fc2 weight of both layers depend on the FFN width.
    cfg = {**FAIRSEQ_MODEL_CFG, "encoder_ffn_embed_dim": 48}
    path = save_fairseq(tmp_path / "hubert.pt", fairseq_state(teacher), cfg)
    with pytest.raises(TeacherCheckpointError, match=r"shape mismatches 6: \[encoder\.transformer\.layers\.0\.feed"):
        load_teacher(path)


def test_fairseq_unknown_key(teacher: HubertTeacher, tmp_path: Path) -> None:
    state = {**fairseq_state(teacher), "encoder.layers.0.adapter.weight": torch.zeros(2)}
    path = save_fairseq(tmp_path / "hubert.pt", state, FAIRSEQ_MODEL_CFG)
    with pytest.raises(TeacherCheckpointError, match=r"unexpected keys 1: \[encoder\.layers\.0\.adapter\.weight\]"):
        load_teacher(path)


class Dictionary:
    """Stand-in for a fairseq class pickled in a checkpoint's task state."""

    def __init__(self) -> None:
        self.symbols = ["<s>", "km0"]


def save_with_fairseq_object(path: Path, teacher: HubertTeacher, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fairseq checkpoint whose task state pickles `fairseq.data.dictionary.Dictionary`."""
    with monkeypatch.context() as patch:
        for name in ("fairseq", "fairseq.data", "fairseq.data.dictionary"):
            patch.setitem(sys.modules, name, types.ModuleType(name))
        patch.setattr(Dictionary, "__module__", "fairseq.data.dictionary")
        patch.setattr(sys.modules["fairseq.data.dictionary"], "Dictionary", Dictionary, raising=False)
        cfg = OmegaConf.create({"model": FAIRSEQ_MODEL_CFG})
        checkpoint = {"cfg": cfg, "model": fairseq_state(teacher), "task_state": {"dictionaries": [Dictionary()]}}
        torch.save(checkpoint, path)
    return path


def test_fairseq_object_needs_trust(teacher: HubertTeacher, tmp_path: Path, monkeypatch) -> None:
    path = save_with_fairseq_object(tmp_path / "hubert.pt", teacher, monkeypatch)
    with pytest.raises(TeacherCheckpointError, match="fairseq.data.dictionary.Dictionary.*trust_checkpoint=True"):
        load_teacher(path)


def test_fairseq_object_trusted(teacher: HubertTeacher, batch, tmp_path: Path, monkeypatch) -> None:
    path = save_with_fairseq_object(tmp_path / "hubert.pt", teacher, monkeypatch)
    loaded = load_teacher(path, trust_checkpoint=True)
    torch.testing.assert_close(layers_of(loaded, batch)[-1], layers_of(teacher, batch)[-1], atol=1e-6, rtol=0.0)


def test_fairseq_fine_tuned_rejected(teacher: HubertTeacher, tmp_path: Path) -> None:
    state = {f"w2v_encoder.w2v_model.{k}": v for k, v in fairseq_state(teacher).items()}
    path = save_fairseq(tmp_path / "hubert.pt", state, FAIRSEQ_MODEL_CFG)
    with pytest.raises(TeacherCheckpointError, match="fine-tuned"):
        load_teacher(path)


def test_unknown_file_format(tmp_path: Path) -> None:
    torch.save({"weights": torch.zeros(1)}, tmp_path / "x.pt")
    with pytest.raises(TeacherCheckpointError, match="not a teacher checkpoint"):
        load_teacher(tmp_path / "x.pt")


# --- Hugging Face ----------------------------------------------------------------------------


def save_hf_model(folder: Path, **overrides) -> torch.nn.Module:
    """Save a tiny `transformers.HubertModel` (the TINY architecture) to `folder`."""
    transformers = pytest.importorskip("transformers")
    options = {
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "intermediate_size": 64,
        "conv_dim": (32, 32, 32),
        "conv_kernel": (10, 3, 2),
        "conv_stride": (5, 2, 2),
        "num_conv_pos_embeddings": 16,
        "num_conv_pos_embedding_groups": 4,
        "feat_extract_norm": "group",
        "conv_bias": False,
        "do_stable_layer_norm": False,
        "mask_time_prob": 0.05,
        **overrides,
    }
    torch.manual_seed(2)
    model = transformers.HubertModel(transformers.HubertConfig(**options)).eval()
    model.save_pretrained(folder)
    return model


@pytest.fixture
def hf_folder(tmp_path: Path) -> tuple[Path, torch.nn.Module]:
    return tmp_path / "hf", save_hf_model(tmp_path / "hf")


def test_hf_outputs(hf_folder, batch) -> None:
    folder, model = hf_folder
    waveforms = batch[0]
    with torch.no_grad():
        expected = model(waveforms, output_hidden_states=True).hidden_states
        layers = load_teacher(folder)(waveforms).layers
    assert len(layers) == len(expected) - 1
    for ours, theirs in zip(layers, expected[1:]):
        torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0.0)


def test_hf_mask_emb(hf_folder) -> None:
    folder, model = hf_folder
    assert torch.equal(load_teacher(folder).mask_emb, model.masked_spec_embed.detach())


def test_hf_frame_mask_matches(hf_folder, batch) -> None:
    # HF puts masked_spec_embed after the feature projection, where HuBERT puts mask_emb.
    folder, model = hf_folder
    waveforms = batch[0]
    teacher = load_teacher(folder)
    frame_mask = torch.zeros(2, teacher.num_frames(waveforms.shape[1]), dtype=torch.bool)
    frame_mask[0, 3:13] = True
    with torch.no_grad():
        expected = model(waveforms, mask_time_indices=frame_mask, output_hidden_states=True).hidden_states
        layers = teacher(waveforms, frame_mask=frame_mask).layers
    torch.testing.assert_close(layers[-1], expected[-1], atol=1e-5, rtol=0.0)


def test_hf_without_mask_emb(tmp_path: Path) -> None:
    save_hf_model(tmp_path / "hf", mask_time_prob=0.0, mask_feature_prob=0.0)
    with pytest.raises(TeacherCheckpointError, match="mask_time_prob"):
        load_teacher(tmp_path / "hf")


def test_hf_folder_without_config(tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    (tmp_path / "empty").mkdir()
    with pytest.raises(TeacherCheckpointError, match="config.json"):
        load_teacher(tmp_path / "empty")


# --- convert_teacher -------------------------------------------------------------------------


def test_convert_writes_plain_file(teacher: HubertTeacher, tmp_path: Path) -> None:
    src = save_fairseq(tmp_path / "hubert.pt", fairseq_state(teacher), FAIRSEQ_MODEL_CFG)
    assert convert_teacher.main([str(src), str(tmp_path / "out.pt")]) == 0
    assert torch.load(tmp_path / "out.pt", weights_only=True)["format"] == TEACHER_FORMAT


def test_convert_keeps_existing_output(teacher: HubertTeacher, tmp_path: Path) -> None:
    src = save_fairseq(tmp_path / "hubert.pt", fairseq_state(teacher), FAIRSEQ_MODEL_CFG)
    (tmp_path / "out.pt").write_bytes(b"keep")
    with pytest.raises(SystemExit):
        convert_teacher.main([str(src), str(tmp_path / "out.pt")])
    assert (tmp_path / "out.pt").read_bytes() == b"keep"


def test_load_rejects_non_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "notes.pt"
    path.write_text("not a checkpoint\n")
    with pytest.raises(TeacherCheckpointError, match="not a readable PyTorch checkpoint"):
        load_teacher(path)


def test_load_rejects_truncated(teacher: HubertTeacher, tmp_path: Path) -> None:
    full = tmp_path / "teacher.pt"
    save_teacher(teacher, full)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    with pytest.raises(TeacherCheckpointError, match="truncated download"):
        load_teacher(truncated, trust_checkpoint=True)
