"""Calendar invites for steps: iTIP REQUEST (new or moved) and CANCEL (RFC 5545/5546).

One iTIP message carries one UID (RFC 5546 section 3.2: every component in a
METHOD object describes the same event). Outlook turns a message into exactly
one meeting item and Gmail shows one event card, so a VCALENDAR with several
UIDs would silently drop all but the first. `build_invite` therefore refuses
events with different UIDs; `build_invites` makes one `Invite` per UID, and
`nudger.emails.build_message` puts the first inline (the one clients act on
automatically) and attaches each one as its own `.ics` file, so every step of a
catch-up email can still be added or cancelled with one click.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from email.utils import parseaddr
from typing import Literal
from zoneinfo import ZoneInfo

from icalendar import Alarm, Calendar, Event, vCalAddress

Method = Literal["REQUEST", "CANCEL"]

PRODID = "-//Nudger//Nudger learning workflow//EN"

# VTIMEZONE covers this much before and after the events: enough for any
# client to resolve the offsets, and ~1 kB instead of icalendar's default
# 1970-2038 range (tens of kB per zone).
_TZ_MARGIN = timedelta(days=183)

_SAFE_KEY = re.compile(r"[^A-Za-z0-9._-]")


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

    cal = Calendar()
    cal.add("prodid", PRODID)
    cal.add("version", "2.0")
    cal.add("calscale", "GREGORIAN")
    cal.add("method", method)
    org_name, org_addr = parseaddr(organizer)
    if not org_addr:
        raise ValueError(f"organizer {organizer!r} has no address")
    starts: list[date] = []
    for event in events:
        cal.add_component(_vevent(method, event, org_name, org_addr, attendee, attendee_name, now))
        starts.append(event.start.date())
    cal.add_missing_timezones(
        first_date=min(starts) - _TZ_MARGIN, last_date=max(starts) + _TZ_MARGIN
    )
    return Invite(method=method, ics=cal.to_ical())


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
) -> Event:
    """Return the VEVENT for one event."""
    if event.start.tzinfo is None:
        raise ValueError(f"event {event.uid} starts at a naive datetime")
    # Express the time in the learner's named zone so DTSTART carries its TZID
    # (and the client keeps 10:00 local across a DST change).
    start = event.start.astimezone(ZoneInfo(event.tz))
    vevent = Event()
    vevent.add("uid", event.uid)
    vevent.add("sequence", event.sequence)
    vevent.add("dtstamp", now.astimezone(UTC))
    vevent.add("dtstart", start)
    vevent.add("dtend", start + timedelta(minutes=event.minutes))
    vevent.add("summary", event.summary)
    vevent.add("description", _description(event))
    if event.url:
        vevent.add("url", event.url)

    organizer = vCalAddress(f"mailto:{org_addr}")
    if org_name:
        organizer.params["CN"] = org_name
    vevent.add("organizer", organizer)

    who = vCalAddress(f"mailto:{attendee}")
    if attendee_name:
        who.params["CN"] = attendee_name
    who.params["ROLE"] = "REQ-PARTICIPANT"
    # Nobody reads replies to nudger@: RSVP=FALSE keeps clients from sending them.
    who.params["RSVP"] = "FALSE"
    if method == "REQUEST":
        who.params["PARTSTAT"] = "NEEDS-ACTION"
    vevent.add("attendee", who)

    vevent.add("status", "CANCELLED" if method == "CANCEL" else "CONFIRMED")
    vevent.add("transp", "OPAQUE")
    if method == "REQUEST":
        alarm = Alarm()
        alarm.add("action", "DISPLAY")
        alarm.add("description", event.summary)
        alarm.add("trigger", timedelta(minutes=-10))
        vevent.add_component(alarm)
    return vevent


def _description(event: InviteEvent) -> str:
    """Return the event text, ending with the done link if it is not in it yet."""
    text = event.description.strip()
    if event.url and event.url not in text:
        text = f"{text}\n\nMark it done: {event.url}" if text else f"Mark it done: {event.url}"
    return text
