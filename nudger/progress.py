"""Completing steps, and what a learner sees of their journey and cohort."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import update
from sqlmodel import Session, func, select

from nudger.models import AuditLog, Enrolment, EnrolmentStep, EscalationEvent, Step


@dataclass
class Completion:
    """The outcome of a learner pressing "Mark as done"."""

    enrolment_step: EnrolmentStep
    step: Step
    enrolment: Enrolment
    already_done: bool
    awaiting_manager: bool


class StepClosed(Exception):
    """The step was cancelled (withdrawn enrolment or removed step)."""


def complete_step(
    session: Session, es_id: int, now: datetime, note: str | None = None, actor: str = "learner"
) -> Completion:
    """Mark a sent step done (or awaiting the manager's confirmation); harmless twice."""
    es = session.get(EnrolmentStep, es_id)
    if es is None:
        raise LookupError(es_id)
    step = session.get(Step, es.step_id)
    enrolment = session.get(Enrolment, es.enrolment_id)
    if es.status == "done" or (es.awaiting_confirmation and step.confirmed_by == "manager"):
        return Completion(es, step, enrolment, True, es.status != "done")
    if es.status == "cancelled" or enrolment.status == "withdrawn":
        raise StepClosed(es_id)
    note = (note or "").strip()[:2000] or None
    if note:
        es.note = note
    if step.confirmed_by == "manager":
        es.awaiting_confirmation = True
        _audit(session, now, actor, "step.awaiting_confirmation", es)
        session.commit()
        return Completion(es, step, enrolment, False, True)
    mark_done(session, es, enrolment, now, actor)
    session.commit()
    return Completion(es, step, enrolment, False, False)


def mark_done(
    session: Session, es: EnrolmentStep, enrolment: Enrolment, now: datetime, actor: str
) -> None:
    """Close a step: resolve its escalations and let the tick re-plan the enrolment."""
    # A conditional update, so two presses at once record one completion.
    result = session.execute(
        update(EnrolmentStep)
        .where(EnrolmentStep.id == es.id, EnrolmentStep.status == "sent")
        .values(status="done", done_at=now, awaiting_confirmation=False)
    )
    if not result.rowcount:
        return
    session.refresh(es)
    session.execute(
        update(EscalationEvent)
        .where(EscalationEvent.enrolment_step_id == es.id, EscalationEvent.resolved_at.is_(None))
        .values(resolved_at=now)
    )
    if enrolment.status == "active":
        enrolment.next_action_at = now
        if all_done(session, enrolment):
            enrolment.status = "completed"
            enrolment.next_action_at = None
    enrolment.updated_at = now
    _audit(session, now, actor, "step.done", es)


def all_done(session: Session, enrolment: Enrolment) -> bool:
    """Say whether every live step of the enrolment's journey is done."""
    live = session.exec(
        select(func.count()).where(Step.journey_id == enrolment.journey_id, Step.removed.is_(False))
    ).one()
    done = session.exec(
        select(func.count())
        .select_from(EnrolmentStep)
        .join(Step, Step.id == EnrolmentStep.step_id)
        .where(
            EnrolmentStep.enrolment_id == enrolment.id,
            EnrolmentStep.status == "done",
            Step.removed.is_(False),
        )
    ).one()
    return done >= live


def cohort_done(session: Session, step_id: int, journey_id: int) -> tuple[int, int]:
    """Return (people who did this step, people on the journey)."""
    done = session.exec(
        select(func.count()).where(EnrolmentStep.step_id == step_id, EnrolmentStep.status == "done")
    ).one()
    total = session.exec(
        select(func.count()).where(
            Enrolment.journey_id == journey_id, Enrolment.status.in_(["active", "paused", "completed"])
        )
    ).one()
    return done, total


def _audit(session: Session, now: datetime, actor: str, action: str, es: EnrolmentStep) -> None:
    session.add(
        AuditLog(
            at=now,
            actor=actor,
            action=action,
            subject_type="enrolment_step",
            subject_id=es.id,
            detail={"enrolment_id": es.enrolment_id, "step_id": es.step_id},
        )
    )
