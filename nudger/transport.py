"""Send EmailMessages over one reused SMTP connection, or capture them.

URLs: `smtp://[user:pass@]host[:port]` (plain, port 25), `smtp+starttls://`
(port 587), `smtps://` (implicit TLS, port 465), and `outbox:` (hand each
message to a capture callback). Query parameters: `timeout` (seconds) and
`helo` (the name to greet with, instead of this machine's FQDN).

Errors are classified for the outbox: `TransientSendError` (4xx answers,
refused or dropped connections, timeouts) is worth retrying with backoff;
`PermanentSendError` (5xx answers, a server that lacks a feature the URL
asks for) is not. Both carry the SMTP `code` (None when there was no answer)
and the server's `detail` text for the admin ledger.
"""

from __future__ import annotations

import contextlib
import re
import smtplib
import ssl
from abc import ABC, abstractmethod
from collections.abc import Callable
from email.generator import BytesGenerator
from email.message import EmailMessage, Message
from email.utils import getaddresses
from functools import lru_cache
from io import BytesIO
from types import TracebackType
from typing import Self
from urllib.parse import parse_qs, unquote, urlsplit

Capture = Callable[[EmailMessage], None]

DEFAULT_PORTS = {"smtp": 25, "smtp+starttls": 587, "smtps": 465}

_NEWLINES = re.compile(r"\r\n|\r|\n")
_BARE_ADDRESS = re.compile(r"[^\s@<>(),;:\"\[\]\\]+@[^\s@<>(),;:\"\[\]\\]+")


class SendError(Exception):
    """A message could not be handed to the SMTP server."""

    def __init__(self, detail: str, code: int | None = None) -> None:
        super().__init__(f"{code} {detail}" if code else detail)
        self.code = code
        self.detail = detail


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

    def _done(self, error: SendError | None = None) -> None:
        self._error, self.settled = error, True


