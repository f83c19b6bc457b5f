"""Decide what is due at `now`: write outbox rows, commit, then enqueue.

The tick looks only at enrolments whose indexed `next_action_at` has come, so
its cost grows with the work due, not with the number of enrolments. Every
decision is written with a unique key (one enrolment-step row per step sent,
one dedupe key per message), so two ticks at once cannot send anything twice.
"""

from __future__ import annotations

import logging
import time as timer
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import update
from sqlmodel import Session, select

from nudger.config import Settings
from nudger.db import upsert_ignore
from nudger.models import Enrolment, EnrolmentStep, Journey, Outbox, Person, Step, TickRun
from nudger.schedule import JourneyPlan

log = logging.getLogger(__name__)

CHUNK = 500
# A pending row whose job has not run within this time is enqueued again:
# its job was lost (Redis flushed or restarted) or the enqueue itself failed.
REENQUEUE_AFTER = timedelta(minutes=2)


@dataclass
class TickContext:
    """What one tick shares across enrolments: settings, plans, counts."""

    session: Session
    settings: Settings
    now: datetime
    plans: dict[int, JourneyPlan] = field(default_factory=dict)
    counts: Counter = field(default_factory=Counter)
    new_outbox_ids: list[int] = field(default_factory=list)

    def plan(self, journey_id: int) -> JourneyPlan:
        plan = self.plans.get(journey_id)
        if plan is None:
            journey = self.session.get(Journey, journey_id)
            steps = self.session.exec(select(Step).where(Step.journey_id == journey_id))
            plan = self.plans[journey_id] = JourneyPlan.build(journey, list(steps))
        return plan

    def add_outbox(
        self,
        *,
        kind: str,
        dedupe_key: str,
        to_email: str,
        payload: dict,
        person_id: int | None = None,
        enrolment_id: int | None = None,
    ) -> int | None:
        """Write one message row unless its key exists; return its id if written."""
        stmt = upsert_ignore(self.session, Outbox.__table__, ["dedupe_key"]).values(
            dedupe_key=dedupe_key,
            kind=kind,
            to_email=to_email,
            person_id=person_id,
            enrolment_id=enrolment_id,
            payload=payload,
            state="pending",
            attempts=0,
            next_attempt_at=self.now,
            enqueued_at=self.now,
            created_at=self.now,
        )
        new_id = self.session.execute(stmt.returning(Outbox.__table__.c.id)).scalar()
        if new_id is not None:
            self.counts[kind] += 1
            self.new_outbox_ids.append(new_id)
        return new_id


def tick(
    session: Session, settings: Settings, now: datetime, *, enqueue: bool = True
) -> dict[str, int]:
    """Do all the work due at `now`; return counts per kind of message."""
    started = timer.perf_counter()
    ctx = TickContext(session=session, settings=settings, now=now)
    last_id = 0
    while True:
        # Keyset pagination by id keeps each chunk's query on the due index.
        enrolments = list(
            session.exec(
                select(Enrolment)
                .where(Enrolment.next_action_at <= now, Enrolment.id > last_id)
                .order_by(Enrolment.id)
                .limit(CHUNK)
            )
        )
        if not enrolments:
            break
        last_id = enrolments[-1].id
        process_enrolments(ctx, enrolments)
        session.commit()
    ctx.counts["requeued"] = requeue_stale(session, now)
    session.commit()
    ids = ctx.new_outbox_ids + stale_pending(session, now)
    if enqueue and ids:
        from nudger.queue import enqueue_send

        enqueue_send(settings, sorted(set(ids)), now)
        mark_enqueued(session, ids, now)
    ctx.counts["enqueued"] = len(set(ids)) if enqueue else 0
    counts = {k: int(v) for k, v in sorted(ctx.counts.items())}
    session.add(
        TickRun(now=now, duration_ms=int((timer.perf_counter() - started) * 1000), counts=counts)
    )
    session.commit()
    return counts


