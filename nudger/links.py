"""'Ask for a fresh link': email a person new links, to the address on file only.

An expired token still names its subject (its signature is good), so the
person is known; the address is never typed in, so nobody can use this to
send mail elsewhere. One email per person per clock hour: the dedupe key
carries the hour.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlmodel import Session

from nudger import outbox
from nudger.config import Settings
from nudger.mail.compose.links import KIND
from nudger.models import Checkin, Enrolment, EnrolmentStep, Person


@dataclass(frozen=True)
class Request:
    """The outcome of asking: who it goes to, and whether it was sent or held back."""

    masked_email: str
    queued: bool  # False: one already went out this hour


def person_for(session: Session, purpose: str, subject_id: int) -> Person | None:
    """Return the person a token is about, whatever its purpose."""
    if purpose in ("team", "prefs"):
        return session.get(Person, subject_id)
    if purpose == "checkin":  # the rater: a learner, or their manager
        checkin = session.get(Checkin, subject_id)
        return session.get(Person, checkin.rater_id) if checkin and checkin.rater_id else None
    if purpose == "done":
        es = session.get(EnrolmentStep, subject_id)
        subject_id = es.enrolment_id if es else 0
    enrolment = session.get(Enrolment, subject_id)
    return session.get(Person, enrolment.person_id) if enrolment else None


def mask(email: str) -> str:
    """Show enough of an address to recognise it, not enough to harvest it."""
    local, _, domain = email.partition("@")
    return f"{local[:1]}{'•' * max(2, min(len(local) - 1, 6))}@{domain}"


def request_links(
    session: Session, settings: Settings, purpose: str, subject_id: int, now: datetime
) -> Request | None:
    """Queue an email with fresh links to the person's address on file; None if unknown."""
    person = person_for(session, purpose, subject_id)
    if person is None:
        return None
    message = {
        "kind": KIND,
        "dedupe_key": f"links:{person.id}:{now:%Y%m%d%H}",
        "to_email": person.email,
        "person_id": person.id,
        "payload": {"purpose": purpose, "subject_id": subject_id},
    }
    added = outbox.add(session, [message], now)
    session.commit()
    outbox.enqueue_committed(session, settings, [row.id for row in added], now)
    return Request(mask(person.email), bool(added))
