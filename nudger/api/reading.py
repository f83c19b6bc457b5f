"""Journeys and enrolments as the API shows them."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session, func, select

from nudger import events as event_log
from nudger.api.schemas import (
    BehaviourOut,
    EmailOut,
    EnrolmentDetail,
    EnrolmentPage,
    EnrolmentQuery,
    EnrolmentStepOut,
    EnrolmentSummary,
    EventOut,
    EventPage,
    EventQuery,
    JourneyDetail,
    JourneySummary,
    RatingOut,
    StepOut,
)
from nudger.insights import search as lookup
from nudger.insights.reports import step_status
from nudger.journeys.spec import JourneySpec
from nudger.models import Enrolment, EnrolmentStep, Journey, Outbox, Rating, Step

EMAILS_SHOWN = 200  # an enrolment's most recent emails


def journeys(session: Session) -> list[JourneySummary]:
    """Return every journey with its number of live steps."""
    counts = dict(
        session.exec(
            select(Step.journey_id, func.count())
            .where(Step.removed.is_(False))
            .group_by(Step.journey_id)
        ).all()
    )
    return [
        JourneySummary(slug=j.slug, title=j.title, owner=j.owner, version=j.version,
                       steps=counts.get(j.id, 0), synced_at=j.synced_at)
        for j in session.exec(select(Journey).order_by(Journey.slug))
    ]  # fmt: skip


def journey(session: Session, slug: str) -> JourneyDetail | None:
    """Return one journey with its steps (in order) and its goal's behaviours."""
    row = session.exec(select(Journey).where(Journey.slug == slug)).first()
    if row is None:
        return None
    behaviours: list[BehaviourOut] = []
    if row.spec.get("goal"):  # every synced journey has one; rows made by hand may not
        spec = JourneySpec.model_validate(row.spec)
        behaviours = [BehaviourOut(key=b.key, text=b.text) for b in spec.behaviours()]
    steps = session.exec(select(Step).where(Step.journey_id == row.id).order_by(Step.position))
    return JourneyDetail(
        slug=row.slug, title=row.title, owner=row.owner, version=row.version,
        synced_at=row.synced_at, summary=row.spec.get("summary"),
        steps=[StepOut(key=s.key, position=s.position, day=s.day, kind=s.kind, title=s.title,
                       minutes=s.minutes, link=s.link, due_after=s.due_after,
                       confirmed_by=s.confirmed_by, removed=s.removed) for s in steps],
        behaviours=behaviours,
    )  # fmt: skip


def _summary(row: lookup.EnrolmentRow, **more) -> dict:
    return dict(
        id=row.id, email=row.email, name=row.name, journey=row.journey_slug, status=row.status,
        start_date=row.start_date, manager_email=row.manager_email or None, steps_done=row.done,
        steps_total=row.total, steps_overdue=row.late, escalated=row.escalated, **more,
    )  # fmt: skip


def enrolments(session: Session, q: EnrolmentQuery, now: datetime) -> EnrolmentPage:
    """Return one page of enrolments, newest first: a keyset page (`id < cursor`), not OFFSET."""
    f = lookup.EnrolmentFilter(
        journey=q.journey or "", status=q.status or "",
        manager=(q.manager or "").strip().lower(), behind=q.behind or "",
    )  # fmt: skip
    rows, next_before = lookup.search(session, f, now, q.cursor, limit=q.limit)
    return EnrolmentPage(
        items=[EnrolmentSummary(**_summary(r)) for r in rows], next_cursor=next_before
    )


def enrolment(session: Session, enrolment_id: int, now: datetime) -> EnrolmentDetail | None:
    """Return one enrolment with its steps, ratings and most recent emails."""
    row = session.get(Enrolment, enrolment_id)
    if row is None:
        return None
    found, _ = lookup.search(
        session, lookup.EnrolmentFilter(), now, before_id=enrolment_id + 1, limit=1
    )
    summary = found[0]
    sent = {
        es.step_id: es
        for es in session.exec(select(EnrolmentStep).where(EnrolmentStep.enrolment_id == row.id))
    }
    steps = []
    for step in session.exec(
        select(Step).where(Step.journey_id == row.journey_id).order_by(Step.position)
    ):
        es = sent.get(step.id)
        if step.removed and es is None:
            continue
        steps.append(
            EnrolmentStepOut(
                key=step.key, title=step.title, status=step_status(es, row.status, now),
                sent_at=es.sent_at if es else None, due_at=es.due_at if es else None,
                done_at=es.done_at if es else None,
                awaiting_confirmation=bool(es and es.awaiting_confirmation),
            )
        )  # fmt: skip
    ratings = [
        RatingOut(behaviour=r.behaviour, rater=r.rater, checkpoint=r.checkpoint, value=r.value,
                  recorded_at=r.recorded_at)
        for r in session.exec(
            select(Rating).where(Rating.enrolment_id == row.id).order_by(Rating.id)
        )
    ]  # fmt: skip
    emails = [
        EmailOut(id=m.id, kind=m.kind, state=m.state, subject=m.subject,
                 created_at=m.created_at, sent_at=m.sent_at)
        for m in session.exec(
            select(Outbox)
            .where(Outbox.enrolment_id == row.id)
            .order_by(Outbox.id.desc())
            .limit(EMAILS_SHOWN)
        )
    ]  # fmt: skip
    return EnrolmentDetail(**_summary(summary, steps=steps, ratings=ratings, emails=emails))


def events(session: Session, q: EventQuery) -> EventPage:
    """Return the events after the cursor, oldest first, and the cursor to read on from."""
    rows, next_cursor = event_log.after(session, q.after, q.limit, [q.type] if q.type else None)
    items = [
        EventOut(id=e.id, cursor=event_log.cursor_of(e), type=e.type, occurred_at=e.occurred_at,
                 enrolment_id=e.enrolment_id, data=e.data)
        for e in rows
    ]  # fmt: skip
    return EventPage(items=items, next_cursor=next_cursor)
