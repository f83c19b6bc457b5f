"""Serialise EmailMessages to the bytes SMTP sends, and read their envelope.

`wire` writes a message as smtplib would, byte for byte, but without the
email package's Generator for the parts `nudger.mail.mime.build_message` makes
(their payloads are encoded already). `data_block` turns those bytes into a
DATA block; `envelope` gives the sender and recipients `send_message` would.
"""

from __future__ import annotations

import re
import smtplib
from email.generator import BytesGenerator
from email.message import Message
from email.utils import getaddresses
from functools import lru_cache
from io import BytesIO

_NEWLINES = re.compile(r"\r\n|\r|\n")
_BARE_ADDRESS = re.compile(r"[^\s@<>(),;:\"\[\]\\]+@[^\s@<>(),;:\"\[\]\\]+")


def quote(address: str) -> str:
    """Return an envelope address in angle brackets, as smtplib.quoteaddr does."""
    if _BARE_ADDRESS.fullmatch(address):
        return f"<{address}>"  # the common case, without the address parser
    return smtplib.quoteaddr(address)


def data_block(data: bytes) -> bytes:
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


def envelope_of(msg: Message) -> tuple[str, list[str]] | None:
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
    # A Return-Path set by Nudger (VERP, nudger.mail.mime.add_inbound_headers) is the
    # envelope sender; `wire` leaves the header out, as the receiving server adds its own.
    sender = _addresses(
        tuple(headers.get("return-path") or headers.get("sender") or headers.get("from") or [""])
    )[0]
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
    """Serialise a message with CRLF line ends, as smtplib's send_message would.

    One difference: a body line starting "From " is sent as it is, where
    send_message's Generator writes ">From " (mbox quoting, which means
    nothing in SMTP and changes the text).

    The Generator writes payloads line by line in Python (~1 ms for a message
    with invites). Parts whose payloads are already-encoded strings, as
    `nudger.mail.mime.build_message` makes them, only need their headers folded
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
        if name == "Return-Path":
            continue  # the envelope's, not the content's (see envelope_of)
        out.append(_fold(policy, name, value))
        if name.lower() == "content-type":
            content_type = value
    out.append("\r\n")
    # Undecoded, as the Generator writes it: the parts of a multipart, else the encoded body.
    payload = part.get_payload()
    if isinstance(payload, list):
        boundary = _boundary(content_type)
        if not boundary or part.preamble is not None or part.epilogue is not None:
            raise _Unusual
        for index, sub in enumerate(payload):
            out.append(f"--{boundary}\r\n" if index == 0 else f"\r\n--{boundary}\r\n")
            _wire(sub, policy, out)
        out.append(f"\r\n--{boundary}--\r\n")
    elif (
        isinstance(payload, str)
        and (_maintype(content_type) if content_type else part.get_content_maintype()) != "message"
    ):
        if not payload.isascii():
            raise _Unusual  # 8-bit or surrogate-escaped text: the Generator re-encodes it
        if "\r" not in payload:
            out.append(payload.replace("\n", "\r\n"))
        elif payload.count("\r") == payload.count("\n") == payload.count("\r\n"):
            out.append(payload)  # CRLF already (an invite's text/calendar)
        else:
            out.append(_NEWLINES.sub("\r\n", payload))
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
