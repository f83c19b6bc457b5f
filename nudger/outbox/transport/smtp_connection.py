"""Open, log in to and close an SMTP connection, and read what the server's answers mean."""

from __future__ import annotations

import contextlib
import smtplib
import ssl

from nudger.outbox.transport.base import PermanentSendError, SendError, TransientSendError


def connect(
    scheme: str,
    host: str,
    port: int,
    *,
    username: str | None,
    password: str | None,
    local_hostname: str | None,
    timeout: float,
    ssl_context: ssl.SSLContext | None,
) -> smtplib.SMTP:
    """Open a connection, start TLS if the scheme asks for it, and log in."""
    # Built only for TLS: loading the system's CA certificates takes ~20 ms.
    tls = scheme in ("smtps", "smtp+starttls")
    context = (ssl_context or ssl.create_default_context()) if tls else None
    conn: smtplib.SMTP | None = None
    try:
        if scheme == "smtps":
            conn = smtplib.SMTP_SSL(
                host,
                port,
                local_hostname=local_hostname,
                timeout=timeout,
                context=context,
            )
        else:
            conn = smtplib.SMTP(host, port, local_hostname=local_hostname, timeout=timeout)
        conn.ehlo()
        if scheme == "smtp+starttls":
            conn.starttls(context=context)
            conn.ehlo()
        if username:
            conn.login(username, password or "")
        return conn
    except smtplib.SMTPResponseException as exc:
        close_quietly(conn)
        raise classify(exc.smtp_code, reply_text(exc.smtp_error), connecting=True) from exc
    except smtplib.SMTPNotSupportedError as exc:
        # The URL asks for STARTTLS or AUTH the server does not offer: a
        # configuration problem that retrying will not fix.
        close_quietly(conn)
        raise PermanentSendError(reply_text(exc), connecting=True) from exc
    except (OSError, smtplib.SMTPException) as exc:
        close_quietly(conn)
        raise TransientSendError(
            f"cannot connect to {host}:{port}: {reply_text(exc) or type(exc).__name__}",
            connecting=True,
        ) from exc


def classify(code: int | None, detail: str, *, connecting: bool = False) -> SendError:
    """Return the error an SMTP reply code stands for."""
    if code is not None and 500 <= code < 600:
        return PermanentSendError(detail, code, connecting=connecting)
    return TransientSendError(detail, code, connecting=connecting)


def worst_refusal(refused: dict[str, tuple[int, bytes]]) -> tuple[int, str]:
    """Return the highest code among refused recipients, with its text."""
    address, (code, reply) = max(refused.items(), key=lambda item: item[1][0])
    return code, f"{address}: {reply_text(reply)}"


def reply_text(value: object) -> str:
    """Return a server reply or an exception as one line of text."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return " ".join(str(value).split())


def close_quietly(conn: smtplib.SMTP | None) -> None:
    """Close a connection without caring how it ends."""
    if conn is not None:
        with contextlib.suppress(OSError):
            conn.close()
