"""Reminders to learners and escalation events for the people above them.

The tick calls `chase` for every enrolment it visits. For each open step it
notes every threshold (reminder or escalation) that has come, and returns
the next instant one falls due, which the tick folds into the indexed
`next_action_at`: overdue steps are never found by scanning, the tick comes
back exactly when something is due. What `chase` notes is written by `flush`
once per chunk of enrolments, in a few multi-row statements, each row with
a unique key so that two ticks at once write it once.
"""

from __future__ import annotations

import hashlib
from datetime import datetime

from sqlmodel import select

from nudger import events
from nudger.bulk import insert_all
from nudger.calendar import WorkCalendar
from nudger.db import upsert_ignore
from nudger.journeys.spec import CONFIRM
from nudger.models import NO_DIGEST, AdminUser, AuditLog, DigestQueue, EscalationEvent, Person
from nudger.schedule import JourneyPlan, PlanStep
from nudger.tick.state import (
    ClosedStep,
    Cohort,
    DueEnrolment,
    FollowUpNotes,
    Learner,
    OpenStep,
    TickContext,
)

WRITE_BATCH = 1000


def sooner(*instants: datetime | None) -> datetime | None:
    """Return the earliest of the instants given, ignoring None."""
    return min((i for i in instants if i is not None), default=None)


def chase(
    ctx: TickContext, enrolment: DueEnrolment, person: Learner, rows: list[OpenStep | ClosedStep]
) -> datetime | None:
    """Note the reminders and escalations due for open steps; return when to look again."""
    plan = ctx.plan(enrolment.journey_id)
    steps = plan.steps_by_id
    cal = plan.calendar(person, ctx.settings.default_country)
    tz, now, notes = person.timezone, ctx.now, ctx.followups
    crossed: list[tuple[OpenStep, int]] = []
    checks: list[datetime | None] = []
    for row in rows:
        step = steps.get(row.step_id)
        if row.status != "sent" or step is None or row.due_at is None:
            continue
        about = _about(enrolment, person, plan, step, row)
        if step.confirmed_by == "manager":
            # The manager confirms it from the digest: ask once (the event's key
            # makes asking again on later visits a no-op), whatever the learner does.
            notes.events.append({**about, "rule": CONFIRM, "after": None})
        if row.awaiting_confirmation:
            continue
        if row.due_at <= now and row.loaded == (0, 0):
            # No reminder or escalation yet: this may be the first look since it fell due
            # (the event's key makes later looks before the first reminder no-ops).
            notes.overdue.append(about)
        reached, next_reminder = _reminders_reached(plan, cal, tz, row, now)
        if reached > row.reminders_sent:
            # Thresholds that pass while muted are spent silently, so unmuting
            # brings the next reminder, not a backlog.
            if not enrolment.reminders_muted:
                crossed.append((row, reached))
            row.reminders_sent = reached
        escalated, next_escalation = _escalations_reached(plan, cal, tz, row, now)
        for after, level in plan.escalations[row.escalation_level : escalated]:
            notes.events.append({**about, "rule": level, "after": after})
        row.escalation_level = escalated
        checks += [next_reminder, next_escalation]
    checks.append(_first_check_of_new_steps(ctx, enrolment, plan, cal, tz, rows))
    if crossed:
        notes.reminders.append(_reminder(enrolment, person, plan, steps, crossed))
    return sooner(*checks)


def _about(
    enrolment: DueEnrolment, person: Learner, plan: JourneyPlan, step: PlanStep, row: OpenStep
) -> dict:
    return {
        "enrolment_id": enrolment.id,
        "enrolment_step_id": row.id,
        "learner_id": person.id,
        "learner": person.email,
        "manager_id": person.manager_id,
        "journey": plan.slug,
        "owner": plan.owner,
        "step": step.key,
    }


def _reminders_reached(
    plan: JourneyPlan, cal: WorkCalendar, tz: str, row: OpenStep, now: datetime
) -> tuple[int, datetime | None]:
    """Return how many reminder thresholds have come, and when the next one does."""
    reached = row.reminders_sent
    for after in plan.reminders[row.reminders_sent :]:
        at = plan.after_due(cal, tz, row.due_at, after)
        # A snooze moves reminders, never the due date or the escalations.
        if row.snoozed_until is not None and row.snoozed_until > at:
            at = row.snoozed_until
        if at > now:
            return reached, at
        reached += 1
    return reached, None


def _escalations_reached(
    plan: JourneyPlan, cal: WorkCalendar, tz: str, row: OpenStep, now: datetime
) -> tuple[int, datetime | None]:
    """Return how many escalation thresholds have come, and when the next one does."""
    reached = row.escalation_level
    for after, _ in plan.escalations[row.escalation_level :]:
        at = plan.after_due(cal, tz, row.due_at, after)
        if at > now:
            return reached, at
        reached += 1
    return reached, None


