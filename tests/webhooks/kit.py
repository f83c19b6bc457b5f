"""A webhook receiver on loopback: a real HTTP server that records what it is sent."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.conftest import WORKER_INDEX

# This suite's range is 2800-2899; each pytest-xdist worker takes its own pair of ports.
RECEIVER_PORT = 2851 + 2 * WORKER_INDEX
LRS_PORT = 2852 + 2 * WORKER_INDEX


@dataclass
class Received:
    """What a receiver got: (headers, body) per request, and the status it answers with."""

    requests: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    status: int = 204
    arrived: threading.Event = field(default_factory=threading.Event)


@contextmanager
def receiver(port: int = RECEIVER_PORT, status: int = 204) -> Iterator[Received]:
    """Serve on 127.0.0.1:`port` until the block ends; record every POST."""
    got = Received(status=status)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            got.requests.append(({k.lower(): v for k, v in self.headers.items()}, body))
            self.send_response(got.status)
            self.send_header("content-length", "0")
            self.end_headers()
            got.arrived.set()

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield got
    finally:
        server.shutdown()
        thread.join(5)
        server.server_close()
