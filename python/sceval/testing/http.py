"""A local HTTP file server for tests of downloads (checkpoints, datasets).

:func:`serve_directory` serves a folder on ``127.0.0.1`` from a background thread. It
honours ``Range: bytes=...`` requests (206 Partial Content), and can inject the faults a
downloader must survive: a response cut short after N bytes, a one-off HTTP error, or a
server that ignores ``Range`` and always answers 200 with the whole file.

Example
-------
>>> with serve_directory(folder, truncate={"weights.bin": 1000}) as base_url:  # doctest: +SKIP
...     urllib.request.urlopen(f"{base_url}/weights.bin")
"""

from __future__ import annotations

import contextlib
import http.server
import os
import posixpath
import re
import threading
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["RequestRecord", "ServedURL", "serve_directory"]

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
_CHUNK = 64 * 1024


@dataclass
class RequestRecord:
    """One request the server answered.

    Attributes
    ----------
    path
        The requested path relative to the served folder (``"sub/file.bin"``).
    range
        The ``Range`` header as sent, or ``None``.
    status
        The HTTP status code of the answer.
    sent
        Body bytes written so far (final once the server has stopped).
    """

    path: str
    range: str | None
    status: int
    sent: int


class ServedURL(str):
    """The base URL of a running server (a plain ``str``), plus its request ``log``."""

    log: list[RequestRecord]

    def __new__(cls, url: str, log: list[RequestRecord]) -> ServedURL:
        obj = super().__new__(cls, url)
        obj.log = log
        return obj


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = False  # server_close() joins the handlers: the log is then final
    block_on_close = True

    def __init__(
        self,
        root: Path,
        truncate: dict[str, int],
        fail: dict[str, int],
        ignore_range: bool,
    ) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.root = root
        self.truncate = dict(truncate)
        self.fail = dict(fail)
        self.ignore_range = ignore_range
        self.log: list[RequestRecord] = []
        self.lock = threading.Lock()

    def take_one_shot(self, table: dict[str, int], rel: str) -> int | None:
        """Pop ``rel`` from a one-shot fault table (thread-safe)."""
        with self.lock:
            return table.pop(rel, None)


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.0"  # one request per connection: a cut response ends in EOF
    timeout = 10  # seconds; a stalled client cannot hold the server open for long

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the default stderr access log."""

    def _record(self, rel: str, status: int) -> RequestRecord:
        """Log the request before answering it, so a client never sees an unlogged answer."""
        rec = RequestRecord(rel, self.headers.get("Range"), status, 0)
        with self.server.lock:
            self.server.log.append(rec)
        return rec

    def _error(self, rel: str, status: int) -> None:
        body = f"{status} {self.responses.get(status, ('',))[0]}\n".encode()
        self._record(rel, status)
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _resolve(self) -> tuple[str, Path | None]:
        raw = urllib.parse.urlsplit(self.path).path
        rel = posixpath.normpath(urllib.parse.unquote(raw)).lstrip("/")
        if rel in ("", ".") or rel.startswith("..") or "\\" in rel:
            return rel, None
        path = self.server.root.joinpath(*rel.split("/"))
        try:
            path.resolve().relative_to(self.server.root)
        except ValueError:
            return rel, None
        return rel, path if path.is_file() else None

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        rel, path = self._resolve()
        status = self.server.take_one_shot(self.server.fail, rel)
        if status is not None:
            self._error(rel, status)
            return
        if path is None:
            self._error(rel, 404)
            return
        size = path.stat().st_size
        start, end, status = 0, size - 1, 200
        header = self.headers.get("Range")
        if header and not self.server.ignore_range:
            m = _RANGE.match(header.strip())
            if m and (m.group(1) or m.group(2)):
                if m.group(1):
                    start = int(m.group(1))
                    end = min(int(m.group(2)), size - 1) if m.group(2) else size - 1
                else:  # suffix range: the last N bytes
                    start = max(size - int(m.group(2)), 0)
                if start >= size or start > end:
                    self._record(rel, 416)
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{size}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                status = 206
        length = end - start + 1 if size else 0
        rec = self._record(rel, status)
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(length))
        self.send_header("Accept-Ranges", "none" if self.server.ignore_range else "bytes")
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.end_headers()
        if self.command == "HEAD":
            return
        limit = self.server.take_one_shot(self.server.truncate, rel)
        budget = length if limit is None else min(limit, length)
        sent = 0
        with open(path, "rb") as fh:
            fh.seek(start)
            while sent < budget:
                chunk = fh.read(min(_CHUNK, budget - sent))
                if not chunk:
                    break
                try:
                    self.wfile.write(chunk)
                except (BrokenPipeError, ConnectionResetError):
                    break
                sent += len(chunk)
                rec.sent = sent
        with contextlib.suppress(OSError):
            self.wfile.flush()
        self.close_connection = True


def _normalize(table: dict[str, int] | None, what: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for key, value in (table or {}).items():
        rel = posixpath.normpath(str(key).replace(os.sep, "/")).lstrip("/")
        if not isinstance(value, int) or value < 0:
            msg = f"{what}[{key!r}] must be a non-negative integer, got {value!r}."
            raise ValueError(msg)
        out[rel] = value
    return out


@contextlib.contextmanager
def serve_directory(
    path: str | os.PathLike[str],
    *,
    truncate: dict[str, int] | None = None,
    fail: dict[str, int] | None = None,
    ignore_range: bool = False,
) -> Iterator[ServedURL]:
    """Serve the files under ``path`` over HTTP on ``127.0.0.1`` (a free port).

    Parameters
    ----------
    path
        The folder to serve; ``<base_url>/a/b.bin`` is ``path/a/b.bin``.
    truncate
        ``{relative path: n_bytes}``: the first response for that file sends its full
        ``Content-Length`` but stops after ``n_bytes`` of body and closes the connection
        (a dropped download). Later responses are complete.
    fail
        ``{relative path: status}``: the first request for that file is answered with that
        HTTP status (e.g. 503); later requests succeed.
    ignore_range
        Answer every request with 200 and the whole file, as servers without range
        support do.

    Yields
    ------
    ServedURL
        The base URL, ``"http://127.0.0.1:<port>"`` (a ``str``); its ``log`` attribute
        lists a :class:`RequestRecord` per request, appended before the answer is sent.
    """
    root = Path(path).resolve()
    if not root.is_dir():
        msg = f"serve_directory expected an existing folder, got {str(path)!r}."
        raise NotADirectoryError(msg)
    server = _Server(root, _normalize(truncate, "truncate"), _normalize(fail, "fail"), ignore_range)
    thread = threading.Thread(
        target=server.serve_forever, args=(0.05,), name="sceval-http", daemon=True
    )
    thread.start()
    host, port = server.server_address[:2]
    try:
        yield ServedURL(f"http://{host}:{port}", server.log)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
