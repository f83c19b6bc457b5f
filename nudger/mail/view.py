"""Read a sent message back the way a mail client shows it: for the development outbox."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser

from icalendar import Calendar

_HEAD = re.compile(r"<head[^>]*>", re.IGNORECASE)


@dataclass(frozen=True)
class EventView:
    """One VEVENT of an invite, as a calendar would show it."""

    uid: str
    sequence: int
    status: str
    summary: str
    start: datetime | date | None
    end: datetime | date | None
    tzid: str


@dataclass(frozen=True)
class InviteView:
    """One .ics file of a message."""

    filename: str
    method: str
    ics: str
    events: list[EventView]
    inline: bool  # the text/calendar part clients act on, rather than an attachment


@dataclass
class MailView:
    """A message's parts: headers, text, HTML and invites."""

    headers: list[tuple[str, str]]
    text: str | None = None
    html: str | None = None
    invites: list[InviteView] = field(default_factory=list)

    def header(self, name: str) -> str:
        """Return the first header called `name`, or an empty string."""
        return next((v for k, v in self.headers if k.lower() == name.lower()), "")

    @property
    def attachments(self) -> list[InviteView]:
        """Return the .ics attachments (the inline part is the same as the first)."""
        return [i for i in self.invites if not i.inline] or self.invites


def read(raw: bytes) -> MailView:
    """Parse a raw message into what a mail client would show."""
    msg = BytesParser(policy=policy.default).parsebytes(raw)
    assert isinstance(msg, EmailMessage)
    view = MailView(headers=[(k, str(v)) for k, v in msg.items()])
    number = 0
    for part in msg.walk():
        ctype = part.get_content_type()
        if part.is_multipart():
            continue
        if ctype == "text/plain" and view.text is None and not part.get_filename():
            view.text = part.get_content()
        elif ctype == "text/html" and view.html is None:
            view.html = part.get_content()
        elif ctype in ("text/calendar", "application/ics"):
            inline = ctype == "text/calendar" and not part.get_filename()
            payload = part.get_payload(decode=True) or b""
            if not inline:
                number += 1
            name = part.get_filename() or ("invite.ics" if inline else f"invite-{number}.ics")
            view.invites.append(_invite(name, payload, inline, part.get_param("method")))
    return view


def framed_html(html: str) -> str:
    """Return the HTML with links opening in a new tab, as a mail client's do."""
    base = '<base target="_blank">'
    match = _HEAD.search(html)
    if match is None:
        return base + html
    return html[: match.end()] + base + html[match.end() :]


def _invite(filename: str, payload: bytes, inline: bool, method: str | None) -> InviteView:
    text = payload.decode("utf-8", "replace")
    try:
        cal = Calendar.from_ical(text)
    except ValueError:
        return InviteView(filename, method or "?", text, [], inline)
    events = [
        EventView(
            uid=str(ev.get("uid", "")),
            sequence=int(ev.get("sequence", 0)),
            status=str(ev.get("status", "")),
            summary=str(ev.get("summary", "")),
            start=ev.decoded("dtstart", None),
            end=ev.decoded("dtend", None),
            tzid=str(ev["dtstart"].params.get("TZID", "UTC")) if "dtstart" in ev else "",
        )
        for ev in cal.walk("VEVENT")
    ]
    return InviteView(filename, str(cal.get("method", method or "")), text, events, inline)
