"""Decide what is due at `now`: write outbox rows, commit, then enqueue.

The tick looks only at enrolments whose indexed `next_action_at` has come, so
its cost grows with the work due, not with the number of enrolments. Every
decision is written with a unique key (one enrolment-step row per step sent,
one dedupe key per message), so two ticks at once cannot send anything twice.
"""

from __future__ import annotations

import logging
import time as timer
from collections import defaultdict
from datetime import date, datetime, timedelta

from redis.exceptions import RedisError
from sqlalchemy import case, update
from sqlmodel import Session, select

from nudger import events, outbox, webhooks
from nudger.bulk import among, insert_ignoring, update_by_id
from nudger.calendar import WorkCalendar
from nudger.config import Settings
from nudger.inbound import processing as inbound_processing
from nudger.inbound import receiving as inbound_receiving
from nudger.models import Enrolment, EnrolmentStep, Outbox, Person, TickRun
from nudger.privacy import retention
from nudger.schedule import JourneyPlan
from nudger.tick import checkins, digests, followups
from nudger.tick.state import (
    NO_STEPS,
    ClosedStep,
    Cohort,
    DueEnrolment,
    DueSteps,
    Learner,
    NewSteps,
    OpenStep,
    TickContext,
)
from nudger.webhooks import delivery as webhook_delivery

log = logging.getLogger(__name__)

CHUNK = 500
# A pending row whose job has not run within this time is enqueued again:
# its job was lost (Redis flushed or restarted) or the enqueue itself failed.
REENQUEUE_AFTER = timedelta(minutes=2)


def _requeue_inbound(settings: Settings, ids: list[int]) -> int:
    """Queue again the jobs of stored inbound messages; return how many were queued."""
    try:
        for inbound_id in ids:
            inbound_receiving.enqueue(settings, inbound_id)
    except RedisError:
        return 0
    return len(ids)


def tick(
    session: Session, settings: Settings, now: datetime, *, enqueue: bool = True
) -> dict[str, int]:
    """Do all the work due at `now`; return counts per kind of message."""
    started = timer.perf_counter()
    ctx = TickContext(session=session, settings=settings, now=now)
    checkins.queue_checkins(ctx)
    session.commit()
    # One range scan of the due index; ids in order so that two ticks at once
    # lock rows in the same order and one waits for the other, never deadlocks.
    due_ids = sorted(session.exec(select(Enrolment.id).where(Enrolment.next_action_at <= now)))
    for start in range(0, len(due_ids), CHUNK):
        process_enrolments(ctx, load_enrolments(session, due_ids[start : start + CHUNK], now))
        session.commit()
    digests.queue_digests(ctx)
    ctx.counts["requeued"] = requeue_stale(session, now, settings.max_attempts)
    session.commit()
    retaining = settings.retain_mail_days > 0 or settings.retain_history_days > 0
    if retaining and retention.prune_due(session, now):
        batches = retention.PRUNE_BATCHES_PER_TICK
        pruned = (
            retention.prune_mail(session, now, settings.retain_mail_days, max_batches=batches).total
            + retention.prune_history(
                session, now, settings.retain_history_days, max_batches=batches
            ).total
        )
        if pruned:
            ctx.counts["pruned"] = pruned
    dispatched = webhooks.dispatch(session, settings, now)
    if dispatched:
        ctx.counts["webhooks"] = dispatched
    stale = stale_pending(session, now)
    ids = sorted(set(ctx.new_outbox_ids + stale))
    enqueued = enqueue and outbox.enqueue_committed(session, settings, ids, now)
    ctx.counts["enqueued"] = len(ids) if enqueued else 0
    ctx.counts["reenqueued"] = len(stale) if enqueued else 0  # earlier rows without a job
    if enqueue and settings.inbound_domain:
        # Received mail whose job was lost (a worker killed, Redis down): stored, so acted on now.
        waiting = inbound_processing.pending(session, now - REENQUEUE_AFTER)
        if waiting:
            ctx.counts["inbound_requeued"] = _requeue_inbound(settings, waiting)
    # Webhook and xAPI deliveries due (new, retries, or a job lost while Redis was down).
    if enqueue and webhook_delivery.due(session, now, limit=1):
        webhooks.kick(settings)
    counts = {k: int(v) for k, v in sorted(ctx.counts.items())}
    session.add(
        TickRun(now=now, duration_ms=int((timer.perf_counter() - started) * 1000), counts=counts)
    )
    session.commit()
    return counts


