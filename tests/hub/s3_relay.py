"""An HTTP relay in front of the tests' S3 server that can damage the bodies it passes on: what a
faulty network card, proxy or memory could do to the bytes between a service and its store.

The relay changes no header, so the request's signature still holds (the payload is not signed:
``payload_signing_enabled`` is off) and only the digest sent with the body can tell the store.
"""

from __future__ import annotations

import http.client
import http.server
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit

# Headers that belong to one connection, not to the request or answer relayed.
_HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "expect", "proxy-connection"}
)


class S3Relay:
    """Relays every request to ``upstream``; while ``damage`` is set, flips the last byte of every
    object body PUT (PutObject, UploadPart), counting them in ``damaged``."""

    def __init__(self, upstream: str) -> None:
        target = urlsplit(upstream)
        self.host, self.port = target.hostname or "127.0.0.1", target.port or 80
        self.damage = False
        self.damaged = 0
        self._lock = threading.Lock()
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self._server.server_address[1]}"

    def _maybe_damage(self, method: str, path: str, body: bytes) -> bytes:
        is_object = urlsplit(path).path.strip("/").count("/") >= 1  # /bucket/key, not /bucket
        if method != "PUT" or not body or not is_object or not self.damage:
            return body
        with self._lock:
            self.damaged += 1
        return body[:-1] + bytes([body[-1] ^ 0xFF])

    def _handler(self) -> type[http.server.BaseHTTPRequestHandler]:
        relay = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, and 100-continue answered before the body

            def _relay(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = relay._maybe_damage(self.command, self.path, self.rfile.read(length) if length else b"")
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
                upstream = http.client.HTTPConnection(relay.host, relay.port, timeout=120)
                try:
                    upstream.request(self.command, self.path, body=body or None, headers=headers)
                    answer = upstream.getresponse()
                    data = answer.read()
                finally:
                    upstream.close()
                self.send_response_only(answer.status)
                for name, value in answer.getheaders():
                    if name.lower() not in _HOP_BY_HOP and name.lower() != "content-length":
                        self.send_header(name, value)
                # A HEAD answer's length is the object's, from upstream; nothing follows it.
                size = answer.getheader("Content-Length", "0") if self.command == "HEAD" else str(len(data))
                self.send_header("Content-Length", size)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = _relay

            def log_message(self, format: str, *args: object) -> None:
                pass

        return Handler

    @contextmanager
    def running(self) -> Iterator[S3Relay]:
        thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._server.shutdown()
            self._server.server_close()
