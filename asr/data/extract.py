"""Tar extraction that writes only regular files and directories inside the target directory."""

from __future__ import annotations

import logging
import tarfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Literal

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SkippedMember:
    """An archive member that was not extracted, with the reason."""

    name: str
    reason: str


@dataclass
class ExtractResult:
    """Member names written by `safe_extract` and the members it skipped."""

    archive: Path
    extracted: list[str] = field(default_factory=list)
    skipped: list[SkippedMember] = field(default_factory=list)


class UnsafeArchiveError(ValueError):
    """An archive with members that could write outside the target or create special files."""

    def __init__(self, archive: Path, unsafe: list[SkippedMember]):
        self.archive = archive
        self.unsafe = unsafe
        listing = "; ".join(f"{m.name!r}: {m.reason}" for m in unsafe[:10])
        more = f"; and {len(unsafe) - 10} more" if len(unsafe) > 10 else ""
        super().__init__(
            f"Unsafe archive {archive}: {len(unsafe)} member(s) rejected ({listing}{more}). "
            "Nothing was extracted. Re-download the archive, or pass on_unsafe='skip' "
            "to extract only the safe members."
        )


def safe_extract(
    archive: Path,
    target_dir: Path,
    on_unsafe: Literal["raise", "skip"] = "raise",
) -> ExtractResult:
    """Extract the regular files and directories of a tar archive into `target_dir`.

    A member is unsafe when its name is absolute or contains a ".." component, or when its
    path resolves outside `target_dir` through a symbolic link already there. Symbolic and
    hard links, character and block devices, FIFOs and other special types are unsafe too.

    Args:
        archive: tar file, optionally gzip, bzip2 or xz compressed.
        target_dir: directory to extract into; created if missing.
        on_unsafe: "raise" checks every member first and raises `UnsafeArchiveError` before
            writing anything; "skip" extracts the safe members and returns the others in
            `ExtractResult.skipped`.

    Returns:
        `ExtractResult` with the extracted member names and the skipped members.

    Raises:
        UnsafeArchiveError: in "raise" mode, when any member is unsafe.
        tarfile.ReadError: the archive is missing, truncated or not a tar file.
    """
    if on_unsafe not in ("raise", "skip"):
        raise ValueError(f"Invalid on_unsafe={on_unsafe!r}: expected 'raise' or 'skip'.")

    archive = Path(archive)
    target_dir = Path(target_dir)
    target_dir.mkdir(parents=True, exist_ok=True)
    root = target_dir.resolve()
    result = ExtractResult(archive=archive)

    try:
        tar = tarfile.open(archive, mode="r:*")
    except tarfile.ReadError as err:
        raise tarfile.ReadError(
            f"Cannot open {archive} as a tar archive ({err}). Re-download it."
        ) from err

    with tar:
        safe = []
        for member in tar.getmembers():
            reason = unsafe_reason(member, root)
            if reason is None:
                safe.append(member)
            else:
                result.skipped.append(SkippedMember(member.name, reason))

        if result.skipped and on_unsafe == "raise":
            raise UnsafeArchiveError(archive, result.skipped)

        for skipped in result.skipped:
            logger.warning("Skipped member %r of %s: %s", skipped.name, archive, skipped.reason)

        # Python's "data" filter re-checks every member, so a gap in `unsafe_reason` still
        # cannot write outside `root`. Python releases before 3.10.12 and 3.11.4 lack it.
        filter_option = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
        tar.extractall(root, members=safe, **filter_option)
        result.extracted = [member.name for member in safe]

    return result


def unsafe_reason(member: tarfile.TarInfo, root: Path) -> str | None:
    """Return why `member` must not be extracted into the resolved directory `root`, or None."""
    if member.issym():
        return f"symbolic link to {member.linkname!r}"
    if member.islnk():
        return f"hard link to {member.linkname!r}"
    if member.ischr() or member.isblk():
        return "device file"
    if member.isfifo():
        return "FIFO"
    if not (member.isfile() or member.isdir()):
        return f"unsupported member type {member.type!r}"

    path = PurePosixPath(member.name)
    if not member.name or "\x00" in member.name:
        return "empty or invalid name"
    if path.is_absolute():
        return "absolute path"
    if ".." in path.parts:
        return "path contains a '..' component"

    destination = (root / path).resolve()
    if destination != root and root not in destination.parents:
        return f"path resolves outside the target directory, to {destination}"
    return None
