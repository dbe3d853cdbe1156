"""A WS-MAN server on a loopback address that answers with captured replies, byte for byte.

Each request is matched by its ``ResourceURI`` class and action (Get, Enumerate, Pull, or a method name) to one
reply file of the corpus (see README.md); the reply goes out as the device sent it, ``application/soap+xml``. The
probes then read it the way they read a device: :class:`pytest_vpro.probes.amt.AmtDevice` over
:class:`pytest_vpro.probes.wsman.WsmanClient`.
"""
from __future__ import annotations

import http.server
import re
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _key(body: bytes) -> tuple[str, str]:
    text = body.decode("utf-8", "replace")
    uri = re.search(r"<(?:\w+:)?ResourceURI>([^<]+)</", text)
    action = re.search(r"<(?:\w+:)?Action[^>]*>([^<]+)</", text)
    cls = (uri.group(1) if uri else "").rstrip("/").rsplit("/", 1)[-1]
    return cls, (action.group(1) if action else "").rstrip("/").rsplit("/", 1)[-1]


@contextmanager
def replaying(replies: Mapping[tuple[str, str], str]) -> Iterator[str]:
    """Serve ``{(class, action): reply file relative to tests/reality}``; yields the ``http://.../wsman`` URL.
    A request the mapping does not name gets HTTP 400 (a test names every exchange it expects)."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            name = replies.get(_key(body))
            data = (HERE / name).read_bytes() if name else b""
            self.send_response(200 if name else 400)
            self.send_header("Content-Type", "application/soap+xml; charset=UTF-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/wsman"
    finally:
        server.shutdown()
        server.server_close()