def load_enrolments(session: Session, ids: list[int], now: datetime) -> list[DueEnrolment]:
    """Read these enrolments, if still due, with their learners: one query, plain rows."""
    query = (
        select(
            Enrolment.id,
            Enrolment.person_id,
            Enrolment.journey_id,
            # Someone whose data was erased is never sent anything again, whatever
            # later edits (a journey sync, a move) did to their next action.
            case((Person.erased_at.is_not(None), "erased"), else_=Enrolment.status),
            Enrolment.start_date,
            Enrolment.shift_days,
            Enrolment.reminders_muted,
            Person.email,
            Person.timezone,
            Person.country,
            Person.manager_id,
        )
        .join(Person, Person.id == Enrolment.person_id)
        # Checked again: a tick beside this one may have done them already.
        .where(among(session, Enrolment.id, ids), Enrolment.next_action_at <= now)
        .order_by(Enrolment.id)
    )
    return [
        DueEnrolment(e_id, p_id, j_id, status, start, shift, muted, Learner(p_id, *person))
        for e_id, p_id, j_id, status, start, shift, muted, *person in session.exec(query)
    ]


def process_enrolments(ctx: TickContext, enrolments: list[DueEnrolment]) -> None:
    """Send due steps of these enrolments and set when each needs looking at next.

    Each enrolment's rows are OpenStep objects for open (sent) steps and
    ClosedStep tuples for done or cancelled ones.
    """
    session = ctx.session
    sent: dict[int, list[OpenStep | ClosedStep]] = defaultdict(list)
    ids = [e.id for e in enrolments]
    # Open steps with what reminders and escalations read; done and cancelled
    # ones, most rows of a long journey, only say which steps exist.
    opened = select(
        EnrolmentStep.id,
        EnrolmentStep.enrolment_id,
        EnrolmentStep.step_id,
        EnrolmentStep.due_at,
        EnrolmentStep.snoozed_until,
        EnrolmentStep.awaiting_confirmation,
        EnrolmentStep.reminders_sent,
        EnrolmentStep.escalation_level,
    ).where(among(session, EnrolmentStep.enrolment_id, ids), EnrolmentStep.status == "sent")
    open_steps = [OpenStep(*row) for row in session.exec(opened)]
    for row in open_steps:
        sent[row.enrolment_id].append(row)
    closed = select(
        EnrolmentStep.id, EnrolmentStep.enrolment_id, EnrolmentStep.step_id, EnrolmentStep.status
    ).where(among(session, EnrolmentStep.enrolment_id, ids), EnrolmentStep.status != "sent")
    for row in session.exec(closed):
        sent[row.enrolment_id].append(ClosedStep(*row))
    next_action: list[tuple[int, datetime | None]] = []
    for enrolment in enrolments:
        at = None
        if enrolment.status == "active":
            person = enrolment.learner
            rows = sent.get(enrolment.id, [])
            next_send = send_due_steps(ctx, enrolment, person, rows)
            next_check = followups.chase(ctx, enrolment, person, rows)
            at = followups.sooner(next_send, next_check)
            ctx.counts["enrolments"] += 1
        next_action.append((enrolment.id, at))
    write_sent_steps(ctx)
    followups.flush(ctx)
    # Every change below in id order (enrolments were read in it), so two ticks
    # at once lock rows in one order.
    update_by_id(session, Enrolment.__table__, "next_action_at", next_action)
    open_steps.sort(key=lambda row: row.id)
    reminded = [(r.id, r.reminders_sent) for r in open_steps if r.reminders_sent != r.loaded[0]]
    escalated = [
        (r.id, r.escalation_level) for r in open_steps if r.escalation_level != r.loaded[1]
    ]
    update_by_id(session, EnrolmentStep.__table__, "reminders_sent", reminded)
    update_by_id(session, EnrolmentStep.__table__, "escalation_level", escalated)


def send_due_steps(
    ctx: TickContext,
    enrolment: DueEnrolment,
    person: Learner,
    already: list[OpenStep | ClosedStep],
) -> datetime | None:
    """Decide one email for every step now due; return when the next step is due.

    A step with a row (sent, done, or closed by a journey edit) is never sent
    again; every other live step whose send time has come goes into the email,
    so a learner catching up after downtime gets one email, never a flood.
    """
    plan = ctx.plan(enrolment.journey_id)
    cal = plan.calendar(person, ctx.settings.default_country)
    have = frozenset(row.step_id for row in already) if already else NO_STEPS
    tz, start, shift = person.timezone, enrolment.start_date, enrolment.shift_days
    key = Cohort(plan.journey_id, cal.country, tz, start, shift, have)
    found = ctx.new_steps.get(key)
    if found is None:
        found = ctx.new_steps[key] = new_steps(plan, cal, tz, start, shift, have, ctx.now)
    if found.due:
        now = ctx.now
        rows = [
            {
                "enrolment_id": enrolment.id,
                "step_id": step_id,
                "status": "sent",
                "sent_at": now,
                "due_at": due_at,
                "invite_start": invite,
                "invite_sequence": 0,
                "reminders_sent": 0,
                "escalation_level": 0,
                "note_shared": True,
                "awaiting_confirmation": False,
            }
            for step_id, due_at, invite in found.due
        ]
        ctx.due_steps.append(
            DueSteps(enrolment.id, person.id, person.email, rows, enrolment.journey_id)
        )
    return found.next_at