def _settled(send: Callable[[], None]) -> Sending:
    """Run a blocking send and return its outcome as a settled Sending."""
    sending = Sending()
    try:
        send()
    except SendError as exc:
        sending._done(exc)
    else:
        sending._done()
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
        return _settled(lambda: self.send(msg))

    def close(self) -> None:  # noqa: B027  (a transport with no connection has nothing to close)
        """Release the connection, if any."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class CaptureTransport(Transport):
    """Hand every message to a callback (the development outbox, tests)."""

    def __init__(self, capture: Capture) -> None:
        self.capture = capture

    def send(self, msg: EmailMessage) -> None:
        """Pass the message to the capture callback."""
        self.capture(msg)


class SMTPTransport(Transport):
    """Send over one SMTP connection, opened on first use and reused after."""

    def __init__(
        self,
        scheme: str,
        host: str,
        port: int,
        *,
        username: str | None = None,
        password: str | None = None,
        timeout: float = 30,
        local_hostname: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.scheme = scheme
        self.host = host
        self.port = port
        self.username = username
        self.password = password
        self.timeout = timeout
        self.local_hostname = local_hostname
        self.ssl_context = ssl_context
        self._conn: smtplib.SMTP | None = None
        # The message whose content went out last and whose answer is unread,
        # with the recipients refused in its envelope.
        self._in_flight: tuple[Sending, dict[str, tuple[int, bytes]]] | None = None

    def send(self, msg: EmailMessage) -> None:
        """Send one message, reconnecting once if the server dropped the connection."""
        self.start(msg).result()

    def start(self, msg: EmailMessage) -> Sending:
        """Write one message and return before the server's final answer.

        The answer is read when the next message starts (or on `result()`):
        meanwhile the caller builds the next message and the server stores this
        one, instead of each waiting for the other. When the server offers
        PIPELINING (RFC 2920), the next envelope goes out with it, so a message
        costs one round trip instead of four.
        """
        envelope = _envelope(msg)
        if envelope is None:
            # Unusual headers: smtplib's send_message, answer awaited.
            self._settle_in_flight()
            return _settled(lambda: self._send_now(msg))
        sending = Sending(self._settle)
        payload = _data_block(wire(msg))
        # A pooled connection may have been closed by the server while idle;
        # that says nothing about this message, so one fresh try is fair.
        retry = self._conn is not None or self._in_flight is not None
        while True:
            try:
                conn = self._connection()
                self._transact(conn, sending, envelope, payload)
            except _Dropped as exc:
                self._discard()
                if retry:
                    retry = False
                    continue
                sending._done(TransientSendError(exc.detail))
            except SendError as exc:
                sending._done(exc)
            return sending

    def _transact(
        self,
        conn: smtplib.SMTP,
        sending: Sending,
        envelope: tuple[str, list[str]],
        payload: bytes,
    ) -> None:
        """MAIL, RCPT and DATA for one message, then its content; raise if refused."""
        sender, recipients = envelope
        commands = [f"MAIL FROM:{_quote(sender)}"]
        commands += [f"RCPT TO:{_quote(r)}" for r in recipients]
        commands.append("DATA")
        replies: list[tuple[int, bytes]] = []
        try:
            if conn.has_extn("pipelining"):
                conn.send("".join(f"{c}\r\n" for c in commands).encode("ascii"))
                # The answer to the message before comes first in the stream.
                self._settle_in_flight()
                if self._conn is not conn:
                    raise _Dropped("server disconnected")
                replies = [_reply(conn) for _ in commands]
            else:
                self._settle_in_flight()
                if self._conn is not conn:
                    raise _Dropped("server disconnected")
                for command in commands:
                    conn.send(f"{command}\r\n".encode("ascii"))
                    replies.append(_reply(conn))
                    if replies[-1][0] == 421 or replies[0][0] != 250:
                        break  # the server is leaving, or refused the sender
                    if len(replies) == len(commands) - 1 and not any(
                        code in (250, 251) for code, _ in replies[1:]
                    ):
                        break  # every recipient refused: no DATA
            refused = self._check_envelope(conn, recipients, replies)
            conn.send(payload)
        except (smtplib.SMTPServerDisconnected, ConnectionError) as exc:
            raise _Dropped(_text(exc) or "server disconnected") from exc
        except (OSError, smtplib.SMTPException) as exc:
            # Timeouts and the like: the connection's state is unknown, so drop it.
            self._discard()
            raise TransientSendError(_text(exc) or type(exc).__name__) from exc
        self._in_flight = (sending, refused)

    def _check_envelope(
        self, conn: smtplib.SMTP, recipients: list[str], replies: list[tuple[int, bytes]]
    ) -> dict[str, tuple[int, bytes]]:
        """Raise the error for a refused sender, all recipients or DATA; return refused ones.

        `replies` ends early where the dialogue stopped: after a refused sender,
        a 421, or when every recipient was refused.
        """
        for code, reply in replies:
            if code == 421:  # the server is closing the connection
                self._discard()
                raise _classify(code, _text(reply))
        code, reply = replies[0]
        if code != 250:
            self._abort(conn, code)
            raise _classify(code, _text(reply))
        refused = {
            address: answer
            for address, answer in zip(recipients, replies[1:], strict=False)
            if answer[0] not in (250, 251)
        }
        if len(refused) == len(recipients):
            self._abort(conn, max(c for c, _ in refused.values()))
            raise _classify(*_worst(refused))
        code, reply = replies[-1]
        if code != 354:
            self._abort(conn, code)
            raise _classify(code, _text(reply))
        return refused

    def _settle(self, sending: Sending) -> None:
        """Read the final answer to `sending`, if it is the message in flight."""
        if self._in_flight is not None and self._in_flight[0] is sending:
            self._settle_in_flight()

    def _settle_in_flight(self) -> None:
        """Read the server's answer to the message whose content went out last."""
        if self._in_flight is None:
            return
        sending, refused = self._in_flight
        self._in_flight = None
        conn = self._conn
        if conn is None:
            sending._done(TransientSendError("server disconnected"))
            return
        try:
            code, reply = _reply(conn)
        except (OSError, smtplib.SMTPException) as exc:
            # Sent or not, nobody can tell: at-least-once, so it counts as not sent
            # (a retry carries the same Message-ID). The caller's next message
            # finds the connection gone and reconnects.
            self._discard()
            sending._done(TransientSendError(_text(exc) or "server disconnected"))
            return
        if code != 250:
            if code == 421:
                self._discard()
            sending._done(_classify(code, _text(reply)))
        elif refused:
            # Some recipients took it: retrying would duplicate it for them,
            # so this is final either way; report the refusal.
            sending._done(PermanentSendError(*_worst(refused)[::-1]))
        else:
            sending._done()

    def _abort(self, conn: smtplib.SMTP, code: int) -> None:
        """End a refused transaction: RSET, or drop the connection if the server is leaving."""
        if code == 421:
            self._discard()
        else:
            self._reset(conn)

    def close(self) -> None:
        """Read the last answer, say QUIT and close, ignoring a server that already left."""
        self._settle_in_flight()
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            conn.quit()
        except (OSError, smtplib.SMTPException):
            conn.close()

    def _send_now(self, msg: EmailMessage) -> None:
        """Send one message with smtplib's send_message (Bcc, Resent-*, SMTPUTF8)."""
        retry = self._conn is not None
        while True:
            conn = self._connection()
            try:
                refused = conn.send_message(msg)
            except smtplib.SMTPServerDisconnected as exc:
                self._discard()
                if retry:
                    retry = False
                    continue
                raise TransientSendError(_text(exc) or "server disconnected") from exc
            except smtplib.SMTPRecipientsRefused as exc:
                self._reset(conn)
                code, detail = _worst(exc.recipients)
                raise _classify(code, detail) from exc
            except smtplib.SMTPResponseException as exc:
                # Sender refused, data refused: smtplib already resets or closes
                # on most of these, but not when DATA itself is refused.
                self._reset(conn)
                raise _classify(exc.smtp_code, _text(exc.smtp_error)) from exc
            except smtplib.SMTPNotSupportedError as exc:
                self._reset(conn)
                raise PermanentSendError(_text(exc)) from exc
            except (OSError, smtplib.SMTPException) as exc:
                self._discard()
                raise TransientSendError(_text(exc) or type(exc).__name__) from exc
            if refused:
                code, detail = _worst(refused)
                raise PermanentSendError(detail, code)
            return

    def _connection(self) -> smtplib.SMTP:
        """Return the open connection, connecting (and logging in) if needed."""
        if self._conn is None:
            self._conn = self._connect()
        return self._conn

    def _connect(self) -> smtplib.SMTP:
        """Open a connection, start TLS if asked, and log in."""
        # Built only for TLS: loading the system's CA certificates takes ~20 ms.
        tls = self.scheme in ("smtps", "smtp+starttls")
        context = (self.ssl_context or ssl.create_default_context()) if tls else None
        conn: smtplib.SMTP | None = None
        try:
            if self.scheme == "smtps":
                conn = smtplib.SMTP_SSL(
                    self.host,
                    self.port,
                    local_hostname=self.local_hostname,
                    timeout=self.timeout,
                    context=context,
                )
            else:
                conn = smtplib.SMTP(
                    self.host, self.port, local_hostname=self.local_hostname, timeout=self.timeout
                )
            conn.ehlo()
            if self.scheme == "smtp+starttls":
                conn.starttls(context=context)
                conn.ehlo()
            if self.username:
                conn.login(self.username, self.password or "")
            return conn
        except smtplib.SMTPResponseException as exc:
            _close_quietly(conn)
            raise _classify(exc.smtp_code, _text(exc.smtp_error)) from exc
        except smtplib.SMTPNotSupportedError as exc:
            # The URL asks for STARTTLS or AUTH the server does not offer: a
            # configuration problem that retrying will not fix.
            _close_quietly(conn)
            raise PermanentSendError(_text(exc)) from exc
        except (OSError, smtplib.SMTPException) as exc:
            _close_quietly(conn)
            raise TransientSendError(
                f"cannot connect to {self.host}:{self.port}: {_text(exc) or type(exc).__name__}"
            ) from exc

    def _reset(self, conn: smtplib.SMTP) -> None:
        """Abort the failed transaction so the next message can use the connection."""
        if conn.sock is None:
            # smtplib closed it (421 or a drop); the next send reconnects.
            self._conn = None
            return
        try:
            code, _ = conn.rset()
        except (OSError, smtplib.SMTPException):
            code = 0
        if code != 250:
            self._discard()

    def _discard(self) -> None:
        """Forget the connection without the QUIT handshake."""
        if self._in_flight is not None:
            # Its answer was on this connection: sent or not, nobody can tell.
            sending, _ = self._in_flight
            self._in_flight = None
            sending._done(TransientSendError("server disconnected before answering"))
        conn, self._conn = self._conn, None
        _close_quietly(conn)


