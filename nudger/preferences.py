"""What a person may change from an emailed link: reminders muted, digest frequency."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session

from nudger.models import AuditLog, Enrolment, Person

DIGEST_CHOICES = {"day": "Every working day", "week": "Once a week"}


def set_reminders_muted(
    session: Session, enrolment: Enrolment, muted: bool, now: datetime, actor: str
) -> bool:
    """Mute (or unmute) reminders for one journey; steps still arrive. Return True if changed."""
    if enrolment.reminders_muted == muted:
        return False
    enrolment.reminders_muted = muted
    enrolment.updated_at = now
    session.add(
        AuditLog(
            at=now,
            actor=actor,
            action="enrolment.mute" if muted else "enrolment.unmute",
            subject_type="enrolment",
            subject_id=enrolment.id,
            detail={},
        )
    )
    session.commit()
    return True


def set_digest_every(
    session: Session, person: Person, every: str, now: datetime, actor: str
) -> bool:
    """Choose how often a manager's digest comes: "day" or "week". Return True if changed."""
    if every not in DIGEST_CHOICES:
        raise ValueError(f"digest frequency must be one of {', '.join(DIGEST_CHOICES)}")
    if person.digest_every == every:
        return False
    before = person.digest_every
    person.digest_every = every
    person.updated_at = now
    session.add(
        AuditLog(
            at=now,
            actor=actor,
            action="person.digest_every",
            subject_type="person",
            subject_id=person.id,
            detail={"from": before, "to": every},
        )
    )
    session.commit()
    return True
