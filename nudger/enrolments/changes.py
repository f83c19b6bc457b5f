"""Pause, resume and withdraw enrolments."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import update
from sqlmodel import Session, select

from nudger.audit import record
from nudger.enrolments.invite_changes import (
    invite_changed,
    invites_cancelled,
    open_invites,
    unsent_cancels_withdrawn,
)
from nudger.models import Enrolment, EnrolmentStep, Journey, Person, Step
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


def pause(
    session: Session,
    enrolment: Enrolment,
    now: datetime,
    actor: str = "cli",
    *,
    default_country: str = "",
) -> bool:
    """Stop sending until resumed; return False if it was not active.

    Invites still ahead are cancelled, so the learner's calendar is free while
    they are away; resuming sends them again if they are still ahead then.
    """
    if enrolment.status != "active":
        return False
    enrolment.status, enrolment.paused_at, enrolment.next_action_at = "paused", now, None
    enrolment.updated_at = now
    cancelled = invites_cancelled(session, open_invites(session, enrolment.id, now), now)
    _audit(session, enrolment, now, actor, "enrolment.pause", invites_cancelled=len(cancelled))
    return True


def resume(
    session: Session,
    enrolment: Enrolment,
    now: datetime,
    actor: str = "cli",
    *,
    default_country: str = "",
) -> bool:
    """Restart a paused enrolment; its pending steps move by the working days paused.

    The pause's length is the number of working-day send times that passed
    while it lasted, in the learner's zone and calendar (weekends, holidays and
    daylight-saving changes included). Steps not yet sent move by that many
    working days; open steps' due dates move by as many, so a pause never makes
    anyone overdue.
    """
    if enrolment.status != "paused":
        return False
    person = session.get(Person, enrolment.person_id)
    plan = _plan(session, enrolment.journey_id)
    cal = plan.calendar(person, default_country)
    tz = person.timezone
    paused_at = enrolment.paused_at or now
    shift = plan.paused_days(cal, tz, enrolment.start_date, enrolment.shift_days, paused_at, now)
    enrolment.shift_days += shift
    enrolment.status, enrolment.paused_at, enrolment.next_action_at = "active", None, now
    enrolment.updated_at = now
    open_rows = session.exec(
        select(EnrolmentStep).where(
            EnrolmentStep.enrolment_id == enrolment.id,
            EnrolmentStep.status == "sent",
            EnrolmentStep.due_at.is_not(None),
        )
    )
    for es in open_rows:
        if shift:
            es.due_at = plan.after_due(cal, tz, es.due_at, shift)
    ahead = open_invites(session, enrolment.id, now)
    if not shift:
        # Nothing moved: a cancel the pause wrote and that has not gone out yet
        # is called off, and those invites stand as the learner has them.
        standing = unsent_cancels_withdrawn(session, enrolment.id, paused_at, now)
        ahead = [es for es in ahead if es.id not in standing]
    restored = invite_changed(session, ahead, now)
    _audit(
        session,
        enrolment,
        now,
        actor,
        "enrolment.resume",
        shift_days=shift,
        invites_restored=len(restored),
    )
    return True


def withdraw(
    session: Session,
    enrolment: Enrolment,
    now: datetime,
    actor: str = "cli",
    *,
    default_country: str = "",
) -> bool:
    """Stop everything for good: open steps are cancelled, and invites still ahead too."""
    if enrolment.status == "withdrawn":
        return False
    was_paused = enrolment.status == "paused"
    enrolment.status, enrolment.next_action_at, enrolment.updated_at = "withdrawn", None, now
    # A paused enrolment's invites were cancelled when it was paused.
    ahead = [] if was_paused else open_invites(session, enrolment.id, now)
    cancelled = invites_cancelled(session, ahead, now)
    session.execute(
        update(EnrolmentStep)
        .where(EnrolmentStep.enrolment_id == enrolment.id, EnrolmentStep.status == "sent")
        .values(status="cancelled")
    )
    _audit(session, enrolment, now, actor, "enrolment.withdraw", invites_cancelled=len(cancelled))
    return True


def _plan(session: Session, journey_id: int) -> JourneyPlan:
    journey = session.get(Journey, journey_id)
    steps = list(session.exec(select(Step).where(Step.journey_id == journey_id)))
    return JourneyPlan.build(journey, steps)


def _audit(
    session: Session, enrolment: Enrolment, now: datetime, actor: str, action: str, **detail
) -> None:
    record(session, actor, action, now, "enrolment", enrolment.id, **detail)


class StartNotMoved(ValueError):
    """The start date cannot be moved as asked; the message says why."""


def move_start(
    session: Session, enrolment: Enrolment, new_date, now: datetime, actor: str = "cli"
) -> bool:
    """Move the start date; steps not yet sent follow it, sent steps stay as they are.

    Return False if the date is unchanged. Dates before the learner's today are
    refused: they would send every step "due" since then in one catch-up email.
    """
    from nudger.calendar import local_date  # here: this function was added at the file's end

    if enrolment.status in ("withdrawn", "completed"):
        raise StartNotMoved(f"the enrolment is {enrolment.status}: nothing is left to schedule")
    person = session.get(Person, enrolment.person_id)
    today = local_date(now, person.timezone)
    if new_date < today:
        raise StartNotMoved(
            f"{new_date.isoformat()} is in the past for this learner "
            f"(today is {today.isoformat()} in {person.timezone}): pick today or later"
        )
    if new_date == enrolment.start_date:
        return False
    old = enrolment.start_date
    enrolment.start_date, enrolment.updated_at = new_date, now
    if enrolment.status == "active":
        enrolment.next_action_at = now  # the tick works out the next send from the new start
    _audit(
        session,
        enrolment,
        now,
        actor,
        "enrolment.move_start",
        old=old.isoformat(),
        new=new_date.isoformat(),
    )
    return True