def open_transport(
    url: str,
    *,
    capture: Capture | None = None,
    timeout: float = 30,
    ssl_context: ssl.SSLContext | None = None,
) -> Transport:
    """Return a transport for a NUDGER_SMTP_URL; it connects on first send."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "outbox":
        if capture is None:
            raise ValueError("the outbox: transport needs a capture callback")
        return CaptureTransport(capture)
    if scheme not in DEFAULT_PORTS:
        raise ValueError(
            f"unsupported mail URL scheme {scheme!r}: use smtp, smtp+starttls, smtps or outbox"
        )
    if not parts.hostname:
        raise ValueError(f"mail URL {_redact(url)!r} has no host")
    query = parse_qs(parts.query)
    if "timeout" in query:
        try:
            timeout = float(query["timeout"][-1])
        except ValueError:
            raise ValueError(f"timeout must be a number of seconds in {_redact(url)!r}") from None
    try:
        port = parts.port or DEFAULT_PORTS[scheme]
    except ValueError:
        raise ValueError(f"invalid port in mail URL {_redact(url)!r}") from None
    return SMTPTransport(
        scheme,
        parts.hostname,
        port,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password is not None else None,
        timeout=timeout,
        local_hostname=query["helo"][-1] if "helo" in query else None,
        ssl_context=ssl_context,
    )


class _Dropped(Exception):
    """The server hung up before this message's content went out (worth one new try)."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


