"""Long-running commands: refuse a busy port up front, stop cleanly on Ctrl-C or SIGTERM."""

from __future__ import annotations

import errno
import signal
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NamedTuple

import click

from nudger.queue import close_connections


class ListenProblem(NamedTuple):
    """Why a server could not listen, and which option to change: --host or --port."""

    reason: str
    option: str


def listen_problem(host: str, port: int) -> ListenProblem | None:
    """Say why a server could not listen on host:port now, or return None if it could.

    Binding the way the server will (SO_REUSEADDR, as Werkzeug does) tells a
    port someone is listening on from one whose last connections are closing.
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as exc:
        return ListenProblem(_not_here(host, getattr(exc, "strerror", None) or str(exc)), "--host")
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRNOTAVAIL:
                return ListenProblem(_not_here(host, exc.strerror), "--host")
            return ListenProblem(exc.strerror or str(exc), "--port")
    return None


def _not_here(host: str, reason: str | None) -> str:
    return f"{host!r} is not a name or address of this machine ({reason})"


def must_listen(host: str, port: int, command: str) -> None:
    """Refuse, as a usage error and before any work, an address `command` could not serve on."""
    problem = listen_problem(host, port)
    if problem is None:
        return
    if problem.option == "--host":
        raise click.BadParameter(problem.reason, param_hint="--host")
    free = next((p for p in range(port + 1, port + 50) if not listen_problem(host, p)), None)
    example = f", e.g. `nudger {command} --port {free}`" if free else ""
    raise click.UsageError(
        f"cannot listen on {host}:{port}: {problem.reason}. Is another server (or another "
        f"`nudger {command}`) using it? Choose another port with --port{example}."
    )


# Set when a stop was asked for (Ctrl-C, SIGTERM, SIGHUP) inside `until_stopped`.
_stop_asked = threading.Event()


def _interrupt(signum: int, frame: object) -> None:
    _stop_asked.set()
    raise KeyboardInterrupt


def _as_sigterm(signum: int, frame: object) -> None:
    """Do what SIGTERM does now: RQ's worker has handlers of its own while it works."""
    handler = signal.getsignal(signal.SIGTERM)
    if not callable(handler):
        raise KeyboardInterrupt
    handler(signal.SIGTERM, frame)


@contextmanager
def until_stopped() -> Iterator[None]:
    """Run the body until Ctrl-C or SIGTERM ends it; then release what the process started.

    SIGTERM (from a process manager or `kill`) and SIGHUP (its terminal closed)
    are treated as Ctrl-C, so all leave through the same clean-up; none is an
    error. RQ's worker answers SIGINT and SIGTERM itself, with StopRequested,
    which ends the body the same way.
    """
    from rq.exceptions import StopRequested

    _stop_asked.clear()
    previous = {signal.SIGINT: signal.signal(signal.SIGINT, _interrupt)}
    previous[signal.SIGTERM] = signal.signal(signal.SIGTERM, _interrupt)
    previous[signal.SIGHUP] = signal.signal(signal.SIGHUP, _as_sigterm)
    try:
        yield
    except (KeyboardInterrupt, StopRequested):
        pass
    except Exception:
        # A library may turn the KeyboardInterrupt raised inside its callback into an error
        # of its own (pydantic's serializers do): once a stop was asked for, that is the stop.
        if not _stop_asked.is_set():
            raise
    finally:
        # A second Ctrl-C during clean-up would leave the embedded Redis running.
        for signum in previous:
            signal.signal(signum, signal.SIG_IGN)
        try:
            close_connections()
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