def _first_check_of_new_steps(
    ctx: TickContext,
    enrolment: DueEnrolment,
    plan: JourneyPlan,
    cal: WorkCalendar,
    tz: str,
    rows: list[OpenStep | ClosedStep],
) -> datetime | None:
    """Return the first check due for steps this tick has just sent (not in `rows` yet).

    The same for every enrolment on the same schedule with the same steps had,
    so it is worked out once per tick for each.
    """
    have = frozenset(row.step_id for row in rows) if rows else frozenset()
    start, shift = enrolment.start_date, enrolment.shift_days
    key = Cohort(plan.journey_id, cal.country, tz, start, shift, have)
    if key not in ctx.first_checks:
        ctx.first_checks[key] = _first_check(ctx, enrolment, plan, cal, tz, have)
    return ctx.first_checks[key]


def _first_check(
    ctx: TickContext,
    enrolment: DueEnrolment,
    plan: JourneyPlan,
    cal: WorkCalendar,
    tz: str,
    have: frozenset[int],
) -> datetime | None:
    thresholds = [*plan.reminders, *(after for after, _ in plan.escalations)]
    if not thresholds and not any(s.confirmed_by == "manager" for s in plan.steps):
        return None
    first = None
    for step in plan.steps:
        if step.id in have:
            continue
        if plan.send_at(cal, tz, enrolment.start_date, enrolment.shift_days, step) > ctx.now:
            break
        if step.confirmed_by == "manager":
            return ctx.now  # the next tick asks the manager to confirm it
        if thresholds:
            due = plan.due_at(cal, tz, ctx.now, step)
            first = sooner(first, plan.after_due(cal, tz, due, min(thresholds)))
    return first


def _reminder(
    enrolment: DueEnrolment,
    person: Learner,
    plan: JourneyPlan,
    steps: dict[int, PlanStep],
    crossed: list[tuple[OpenStep, int]],
) -> dict:
    """Return the one reminder of this tick for this enrolment, keyed by what crossed."""
    crossed = sorted(crossed, key=lambda item: steps[item[0].step_id].position)
    marks = ",".join(f"{row.id}.{reached}" for row, reached in crossed)
    key = f"reminder:{enrolment.id}:{marks}"
    if len(key) > 200:
        key = f"reminder:{enrolment.id}:h{hashlib.sha256(marks.encode()).hexdigest()[:40]}"
    return {
        "message": {
            "dedupe_key": key,
            "kind": "reminder",
            "to_email": person.email,
            "person_id": person.id,
            "enrolment_id": enrolment.id,
            "payload": {"enrolment_step_ids": [row.id for row, _ in crossed]},
        },
        "audit": {
            "learner": person.email,
            "journey": plan.slug,
            "steps": [steps[row.step_id].key for row, _ in crossed],
            "after_working_days": [plan.reminders[reached - 1] for _, reached in crossed],
        },
    }


def flush(ctx: TickContext) -> None:
    """Write what `chase` noted for this chunk: events, reminders, and why, in the audit log."""
    notes = ctx.followups
    if notes.events:
        _write_events(ctx, notes)
        notes.events.clear()
    if notes.reminders:
        _write_reminders(ctx, notes.reminders)
        notes.reminders.clear()
    if notes.overdue:
        _record_overdue(ctx, notes.overdue)
        notes.overdue.clear()
    if notes.audits:
        insert_all(ctx.session, AuditLog.__table__, notes.audits)
        notes.audits.clear()


def _event_data(about: dict) -> dict:
    """What an event says of a step: ids and keys, no addresses."""
    return {
        "enrolment_id": about["enrolment_id"],
        "enrolment_step_id": about["enrolment_step_id"],
        "person_id": about["learner_id"],
        "journey": about["journey"],
        "step": about["step"],
    }


def _record_overdue(ctx: TickContext, overdue: list[dict]) -> None:
    found = [
        (
            events.STEP_OVERDUE,
            about["enrolment_id"],
            _event_data(about),
            f"step.overdue:{about['enrolment_step_id']}",
        )
        for about in overdue
    ]
    events.record_many(ctx.session, found, now=ctx.now)


