"""Tests of the parameter breakdown and the size targets of the shipped model configs."""

from __future__ import annotations

import pytest

from asr.bin import params as params_cli
from asr.models.asr_model import ASRModel
from asr.models.config import load_model_config
from asr.models.params import parameter_breakdown

AISHELL_VOCAB = 4233


@pytest.fixture(scope="module")
def breakdowns() -> dict[str, dict[str, int]]:
    names = ("brst", "brst_adm", "universal")
    return {
        name: parameter_breakdown(ASRModel(load_model_config(name, vocab_size=AISHELL_VOCAB)))
        for name in names
    }


@pytest.mark.parametrize(("name", "target"), [("brst", 7.6e6), ("brst_adm", 8.3e6)])
def test_brst_within_three_percent(
    breakdowns: dict[str, dict[str, int]], name: str, target: float
) -> None:
    total = sum(breakdowns[name].values())

    assert abs(total - target) / target < 0.03


def test_breakdown_sums_to_total() -> None:
    model = ASRModel(load_model_config("brst_adm", vocab_size=AISHELL_VOCAB))

    counts = parameter_breakdown(model)

    assert sum(counts.values()) == sum(p.numel() for p in model.parameters())


def test_front_end_hand_computed(breakdowns: dict[str, dict[str, int]]) -> None:
    # conv 1->256 (3x3) + conv 256->256 (3x3) + Linear(256 * 19, 256); 80 bins -> 19 after /4.
    expected = (9 * 256 + 256) + (9 * 256 * 256 + 256) + (256 * 19 * 256 + 256)

    assert breakdowns["universal"]["front_end"] == expected


def test_encoder_block_hand_computed(breakdowns: dict[str, dict[str, int]]) -> None:
    # 4 attention projections, FFN 256->2048->256, 2 LayerNorms.
    expected = 4 * (256 * 256 + 256) + (256 * 2048 + 2048 + 2048 * 256 + 256) + 2 * 512

    assert breakdowns["universal"]["encoder_blocks"] == expected


def test_decoder_block_hand_computed(breakdowns: dict[str, dict[str, int]]) -> None:
    # Self and source attention, FFN 256->2048->256, 3 LayerNorms.
    expected = 8 * (256 * 256 + 256) + (256 * 2048 + 2048 + 2048 * 256 + 256) + 3 * 512

    assert breakdowns["universal"]["decoder_blocks"] == expected


def test_heads_hand_computed(breakdowns: dict[str, dict[str, int]]) -> None:
    # Token embedding, decoder output layer and CTC head.
    expected = 4233 * 256 + 2 * (256 * 4233 + 4233)

    assert breakdowns["universal"]["embeddings_heads"] == expected


def test_adapters_hand_computed(breakdowns: dict[str, dict[str, int]]) -> None:
    # 12 encoder + 6 decoder applications, each LayerNorm + Linear(256, 64) + Linear(64, 256).
    per_adapter = 2 * 256 + (256 * 64 + 64) + (64 * 256 + 256)

    assert breakdowns["brst_adm"]["adapters"] == 18 * per_adapter


def test_brst_has_no_adapters(breakdowns: dict[str, dict[str, int]]) -> None:
    assert breakdowns["brst"]["adapters"] == 0


def test_adm_adds_only_adapters(breakdowns: dict[str, dict[str, int]]) -> None:
    without = dict(breakdowns["brst"], adapters=0)
    with_adapters = dict(breakdowns["brst_adm"], adapters=0)

    assert with_adapters == without


def test_transformer_about_30m() -> None:
    model = ASRModel(load_model_config("transformer", vocab_size=AISHELL_VOCAB))

    total = sum(parameter_breakdown(model).values())

    assert 29e6 < total < 31.5e6


def test_cli_prints_table(capsys: pytest.CaptureFixture[str]) -> None:
    code = params_cli.main(["brst_adm", "--vocab-size", "4233"])
    output = capsys.readouterr().out

    assert code == 0
    assert "| brst_adm |" in output
    assert "8,336,274" in output


def test_cli_all_lists_every_config(capsys: pytest.CaptureFixture[str]) -> None:
    code = params_cli.main(["--all", "--vocab-size", "400"])
    output = capsys.readouterr().out

    assert code == 0
    for name in ("brst", "brst_adm", "universal", "transformer", "mini"):
        assert f"| {name} |" in output


def test_cli_unknown_config_fails(capsys: pytest.CaptureFixture[str]) -> None:
    code = params_cli.main(["no_such_model"])

    assert code == 1
    assert "not found" in capsys.readouterr().err
