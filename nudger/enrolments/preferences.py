"""What a person may change from an emailed link: reminders muted, digest frequency."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session

from nudger.audit import record
from nudger.models import NO_DIGEST, Enrolment, Person

DIGEST_CHOICES = {"day": "Every working day", "week": "Once a week", NO_DIGEST: "Never"}


def set_reminders_muted(
    session: Session, enrolment: Enrolment, muted: bool, now: datetime, actor: str
) -> bool:
    """Mute (or unmute) reminders for one journey; steps still arrive. Return True if changed."""
    if enrolment.reminders_muted == muted:
        return False
    enrolment.reminders_muted = muted
    enrolment.updated_at = now
    action = "enrolment.mute" if muted else "enrolment.unmute"
    record(session, actor, action, now, "enrolment", enrolment.id)
    session.commit()
    return True


def set_digest_every(
    session: Session, person: Person, every: str, now: datetime, actor: str
) -> bool:
    """Choose how often a manager's digest comes: day, week or never. Return True if changed."""
    if every not in DIGEST_CHOICES:
        raise ValueError(f"digest frequency must be one of {', '.join(DIGEST_CHOICES)}")
    if person.digest_every == every:
        return False
    before = person.digest_every
    person.digest_every = every
    person.updated_at = now
    change = {"from": before, "to": every}
    record(session, actor, "person.digest_every", now, "person", person.id, **change)
    session.commit()
    return True
