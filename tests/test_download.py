"""Tests for the resumable, MD5-checked downloader against a local HTTP server."""

from __future__ import annotations

import hashlib
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from asr.bin.prepare import main as prepare_main
from asr.data import download as download_module
from asr.data.download import ChecksumError, DownloadError, download_aishell, download_file

PAYLOAD = bytes(range(256)) * 40  # 10240 bytes


class _FileServer:
    """Serve in-memory files on 127.0.0.1 with optional HTTP Range support; record requests.

    With `drop_after`, the first response closes the connection after that many body bytes.
    """

    def __init__(self, files: dict[str, bytes], honor_range: bool = True,
                 drop_after: int | None = None):
        self.files = files
        self.honor_range = honor_range
        self.drop_after = drop_after
        self.requests: list[tuple[str, str | None]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server naming)
                range_header = self.headers.get("Range")
                server.requests.append((self.path, range_header))
                body = server.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return

                start = 0
                match = re.fullmatch(r"bytes=(\d+)-", range_header or "")
                if server.honor_range and match:
                    start = int(match.group(1))
                    if start >= len(body):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(body)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(body) - start))
                self.end_headers()
                if server.drop_after is not None:
                    self.wfile.write(body[start:start + server.drop_after])
                    server.drop_after = None
                    self.close_connection = True
                    return
                self.wfile.write(body[start:])

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def __enter__(self) -> _FileServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch):
    for scheme in ("http", "https", "all"):
        monkeypatch.delenv(f"{scheme}_proxy", raising=False)
        monkeypatch.delenv(f"{scheme.upper()}_PROXY", raising=False)


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def test_download_fresh(tmp_path):
    dest = tmp_path / "a.bin"
    with _FileServer({"/a.bin": PAYLOAD}) as server:
        download_file(f"{server.url}/a.bin", dest, md5=_md5(PAYLOAD), chunk_size=1000)

    assert dest.read_bytes() == PAYLOAD
    assert not (tmp_path / "a.bin.part").exists()
    assert server.requests == [("/a.bin", None)]


def test_download_resumes_partial(tmp_path):
    dest = tmp_path / "a.bin"
    (tmp_path / "a.bin.part").write_bytes(PAYLOAD[:4000])

    with _FileServer({"/a.bin": PAYLOAD}) as server:
        download_file(f"{server.url}/a.bin", dest, md5=_md5(PAYLOAD))

    assert server.requests == [("/a.bin", "bytes=4000-")]
    assert dest.read_bytes() == PAYLOAD
    assert not (tmp_path / "a.bin.part").exists()


def test_download_range_ignored_restarts(tmp_path):
    dest = tmp_path / "a.bin"
    (tmp_path / "a.bin.part").write_bytes(b"x" * 4000)

    with _FileServer({"/a.bin": PAYLOAD}, honor_range=False) as server:
        download_file(f"{server.url}/a.bin", dest, md5=_md5(PAYLOAD))

    assert dest.read_bytes() == PAYLOAD


def test_download_complete_part_416(tmp_path):
    dest = tmp_path / "a.bin"
    (tmp_path / "a.bin.part").write_bytes(PAYLOAD)

    with _FileServer({"/a.bin": PAYLOAD}) as server:
        download_file(f"{server.url}/a.bin", dest, md5=_md5(PAYLOAD))

    assert server.requests == [("/a.bin", f"bytes={len(PAYLOAD)}-")]
    assert dest.read_bytes() == PAYLOAD


def test_download_oversized_part_restarts(tmp_path):
    dest = tmp_path / "a.bin"
    (tmp_path / "a.bin.part").write_bytes(PAYLOAD + b"junk")

    with _FileServer({"/a.bin": PAYLOAD}) as server:
        download_file(f"{server.url}/a.bin", dest, md5=_md5(PAYLOAD))

    assert server.requests[-1] == ("/a.bin", None)
    assert dest.read_bytes() == PAYLOAD


def test_download_checksum_mismatch_moves_aside(tmp_path):
    dest = tmp_path / "a.bin"
    wrong = "0" * 32

    with _FileServer({"/a.bin": PAYLOAD}) as server:
        with pytest.raises(ChecksumError) as info:
            download_file(f"{server.url}/a.bin", dest, md5=wrong)

    message = str(info.value)
    assert str(dest) in message
    assert wrong in message
    assert _md5(PAYLOAD) in message
    assert str(tmp_path / "a.bin.bad") in message
    assert not dest.exists()
    assert (tmp_path / "a.bin.bad").read_bytes() == PAYLOAD