def _reply(conn: smtplib.SMTP) -> tuple[int, bytes]:
    """Read one (possibly multi-line) reply."""
    return conn.getreply()


def _quote(address: str) -> str:
    """Return an envelope address in angle brackets, as smtplib.quoteaddr does."""
    if _BARE_ADDRESS.fullmatch(address):
        return f"<{address}>"  # the common case, without the address parser
    return smtplib.quoteaddr(address)


def _data_block(data: bytes) -> bytes:
    """Return `wire` output (CRLF line ends) as a DATA block: dots doubled, "." at the end.

    What smtplib's `data()` does, with a C-level replace instead of a regular
    expression over the whole message.
    """
    if data.startswith(b"."):
        data = b"." + data
    data = data.replace(b"\r\n.", b"\r\n..")
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    return data + b".\r\n"


def _envelope(msg: Message) -> tuple[str, list[str]] | None:
    """Return the sender and recipients `send_message` would use, or None if unusual.

    Unusual: Bcc or Resent-* headers (send_message strips or prefers them) and
    non-ASCII addresses (it negotiates SMTPUTF8).
    """
    # raw_items: the header strings as stored; reading msg["To"] would parse them.
    headers: dict[str, list[str]] = {}
    for name, value in msg.raw_items():
        headers.setdefault(name.lower(), []).append(str(value))
    if headers.keys() & {"bcc", "resent-bcc", "resent-date", "resent-from", "resent-to"}:
        return None
    sender = _addresses(tuple(headers.get("sender") or headers.get("from") or [""]))[0]
    recipients = list(_addresses(tuple(headers.get("to", []) + headers.get("cc", []))))
    if not (sender + "".join(recipients)).isascii():
        return None
    return sender, recipients


@lru_cache(maxsize=1024)
def _addresses(values: tuple[str, ...]) -> tuple[str, ...]:
    """Return the addresses in address headers (getaddresses, cached: From never changes)."""
    if len(values) == 1 and _BARE_ADDRESS.fullmatch(values[0]):
        return (values[0],)  # the common case, a bare address, without the slow parser
    return tuple(address for _, address in getaddresses(list(values)))


