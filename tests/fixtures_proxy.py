"""A fault-injecting HTTP proxy in front of an object-store server (GCS emulator, S3).

``FaultProxy(upstream, counts)`` listens on 127.0.0.1 and forwards every request to
``upstream``. Requests for which ``counts(method, path)`` is true are recorded as
``(method, status, path)``; the first ``fail_first`` of them (only those with
``fail_method`` when set) get a fault instead of being forwarded: a 503 answer, or with
``fault="reset"`` a connection closed without any answer.
"""

from __future__ import annotations

import http.client
import http.server
import threading
import urllib.parse
from collections.abc import Callable

__all__ = ["FaultProxy"]

RESET = 0  # status recorded for a connection dropped without an answer


class FaultProxy(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, upstream: str, counts: Callable[[str, str], bool]) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.upstream = urllib.parse.urlparse(upstream)
        self.counts = counts
        self.fail_first = 0
        self.fail_method: str | None = None  # only fail requests with this method
        self.fault = "503"  # or "reset"
        self.requests: list[tuple[str, int, str]] = []  # (method, status, path) seen
        self.lock = threading.Lock()
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)

    def handle_error(self, request, client_address) -> None:
        pass  # clients dropping idle keep-alive connections is normal

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def statuses(self) -> list[int]:
        return [status for _, status, _ in self.requests]

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.shutdown()
        self.server_close()


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: FaultProxy

    def log_message(self, *args) -> None:
        pass

    def _handle(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        counted = self.server.counts(self.command, self.path)
        with self.server.lock:
            fail = (
                counted
                and self.server.fail_first > 0
                and self.server.fail_method in (None, self.command)
            )
            self.server.fail_first -= fail
        if fail and self.server.fault == "reset":
            self.server.requests.append((self.command, RESET, self.path))
            self.close_connection = True
            return
        if fail:
            status, headers, payload = 503, [("Content-Type", "text/plain")], b"try again"
        else:
            status, headers, payload = self._forward(body)
        if counted:
            self.server.requests.append((self.command, status, self.path))
        self.send_response(status)
        upstream, me = self.server.upstream.netloc, urllib.parse.urlparse(self.server.url).netloc
        for key, value in headers:
            if key.lower() == "location":  # keep resumable-upload sessions on the proxy
                value = value.replace(upstream, me)
            if key.lower() in ("transfer-encoding", "connection"):
                continue
            if key.lower() == "content-length" and self.command != "HEAD":
                continue  # ours, below (HEAD: the object's size, keep it)
            self.send_header(key, value)
        if self.command != "HEAD":
            self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    def _forward(self, body: bytes):
        up = self.server.upstream
        conn = http.client.HTTPConnection(up.hostname, up.port, timeout=30)
        dropped = ("host", "expect")  # http.client sets Host; we already read the body
        headers = {k: v for k, v in self.headers.items() if k.lower() not in dropped}
        conn.request(self.command, self.path, body=body or None, headers=headers)
        resp = conn.getresponse()
        result = resp.status, resp.getheaders(), resp.read()
        conn.close()
        return result

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _handle
