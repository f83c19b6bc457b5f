"""Completing steps, and what a learner sees of their journey and cohort."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import bindparam, delete, insert, update
from sqlalchemy.orm.attributes import set_committed_value
from sqlmodel import Session, func, select

from nudger import events
from nudger.audit import record
from nudger.calendar import local_date, local_instant
from nudger.config import Settings
from nudger.models import (
    AuditLog,
    DigestQueue,
    Enrolment,
    EnrolmentStep,
    EscalationEvent,
    Journey,
    Person,
    Step,
)
from nudger.schedule import JourneyPlan

# Links about an enrolment keep working this long after it ends (completed or withdrawn).
LINK_GRACE = timedelta(days=90)

# The statements of every "Mark as done", built once: on this path building a statement
# costs more than running it. Parameters named like columns are the values SET.
_STEPS, _ENROLMENTS = EnrolmentStep.__table__, Enrolment.__table__
_EVENTS = EscalationEvent.__table__
_LOAD_STEP = (
    select(EnrolmentStep, Step, Enrolment, Journey, Person)
    .join(Step, Step.id == EnrolmentStep.step_id)
    .join(Enrolment, Enrolment.id == EnrolmentStep.enrolment_id)
    .join(Journey, Journey.id == Enrolment.journey_id)
    .join(Person, Person.id == Enrolment.person_id)
    .where(EnrolmentStep.id == bindparam("es_id"))
)
# A conditional update, so two presses at once record one completion.
_CLOSE_STEP = update(_STEPS).where(_STEPS.c.id == bindparam("es_id"), _STEPS.c.status == "sent")
_RESOLVE_EVENTS = update(_EVENTS).where(
    _EVENTS.c.enrolment_step_id == bindparam("es_id"), _EVENTS.c.resolved_at.is_(None)
)
# A resolved event is news to nobody: no digest will carry it.
_UNQUEUE_EVENTS = delete(DigestQueue.__table__).where(
    DigestQueue.__table__.c.event_id.in_(
        select(_EVENTS.c.id).where(_EVENTS.c.enrolment_step_id == bindparam("es_id"))
    )
)
_UPDATE_ENROLMENT = update(_ENROLMENTS).where(_ENROLMENTS.c.id == bindparam("enrolment_id"))
_INSERT_AUDIT = insert(AuditLog.__table__)
_ALL_DONE = select(
    select(func.count())
    .select_from(EnrolmentStep)
    .join(Step, Step.id == EnrolmentStep.step_id)
    .where(
        EnrolmentStep.enrolment_id == bindparam("enrolment_id"),
        # A cancelled row of an active enrolment is a step a journey edit skipped.
        EnrolmentStep.status.in_(["done", "cancelled"]),
        Step.removed.is_(False),
    )
    .scalar_subquery(),
    select(func.count())
    .where(Step.journey_id == bindparam("journey_id"), Step.removed.is_(False))
    .scalar_subquery(),
)
_COHORT = select(
    select(func.count())
    .where(EnrolmentStep.step_id == bindparam("step_id"), EnrolmentStep.status == "done")
    .scalar_subquery(),
    select(func.count())
    .where(
        Enrolment.journey_id == bindparam("journey_id"),
        Enrolment.status.in_(["active", "paused", "completed"]),
    )
    .scalar_subquery(),
)


@dataclass
class Completion:
    """The outcome of a learner pressing "Mark as done"."""

    enrolment_step: EnrolmentStep
    step: Step
    enrolment: Enrolment
    already_done: bool
    awaiting_manager: bool
    # Loaded with the step, so the page after it needs no second look-up.
    journey: Journey | None = None
    person: Person | None = None


class StepClosed(Exception):
    """The step was cancelled (withdrawn enrolment or removed step)."""


def load_step(
    session: Session, es_id: int
) -> tuple[EnrolmentStep, Step, Enrolment, Journey, Person] | None:
    """Return a sent step with its step, enrolment, journey and person, in one round trip."""
    row = session.exec(_LOAD_STEP, params={"es_id": es_id}).first()
    return tuple(row) if row is not None else None


def complete_step(
    session: Session,
    es_id: int,
    now: datetime,
    note: str | None = None,
    actor: str = "learner",
    share_note: bool = True,
    commit: bool = True,
    for_others: bool = False,
) -> Completion:
    """Mark a sent step done (or awaiting the manager's confirmation); harmless twice.

    With commit=False the caller commits, and may first read what the page shows
    in the same transaction (one connection checkout instead of two). `share_note`
    lets the learner's manager read the note; `for_others` offers it, without a
    name, to the people who do this step later.
    """
    row = load_step(session, es_id)
    if row is None:
        raise LookupError(es_id)
    es, step, enrolment, journey, person = row
    if es.status == "done" or (es.awaiting_confirmation and step.confirmed_by == "manager"):
        return Completion(es, step, enrolment, True, es.status != "done", journey, person)
    if es.status == "cancelled" or enrolment.status == "withdrawn":
        raise StepClosed(es_id)
    note = (note or "").strip()[:2000] or None
    if step.confirmed_by == "manager":
        if note:
            es.note, es.note_shared, es.note_for_others = note, share_note, for_others
        es.awaiting_confirmation = True
        if enrolment.status == "active":
            enrolment.next_action_at = now  # the tick puts it in the manager's next digest
        _audit(session, now, actor, "step.awaiting_confirmation", es)
        if commit:
            session.commit()
        return Completion(es, step, enrolment, False, True, journey, person)
    mark_done(
        session,
        es,
        enrolment,
        now,
        actor,
        note=note,
        note_shared=share_note,
        note_for_others=for_others,
    )
    if commit:
        session.commit()
    return Completion(es, step, enrolment, False, False, journey, person)


def mark_done(
    session: Session,
    es: EnrolmentStep,
    enrolment: Enrolment,
    now: datetime,
    actor: str,
    confirmed_by_id: int | None = None,
    note: str | None = None,
    note_shared: bool = True,
    note_for_others: bool = False,
) -> None:
    """Close a step: resolve its escalations and let the tick re-plan the enrolment."""
    values: dict = {"status": "done", "done_at": now, "awaiting_confirmation": False}
    if confirmed_by_id is not None:
        values["confirmed_by_id"] = confirmed_by_id
    if note:
        values.update(note=note, note_shared=note_shared, note_for_others=note_for_others)
    # Escalation events exist only for a step the tick escalated or asked a manager about.
    # The level is read back from the closed row: a tick may have escalated it since `es`
    # was loaded (the update waited for its lock), and its events must go with the step.
    closed = session.execute(
        _CLOSE_STEP.returning(_STEPS.c.escalation_level), {"es_id": es.id, **values}
    ).first()
    if closed is None:
        return
    escalated = closed.escalation_level > 0 or es.awaiting_confirmation
    # The row now holds these values: say so without a round trip to re-read it.
    for name, value in values.items():
        set_committed_value(es, name, value)
    if escalated:
        session.execute(_RESOLVE_EVENTS, {"es_id": es.id, "resolved_at": now})
        session.execute(_UNQUEUE_EVENTS, {"es_id": es.id})
    changes: dict = {"updated_at": now}
    if enrolment.status == "active":
        finished = all_done(session, enrolment)
        changes["status"] = "completed" if finished else "active"
        changes["next_action_at"] = None if finished else now
    session.execute(_UPDATE_ENROLMENT, {"enrolment_id": enrolment.id, **changes})
    for name, value in changes.items():
        set_committed_value(enrolment, name, value)
    _audit(session, now, actor, "step.done", es)
    _record_done(session, es, enrolment, now, actor, changes.get("status") == "completed")


def _record_done(
    session: Session,
    es: EnrolmentStep,
    enrolment: Enrolment,
    now: datetime,
    actor: str,
    finished: bool,
) -> None:
    """Write `step.completed` (and `enrolment.completed` when it was the last step)."""
    # Both already in the session's identity map on the learner's path: no query.
    step = session.get(Step, es.step_id)
    journey = session.get(Journey, enrolment.journey_id)
    about = {
        "enrolment_id": enrolment.id,
        "person_id": enrolment.person_id,
        "journey": journey.slug,
    }
    done = {
        **about,
        "enrolment_step_id": es.id,
        "step": step.key,
        "kind": step.kind,
        "actor": actor,
        "confirmed_by_id": es.confirmed_by_id,
    }
    found = [(events.STEP_COMPLETED, enrolment.id, done, None)]
    if finished:
        found.append((events.ENROLMENT_COMPLETED, enrolment.id, about, None))
    events.record_many(session, found, now=now)


def all_done(session: Session, enrolment: Enrolment) -> bool:
    """Say whether every live step of the enrolment's journey is done (or skipped by an edit)."""
    params = {"enrolment_id": enrolment.id, "journey_id": enrolment.journey_id}
    done_count, live_count = session.execute(_ALL_DONE, params).one()
    return done_count >= live_count


def cohort_done(session: Session, step_id: int, journey_id: int) -> tuple[int, int]:
    """Return (people who did this step, people on the journey)."""
    params = {"step_id": step_id, "journey_id": journey_id}
    done_count, total_count = session.execute(_COHORT, params).one()
    return done_count, total_count


# How many notes from earlier learners a step's page shows: a few voices, not a forum.
SHARED_NOTES_SHOWN = 3


def shared_notes(
    session: Session, step_id: int, reader_id: int, limit: int = SHARED_NOTES_SHOWN
) -> list[str]:
    """Return the newest notes others offered on this step, not hidden, as text alone.

    Only the words: no name, date or anything else that could say who wrote them.
    The reader's own notes (from any enrolment) are never shown back as someone else's.
    """
    rows = session.exec(
        select(EnrolmentStep.note)
        .join(Enrolment, Enrolment.id == EnrolmentStep.enrolment_id)
        .where(
            EnrolmentStep.step_id == step_id,
            EnrolmentStep.note_for_others.is_(True),
            EnrolmentStep.status == "done",
            EnrolmentStep.note.is_not(None),
            EnrolmentStep.note_hidden_at.is_(None),
            Enrolment.person_id != reader_id,
        )
        .order_by(EnrolmentStep.done_at.desc(), EnrolmentStep.id.desc())
        .limit(limit)
    ).all()
    return list(rows)


def offered_notes(
    session: Session, journey_id: int, limit: int = 100
) -> list[tuple[EnrolmentStep, Step, Person]]:
    """Return the newest notes offered to later learners on a journey, hidden ones too,
    with their step and writer (for admins, who may hide them)."""
    rows = session.exec(
        select(EnrolmentStep, Step, Person)
        .join(Step, Step.id == EnrolmentStep.step_id)
        .join(Enrolment, Enrolment.id == EnrolmentStep.enrolment_id)
        .join(Person, Person.id == Enrolment.person_id)
        .where(
            Step.journey_id == journey_id,
            EnrolmentStep.note_for_others.is_(True),
            EnrolmentStep.note.is_not(None),
        )
        .order_by(EnrolmentStep.done_at.desc(), EnrolmentStep.id.desc())
        .limit(limit)
    ).all()
    return [tuple(row) for row in rows]


class NoSharedNote(LookupError):
    """No note of this step was offered to others (shown as a 404)."""


def set_note_hidden(session: Session, es_id: int, hidden: bool, now: datetime, actor: str) -> bool:
    """Hide an offered note from later learners, or show it again; say whether it changed."""
    es = session.get(EnrolmentStep, es_id)
    if es is None or not es.note_for_others or es.note is None:
        raise NoSharedNote(es_id)
    if (es.note_hidden_at is not None) == hidden:
        return False
    es.note_hidden_at = now if hidden else None
    record(
        session,
        actor,
        "note.hide" if hidden else "note.show",
        now,
        "enrolment_step",
        es.id,
        enrolment_id=es.enrolment_id,
        step_id=es.step_id,
    )
    session.commit()
    return True


class NotConfirmable(LookupError):
    """The step is not one this manager may confirm (shown as a 404)."""


def confirm_step(
    session: Session, es_id: int, manager_id: int, now: datetime, commit: bool = True
) -> Completion:
    """Let a learner's direct manager confirm a `confirmed_by: manager` step; harmless twice."""
    es = session.get(EnrolmentStep, es_id)
    if es is None:
        raise NotConfirmable(es_id)
    enrolment = session.get(Enrolment, es.enrolment_id)
    learner = session.get(Person, enrolment.person_id)
    step = session.get(Step, es.step_id)
    # Whoever else holds a team link learns nothing about this id: same answer as "no such step".
    if learner.manager_id != manager_id or step.confirmed_by != "manager":
        raise NotConfirmable(es_id)
    if es.status == "done":
        return Completion(es, step, enrolment, True, False)
    if es.status == "cancelled" or enrolment.status == "withdrawn":
        raise StepClosed(es_id)
    mark_done(session, es, enrolment, now, f"manager:{manager_id}", confirmed_by_id=manager_id)
    if commit:
        session.commit()
    return Completion(es, step, enrolment, False, False)


class NotSnoozable(Exception):
    """Only an open step (sent, not done, not waiting for the manager) can be snoozed."""


def snooze_until(
    session: Session, settings: Settings, enrolment: Enrolment, now: datetime
) -> datetime:
    """Return when a snooze pressed at `now` ends: the next working day's send time."""
    person = session.get(Person, enrolment.person_id)
    plan = JourneyPlan.build(session.get(Journey, enrolment.journey_id), [])
    cal = plan.calendar(person, settings.default_country)
    tomorrow = local_date(now, person.timezone) + timedelta(days=1)
    return local_instant(cal.next_working_day(tomorrow), plan.send_time, person.timezone)


def snooze(
    session: Session, settings: Settings, es: EnrolmentStep, now: datetime, actor: str = "learner"
) -> datetime:
    """Hold a step's reminders until the learner's next working day; its due date stays."""
    if es.status != "sent" or es.awaiting_confirmation:
        raise NotSnoozable(es.id)
    until = snooze_until(session, settings, session.get(Enrolment, es.enrolment_id), now)
    es.snoozed_until = until
    _audit(session, now, actor, "step.snooze", es)
    session.commit()
    return until


def link_alive(session: Session, purpose: str, subject_id: int, now: datetime) -> bool:
    """Say whether an old link about an enrolment works: while it is live, and a while after."""
    if purpose == "done":
        es = session.get(EnrolmentStep, subject_id)
        enrolment = session.get(Enrolment, es.enrolment_id) if es else None
    elif purpose in ("me", "mute"):
        enrolment = session.get(Enrolment, subject_id)
    else:
        return False
    if enrolment is None:
        return False
    if enrolment.status in ("active", "paused"):
        return True
    # The journey ended with the learner's last step sent or done; later edits of the
    # enrolment (muting, say) must not stretch the life of its links.
    last = session.exec(
        select(func.max(func.coalesce(EnrolmentStep.done_at, EnrolmentStep.sent_at))).where(
            EnrolmentStep.enrolment_id == enrolment.id
        )
    ).one()
    ended = last or enrolment.created_at
    if ended.tzinfo is None:  # an aggregate comes back without the column's type
        ended = ended.replace(tzinfo=UTC)
    return now <= ended + LINK_GRACE


def _audit(session: Session, now: datetime, actor: str, action: str, es: EnrolmentStep) -> None:
    # A plain INSERT: the ORM's unit of work costs more than the row on the hot path.
    session.execute(
        _INSERT_AUDIT,
        {
            "at": now,
            "actor": actor,
            "action": action,
            "subject_type": "enrolment_step",
            "subject_id": es.id,
            "detail": {"enrolment_id": es.enrolment_id, "step_id": es.step_id},
        },
    )


# How the cohort is doing, for the page after "Mark as done", without counting
# it every time. Counting everyone on a journey costs the database time in
# proportion to the cohort, on every click. The numbers are a nudge ("28 of the
# 40 people on this journey have done this step"), not a ledger, so each process
# counts a step's cohort at most once per `ttl` and adds the completions it sees
# in between; completions made by other processes show up at the next count.
COHORT_TTL = timedelta(seconds=30)


class CohortCounts:
    """Per-step (done, total) counts, recounted when older than `ttl`."""

    def __init__(self, ttl: timedelta = COHORT_TTL) -> None:
        self.ttl = ttl
        self._counts: dict[int, tuple[datetime, int, int]] = {}
        self._lock = threading.Lock()

    def get(
        self, session: Session, step_id: int, journey_id: int, now: datetime, just_done: bool
    ) -> tuple[int, int]:
        """Return (people who did the step, people on the journey) as of `now`.

        `just_done` says the caller has just completed the step in `session`'s
        transaction: a fresh count includes it, a kept one gains it.
        """
        with self._lock:
            kept = self._counts.get(step_id)
            if kept is not None and kept[0] <= now < kept[0] + self.ttl:
                at, done, total = kept
                if just_done:
                    done = min(done + 1, total)
                    self._counts[step_id] = (at, done, total)
                return done, total
        done, total = cohort_done(session, step_id, journey_id)
        with self._lock:
            self._counts[step_id] = (now, done, total)
        return done, total