def test_download_existing_mismatch_left_in_place(tmp_path):
    dest = tmp_path / "a.bin"
    dest.write_bytes(b"user data")

    with _FileServer({"/a.bin": PAYLOAD}) as server:
        with pytest.raises(ChecksumError) as info:
            download_file(f"{server.url}/a.bin", dest, md5=_md5(PAYLOAD))

    assert "Delete" in str(info.value)
    assert _md5(b"user data") in str(info.value)
    assert dest.read_bytes() == b"user data"
    assert server.requests == []


def test_download_skips_complete_file(tmp_path):
    dest = tmp_path / "a.bin"
    dest.write_bytes(PAYLOAD)

    with _FileServer({"/a.bin": PAYLOAD}) as server:
        result = download_file(f"{server.url}/a.bin", dest, md5=_md5(PAYLOAD))

    assert result == dest
    assert server.requests == []


def test_download_missing_url_raises(tmp_path):
    with _FileServer({}) as server:
        with pytest.raises(DownloadError, match="HTTP 404"):
            download_file(f"{server.url}/none.bin", tmp_path / "none.bin")

    assert not (tmp_path / "none.bin").exists()


def test_download_rejects_non_http(tmp_path):
    with pytest.raises(ValueError, match="ftp://"):
        download_file("ftp://example.org/a.bin", tmp_path / "a.bin")


def test_download_aishell_both_archives(tmp_path, monkeypatch):
    data = b"data archive"
    resource = b"resource archive"
    monkeypatch.setitem(download_module.AISHELL_ARCHIVES, "data_aishell.tgz", _md5(data))
    monkeypatch.setitem(download_module.AISHELL_ARCHIVES, "resource_aishell.tgz", _md5(resource))

    files = {"/33/data_aishell.tgz": data, "/33/resource_aishell.tgz": resource}
    with _FileServer(files) as server:
        paths = download_aishell(tmp_path, base_url=f"{server.url}/33/")

    assert paths == [tmp_path / "data_aishell.tgz", tmp_path / "resource_aishell.tgz"]
    assert paths[0].read_bytes() == data
    assert paths[1].read_bytes() == resource


def test_aishell_md5_constants():
    assert download_module.AISHELL_ARCHIVES == {
        "data_aishell.tgz": "2f494334227864a8a8fec932999db9d8",
        "resource_aishell.tgz": "957d480a0fcac85fc18e550756f624e5",
    }


def test_md5sum_known_value(tmp_path):
    path = tmp_path / "abc"
    path.write_bytes(b"abc")

    assert download_module.md5sum(path, chunk_size=1) == "900150983cd24fb0d6963f7d28e17f72"


def test_download_part_name(tmp_path: Path):
    dest = tmp_path / "a.tgz"
    (tmp_path / "a.tgz.part").write_bytes(PAYLOAD[:10])

    with _FileServer({"/a.tgz": PAYLOAD}) as server:
        download_file(f"{server.url}/a.tgz", dest)

    assert server.requests == [("/a.tgz", "bytes=10-")]


def test_cli_download(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(download_module.AISHELL_ARCHIVES, "data_aishell.tgz", _md5(b"d"))
    monkeypatch.setitem(download_module.AISHELL_ARCHIVES, "resource_aishell.tgz", _md5(b"r"))

    files = {"/data_aishell.tgz": b"d", "/resource_aishell.tgz": b"r"}
    with _FileServer(files) as server:
        status = prepare_main(["download", "--corpus-dir", str(tmp_path), "--base-url", server.url])

    assert status == 0
    assert str(tmp_path / "data_aishell.tgz") in capsys.readouterr().out
    assert (tmp_path / "resource_aishell.tgz").read_bytes() == b"r"


def test_download_interrupted_then_resumed(tmp_path):
    dest = tmp_path / "a.bin"

    with _FileServer({"/a.bin": PAYLOAD}, drop_after=3000) as server:
        with pytest.raises(DownloadError, match="re-run to resume"):
            download_file(f"{server.url}/a.bin", dest, md5=_md5(PAYLOAD), chunk_size=1000)
        partial = (tmp_path / "a.bin.part").read_bytes()

        download_file(f"{server.url}/a.bin", dest, md5=_md5(PAYLOAD), chunk_size=1000)

    assert partial == PAYLOAD[:3000]
    assert server.requests == [("/a.bin", None), ("/a.bin", "bytes=3000-")]
    assert dest.read_bytes() == PAYLOAD
    assert not dest.with_name("a.bin.part").exists()
