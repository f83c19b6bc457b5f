"""Who gets a digest, and when: one email per recipient per period.

Driven by open escalation events that no digest has carried yet, so a quiet
minute costs one indexed query, and people with nothing to hear about are
never looked at. A recipient is due when the latest digest time of their
schedule (recipient-local, working days) has passed since such an event
appeared; the dedupe key `digest:<email>:<period>` makes deciding twice
harmless, and at most one digest per period possible.

A manager's check-ins still unanswered at their reminder time wait here too
(`Checkin.digest_at`): the next digest lists them with their answer links, once,
and a manager whose only news is such a check-in still gets that digest.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import TYPE_CHECKING, NamedTuple

from sqlalchemy import DateTime, delete, type_coerce, update
from sqlmodel import Session, select

from nudger.bulk import BATCH, among, insert_all
from nudger.calendar import WorkCalendar, local_date, local_instant
from nudger.config import Settings
from nudger.journeys.spec import DigestSpec
from nudger.models import (
    NO_DIGEST,
    AuditLog,
    Checkin,
    DigestQueue,
    Enrolment,
    EscalationEvent,
    Person,
)
from nudger.tick.followups import write_messages

if TYPE_CHECKING:
    from nudger.tick.state import TickContext

CHOICES = ("day", "week")  # schedules Person.digest_every may choose (or NO_DIGEST: none)
WORKWEEK = frozenset(range(5))
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DELETE_BATCH = 10_000  # queue rows deleted per statement: one array of ids each


@dataclass(frozen=True)
class DigestSchedule:
    """How often a recipient hears: daily or weekly, at a local time."""

    every: str
    at: time
    on: int = 0  # weekday of a weekly digest, Monday is 0


def schedule_for(choice: str | None, specs: list[dict]) -> DigestSchedule:
    """Merge the digest settings of the journeys involved with the recipient's own choice.

    Daily wins over weekly unless the recipient chose; the earliest time wins.
    """
    # The journey model fills in the defaults of whatever a stored spec leaves out.
    digests = [DigestSpec.model_validate(s) for s in specs] or [DigestSpec()]
    every = choice if choice in CHOICES else None
    if every is None:
        every = "day" if any(d.every == "day" for d in digests) else "week"
    at = min(d.at for d in digests)
    weekly = [WEEKDAYS.index(d.on) for d in digests if d.every == "week"]
    return DigestSchedule(every=every, at=at, on=min(weekly, default=0))


def last_digest_time(
    schedule: DigestSchedule, cal: WorkCalendar, tz: str, now: datetime
) -> tuple[datetime, str] | None:
    """Return the latest digest instant at or before `now`, and the period it opens."""
    today = local_date(now, tz)
    if schedule.every == "day":
        day = today
        for _ in range(60):
            if cal.is_working_day(day):
                at = local_instant(day, schedule.at, tz)
                if at <= now:
                    return at, day.isoformat()
            day -= timedelta(days=1)
        return None
    monday = today - timedelta(days=today.weekday())
    for weeks in range(10):
        start = monday - timedelta(weeks=weeks)
        # A holiday on the digest's weekday moves it to the next working day.
        day = cal.next_working_day(start + timedelta(days=schedule.on))
        at = local_instant(day, schedule.at, tz)
        if at <= now:
            year, week, _ = start.isocalendar()
            return at, f"{year}-W{week:02d}"
    return None


class Queued(NamedTuple):
    """An open escalation event waiting in the queue for its recipient's digest."""

    id: int
    recipient: str
    journey_id: int
    created_at: datetime  # naive UTC, as stored: 250,000 conversions cost half a second
    learner: str  # the learner's email, for the digest's audit row
    news: bool  # the enrolment is active: worth a digest of its own


def queued_events(session: Session) -> list[Queued]:
    """Return every open event no digest has carried yet: one read of the queue.

    A digest tick both finds who is due and what each digest carries from this.
    A step that closes resolves its events and takes them off the queue
    (nudger.progress), so the steps themselves, millions of rows, are not read.
    """
    connection = session.connection()  # Core, not the ORM: 250,000 rows at a million learners
    # The ids first: most minutes the queue holds a few, and with their number in hand the
    # database probes the tables for those few instead of joining the whole of them.
    ids = connection.execute(select(DigestQueue.event_id)).scalars().all()
    if not ids:
        return []
    rows = connection.execute(
        select(
            EscalationEvent.id,
            EscalationEvent.recipient_email,
            Enrolment.journey_id,
            type_coerce(EscalationEvent.created_at, DateTime()),
            Person.email,
            Enrolment.status,
        )
        .join(Enrolment, Enrolment.id == EscalationEvent.enrolment_id)
        .join(Person, Person.id == Enrolment.person_id)
        .where(among(session, EscalationEvent.id, ids), EscalationEvent.resolved_at.is_(None))
    )
    return [
        Queued(event_id, email, journey_id, created_at, learner, status == "active")
        for event_id, email, journey_id, created_at, learner, status in rows.all()
    ]