def process_enrolments(ctx: TickContext, enrolments: list[Enrolment]) -> None:
    """Send due steps of these enrolments and set when each needs looking at next."""
    session = ctx.session
    person_ids = {e.person_id for e in enrolments}
    people = {
        p.id: p for p in session.exec(select(Person).where(Person.id.in_(person_ids)))
    }
    sent: dict[int, list[EnrolmentStep]] = defaultdict(list)
    rows = session.exec(
        select(EnrolmentStep).where(EnrolmentStep.enrolment_id.in_([e.id for e in enrolments]))
    )
    for row in rows:
        sent[row.enrolment_id].append(row)
    for enrolment in enrolments:
        if enrolment.status != "active":
            enrolment.next_action_at = None
            continue
        person = people[enrolment.person_id]
        enrolment.next_action_at = send_due_steps(ctx, enrolment, person, sent[enrolment.id])
        ctx.counts["enrolments"] += 1


def send_due_steps(
    ctx: TickContext, enrolment: Enrolment, person: Person, already: list[EnrolmentStep]
) -> datetime | None:
    """Write one email for every step now due; return when the next step is due."""
    plan = ctx.plan(enrolment.journey_id)
    cal = plan.calendar(person, ctx.settings.default_country)
    tz = person.timezone
    sent_ids = {row.step_id for row in already}
    due, next_at = [], None
    for step in plan.steps:
        if step.id in sent_ids:
            continue
        at = plan.send_at(cal, tz, enrolment.start_date, enrolment.shift_days, step)
        if at <= ctx.now:
            due.append(step)
        else:
            next_at = at
            break
    if due:
        values = [
            {
                "enrolment_id": enrolment.id,
                "step_id": step.id,
                "status": "sent",
                "sent_at": ctx.now,
                "due_at": plan.due_at(cal, tz, ctx.now, step),
                "invite_start": plan.invite_start(
                    cal, tz, enrolment.start_date, enrolment.shift_days, step
                )
                if step.minutes
                else None,
                "invite_sequence": 0,
                "reminders_sent": 0,
                "escalation_level": 0,
                "note_shared": True,
                "awaiting_confirmation": False,
            }
            for step in due
        ]
        stmt = upsert_ignore(ctx.session, EnrolmentStep.__table__, ["enrolment_id", "step_id"])
        # Only the rows this tick inserted go into the email: a concurrent tick
        # that got there first keeps them, and this one sends nothing.
        inserted = list(
            ctx.session.execute(
                stmt.returning(EnrolmentStep.__table__.c.id, EnrolmentStep.__table__.c.step_id),
                values,
            )
        )
        if inserted:
            order = {s.id: s.position for s in due}
            inserted.sort(key=lambda r: order[r.step_id])
            ctx.add_outbox(
                kind="step",
                dedupe_key=f"step:{enrolment.id}:{inserted[0].step_id}",
                to_email=person.email,
                person_id=person.id,
                enrolment_id=enrolment.id,
                payload={"enrolment_step_ids": [r.id for r in inserted]},
            )
            ctx.counts["steps"] += len(inserted)
    return next_at


def requeue_stale(session: Session, now: datetime) -> int:
    """Return rows whose sending lease ran out (a worker died) to pending."""
    result = session.execute(
        update(Outbox)
        .where(Outbox.state == "sending", Outbox.lease_until < now)
        .values(state="pending", lease_until=None, enqueued_at=None, next_attempt_at=now)
    )
    return result.rowcount or 0


def stale_pending(session: Session, now: datetime) -> list[int]:
    """Return pending rows that are due but whose job is not (or no longer) queued."""
    rows = session.exec(
        select(Outbox.id).where(
            Outbox.state == "pending",
            Outbox.next_attempt_at <= now,
            (Outbox.enqueued_at.is_(None)) | (Outbox.enqueued_at < now - REENQUEUE_AFTER),
        )
    )
    return list(rows)


def mark_enqueued(session: Session, ids: list[int], now: datetime) -> None:
    """Record that these rows have a job, so the next tick leaves them alone."""
    for start in range(0, len(ids), 1000):
        chunk = ids[start : start + 1000]
        session.execute(update(Outbox).where(Outbox.id.in_(chunk)).values(enqueued_at=now))
    session.commit()
