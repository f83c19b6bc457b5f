"""What every transport is: send or start a message, close or abort; and the capture transport.

Errors are classified for the outbox: `TransientSendError` (4xx answers,
refused or dropped connections, timeouts) is worth retrying with backoff;
`PermanentSendError` (5xx answers, a server that lacks a feature the URL
asks for) is not. Both carry the SMTP `code` (None when there was no answer)
and the server's `detail` text for the admin ledger.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from email.message import EmailMessage
from types import TracebackType
from typing import Self

Capture = Callable[[EmailMessage], None]


class SendError(Exception):
    """A message could not be handed to the SMTP server.

    `connecting` is true when the connection itself failed (refused, TLS, a
    wrong password): nothing about the message, and every message after it
    would fail the same way.
    """

    def __init__(self, detail: str, code: int | None = None, *, connecting: bool = False) -> None:
        super().__init__(f"{code} {detail}" if code else detail)
        self.code = code
        self.detail = detail
        self.connecting = connecting


class TransientSendError(SendError):
    """Sending failed for now; retry later."""


class PermanentSendError(SendError):
    """Sending will keep failing; do not retry."""


class Sending:
    """A message handed to a transport, whose outcome may not be known yet.

    `result()` returns when the server took the message and raises
    TransientSendError / PermanentSendError when it did not, reading the
    server's answer first if it has not been read.
    """

    __slots__ = ("_error", "_settle", "settled")

    def __init__(self, settle: Callable[[Sending], None] | None = None) -> None:
        self._settle = settle
        self._error: SendError | None = None
        self.settled = settle is None

    def result(self) -> None:
        """Wait for the server's answer; raise the error it stands for."""
        if not self.settled and self._settle is not None:
            self._settle(self)
        if self._error is not None:
            raise self._error

    @property
    def error(self) -> SendError | None:
        """The failure, once settled (None: sent, or not known yet)."""
        return self._error

    def settle(self, error: SendError | None = None) -> None:
        """Record the outcome (None: sent); for transports, once per message."""
        self._error, self.settled = error, True

    @classmethod
    def of(cls, send: Callable[[], None]) -> Sending:
        """Run a blocking send and return its outcome, settled."""
        sending = cls()
        try:
            send()
        except SendError as exc:
            sending.settle(exc)
        else:
            sending.settle()
        return sending


class Transport(ABC):
    """A mail transport: send messages, then close (also as a context manager)."""

    @abstractmethod
    def send(self, msg: EmailMessage) -> None:
        """Send one message or raise TransientSendError / PermanentSendError."""

    def start(self, msg: EmailMessage) -> Sending:
        """Begin sending one message and return at once; its outcome is `result()`.

        A transport that can overlap work does: the SMTP transport returns as
        soon as the message is written, and reads the server's answer when the
        next message starts (or on `result()`), so the caller can build the next
        message while the server takes this one. Here: send it now.
        """
        return Sending.of(lambda: self.send(msg))

    def close(self) -> None:  # noqa: B027  (a transport with no connection has nothing to close)
        """Release the connection, if any."""

    def abort(self) -> None:
        """Give up on the connection after an error: what was not sent is not sent."""
        self.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


class CaptureTransport(Transport):
    """Hand every message to a callback (the development outbox, tests)."""

    def __init__(self, capture: Capture) -> None:
        self.capture = capture

    def send(self, msg: EmailMessage) -> None:
        """Pass the message to the capture callback."""
        self.capture(msg)
