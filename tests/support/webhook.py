"""A real webhook receiver: an HTTP(S) server on 127.0.0.1 recording every POST (alerts, the daemon's hooks)."""

from __future__ import annotations

import contextlib
import json
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Receiver:
    url: str
    bodies: list[dict[str, Any]]
    headers: list[dict[str, str]]
    status: int = 204
    answer: bytes = b""
    delay: float = 0.0
    release: threading.Event = field(default_factory=threading.Event)


@contextlib.contextmanager
def serve_webhook(tls: ssl.SSLContext | None = None) -> Iterator[Receiver]:
    """A real HTTP(S) server on 127.0.0.1, port 0, recording every POST."""
    state = Receiver(url="", bodies=[], headers=[])

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            state.bodies.append(json.loads(self.rfile.read(length)))
            state.headers.append(dict(self.headers))
            if state.delay:
                state.release.wait(state.delay)
            self.send_response(state.status)
            self.send_header("Content-Length", str(len(state.answer)))
            self.end_headers()
            self.wfile.write(state.answer)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    scheme = "https" if tls is not None else "http"
    state.url = f"{scheme}://127.0.0.1:{server.server_address[1]}/hooks/secret-token-path?key=abc"
    try:
        yield state
    finally:
        state.release.set()
        server.shutdown()
        server.server_close()
        thread.join(5)
