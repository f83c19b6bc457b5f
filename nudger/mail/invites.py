"""Calendar invites for steps: iTIP REQUEST (new or moved) and CANCEL (RFC 5545/5546).

One iTIP message carries one UID (RFC 5546 section 3.2: every component in a
METHOD object describes the same event). Outlook turns a message into exactly
one meeting item and Gmail shows one event card, so a VCALENDAR with several
UIDs would silently drop all but the first. `build_invite` therefore refuses
events with different UIDs; `build_invites` makes one `Invite` per UID, and
`nudger.mail.mime.build_message` puts the first inline (the one clients act on
automatically) and attaches each one as its own `.ics` file, so every step of a
catch-up email can still be added or cancelled with one click.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from email.utils import parseaddr
from functools import lru_cache
from typing import Literal
from zoneinfo import ZoneInfo

from icalendar import Timezone

Method = Literal["REQUEST", "CANCEL"]

PRODID = "-//Nudger//Nudger learning workflow//EN"

# VTIMEZONE covers this much before and after the events: enough for any
# client to resolve the offsets, and ~1 kB instead of icalendar's default
# 1970-2038 range (tens of kB per zone).
_TZ_MARGIN = timedelta(days=183)

_SAFE_KEY = re.compile(r"[^A-Za-z0-9._-]")
_NEWLINE = re.compile(r"\r\n|\r|\n")
# Zones written as UTC ("...Z") with no VTIMEZONE.
_UTC = frozenset({"UTC", "Etc/UTC"})


@dataclass(frozen=True)
class InviteEvent:
    """One step's calendar event."""

    uid: str
    sequence: int
    start: datetime
    minutes: int
    tz: str
    summary: str
    description: str
    url: str | None = None


@dataclass(frozen=True)
class Invite:
    """A serialised iTIP object ready to attach to an email."""

    method: Method
    ics: bytes


def make_uid(enrolment_id: int, step_key: str, domain: str) -> str:
    """Return the stable UID of one enrolment's step."""
    safe = _SAFE_KEY.sub("-", step_key)
    if safe != step_key:
        # Keys that needed escaping could collide after it; the hash keeps them apart.
        safe += "." + hashlib.sha256(step_key.encode()).hexdigest()[:8]
    return f"nudger.{enrolment_id}.{safe}@{domain}"


def build_invite(
    method: Method,
    events: list[InviteEvent],
    *,
    organizer: str,
    attendee: str,
    attendee_name: str | None = None,
    now: datetime,
) -> Invite:
    """Build one iTIP message (all events must share one UID)."""
    if method not in ("REQUEST", "CANCEL"):
        raise ValueError(f"unsupported iTIP method {method!r}")
    if not events:
        raise ValueError("an invite needs at least one event")
    if len({e.uid for e in events}) > 1:
        raise ValueError("one iTIP message carries one UID; use build_invites()")
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")

    org_name, org_addr = _parse_address(organizer)
    if not org_addr:
        raise ValueError(f"organizer {organizer!r} has no address")
    head = ["BEGIN:VCALENDAR", "VERSION:2.0", f"PRODID:{PRODID}", "CALSCALE:GREGORIAN"]
    lines = [*head, f"METHOD:{method}"]
    body: list[str] = []
    for event in events:
        body += _vevent(method, event, org_name, org_addr, attendee, attendee_name, now)
    # Whole months, so that one VTIMEZONE per zone and month serves every invite.
    starts = [e.start.date() for e in events]
    first = _month(min(starts) - _TZ_MARGIN)
    last = _month(max(starts) + _TZ_MARGIN + timedelta(days=31))
    zones = sorted({e.tz for e in events if e.tz not in _UTC})
    ics = (
        "".join([_fold(line) for line in lines]).encode()
        + b"".join(_vtimezone(tzid, first, last) for tzid in zones)
        + "".join([_fold(line) for line in [*body, "END:VCALENDAR"]]).encode()
    )
    return Invite(method=method, ics=ics)


@lru_cache(maxsize=64)
def _parse_address(value: str) -> tuple[str, str]:
    # The organizer is NUDGER_FROM on every invite: parse it once.
    return parseaddr(value)


def _month(day: date) -> date:
    return day.replace(day=1)


@lru_cache(maxsize=512)
def _vtimezone(tzid: str, first: date, last: date) -> bytes:
    """Return the serialised VTIMEZONE of a zone over a range, built once (~20 ms)."""
    try:
        return Timezone.from_tzid(tzid, first_date=first, last_date=last).to_ical()
    except ValueError:
        return b""  # a zone icalendar cannot describe; add_missing_timezones skips it too


