"""A real SMTP server on loopback for tests: records mail, fails on demand.

Use it as a context manager: `with SmtpSink() as sink:`, send to `sink.url()`,
then read `sink.messages` and `sink.connections`. `sink.fail_next(1, 550)`
answers the next message with 550; `sink.drop_next()` hangs up on it;
`sink.disconnect_all()` closes idle connections as a server's timeout would;
`sink.go_away_after(n)` stops the server after n more messages, as a crash or
restart would. `SmtpSink(delay=0.2)` takes that long to accept each message;
`SmtpSink(port=p)` listens on a given port (a server coming back);
`SmtpSink(pipelining=True)` offers RFC 2920 PIPELINING.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
from dataclasses import dataclass
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default as default_policy
from types import TracebackType
from typing import Any, Literal, Self

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

Stage = Literal["MAIL", "RCPT", "DATA"]


@dataclass(frozen=True)
class Received:
    """One message the sink accepted."""

    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    message: EmailMessage
    connection: int


@dataclass
class _Fault:
    """What to do to the next messages: answer a code, or hang up."""

    count: int
    stage: Stage
    code: int | None  # None: drop the connection without an answer
    text: str
    after: int = 0  # messages to let through at this stage first


class _Handler:
    """aiosmtpd handler hooks that apply faults and record messages."""

    def __init__(self, sink: SmtpSink) -> None:
        self.sink = sink

    async def handle_EHLO(
        self, server: SMTP, session: Session, envelope: Envelope, hostname: str, responses: list
    ) -> list[str]:
        session.host_name = hostname
        if self.sink.pipelining:
            # aiosmtpd reads commands in order from its buffer, so it can take
            # RFC 2920 pipelining; it just does not say so.
            return [*responses[:-1], "250-PIPELINING", responses[-1]]
        return responses

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if (answer := self.sink._fault_for("MAIL", server)) is not None:
            return answer
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if (answer := self.sink._fault_for("RCPT", server)) is not None:
            return answer
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(options)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if (answer := self.sink._fault_for("DATA", server)) is not None:
            return answer
        if self.sink.delay:
            await asyncio.sleep(self.sink.delay)
        data = envelope.original_content or b""
        message = message_from_bytes(data, policy=default_policy)
        assert isinstance(message, EmailMessage)
        with self.sink._lock:
            self.sink.messages.append(
                Received(
                    mail_from=envelope.mail_from or "",
                    rcpt_tos=list(envelope.rcpt_tos),
                    data=data,
                    message=message,
                    connection=self.sink._numbers[id(server)],
                )
            )
            leaving = self.sink._go_away_at is not None and (
                len(self.sink.messages) >= self.sink._go_away_at
            )
        if leaving:
            # After this reply is written: stop listening, then hang up on everyone.
            asyncio.get_running_loop().call_soon(self.sink._go_away)
        return "250 Message accepted"


class _CountingSMTP(SMTP):
    """An SMTP protocol that reports each new connection to the sink."""

    def __init__(self, handler: _Handler, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self._sink = handler.sink

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if not self._sink._tls_handshake_pending(self):
            self._sink._opened(self)
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        self._sink._closed(self)
        super().connection_lost(error)


class _Controller(Controller):
    def factory(self) -> SMTP:
        return _CountingSMTP(self.handler, **self.SMTP_kwargs)


class SmtpSink:
    """An aiosmtpd server on 127.0.0.1 that records messages and injects faults."""

    def __init__(
        self,
        *,
        ssl_context: ssl.SSLContext | None = None,
        starttls_context: ssl.SSLContext | None = None,
        credentials: tuple[str, str] | None = None,
        port: int | None = None,
        delay: float = 0.0,
        pipelining: bool = False,
    ) -> None:
        self.host = "127.0.0.1"
        self.port = port or _free_port(self.host)
        self.delay = delay
        self.pipelining = pipelining
        self._go_away_at: int | None = None
        self.messages: list[Received] = []
        self.connections = 0
        self.logins: list[tuple[str, str]] = []
        self._credentials = credentials
        self._faults: list[_Fault] = []
        self._live: dict[int, SMTP] = {}
        self._numbers: dict[int, int] = {}
        self._lock = threading.Lock()
        kwargs: dict[str, Any] = {}
        if starttls_context is not None:
            kwargs.update(tls_context=starttls_context, require_starttls=True)
        if credentials is not None:
            kwargs.update(
                authenticator=self._authenticate,
                # Plain-text AUTH is fine on loopback; aiosmtpd refuses it by default.
                auth_require_tls=ssl_context is not None or starttls_context is not None,
            )
        self._controller = _Controller(
            _Handler(self), hostname=self.host, port=self.port, ssl_context=ssl_context, **kwargs
        )
        self._started = False

    def start(self) -> Self:
        """Start serving in a background thread."""
        self._controller.start()
        self._started = True
        # Controller.start() opens a probe connection of its own; do not count it.
        with self._lock:
            self.connections = 0
        return self

    def stop(self) -> None:
        """Stop serving."""
        if self._started:
            self._controller.stop()
            self._started = False

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def url(self, scheme: str = "smtp", userinfo: str = "") -> str:
        """Return a NUDGER_SMTP_URL pointing at this sink."""
        at = f"{userinfo}@" if userinfo else ""
        return f"{scheme}://{at}{self.host}:{self.port}"

    def fail_next(
        self, count: int, code: int, text: str = "", *, stage: Stage = "DATA", after: int = 0
    ) -> None:
        """Answer the next `count` messages with `code` at `stage` (MAIL, RCPT or DATA).

        `after`: let that many messages through first.
        """
        text = text or {4: "4.3.0 Try again later", 5: "5.0.0 Rejected"}.get(code // 100, "")
        with self._lock:
            self._faults.append(_Fault(count, stage, code, text, after))

    def drop_next(self, count: int = 1, *, stage: Stage = "MAIL", after: int = 0) -> None:
        """Hang up without answering on the next `count` messages, at `stage` (after `after`)."""
        with self._lock:
            self._faults.append(_Fault(count, stage, None, "", after))

    def go_away_after(self, count: int) -> None:
        """Accept `count` more messages, then stop listening and close every connection."""
        with self._lock:
            self._go_away_at = len(self.messages) + count

    def _go_away(self) -> None:
        """Stop accepting connections and drop the open ones (runs in the server's loop)."""
        server = self._controller.server
        if server is not None:
            server.close()
        with self._lock:
            live = list(self._live.values())
        for smtp in live:
            if smtp.transport is not None:
                smtp.transport.close()

    def disconnect_all(self) -> None:
        """Close every open client connection, as a server's idle timeout would."""
        with self._lock:
            live = list(self._live.values())
        done = threading.Event()

        def close() -> None:
            for server in live:
                if server.transport is not None:
                    server.transport.close()
            done.set()

        self._controller.loop.call_soon_threadsafe(close)
        done.wait(5)

    @property
    def open_connections(self) -> int:
        """Return how many client connections are open now."""
        with self._lock:
            return len(self._live)

    def _fault_for(self, stage: Stage, server: SMTP) -> str | None:
        """Return the reply for an injected fault at this stage, if one is due."""
        with self._lock:
            fault = next((f for f in self._faults if f.stage == stage), None)
            if fault is None:
                return None
            if fault.after > 0:
                fault.after -= 1
                return None
            fault.count -= 1
            if fault.count <= 0:
                self._faults.remove(fault)
        if fault.code is None:
            assert server.transport is not None
            server.transport.close()
            # Never reaches the client: the transport is closed.
            return "421 4.4.2 Connection dropped"
        return f"{fault.code} {fault.text}"

    def _tls_handshake_pending(self, server: SMTP) -> bool:
        """Return True when aiosmtpd re-enters connection_made after STARTTLS."""
        with self._lock:
            return id(server) in self._live

    def _opened(self, server: SMTP) -> None:
        with self._lock:
            self.connections += 1
            self._live[id(server)] = server
            self._numbers[id(server)] = self.connections

    def _closed(self, server: SMTP) -> None:
        with self._lock:
            self._live.pop(id(server), None)

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        """Accept only the configured login, recording every attempt."""
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        login = (auth_data.login.decode(), auth_data.password.decode())
        with self._lock:
            self.logins.append(login)
        # handled=False: let aiosmtpd answer 535 itself on a wrong password.
        return AuthResult(success=login == self._credentials, handled=False)


def _free_port(host: str) -> int:
    """Return a port that was free a moment ago (aiosmtpd cannot bind port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]
