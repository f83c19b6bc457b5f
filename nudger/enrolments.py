"""Pause, resume and withdraw enrolments."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import update
from sqlmodel import Session, select

from nudger.calendar import local_date
from nudger.models import AuditLog, Enrolment, EnrolmentStep, Journey, Person, Step
from nudger.schedule import JourneyPlan


class EnrolmentNotFound(LookupError):
    """No enrolment matches the email (and journey) given."""


class AmbiguousEnrolment(LookupError):
    """The person is on several journeys; say which one."""

    def __init__(self, slugs: list[str]) -> None:
        super().__init__(", ".join(slugs))
        self.slugs = slugs


def find_enrolment(session: Session, email: str, journey_slug: str | None = None) -> Enrolment:
    """Return the one enrolment of `email` (on `journey_slug` if given)."""
    query = (
        select(Enrolment, Journey.slug)
        .join(Person, Person.id == Enrolment.person_id)
        .join(Journey, Journey.id == Enrolment.journey_id)
        .where(Person.email == email.strip().lower())
    )
    if journey_slug:
        query = query.where(Journey.slug == journey_slug)
    rows = session.exec(query).all()
    if not rows:
        raise EnrolmentNotFound(email)
    if len(rows) > 1:
        raise AmbiguousEnrolment(sorted(slug for _, slug in rows))
    return rows[0][0]


def pause(session: Session, enrolment: Enrolment, now: datetime, actor: str = "cli") -> bool:
    """Stop sending until resumed; return False if it was not active."""
    if enrolment.status != "active":
        return False
    enrolment.status, enrolment.paused_at, enrolment.next_action_at = "paused", now, None
    enrolment.updated_at = now
    _audit(session, enrolment, now, actor, "enrolment.pause")
    return True


def resume(session: Session, enrolment: Enrolment, now: datetime, actor: str = "cli") -> bool:
    """Restart a paused enrolment; its pending steps move by the working days paused."""
    if enrolment.status != "paused":
        return False
    person = session.get(Person, enrolment.person_id)
    plan = _plan(session, enrolment.journey_id)
    cal = plan.calendar(person)
    paused_on = local_date(enrolment.paused_at or now, person.timezone)
    shift = cal.working_days_between(paused_on, local_date(now, person.timezone))
    enrolment.shift_days += shift
    enrolment.status, enrolment.paused_at, enrolment.next_action_at = "active", None, now
    enrolment.updated_at = now
    _audit(session, enrolment, now, actor, "enrolment.resume", shift_days=shift)
    return True


def withdraw(session: Session, enrolment: Enrolment, now: datetime, actor: str = "cli") -> bool:
    """Stop everything for good; open steps are cancelled."""
    if enrolment.status == "withdrawn":
        return False
    enrolment.status, enrolment.next_action_at, enrolment.updated_at = "withdrawn", None, now
    session.execute(
        update(EnrolmentStep)
        .where(EnrolmentStep.enrolment_id == enrolment.id, EnrolmentStep.status == "sent")
        .values(status="cancelled")
    )
    _audit(session, enrolment, now, actor, "enrolment.withdraw")
    return True


def _plan(session: Session, journey_id: int) -> JourneyPlan:
    journey = session.get(Journey, journey_id)
    steps = list(session.exec(select(Step).where(Step.journey_id == journey_id)))
    return JourneyPlan.build(journey, steps)


def _audit(
    session: Session, enrolment: Enrolment, now: datetime, actor: str, action: str, **detail
) -> None:
    session.add(
        AuditLog(
            at=now,
            actor=actor,
            action=action,
            subject_type="enrolment",
            subject_id=enrolment.id,
            detail=detail,
        )
    )
