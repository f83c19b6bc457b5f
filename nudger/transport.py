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


class Transport(ABC):
    """A mail transport: send messages, then close (also as a context manager)."""

    @abstractmethod
    def send(self, msg: EmailMessage) -> None:
        """Send one message or raise TransientSendError / PermanentSendError."""

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

    def send(self, msg: EmailMessage) -> None:
        """Send one message, reconnecting once if the server dropped the connection."""
        # A pooled connection may have been closed by the server while idle;
        # that says nothing about this message, so one fresh try is fair.
        retry = self._conn is not None
        while True:
            conn = self._connection()
            try:
                refused = _send(conn, msg)
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
                # Timeouts, resets: the connection's state is unknown, so drop it.
                self._discard()
                raise TransientSendError(_text(exc) or type(exc).__name__) from exc
            if refused:
                # Some recipients took it: retrying would duplicate it for them,
                # so this is final either way; report the refusal.
                code, detail = _worst(refused)
                raise PermanentSendError(detail, code)
            return

    def close(self) -> None:
        """Say QUIT and close the connection, ignoring a server that already left."""
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            conn.quit()
        except (OSError, smtplib.SMTPException):
            conn.close()

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


def _send(conn: smtplib.SMTP, msg: Message) -> dict:
    """Send one message, as `send_message` would but serialised by `wire`."""
    envelope = _envelope(msg)
    if envelope is None:
        return conn.send_message(msg)
    return conn.sendmail(envelope[0], envelope[1], wire(msg))


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
    policy = msg.policy.clone(linesep="\r\n")
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
    for name, value in part.raw_items():
        out.append(policy.fold(name, value))
    out.append("\r\n")
    payload = part._payload  # what the Generator reads, without get_payload's decoding
    if isinstance(payload, list):
        boundary = part.get_boundary()
        if not boundary or part.preamble is not None or part.epilogue is not None:
            raise _Unusual
        for index, sub in enumerate(payload):
            out.append(f"--{boundary}\r\n" if index == 0 else f"\r\n--{boundary}\r\n")
            _wire(sub, policy, out)
        out.append(f"\r\n--{boundary}--\r\n")
    elif isinstance(payload, str) and part.get_content_maintype() != "message":
        if not payload.isascii():
            raise _Unusual  # 8-bit or surrogate-escaped text: the Generator re-encodes it
        if "\r" in payload:
            payload = _NEWLINES.sub("\n", payload)
        out.append(payload.replace("\n", "\r\n"))
    elif payload is not None:
        raise _Unusual


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
