"""Send EmailMessages over one reused SMTP connection, or capture them.

URLs: `smtp://[user:pass@]host[:port]` (plain, port 25), `smtp+starttls://`
(port 587), `smtps://` (implicit TLS, port 465), and `outbox:` (hand each
message to a capture callback). Query parameters: `timeout` (seconds) and
`helo` (the name to greet with, instead of this machine's FQDN).

`base` holds what every transport is, `smtp` the SMTP client and
`smtp_data` the bytes of a message on the wire.
"""

from __future__ import annotations

import ssl
from urllib.parse import parse_qs, unquote, urlsplit

from nudger.outbox.transport.base import Capture, CaptureTransport, Transport
from nudger.outbox.transport.smtp import SMTPTransport

DEFAULT_PORTS = {"smtp": 25, "smtp+starttls": 587, "smtps": 465}


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


def _redact(url: str) -> str:
    """Return the URL without its password, for error messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()
