"""Assemble rendered emails into MIME messages: text, HTML and calendar invites.

Nothing here touches the database or the network.
"""

from __future__ import annotations

import binascii
import hashlib
import random
import re
from collections.abc import Sequence
from datetime import datetime
from email.message import EmailMessage, MIMEPart
from email.policy import EmailPolicy
from email.policy import default as default_policy
from email.utils import format_datetime, parseaddr
from functools import lru_cache

from nudger.mail.invites import Invite
from nudger.mail.render import Rendered

_LINE_BREAK = re.compile(r"[\r\n]")


class _MemoPolicy(EmailPolicy):
    """The default policy, parsing each distinct header value once per process.

    Writing a message reads its Content-Type headers over and over (type,
    boundary, charset); parsing them is most of the cost of sending, and the
    values repeat from message to message. Header objects are immutable.
    """

    def header_fetch_parse(self, name: str, value: str):
        if hasattr(value, "name"):
            return value
        # Keyed on the header factory, not the policy: writing clones the policy.
        return _parsed_header(self.header_factory, name, value)


@lru_cache(maxsize=4096)
def _parsed_header(factory, name: str, value: str):
    return factory(name, "".join(value.splitlines()))


# Bodies go out as 7bit, quoted-printable or base64, never raw 8bit: not every
# relay on the way advertises 8BITMIME, and a name like "Zoë" must survive it.
MIME_POLICY = _MemoPolicy(**default_policy.__dict__).clone(cte_type="7bit")


def build_message(
    *,
    kind: str,
    to: str,
    from_addr: str,
    message_id: str,
    date: datetime,
    rendered: Rendered,
    invite: Invite | Sequence[Invite] | None = None,
    headers: dict[str, str] | None = None,
) -> EmailMessage:
    """Assemble the MIME message, with calendar parts when there are invites.

    Several invites (a catch-up email with several steps): the first is the
    inline text/calendar part, which Outlook and Gmail process as the meeting
    request, and every invite is also attached as its own .ics file, one UID
    each, as RFC 5546 wants (see nudger.mail.invites).
    """
    if date.tzinfo is None:
        raise ValueError("date must be timezone-aware")
    invites = [invite] if isinstance(invite, Invite) else list(invite or ())
    fields = {
        "Message-ID": message_id,
        "Date": format_datetime(date),
        "From": from_addr,
        "To": to,
        "Subject": rendered.subject,
        "X-Nudger-Kind": kind,
        "Auto-Submitted": "auto-generated",
        # Exchange/Outlook: no out-of-office or auto replies to a robot's mailbox.
        "X-Auto-Response-Suppress": "OOF, AutoReply",
    }
    for name, value in (headers or {}).items():
        for same in [k for k in fields if k.lower() == name.lower()]:
            del fields[same]
        fields[name] = value
    # Parts are encoded here with C codecs (binascii) and stored ready to
    # write: EmailMessage's set_content/add_alternative parse every header
    # and quoted-printable-encode in pure Python, ~10x the cost of the rest of
    # sending. The tree is the same: multipart/alternative (text, HTML and
    # the inline calendar part), inside multipart/mixed with the .ics files.
    # Plain text is 7bit when it can be, else quoted-printable (readable in
    # the raw source); HTML is base64 (inlined CSS makes long lines that
    # relays may re-wrap).
    alternative = [
        _text_part('text/plain; charset="utf-8"', rendered.text),
        _part('text/html; charset="utf-8"', "base64", _base64(rendered.html.encode())),
    ]
    if invites:
        first = invites[0]
        alternative.append(
            _text_part(f'text/calendar; charset="utf-8"; method="{first.method}"', first.ics)
        )
    msg = EmailMessage(policy=MIME_POLICY)
    for name, value in fields.items():
        _set_header(msg, name, value)
    msg.set_raw("MIME-Version", "1.0")
    if not invites:
        return _multipart(msg, "alternative", alternative)
    attachments = []
    for number, item in enumerate(invites, start=1):
        name = "invite.ics" if number == 1 else f"invite-{number}.ics"
        disposition = {"Content-Disposition": f'attachment; filename="{name}"'}
        attachments.append(
            _part(f'application/ics; name="{name}"', "base64", _base64(item.ics), disposition)
        )
    inner = _multipart(MIMEPart(policy=MIME_POLICY), "alternative", alternative)
    return _multipart(msg, "mixed", [inner, *attachments])


