"""Resumable HTTP download with MD5 verification, and the AISHELL-1 archives from OpenSLR."""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import re
import urllib.error
import urllib.request
from pathlib import Path

from tqdm.auto import tqdm

logger = logging.getLogger(__name__)

AISHELL_BASE_URL = "https://www.openslr.org/resources/33"

# Archive name -> MD5 published on the OpenSLR resource page 33.
AISHELL_ARCHIVES: dict[str, str] = {
    "data_aishell.tgz": "2f494334227864a8a8fec932999db9d8",
    "resource_aishell.tgz": "957d480a0fcac85fc18e550756f624e5",
}

_USER_AGENT = "reuse-asr-downloader/0.1"
_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")
_UNSATISFIED_RANGE = re.compile(r"bytes\s+\*/(\d+)")


class DownloadError(RuntimeError):
    """A download that failed before the whole file arrived."""


class ChecksumError(RuntimeError):
    """A file whose MD5 differs from the expected one."""

    def __init__(self, path: Path, expected: str, actual: str, moved_to: Path | None = None):
        self.path = path
        self.expected = expected
        self.actual = actual
        self.moved_to = moved_to

        if moved_to is None:
            action = (
                f"The file was left in place. Delete {path} and re-run to download it again."
            )
        else:
            action = (
                f"The download was moved aside to {moved_to}. Delete it after inspection; "
                "re-running downloads the file again from the start."
            )
        super().__init__(
            f"MD5 mismatch for {path}: expected {expected}, got {actual}. {action}"
        )


def md5sum(path: Path, chunk_size: int = 1 << 20) -> str:
    """Return the hex MD5 digest of the file at `path`, read in `chunk_size`-byte blocks."""
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk_size), b""):
            digest.update(block)
    return digest.hexdigest()


def download_file(
    url: str,
    dest: Path,
    md5: str | None = None,
    chunk_size: int = 1 << 20,
    timeout: float = 60.0,
) -> Path:
    """Download `url` to `dest`, resuming an earlier partial download.

    Bytes are appended to `dest` + ".part", requested from its current size with an HTTP
    Range header. A server that ignores Range makes the download restart from byte 0.
    Once complete, the MD5 is checked and the ".part" file renamed to `dest`.

    An existing `dest` is taken as complete: it is skipped when `md5` is None or matches,
    and a mismatch raises `ChecksumError` without touching the file. A fresh download
    that fails the check is moved aside to `dest` + ".bad" and `ChecksumError` is raised.

    Args:
        url: http(s) URL of the file.
        dest: final path of the file.
        md5: expected hex MD5 digest, or None to skip verification.
        chunk_size: bytes read from the network per step.
        timeout: socket timeout in seconds.

    Returns:
        `dest`.

    Raises:
        DownloadError: the transfer failed; the ".part" file is kept so a re-run resumes.
        ChecksumError: the MD5 of the file differs from `md5`.
    """
    dest = Path(dest)
    if not url.startswith(("http://", "https://")):
        raise ValueError(
            f"Unsupported URL {url!r}: only http:// and https:// URLs can be downloaded."
        )

    if dest.is_file():
        _check_existing(dest, md5, chunk_size)
        return dest

    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    _fetch_into(url, part, chunk_size, timeout)

    if md5 is not None:
        actual = md5sum(part, chunk_size)
        if actual != md5.lower():
            bad = dest.with_name(dest.name + ".bad")
            os.replace(part, bad)
            raise ChecksumError(dest, md5.lower(), actual, moved_to=bad)

    os.replace(part, dest)
    logger.info("Downloaded %s to %s", url, dest)
    return dest


