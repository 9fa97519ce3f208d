"""The runtime-only distribution in export/ builds a wheel with asr_edge and no torch."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

EXPORT_DIR = Path(__file__).resolve().parents[1] / "export"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    # setuptools writes build/ and *.egg-info next to pyproject.toml, so build from a copy.
    source = tmp_path_factory.mktemp("source")
    shutil.copy(EXPORT_DIR / "pyproject.toml", source)
    shutil.copytree(EXPORT_DIR / "asr_edge", source / "asr_edge",
                    ignore=shutil.ignore_patterns("__pycache__"))
    out_dir = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(out_dir), str(source)],
        check=True,
    )
    (path,) = out_dir.glob("reuse_asr_edge-*.whl")
    return zipfile.ZipFile(path)


def test_wheel_holds_only_runtime(wheel: zipfile.ZipFile) -> None:
    packages = {name.split("/")[0] for name in wheel.namelist() if not name.startswith("reuse_asr_edge")}
    assert packages == {"asr_edge"}


def test_wheel_requires_no_torch(wheel: zipfile.ZipFile) -> None:
    (metadata,) = [n for n in wheel.namelist() if n.endswith(".dist-info/METADATA")]
    requires = [line for line in wheel.read(metadata).decode().splitlines()
                if line.startswith("Requires-Dist:")]
    names = {line.split()[1].split(">")[0].split("=")[0].lower() for line in requires}
    assert names == {"onnxruntime", "numpy", "soundfile", "kaldi-native-fbank"}


def test_wheel_has_cli(wheel: zipfile.ZipFile) -> None:
    (entry_points,) = [n for n in wheel.namelist() if n.endswith("entry_points.txt")]
    assert "asr-edge = asr_edge.cli:main" in wheel.read(entry_points).decode()
