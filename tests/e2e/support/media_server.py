"""A static file server for the e2e test media, run as its own process (standard library only).

`python tests/e2e/support/media_server.py --root DIR --port-file FILE` serves DIR on
127.0.0.1, on a port the OS picks (written to FILE once listening, so there is no race for a
"free" port). It answers `Range: bytes=...` with 206 (what <video> and seeking need), sends
`Access-Control-Allow-Origin: *` (the media lives on another origin than the SyncTV node:
hls.js fetches playlists and segments, <track crossorigin> fetches WebVTT) and the content
types browsers expect. SIGTERM stops it.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import BinaryIO
from urllib.parse import unquote, urlsplit

CONTENT_TYPES = {
    ".webm": "video/webm",
    ".mp4": "video/mp4",
    ".m4s": "video/iso.segment",
    ".m3u8": "application/vnd.apple.mpegurl",
    ".ts": "video/mp2t",
    ".vtt": "text/vtt; charset=utf-8",
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".json": "application/json",
}
CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "GET, HEAD, OPTIONS",
    "Access-Control-Allow-Headers": "Range, Content-Type",
    "Access-Control-Expose-Headers": "Content-Length, Content-Range, Accept-Ranges",
}
RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
CHUNK = 64 * 1024


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The inclusive (first, last) bytes a single-range `Range` header asks for; None for the
    whole file (no header, or a form we do not serve partially); ValueError if unsatisfiable."""
    if not header:
        return None
    match = RANGE.match(header.strip())
    if match is None:
        return None
    first, last = match.groups()
    if not first and not last:
        return None
    if not first:  # "bytes=-N": the last N bytes
        length = int(last)
        if length == 0:
            raise ValueError(header)
        return max(size - length, 0), size - 1
    start = int(first)
    end = min(int(last), size - 1) if last else size - 1
    if start >= size or end < start:
        raise ValueError(header)
    return start, end


class MediaHandler(BaseHTTPRequestHandler):
    """GET, HEAD and CORS preflight for the files under the server's root."""

    protocol_version = "HTTP/1.1"
    server_version = "SyncTVMedia/1"
    root: Path

    def do_OPTIONS(self) -> None:
        """CORS preflight (a Range header from fetch/XHR makes one)."""
        self.send_response(HTTPStatus.NO_CONTENT)
        self._common_headers()
        self.send_header("Access-Control-Max-Age", "600")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_HEAD(self) -> None:
        """Headers of a file, as GET would send them."""
        self._serve(body=False)

    def do_GET(self) -> None:
        """A file, whole (200) or the asked byte range (206)."""
        self._serve(body=True)

    def _common_headers(self) -> None:
        for name, value in CORS_HEADERS.items():
            self.send_header(name, value)
        self.send_header("Cache-Control", "no-cache")

    def _file(self) -> Path | None:
        relative = unquote(urlsplit(self.path).path).lstrip("/")
        candidate = (self.root / relative).resolve()
        if not candidate.is_relative_to(self.root) or not candidate.is_file():
            return None
        return candidate

    def _refuse(self, status: HTTPStatus, extra: dict[str, str] | None = None) -> None:
        message = f"{status.value} {status.phrase}\n".encode()
        self.send_response(status)
        self._common_headers()
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(message)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(message)

    def _serve(self, body: bool) -> None:
        path = self._file()
        if path is None:
            self._refuse(HTTPStatus.NOT_FOUND)
            return
        size = path.stat().st_size
        try:
            wanted = byte_range(self.headers.get("Range"), size)
        except ValueError:
            self._refuse(
                HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE, {"Content-Range": f"bytes */{size}"}
            )
            return
        first, last = wanted if wanted is not None else (0, size - 1)
        length = max(last - first + 1, 0)
        self.send_response(HTTPStatus.PARTIAL_CONTENT if wanted is not None else HTTPStatus.OK)
        self._common_headers()
        self.send_header("Content-Type", CONTENT_TYPES.get(path.suffix, "application/octet-stream"))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(length))
        if wanted is not None:
            self.send_header("Content-Range", f"bytes {first}-{last}/{size}")
        self.end_headers()
        if body and length:
            with open(path, "rb") as source:
                source.seek(first)
                self._copy(source, length)

    def _copy(self, source: BinaryIO, length: int) -> None:
        remaining = length
        while remaining > 0:
            chunk = source.read(min(CHUNK, remaining))
            if not chunk:
                break
            self.wfile.write(chunk)
            remaining -= len(chunk)

    def handle_one_request(self) -> None:
        """One request; a client gone mid-answer only ends the connection."""
        # Browsers drop media connections mid-body all the time (seeking, preloading):
        # that is not an error of the server.
        try:
            super().handle_one_request()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True


class MediaServer(ThreadingHTTPServer):
    """One thread per connection; threads do not keep the process alive."""

    daemon_threads = True
    allow_reuse_address = True


def main(argv: list[str] | None = None) -> None:
    """Parse the command line, bind, write the port file, serve until SIGTERM."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--port-file", type=Path)
    options = parser.parse_args(argv)
    MediaHandler.root = options.root.resolve()
    server = MediaServer((options.host, options.port), MediaHandler)
    port = server.server_address[1]
    if options.port_file is not None:
        partial = options.port_file.with_suffix(".partial")
        partial.write_text(str(port))
        os.replace(partial, options.port_file)  # readers never see a half-written port
    print(f"serving {MediaHandler.root} on http://{options.host}:{port}", flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()


if __name__ == "__main__":
    sys.exit(main())
