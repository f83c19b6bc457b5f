"""The SMTP transport: one reused connection, answers read while the next message is built.

`SMTPTransport.start` writes a message and returns; the server's answer is
read when the next message starts, or on `Sending.result()`. With a server
that offers PIPELINING (RFC 2920), a message's envelope goes out in the same
write as the content of the message before. Failures are classified as in
`nudger.outbox.transport.base`: a hang-up before a message's content went out is tried
once more on a new connection; after it, the message counts as not sent
(at-least-once: a retry carries the same Message-ID).
"""

from __future__ import annotations

import smtplib
import ssl
from dataclasses import dataclass, field
from email.message import EmailMessage

from nudger.outbox.transport.base import (
    PermanentSendError,
    SendError,
    Sending,
    TransientSendError,
    Transport,
)
from nudger.outbox.transport.smtp_connection import (
    classify,
    close_quietly,
    connect,
    reply_text,
    worst_refusal,
)
from nudger.outbox.transport.smtp_data import data_block, envelope_of, quote, wire


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
        # With PIPELINING: the message whose envelope went out last, whose
        # answers are unread and whose content waits for them.
        self._waiting: _Waiting | None = None

    def send(self, msg: EmailMessage) -> None:
        """Send one message, reconnecting once if the server dropped the connection."""
        self.start(msg).result()

    def start(self, msg: EmailMessage) -> Sending:
        """Write one message and return before the server's final answer.

        The answer is read when the next message starts (or on `result()`):
        meanwhile the caller builds the next message and the server stores this
        one, instead of each waiting for the other. When the server offers
        PIPELINING (RFC 2920), a message's envelope (MAIL, RCPT, DATA) goes out
        in the same write as the content of the message before, and its answers
        are read only when the next message starts: no round trip is waited for
        while there is a message to build.
        """
        envelope = envelope_of(msg)
        if envelope is None:
            # Unusual headers: smtplib's send_message, answer awaited.
            self._flush()
            return Sending.of(lambda: self._send_now(msg))
        sender, recipients = envelope
        if not recipients:
            return Sending.of(_no_recipient)
        sending = Sending(self._settle)
        payload = data_block(wire(msg))
        commands = [f"MAIL FROM:{quote(sender)}"]
        commands += [f"RCPT TO:{quote(r)}" for r in recipients]
        commands.append("DATA")
        # A pooled connection may have been closed by the server while idle;
        # that says nothing about this message, so one fresh try is fair.
        retry = self._conn is not None
        while True:
            try:
                conn = self._connection()
                if conn.has_extn("pipelining"):
                    block = "".join(f"{c}\r\n" for c in commands).encode("ascii")
                    self._push(_Waiting(sending, recipients, block, payload, retry))
                else:
                    self._flush()
                    self._transact(conn, sending, recipients, commands, payload)
            except _Dropped as exc:
                self._discard()
                if retry:
                    retry = False
                    continue
                sending.settle(TransientSendError(exc.detail))
            except SendError as exc:
                sending.settle(exc)
            return sending

    def _push(self, new: _Waiting | None) -> None:
        """Read what the server has answered, then send in one write the content of
        the message waiting for it and the envelope of `new`.

        Raises _Dropped if the server hung up before `new`'s envelope went out.
        """
        waiting, self._waiting = self._waiting, None
        self._settle_in_flight()
        out = []
        if waiting is not None and self._open(waiting):
            out.append(waiting.payload)
            self._in_flight = (waiting.sending, waiting.refused)
        if new is not None:
            out.append(new.envelope)
        if not out:
            return
        conn = self._conn
        if conn is None:
            raise _Dropped("server disconnected")
        try:
            conn.send(b"".join(out))
        except (OSError, smtplib.SMTPException) as exc:
            raise _Dropped(reply_text(exc) or "server disconnected") from exc
        if new is not None:
            new.conn = conn
        self._waiting = new

    def _open(self, waiting: _Waiting) -> bool:
        """Read the answers to a waiting message's envelope; True when the server
        waits for its content. A hang-up sends the envelope again, once, on a new
        connection: the content has not gone out, so nothing can be duplicated."""
        while True:
            conn = self._conn
            try:
                if conn is None or conn is not waiting.conn:
                    raise smtplib.SMTPServerDisconnected("server disconnected")
                replies = [_reply(conn) for _ in range(len(waiting.recipients) + 2)]
            except (smtplib.SMTPServerDisconnected, ConnectionError) as exc:
                if conn is waiting.conn:
                    self._discard()
                if not waiting.retry:
                    waiting.sending.settle(
                        TransientSendError(reply_text(exc) or "server disconnected")
                    )
                    return False
                waiting.retry = False
                try:
                    waiting.conn = self._connection()
                    if not waiting.conn.has_extn("pipelining"):
                        raise TransientSendError("the server no longer offers PIPELINING")
                    waiting.conn.send(waiting.envelope)
                except SendError as again:
                    waiting.sending.settle(again)
                    return False
                except (OSError, smtplib.SMTPException) as again:
                    self._discard()
                    waiting.sending.settle(TransientSendError(reply_text(again) or "disconnected"))
                    return False
                continue
            except (OSError, smtplib.SMTPException) as exc:
                self._discard()
                waiting.sending.settle(TransientSendError(reply_text(exc) or type(exc).__name__))
                return False
            try:
                waiting.refused = self._check_envelope(conn, waiting.recipients, replies)
            except SendError as exc:
                waiting.sending.settle(exc)
                return False
            return True

    def _flush(self) -> None:
        """Send the waiting message's content and read every answer still due."""
        if self._waiting is not None:
            try:
                self._push(None)
            except _Dropped:
                self._discard()
        self._settle_in_flight()

    def _transact(
        self,
        conn: smtplib.SMTP,
        sending: Sending,
        recipients: list[str],
        commands: list[str],
        payload: bytes,
    ) -> None:
        """MAIL, RCPT and DATA one at a time, then the content; raise if refused."""
        replies: list[tuple[int, bytes]] = []
        try:
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
            raise _Dropped(reply_text(exc) or "server disconnected") from exc
        except (OSError, smtplib.SMTPException) as exc:
            # Timeouts and the like: the connection's state is unknown, so drop it.
            self._discard()
            raise TransientSendError(reply_text(exc) or type(exc).__name__) from exc
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
                raise classify(code, reply_text(reply))
        code, reply = replies[0]
        if code != 250:
            self._abort(conn, code)
            raise classify(code, reply_text(reply))
        refused = {
            address: answer
            for address, answer in zip(recipients, replies[1:], strict=False)
            if answer[0] not in (250, 251)
        }
        if len(refused) == len(recipients):
            self._abort(conn, max(c for c, _ in refused.values()))
            raise classify(*worst_refusal(refused))
        code, reply = replies[-1]
        if code != 354:
            self._abort(conn, code)
            raise classify(code, reply_text(reply))
        return refused

    def _settle(self, sending: Sending) -> None:
        """Read the final answer to `sending`, if it is still on its way."""
        if self._waiting is not None and self._waiting.sending is sending:
            self._flush()
        elif self._in_flight is not None and self._in_flight[0] is sending:
            self._settle_in_flight()

    def _settle_in_flight(self) -> None:
        """Read the server's answer to the message whose content went out last."""
        if self._in_flight is None:
            return
        sending, refused = self._in_flight
        self._in_flight = None
        conn = self._conn
        if conn is None:
            sending.settle(TransientSendError("server disconnected"))
            return
        try:
            code, reply = _reply(conn)
        except (OSError, smtplib.SMTPException) as exc:
            # Sent or not, nobody can tell: at-least-once, so it counts as not sent
            # (a retry carries the same Message-ID). The caller's next message
            # finds the connection gone and reconnects.
            self._discard()
            sending.settle(TransientSendError(reply_text(exc) or "server disconnected"))
            return
        if code != 250:
            if code == 421:
                self._discard()
            sending.settle(classify(code, reply_text(reply)))
        elif refused:
            # Some recipients took it: retrying would duplicate it for them,
            # so this is final either way; report the refusal.
            sending.settle(PermanentSendError(*worst_refusal(refused)[::-1]))
        else:
            sending.settle()

    def _abort(self, conn: smtplib.SMTP, code: int) -> None:
        """End a refused transaction: RSET, or drop the connection if the server is leaving."""
        if code == 421:
            self._discard()
        else:
            self._reset(conn)

    def abort(self) -> None:
        """Hang up without finishing: a message waiting for its content is never sent.

        Used when the caller fails mid-batch (its rows go back by the lease):
        completing a message whose row will not be marked sent would only make
        a duplicate.
        """
        waiting, self._waiting = self._waiting, None
        if waiting is not None:
            waiting.sending.settle(TransientSendError("not sent: the batch stopped"))
        self._discard()

    def close(self) -> None:
        """Read the last answers, say QUIT and close, ignoring a server that already left."""
        self._flush()
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            conn.quit()
        except (OSError, smtplib.SMTPException):
            conn.close()

    def _send_now(self, msg: EmailMessage) -> None:
        """Send one message with smtplib's send_message (Bcc, Resent-*, SMTPUTF8).

        smtplib reports a timeout after the content as a disconnect too, so a
        failure there is never retried on the spot (it could send it twice); a
        pooled connection is checked with NOOP first instead.
        """
        conn = self._connection()
        try:
            conn.noop()
        except (OSError, smtplib.SMTPException):
            self._discard()  # closed while idle: that says nothing about this message
            conn = self._connection()
        try:
            envelope_from = msg.get("Return-Path")
            if envelope_from is not None:
                msg = _without_return_path(msg)
            refused = conn.send_message(msg, from_addr=envelope_from)
        except smtplib.SMTPRecipientsRefused as exc:
            self._reset(conn)
            if not exc.recipients:
                raise PermanentSendError("the message has no recipient address") from exc
            code, detail = worst_refusal(exc.recipients)
            raise classify(code, detail) from exc
        except smtplib.SMTPResponseException as exc:
            # Sender refused, data refused: smtplib already resets or closes
            # on most of these, but not when DATA itself is refused.
            self._reset(conn)
            raise classify(exc.smtp_code, reply_text(exc.smtp_error)) from exc
        except smtplib.SMTPNotSupportedError as exc:
            self._reset(conn)
            raise PermanentSendError(reply_text(exc)) from exc
        except (OSError, smtplib.SMTPException) as exc:
            self._discard()
            raise TransientSendError(reply_text(exc) or type(exc).__name__) from exc
        if refused:
            code, detail = worst_refusal(refused)
            raise PermanentSendError(detail, code)

    def _connection(self) -> smtplib.SMTP:
        """Return the open connection, connecting (and logging in) if needed."""
        if self._conn is None:
            self._conn = self._connect()
        return self._conn

    def _connect(self) -> smtplib.SMTP:
        """Open a connection, start TLS if asked, and log in."""
        return connect(
            self.scheme,
            self.host,
            self.port,
            username=self.username,
            password=self.password,
            local_hostname=self.local_hostname,
            timeout=self.timeout,
            ssl_context=self.ssl_context,
        )

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
            sending.settle(TransientSendError("server disconnected before answering"))
        conn, self._conn = self._conn, None
        close_quietly(conn)


@dataclass(eq=False)
class _Waiting:
    """A message whose MAIL, RCPT and DATA are on the wire, its content held back."""

    sending: Sending
    recipients: list[str]
    envelope: bytes
    payload: bytes
    retry: bool  # may the envelope go again on a new connection after a hang-up
    conn: smtplib.SMTP | None = None  # the connection the envelope went out on
    refused: dict[str, tuple[int, bytes]] = field(default_factory=dict)


def _no_recipient() -> None:
    raise PermanentSendError("the message has no recipient address")


class _Dropped(Exception):
    """The server hung up before this message's content went out (worth one new try)."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


def _reply(conn: smtplib.SMTP) -> tuple[int, bytes]:
    """Read one (possibly multi-line) reply."""
    return conn.getreply()


def _without_return_path(msg: EmailMessage) -> EmailMessage:
    """Return a copy of `msg` without its Return-Path (the envelope carries it)."""
    import copy

    msg = copy.copy(msg)
    del msg["Return-Path"]
    return msg