def new_steps(
    plan: JourneyPlan,
    cal: WorkCalendar,
    tz: str,
    start: date,
    shift: int,
    have: frozenset[int],
    now: datetime,
) -> NewSteps:
    """Return the steps without a row whose send time has come, in journey order, and
    when the first one still ahead goes out."""
    due = []
    for step in plan.steps:
        if step.id in have:
            continue
        at = plan.send_at(cal, tz, start, shift, step)
        if at > now:
            return NewSteps(due, at)
        invite = plan.invite_start(cal, tz, start, shift, step) if step.minutes else None
        due.append((step.id, plan.due_at(cal, tz, now, step), invite))
    return NewSteps(due, None)


def write_sent_steps(ctx: TickContext) -> None:
    """Write the steps decided for this chunk and one outbox row per enrolment, in bulk."""
    if not ctx.due_steps:
        return
    values = [row for due in ctx.due_steps for row in due.rows]
    inserted: dict[int, dict[int, int]] = defaultdict(dict)
    # Only rows this tick inserted go into an email: a tick beside this one
    # that got there first keeps them, and this one sends nothing for them.
    for es_id, enrolment_id, step_id in insert_ignoring(
        ctx.session,
        EnrolmentStep.__table__,
        values,
        ("enrolment_id", "step_id"),
        ("id", "enrolment_id", "step_id"),
    ):
        inserted[enrolment_id][step_id] = es_id
    messages = []
    for due in ctx.due_steps:
        mine = inserted.get(due.enrolment_id)
        if not mine:
            continue
        # Rows were decided in journey order; keep that order in the email.
        ids = [mine[row["step_id"]] for row in due.rows if row["step_id"] in mine]
        first_step = next(row["step_id"] for row in due.rows if row["step_id"] in mine)
        messages.append(
            {
                "dedupe_key": f"step:{due.enrolment_id}:{first_step}",
                "kind": "step",
                "to_email": due.email,
                "person_id": due.person_id,
                "enrolment_id": due.enrolment_id,
                "payload": {"enrolment_step_ids": ids},
            }
        )
        ctx.counts["steps"] += len(ids)
    written = {row.dedupe_key: row.id for row in ctx.add_outboxes(messages)}
    _record_sent(ctx, inserted, written)
    ctx.due_steps.clear()


def _record_sent(
    ctx: TickContext, inserted: dict[int, dict[int, int]], written: dict[str, int]
) -> None:
    """Write a `step.sent` event per step this tick queued, in bulk with its rows.

    "Sent" is when the step's email is decided and queued, in the transaction
    that writes its row: the step is sent from then on for everything Nudger
    shows, and the SMTP outcome is the outbox's (and the mail ledger's) record.
    """
    sent = []
    for due in ctx.due_steps:
        mine = inserted.get(due.enrolment_id)
        if not mine:
            continue
        plan = ctx.plan(due.journey_id)
        first_step = next(row["step_id"] for row in due.rows if row["step_id"] in mine)
        outbox_id = written.get(f"step:{due.enrolment_id}:{first_step}")
        for row in due.rows:
            es_id = mine.get(row["step_id"])
            if es_id is None:
                continue
            data = {
                "enrolment_id": due.enrolment_id,
                "enrolment_step_id": es_id,
                "person_id": due.person_id,
                "journey": plan.slug,
                "step": plan.steps_by_id[row["step_id"]].key,
                "due_at": row["due_at"].isoformat() if row["due_at"] else None,
                "outbox_id": outbox_id,
            }
            sent.append((events.STEP_SENT, due.enrolment_id, data, None))
    events.record_many(ctx.session, sent, now=ctx.now)


def requeue_stale(session: Session, now: datetime, max_attempts: int | None = None) -> int:
    """Return rows whose sending lease ran out (a worker died) to pending.

    A row claimed `max_attempts` times fails instead: a message whose worker
    dies on every attempt may be what kills it, and nothing retries forever.
    """
    if max_attempts is not None:
        session.execute(
            update(Outbox)
            .where(
                Outbox.state == "sending",
                Outbox.lease_until < now,
                Outbox.attempts >= max_attempts,
            )
            .values(
                state="failed",
                lease_until=None,
                last_error=f"gave up after {max_attempts} attempts: "
                "the worker stopped while sending it",
            )
        )
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
