"""Tests for safe tar extraction with crafted unsafe members."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from asr.data.extract import UnsafeArchiveError, safe_extract


def _add_file(tar: tarfile.TarFile, name: str, data: bytes = b"payload") -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def _add_special(tar: tarfile.TarFile, name: str, kind: bytes, linkname: str = "") -> None:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    tar.addfile(info)


def _make_archive(path: Path, unsafe: list[tuple[str, bytes, str]] | None = None) -> Path:
    """Write a .tar.gz with two safe files and the given (name, type, linkname) special members."""
    with tarfile.open(path, "w:gz") as tar:
        _add_file(tar, "good/a.txt", b"a")
        for name, kind, linkname in unsafe or []:
            if kind == tarfile.REGTYPE:
                _add_file(tar, name, b"evil")
            else:
                _add_special(tar, name, kind, linkname)
        _add_file(tar, "good/b.txt", b"b")
    return path


UNSAFE_CASES = [
    ("../x", tarfile.REGTYPE, "", "'..' component"),
    ("good/../../y", tarfile.REGTYPE, "", "'..' component"),
    ("/tmp/abs_evil", tarfile.REGTYPE, "", "absolute path"),
    ("link", tarfile.SYMTYPE, "/etc/passwd", "symbolic link"),
    ("hard", tarfile.LNKTYPE, "good/a.txt", "hard link"),
    ("dev", tarfile.CHRTYPE, "", "device file"),
    ("blk", tarfile.BLKTYPE, "", "device file"),
    ("fifo", tarfile.FIFOTYPE, "", "FIFO"),
]


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.mark.parametrize("name,kind,linkname,reason", UNSAFE_CASES)
def test_extract_raise_writes_nothing(tmp_path, name, kind, linkname, reason):
    archive = _make_archive(tmp_path / "a.tar.gz", [(name, kind, linkname)])
    target = tmp_path / "out" / "target"

    with pytest.raises(UnsafeArchiveError) as info:
        safe_extract(archive, target)

    message = str(info.value)
    assert repr(name) in message
    assert str(archive) in message
    assert reason in message
    assert _tree(target) == set()
    assert _tree(tmp_path / "out") == {"target"}


@pytest.mark.parametrize("name,kind,linkname,reason", UNSAFE_CASES)
def test_extract_skip_keeps_safe(tmp_path, name, kind, linkname, reason):
    archive = _make_archive(tmp_path / "a.tar.gz", [(name, kind, linkname)])
    target = tmp_path / "out" / "target"

    result = safe_extract(archive, target, on_unsafe="skip")

    assert result.extracted == ["good/a.txt", "good/b.txt"]
    assert [m.name for m in result.skipped] == [name]
    assert reason in result.skipped[0].reason
    assert (target / "good" / "b.txt").read_bytes() == b"b"
    assert _tree(target) == {"good", "good/a.txt", "good/b.txt"}
    assert _tree(tmp_path / "out") == {
        "target", "target/good", "target/good/a.txt", "target/good/b.txt"
    }
    assert not Path("/tmp/abs_evil").exists()


def test_extract_all_unsafe_listed(tmp_path):
    cases = [(name, kind, link) for name, kind, link, _ in UNSAFE_CASES]
    archive = _make_archive(tmp_path / "a.tar.gz", cases)

    with pytest.raises(UnsafeArchiveError) as info:
        safe_extract(archive, tmp_path / "t")

    assert [m.name for m in info.value.unsafe] == [name for name, _, _ in cases]


def test_extract_safe_archive(tmp_path):
    archive = tmp_path / "a.tar"
    with tarfile.open(archive, "w") as tar:
        directory = tarfile.TarInfo("./top")
        directory.type = tarfile.DIRTYPE
        directory.mode = 0o755
        tar.addfile(directory)
        _add_file(tar, "./top/x.wav", b"RIFF")

    result = safe_extract(archive, tmp_path / "t")

    assert result.extracted == ["./top", "./top/x.wav"]
    assert result.skipped == []
    assert (tmp_path / "t" / "top" / "x.wav").read_bytes() == b"RIFF"


def test_extract_through_existing_symlink(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    target = tmp_path / "t"
    target.mkdir()
    os.symlink(outside, target / "escape")
    archive = tmp_path / "a.tar"
    with tarfile.open(archive, "w") as tar:
        _add_file(tar, "escape/x.txt", b"evil")

    with pytest.raises(UnsafeArchiveError, match="outside the target"):
        safe_extract(archive, target)

    assert list(outside.iterdir()) == []


def test_extract_corrupt_archive(tmp_path):
    archive = tmp_path / "bad.tar.gz"
    archive.write_bytes(b"not a tar file at all" * 10)

    with pytest.raises(tarfile.ReadError, match="bad.tar.gz"):
        safe_extract(archive, tmp_path / "t")


def test_extract_invalid_mode(tmp_path):
    with pytest.raises(ValueError, match="on_unsafe"):
        safe_extract(tmp_path / "a.tar", tmp_path / "t", on_unsafe="ignore")
