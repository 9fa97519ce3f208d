"""Reproducible .tar.gz files: sorted members, fixed owner and mtime, no name or time in gzip."""

from __future__ import annotations

import gzip
import io
import tarfile
from collections.abc import Mapping
from pathlib import Path, PurePosixPath

# 2017-01-01 00:00:00 UTC; any fixed value keeps archives byte-identical across runs.
ARCHIVE_MTIME = 1483228800


def _member(name: str, size: int, is_dir: bool) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE if is_dir else tarfile.REGTYPE
    info.mode = 0o755 if is_dir else 0o644
    info.size = 0 if is_dir else size
    info.mtime = ARCHIVE_MTIME
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    return info


def write_tar_gz(path: Path, files: Mapping[str, bytes | Path]) -> None:
    """Write a reproducible .tar.gz at `path` from archive name -> content (bytes, or a file).

    Parent directories are added as directory members, and all members are sorted by name. The
    archive is written to a temporary name first and renamed into place.
    """
    directories = {
        str(parent)
        for name in files
        for parent in PurePosixPath(name).parents
        if str(parent) != "."
    }
    partial = path.with_name(path.name + ".partial")

    with (
        open(partial, "wb") as raw,
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as compressed,
    ):
        with tarfile.open(fileobj=compressed, mode="w", format=tarfile.GNU_FORMAT) as archive:
            for name in sorted(directories | set(files)):
                if name not in files:
                    archive.addfile(_member(name + "/", 0, is_dir=True))
                    continue

                content = files[name]
                if isinstance(content, Path):
                    with open(content, "rb") as source:
                        archive.addfile(_member(name, content.stat().st_size, is_dir=False), source)
                else:
                    archive.addfile(_member(name, len(content), is_dir=False), io.BytesIO(content))
    partial.replace(path)