def download_aishell(
    target_dir: Path,
    base_url: str = AISHELL_BASE_URL,
    archives: tuple[str, ...] = tuple(AISHELL_ARCHIVES),
) -> list[Path]:
    """Download the AISHELL-1 archives into `target_dir`, verifying each MD5.

    Returns:
        Paths of the downloaded (or already present) archives, in the order of `archives`.
    """
    target_dir = Path(target_dir)
    paths = []
    for name in archives:
        if name not in AISHELL_ARCHIVES:
            raise ValueError(
                f"Unknown AISHELL-1 archive {name!r}; expected one of {sorted(AISHELL_ARCHIVES)}."
            )
        url = f"{base_url.rstrip('/')}/{name}"
        paths.append(download_file(url, target_dir / name, md5=AISHELL_ARCHIVES[name]))
    return paths


def _check_existing(dest: Path, md5: str | None, chunk_size: int) -> None:
    if md5 is None:
        logger.info("Skipping download: %s exists and no MD5 was given to verify it", dest)
        return

    actual = md5sum(dest, chunk_size)
    if actual != md5.lower():
        raise ChecksumError(dest, md5.lower(), actual)
    logger.info("Skipping download: %s exists with the expected MD5", dest)


def _fetch_into(url: str, part: Path, chunk_size: int, timeout: float) -> None:
    """Append the missing bytes of `url` to `part`, restarting from byte 0 when needed."""
    offset = part.stat().st_size if part.is_file() else 0
    headers = {"User-Agent": _USER_AGENT}
    if offset > 0:
        headers["Range"] = f"bytes={offset}-"
        logger.info("Resuming download of %s from byte %d", url, offset)

    try:
        request = urllib.request.Request(url, headers=headers)
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as err:
        if err.code == 416 and offset > 0:
            err.close()
            total = _unsatisfied_range_total(err.headers.get("Content-Range", ""))
            if total == offset:
                logger.info("%s is already complete (%d bytes)", part, offset)
                return

            logger.warning(
                "Server rejected Range bytes=%d- for %s (remote size %s); restarting from byte 0",
                offset,
                url,
                total,
            )
            part.unlink()
            _fetch_into(url, part, chunk_size, timeout)
            return
        raise DownloadError(f"Download of {url} failed: HTTP {err.code} {err.reason}.") from err
    except (urllib.error.URLError, OSError) as err:
        raise DownloadError(
            f"Download of {url} failed: {err}. Check the URL and network, then re-run"
            + (f"; {part} is kept and the download resumes from byte {offset}." if offset else ".")
        ) from err

    with response:
        start = _response_start(response, offset, url)
        length = response.headers.get("Content-Length")
        total = start + int(length) if length is not None else None

        mode = "ab" if start > 0 else "wb"
        try:
            with open(part, mode) as f, tqdm(
                total=total, initial=start, unit="B", unit_scale=True, desc=part.name
            ) as progress:
                for block in iter(lambda: response.read(chunk_size), b""):
                    f.write(block)
                    progress.update(len(block))
        except (OSError, http.client.HTTPException) as err:
            raise DownloadError(
                f"Download of {url} was interrupted: {err}. {part} is kept; re-run to resume."
            ) from err

    size = part.stat().st_size
    if total is not None and size != total:
        raise DownloadError(
            f"Download of {url} ended at {size} of {total} bytes. {part} is kept; re-run to resume."
        )


def _response_start(response, offset: int, url: str) -> int:
    """Return the byte offset the response body starts at: `offset` for a 206, else 0."""
    if offset == 0:
        return 0

    if response.status != 206:
        logger.warning("Server ignored the Range request for %s; downloading from byte 0", url)
        return 0

    match = _CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
    if match is None or int(match.group(1)) != offset:
        raise DownloadError(
            f"Invalid Content-Range {response.headers.get('Content-Range')!r} in the reply "
            f"to Range bytes={offset}- for {url}: expected a start of byte {offset}. "
            "Delete the .part file and re-run."
        )
    return offset


def _unsatisfied_range_total(content_range: str) -> int | None:
    match = _UNSATISFIED_RANGE.match(content_range)
    return int(match.group(1)) if match else None
