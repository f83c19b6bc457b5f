"""Long-running commands: refuse a busy port up front, stop cleanly on Ctrl-C or SIGTERM."""

from __future__ import annotations

import signal
import socket
from collections.abc import Iterator
from contextlib import contextmanager

from nudger.queue import close_connections


def listen_problem(host: str, port: int) -> str | None:
    """Say why a server could not listen on host:port now, or return None if it could.

    Binding the way the server will (SO_REUSEADDR, as Werkzeug does) tells a
    port someone is listening on from one whose last connections are closing.
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError, OverflowError) as exc:
        return f"{host!r} is not an address of this machine ({exc})"
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            return exc.strerror or str(exc)
    return None


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


@contextmanager
def until_stopped() -> Iterator[None]:
    """Run the body until Ctrl-C or SIGTERM ends it; then release what the process started.

    SIGTERM (from a process manager or `kill`) is treated as Ctrl-C, so both
    leave through the same clean-up; neither is an error. RQ's worker answers
    both with StopRequested, which ends the body the same way.
    """
    from rq.exceptions import StopRequested

    previous = {signal.SIGINT: signal.getsignal(signal.SIGINT)}
    previous[signal.SIGTERM] = signal.signal(signal.SIGTERM, _interrupt)
    try:
        yield
    except (KeyboardInterrupt, StopRequested):
        pass
    finally:
        # A second Ctrl-C during clean-up would leave the embedded Redis running.
        for signum in previous:
            signal.signal(signum, signal.SIG_IGN)
        try:
            close_connections()
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