class _Unusual(Exception):
    """A part `wire` leaves to the email package's Generator."""


def wire(msg: Message) -> bytes:
    """Serialise a message with CRLF line ends, byte for byte as smtplib would.

    The Generator writes payloads line by line in Python (~1 ms for a message
    with invites). Parts whose payloads are already-encoded strings, as
    `nudger.emails.build_message` makes them, only need their headers folded
    and their line ends made CRLF. Anything else goes through the Generator.
    """
    policy = _crlf(msg.policy)
    out: list[str] = []
    try:
        _wire(msg, policy, out)
        return "".join(out).encode("ascii")
    except (_Unusual, UnicodeEncodeError):
        buffer = BytesIO()
        BytesGenerator(buffer, policy=policy).flatten(msg, linesep="\r\n")
        return buffer.getvalue()


def _wire(part: Message, policy, out: list[str]) -> None:
    """Append one part (headers, blank line, body) to `out`, or raise _Unusual."""
    content_type = None
    for name, value in part.raw_items():
        out.append(_fold(policy, name, value))
        if name.lower() == "content-type":
            content_type = value
    out.append("\r\n")
    payload = part._payload  # what the Generator reads, without get_payload's decoding
    if isinstance(payload, list):
        boundary = _boundary(content_type)
        if not boundary or part.preamble is not None or part.epilogue is not None:
            raise _Unusual
        for index, sub in enumerate(payload):
            out.append(f"--{boundary}\r\n" if index == 0 else f"\r\n--{boundary}\r\n")
            _wire(sub, policy, out)
        out.append(f"\r\n--{boundary}--\r\n")
    elif isinstance(payload, str) and (
        _maintype(content_type) if content_type else part.get_content_maintype()
    ) != "message":
        if not payload.isascii():
            raise _Unusual  # 8-bit or surrogate-escaped text: the Generator re-encodes it
        if "\r" in payload:
            payload = _NEWLINES.sub("\n", payload)
        out.append(payload.replace("\n", "\r\n"))
    elif payload is not None:
        raise _Unusual


# Most headers of a batch's messages repeat (Content-Type, From, MIME-Version):
# each distinct one is folded and parsed once per process.
@lru_cache(maxsize=64)
def _crlf(policy):
    return policy.clone(linesep="\r\n")


def _fold(policy, name: str, value) -> str:
    if type(value) is str:
        return _fold_text(policy, name, value)
    return policy.fold(name, value)


@lru_cache(maxsize=4096)
def _fold_text(policy, name: str, value: str) -> str:
    return policy.fold(name, value)


@lru_cache(maxsize=256)
def _boundary(content_type) -> str | None:
    """Return the boundary parameter of a Content-Type value, as Message.get_boundary does."""
    if content_type is None:
        return None
    probe = Message()
    probe["Content-Type"] = str(content_type)
    return probe.get_boundary()


@lru_cache(maxsize=256)
def _maintype(content_type) -> str:
    """Return the main type of a Content-Type value."""
    probe = Message()
    probe["Content-Type"] = str(content_type)
    return probe.get_content_maintype()


def _classify(code: int | None, detail: str) -> SendError:
    """Return the error an SMTP reply code stands for."""
    if code is not None and 500 <= code < 600:
        return PermanentSendError(detail, code)
    return TransientSendError(detail, code)


def _worst(refused: dict[str, tuple[int, bytes]]) -> tuple[int, str]:
    """Return the highest code among refused recipients, with its text."""
    address, (code, reply) = max(refused.items(), key=lambda item: item[1][0])
    return code, f"{address}: {_text(reply)}"


def _text(value: object) -> str:
    """Return a server reply or an exception as one line of text."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return " ".join(str(value).split())


def _redact(url: str) -> str:
    """Return the URL without its password, for error messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()


def _close_quietly(conn: smtplib.SMTP | None) -> None:
    """Close a connection without caring how it ends."""
    if conn is not None:
        with contextlib.suppress(OSError):
            conn.close()