def pending_recipients(queued: list[Queued]) -> dict[str, tuple[set[int], datetime]]:
    """Return, per recipient, the journeys and first time of the news waiting for them."""
    pending: dict[str, tuple[set[int], datetime]] = {}
    for event in queued:
        if not event.news:
            continue
        journeys, earliest = pending.get(event.recipient, (set(), event.created_at))
        journeys.add(event.journey_id)
        pending[event.recipient] = (journeys, min(earliest, event.created_at))
    return {email: (journeys, _aware(first)) for email, (journeys, first) in pending.items()}


def waiting_checkins(session: Session, now: datetime) -> dict[str, list[tuple[int, int, datetime]]]:
    """Return, per manager, the unanswered check-ins waiting for their next digest.

    Each is (check-in id, journey id, since when). One answered, closed or no
    longer open (paused, withdrawn) stops waiting here, so the index stays small.
    """
    rows = session.exec(
        select(
            Person.email,
            Checkin.id,
            Checkin.journey_id,
            Checkin.digest_at,
            Checkin.state,
            Checkin.answered_at,
            Checkin.closes_at,
            Enrolment.status,
        )
        .join(Person, Person.id == Checkin.rater_id)
        .join(Enrolment, Enrolment.id == Checkin.enrolment_id)
        .where(Checkin.digest_at.is_not(None))
    )
    waiting: dict[str, list[tuple[int, int, datetime]]] = {}
    stale = []
    for email, checkin_id, journey_id, since, state, answered, closes, status in rows:
        if (
            state != "sent"
            or answered is not None
            or (closes is not None and closes <= now)
            or status in ("paused", "withdrawn")
        ):
            stale.append(checkin_id)
            continue
        waiting.setdefault(email, []).append((checkin_id, journey_id, since))
    _stop_waiting(session, stale)
    return waiting


def _stop_waiting(session: Session, checkin_ids: list[int]) -> None:
    for start in range(0, len(checkin_ids), BATCH):
        chunk = checkin_ids[start : start + BATCH]
        stop = update(Checkin).where(among(session, Checkin.id, chunk)).values(digest_at=None)
        session.execute(stop.execution_options(synchronize_session=False))


@dataclass(frozen=True)
class Recipient:
    """What the digest decision needs to know about whoever receives one."""

    email: str
    person_id: int | None
    timezone: str
    country: str
    choice: str | None


