"""The lab CA's web server: serves the PKI's published files at ``http://<address>:<port>/pki/``.

RFC 5280 §4.2.1.13 (cRLDistributionPoints) and §4.2.2.1 (authorityInfoAccess caIssuers) point
at HTTP URLs; RFC 2585 §3-4 gives the media types (``application/pkix-crl`` for a DER CRL,
``application/pkix-cert`` for a DER certificate).

Stdlib ``http.server`` in a thread: each request reads the file from disk, and responses say
``Cache-Control: no-store``, so replacing a CRL on disk (as :meth:`LabPKI.publish_crl` or an
administrator does) is seen by the next request. Only files under the served directory, no
directory listings, no conditional (304) answers.
"""
from __future__ import annotations

import http.server
import logging
import threading
from functools import partial
from pathlib import Path

log = logging.getLogger(__name__)

MEDIA_TYPES = {
    ".crl": "application/pkix-crl",
    ".crt": "application/pkix-cert",
    ".cer": "application/pkix-cert",
    ".pem": "application/x-pem-file",
}


class _Handler(http.server.SimpleHTTPRequestHandler):
    prefix = "/pki/"
    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map, **MEDIA_TYPES}

    def translate_path(self, path: str) -> str:
        clean = path.split("?", 1)[0].split("#", 1)[0]
        if not clean.startswith(self.prefix):
            return ""  # empty: send_head answers 404
        return super().translate_path("/" + clean[len(self.prefix):])

    def send_head(self):
        path = self.translate_path(self.path)
        if not path or not Path(path).is_file():
            self.send_error(404, "Not found")
            return None
        # drop conditional headers: always send the live file
        for header in ("If-Modified-Since", "If-None-Match"):
            if header in self.headers:
                del self.headers[header]
        return super().send_head()

    def end_headers(self) -> None:
        self.send_header("Cache-Control", "no-store")
        super().end_headers()

    def list_directory(self, path):  # never list
        self.send_error(404, "Not found")
        return None

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - http.server's own signature
        log.debug("%s %s", self.address_string(), format % args)


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class LabHTTPServer:
    """Serve ``directory`` at ``http://address:port/pki/``; ``port=0`` picks a free port."""

    def __init__(self, directory: Path, *, address: str, port: int = 80,
                 prefix: str = "/pki/") -> None:
        self.directory = Path(directory)
        self.address = address
        self.requested_port = port
        self.prefix = "/" + prefix.strip("/") + "/"
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        if self._server is None:
            return self.requested_port
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        """Base URL of the served directory, without a trailing slash."""
        return f"http://{self.address}:{self.port}{self.prefix.rstrip('/')}"

    def start(self) -> "LabHTTPServer":
        if self._server is not None:
            return self
        handler = type("Handler", (_Handler,), {"prefix": self.prefix})
        self._server = _Server((self.address, self.requested_port),
                               partial(handler, directory=str(self.directory)))
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
                                        name=f"lab-http-{self.address}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> "LabHTTPServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