def _write_events(ctx: TickContext, notes: FollowUpNotes) -> None:
    _load_people(ctx, notes, {e["manager_id"] for e in notes.events})
    managers = [notes.people.get(e["manager_id"]) for e in notes.events]
    _load_people(ctx, notes, {m[1] for m in managers if m is not None})
    rows: dict[tuple, dict] = {}
    for event in notes.events:
        for level, email in recipients(ctx, notes, event):
            if email == event["learner"]:
                continue  # an owner on their own journey is not told about themselves
            rows.setdefault((event["enrolment_step_id"], level, email), event)
    if not rows:
        return
    table = EscalationEvent.__table__
    # No conflict target: whichever unique key a database's schema has
    # (step, level[, recipient]), a second insert of the same event does nothing.
    stmt = upsert_ignore(ctx.session, table, None).returning(
        table.c.id, table.c.enrolment_step_id, table.c.level, table.c.recipient_email
    )
    values = [
        {
            "enrolment_step_id": es_id,
            "enrolment_id": event["enrolment_id"],
            "level": level,
            "recipient_email": email,
            "created_at": ctx.now,
        }
        for (es_id, level, email), event in rows.items()
    ]
    raised, seen, queued = [], set(), []
    for start in range(0, len(values), WRITE_BATCH):
        for event_id, es_id, level, email in ctx.session.execute(
            stmt, values[start : start + WRITE_BATCH]
        ):
            ctx.counts["escalations"] += 1
            queued.append({"event_id": event_id})  # for the recipient's next digest
            event = rows[(es_id, level, email)]
            _audit_event(ctx, event_id, level, email, event)
            # One event per step and level, however many admins hear of it.
            if level != CONFIRM and (es_id, level) not in seen:
                seen.add((es_id, level))
                data = {
                    **_event_data(event),
                    "escalation_id": event_id,
                    "level": level,
                    "rule": event["rule"],
                    "after_working_days": event["after"],
                }
                raised.append((events.ESCALATION_RAISED, event["enrolment_id"], data, None))
    insert_all(ctx.session, DigestQueue.__table__, queued)
    events.record_many(ctx.session, raised, now=ctx.now)


def _load_people(ctx: TickContext, notes: FollowUpNotes, ids: set[int | None]) -> None:
    """Read the emails and managers of people not read yet this tick."""
    missing = sorted(i for i in ids if i is not None and i not in notes.people)
    for start in range(0, len(missing), WRITE_BATCH):
        query = select(Person.id, Person.email, Person.manager_id, Person.digest_every).where(
            Person.id.in_(missing[start : start + WRITE_BATCH])
        )
        for person_id, email, manager_id, every in ctx.session.exec(query):
            notes.people[person_id] = (email, manager_id, every)


def recipients(ctx: TickContext, notes: FollowUpNotes, event: dict) -> list[tuple[str, str]]:
    """Return (level, email) of who hears of an event, climbing when a level is missing.

    A manager who stopped their digest is a missing level: what would have
    come to them goes to the next person up, so nobody falls out of sight.
    """
    manager = notes.people.get(event["manager_id"])
    rule = event["rule"]
    if rule == CONFIRM:
        # Only the learner's own manager may confirm (the team page checks the same).
        return [(CONFIRM, manager[0])] if manager else []
    if rule == "manager" and manager is not None and manager[2] != NO_DIGEST:
        return [("manager", manager[0])]
    skip = notes.people.get(manager[1]) if manager else None
    climbs = rule in ("manager", "skip_level")
    if climbs and skip is not None and skip[2] != NO_DIGEST and manager[1] != event["learner_id"]:
        return [("skip_level", skip[0])]
    if event["owner"]:
        return [("admin", event["owner"].lower())]
    if notes.admins is None:
        notes.admins = sorted(e.lower() for e in ctx.session.exec(select(AdminUser.email)))
    return [("admin", email) for email in notes.admins]


def _audit_event(ctx: TickContext, event_id: int, level: str, email: str, event: dict) -> None:
    detail = {
        "event_id": event_id,
        "learner": event["learner"],
        "journey": event["journey"],
        "step": event["step"],
        "enrolment_step_id": event["enrolment_step_id"],
        "level": level,
        "recipient": email,
    }
    if event["rule"] != CONFIRM:
        detail.update(rule=event["rule"], after_working_days=event["after"])
        if event["rule"] != level:
            detail["why"] = f"no {event['rule'].replace('_', '-')} for this learner; next level up"
    action = "confirmation.requested" if level == CONFIRM else "escalation.created"
    _audit(ctx, action, event["enrolment_id"], detail)


def _write_reminders(ctx: TickContext, reminders: list[dict]) -> None:
    """Write the reminder rows (one per enrolment per tick) unless their keys exist."""
    written = write_messages(ctx, [r["message"] for r in reminders])
    for reminder in reminders:
        outbox_id = written.get(reminder["message"]["dedupe_key"])
        if outbox_id is not None:
            detail = {"outbox_id": outbox_id, **reminder["audit"]}
            _audit(ctx, "reminder.queued", reminder["message"]["enrolment_id"], detail)


def write_messages(ctx: TickContext, messages: list[dict]) -> dict[str, int]:
    """Write outbox rows whose keys do not exist yet; return the new ids by key."""
    return {row.dedupe_key: row.id for row in ctx.add_outboxes(messages)}


def _audit(ctx: TickContext, action: str, enrolment_id: int, detail: dict) -> None:
    ctx.followups.audits.append(
        {
            "at": ctx.now,
            "actor": "tick",
            "action": action,
            "subject_type": "enrolment",
            "subject_id": enrolment_id,
            "detail": detail,
        }
    )