def queue_digests(ctx: TickContext) -> int:
    """Write a digest row for every recipient whose digest time has come; return how many."""
    session, settings, now = ctx.session, ctx.settings, ctx.now
    queued = queued_events(session)
    pending = pending_recipients(queued)
    waiting = waiting_checkins(session, now)
    for email, items in waiting.items():
        journeys, first = pending.get(email, (set(), min(since for *_, since in items)))
        journeys.update(journey_id for _, journey_id, _ in items)
        pending[email] = (journeys, min([first, *(since for *_, since in items)]))
    if not pending:
        return 0
    people = _recipients(session, settings, list(pending))
    schedules: dict[tuple, DigestSchedule] = {}
    latest: dict[tuple, tuple[datetime, str] | None] = {}
    due: dict[str, tuple[datetime, str]] = {}
    schedule_of: dict[str, DigestSchedule] = {}
    messages = []
    stopped: list[int] = []  # check-ins of managers who chose no digest
    for email in sorted(pending):
        journeys, first = pending[email]
        who = people[email]
        if who.choice == NO_DIGEST:
            # Stopped; only confirmation requests are still addressed to them, and a
            # check-in that waited for a digest they then stopped waits no more.
            stopped += [checkin_id for checkin_id, *_ in waiting.get(email, [])]
            continue
        key = (who.choice, frozenset(journeys))
        if key not in schedules:
            specs = [ctx.plan(j).digest for j in sorted(journeys)]
            schedules[key] = schedule_for(who.choice, specs)
        schedule = schedule_of[email] = schedules[key]
        when = (schedule, who.timezone, who.country)
        if when not in latest:
            cal = WorkCalendar(weekdays=WORKWEEK, country=who.country, skip_holidays=True)
            latest[when] = last_digest_time(schedule, cal, who.timezone, now)
        # Events that came after the latest digest time wait for the next one.
        if latest[when] is None or first > latest[when][0]:
            continue
        due[email] = latest[when]
    _stop_waiting(session, stopped)
    # What each due digest carries: every open event queued for them before its time.
    until_of = {email: at.astimezone(UTC).replace(tzinfo=None) for email, (at, _) in due.items()}
    carried: dict[str, list[tuple[int, str]]] = {email: [] for email in due}
    for event in queued:
        until = until_of.get(event.recipient)
        if until is not None and event.created_at <= until:
            carried[event.recipient].append((event.id, event.learner))
    for email, (at, period) in due.items():
        payload: dict = {"period": period, "every": schedule_of[email].every}
        # What the digest carries, for a reply to it ("confirm") and for the record.
        carried[email].sort()
        event_ids = [event_id for event_id, _ in carried[email]]
        if event_ids:
            payload["event_ids"] = event_ids
        checkin_ids = [i for i, _, since in waiting.get(email, []) if since <= at]
        if checkin_ids:
            payload["checkin_ids"] = checkin_ids
        messages.append(
            {
                "dedupe_key": f"digest:{email}:{period}",
                "kind": "digest",
                "to_email": email,
                "person_id": people[email].person_id,
                "enrolment_id": None,
                "payload": payload,
            }
        )
    # A key that exists means this period's digest went: its events wait for the next.
    written = write_messages(ctx, messages)
    new = {m["to_email"]: written[m["dedupe_key"]] for m in messages if m["dedupe_key"] in written}
    # A check-in is carried by one digest, once: its one follow-up.
    _stop_waiting(
        session,
        [i for m in messages if m["to_email"] in new for i in m["payload"].get("checkin_ids", [])],
    )
    # Events are carried once: off the queue, in id order (two ticks at once lock alike).
    done = sorted(event_id for email in new for event_id, _ in carried[email])
    for start in range(0, len(done), DELETE_BATCH):
        chunk = done[start : start + DELETE_BATCH]
        table = DigestQueue.__table__  # Core: the ORM would read back every row it deletes
        session.execute(delete(table).where(among(session, table.c.event_id, chunk)))
    asked = {m["to_email"]: m["payload"].get("checkin_ids", []) for m in messages}
    queued = [(outbox_id, email, due[email][1], carried[email]) for email, outbox_id in new.items()]
    _audit_digests(ctx, queued, asked)
    return len(queued)


def _recipients(session: Session, settings: Settings, emails: list[str]) -> dict[str, Recipient]:
    """Return every recipient's zone and choice; one who is no person gets the defaults."""
    found = {}
    for start in range(0, len(emails), BATCH):
        query = select(
            Person.email, Person.id, Person.timezone, Person.country, Person.digest_every
        ).where(among(session, Person.email, emails[start : start + BATCH]))
        for email, person_id, tz, country, choice in session.exec(query):
            country = (country or settings.default_country).upper()
            found[email] = Recipient(email, person_id, tz, country, choice)
    default = settings.default_country.upper()
    for email in emails:
        found.setdefault(email, Recipient(email, None, settings.default_timezone, default, None))
    return found


def _audit_digests(
    ctx: TickContext, queued: list[tuple[int, str, str, list]], asked: dict[str, list[int]]
) -> None:
    """Record which events and check-ins put each digest in the outbox, and whom they are about."""
    rows = [
        {
            "at": ctx.now,
            "actor": "tick",
            "action": "digest.queued",
            "subject_type": "outbox",
            "subject_id": outbox_id,
            "detail": {
                "recipient": email,
                "period": period,
                "event_ids": [event_id for event_id, _ in carried],
                "learners": sorted({learner for _, learner in carried}),
                "checkin_ids": asked.get(email, []),
            },
        }
        for outbox_id, email, period, carried in queued
    ]
    # In bulk, not as ORM objects: one row per digest, forty thousand at a time.
    insert_all(ctx.session, AuditLog.__table__, rows)


def _aware(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