def build_invites(
    method: Method,
    events: list[InviteEvent],
    *,
    organizer: str,
    attendee: str,
    attendee_name: str | None = None,
    now: datetime,
) -> list[Invite]:
    """Build one iTIP message per UID, in the order the events came."""
    by_uid: dict[str, list[InviteEvent]] = {}
    for event in events:
        by_uid.setdefault(event.uid, []).append(event)
    return [
        build_invite(
            method,
            group,
            organizer=organizer,
            attendee=attendee,
            attendee_name=attendee_name,
            now=now,
        )
        for group in by_uid.values()
    ]


def _vevent(
    method: Method,
    event: InviteEvent,
    org_name: str,
    org_addr: str,
    attendee: str,
    attendee_name: str | None,
    now: datetime,
) -> list[str]:
    """Return the content lines of one VEVENT, unfolded.

    Written out here rather than through icalendar's Event: serialising that
    costs a millisecond per invite, most of a step email's calendar part.
    The VTIMEZONE still comes from icalendar (built once per zone and month).
    """
    if event.start.tzinfo is None:
        raise ValueError(f"event {event.uid} starts at a naive datetime")
    # Express the time in the learner's named zone so DTSTART carries its TZID
    # (and the client keeps 10:00 local across a DST change).
    start = event.start.astimezone(ZoneInfo(event.tz))
    end = start + timedelta(minutes=event.minutes)
    who = f"CN={_param(attendee_name)};" if attendee_name else ""
    # Nobody reads replies to nudger@: RSVP=FALSE keeps clients from sending them.
    reply = "PARTSTAT=NEEDS-ACTION;" if method == "REQUEST" else ""
    lines = [
        "BEGIN:VEVENT",
        f"SUMMARY:{_text(event.summary)}",
        _when("DTSTART", start, event.tz),
        _when("DTEND", end, event.tz),
        f"DTSTAMP:{now.astimezone(UTC):%Y%m%dT%H%M%SZ}",
        f"UID:{_text(event.uid)}",
        f"SEQUENCE:{int(event.sequence)}",
        f"ATTENDEE;{who}{reply}ROLE=REQ-PARTICIPANT;RSVP=FALSE:mailto:{_uri(attendee)}",
        f"DESCRIPTION:{_text(_description(event))}",
        f"ORGANIZER{f';CN={_param(org_name)}' if org_name else ''}:mailto:{_uri(org_addr)}",
        f"STATUS:{'CANCELLED' if method == 'CANCEL' else 'CONFIRMED'}",
        "TRANSP:OPAQUE",
    ]
    if event.url:
        lines.append(f"URL:{_uri(event.url)}")
    if method == "REQUEST":
        lines += [
            "BEGIN:VALARM",
            "ACTION:DISPLAY",
            f"DESCRIPTION:{_text(event.summary)}",
            "TRIGGER:-PT10M",
            "END:VALARM",
        ]
    lines.append("END:VEVENT")
    return lines


def _when(name: str, moment: datetime, tz: str) -> str:
    """Return a DATE-TIME property: UTC with "Z", any other zone by TZID (RFC 5545 3.3.5)."""
    if tz in _UTC:
        return f"{name}:{moment.astimezone(UTC):%Y%m%dT%H%M%SZ}"
    return f"{name};TZID={tz}:{moment:%Y%m%dT%H%M%S}"


def _text(value: str) -> str:
    """Escape a TEXT value (RFC 5545 3.3.11)."""
    value = value.replace("\\", "\\\\").replace(";", "\\;").replace(",", "\\,")
    return _NEWLINE.sub("\\\\n", value)


def _param(value: str) -> str:
    """Quote a parameter value; RFC 6868 carets stand for quotes and line breaks."""
    value = _NEWLINE.sub("^n", value.replace("^", "^^")).replace('"', "^'")
    return f'"{value}"'


def _uri(value: str) -> str:
    """Return a URI or address with no line breaks (they would end the property)."""
    return _NEWLINE.sub("", value)


def _fold(line: str) -> str:
    """Fold a content line at 75 octets, never inside a UTF-8 character (RFC 5545 3.1)."""
    if len(line) <= 75 and line.isascii():
        return line + "\r\n"  # most lines: nothing to fold, no need to encode
    data = line.encode()
    if len(data) <= 75:
        return line + "\r\n"
    pieces, start, limit = [], 0, 75
    while start < len(data):
        end = min(start + limit, len(data))
        while end < len(data) and data[end] & 0xC0 == 0x80:
            end -= 1  # a continuation byte: cut before the character it belongs to
        pieces.append(data[start:end].decode())
        start, limit = end, 74  # continuation lines begin with a space
    return "\r\n ".join(pieces) + "\r\n"


def _description(event: InviteEvent) -> str:
    """Return the event text, ending with the done link if it is not in it yet."""
    text = event.description.strip()
    if event.url and event.url not in text:
        text = f"{text}\n\nMark it done: {event.url}" if text else f"Mark it done: {event.url}"
    return text