def _set_header(msg: MIMEPart, name: str, value: str) -> None:
    """Store a header as written when it needs no encoding, else let the policy encode it."""
    if value.isascii() and len(name) + 2 + len(value) <= 78 and not _LINE_BREAK.search(value):
        msg.set_raw(name, value)
    else:
        msg[name] = value


def _part(
    content_type: str, cte: str, payload: str, headers: dict[str, str] | None = None
) -> MIMEPart:
    """Return a leaf part whose payload is already encoded with `cte`."""
    part = MIMEPart(policy=MIME_POLICY)
    part.set_raw("Content-Type", content_type)
    part.set_raw("Content-Transfer-Encoding", cte)
    for name, value in (headers or {}).items():
        part.set_raw(name, value)
    part.set_payload(payload)
    return part


def _text_part(content_type: str, text: str | bytes) -> MIMEPart:
    """Return a text part: 7bit when ASCII with short lines, else quoted-printable."""
    data = text if isinstance(text, bytes) else text.encode("utf-8")
    if data.isascii() and max(map(len, data.splitlines()), default=0) <= 78:
        return _part(content_type, "7bit", data.decode("ascii"))
    return _part(content_type, "quoted-printable", binascii.b2a_qp(data, istext=True).decode())


def _base64(data: bytes) -> str:
    """Return base64 in 76-character lines, as base64.encodebytes does.

    encodebytes calls the C encoder once per 57-byte line from Python; one
    call and slicing the result is several times faster on a 10 kB part.
    """
    text = binascii.b2a_base64(data, newline=False).decode("ascii")
    if not text:
        return ""
    return "\n".join([text[i : i + 76] for i in range(0, len(text), 76)]) + "\n"


def _multipart(msg: MIMEPart, subtype: str, parts: list[MIMEPart]) -> MIMEPart:
    """Make `msg` a multipart holding `parts`, with a boundary no part contains."""
    # "=_" never occurs in base64 or quoted-printable; only 7bit text could hold
    # it. A fixed boundary keeps the header the same from message to message.
    plain = [p.get_payload() for p in parts if p.get("Content-Transfer-Encoding") == "7bit"]
    boundary = f"=_nudger_{subtype}"
    while any(boundary in text for text in plain):
        boundary = f"=_{random.getrandbits(64):016x}"
    msg.set_raw("Content-Type", f'multipart/{subtype}; boundary="{boundary}"')
    msg.set_payload(parts)
    return msg


def unsubscribe_headers(url: str) -> dict[str, str]:
    """Return the headers of a one-click unsubscribe (RFC 8058) that POSTs to `url`."""
    return {"List-Unsubscribe": f"<{url}>", "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}


def add_inbound_headers(msg: EmailMessage, return_path: str, reply_to: str | None) -> None:
    """Give a built message its VERP envelope sender and, if it invites answers, a Reply-To.

    The Return-Path header is read by the transport as the envelope sender and
    never written out (the receiving server writes its own).
    """
    _set_header(msg, "Return-Path", f"<{return_path}>")
    if reply_to is not None:
        if "Reply-To" in msg:
            del msg["Reply-To"]
        _, sender = parseaddr(str(msg["From"]))
        name = parseaddr(str(msg["From"]))[0] if sender else ""
        _set_header(msg, "Reply-To", f"{name} <{reply_to}>" if name else reply_to)


def make_message_id(outbox_id: int, dedupe_key: str, domain: str) -> str:
    """Return the Message-ID of one outbox row, the same on every retry."""
    digest = hashlib.sha256(dedupe_key.encode()).hexdigest()[:12]
    return f"<nudger.{outbox_id}.{digest}@{domain}>"


def address_domain(addr: str) -> str:
    """Return the domain of an address such as "Nudger <nudger@example.org>"."""
    _, email = parseaddr(addr)
    local, at, domain = email.rpartition("@")
    if not (local and at and domain):
        raise ValueError(f"no domain in address {addr!r}")
    return domain.lower()
