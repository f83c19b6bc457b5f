"""Compare the checked file with the database, then write the difference in chunks.

The database is read and written with chunked Core statements, so 100,000 rows
never become 100,000 ORM objects.
"""

from __future__ import annotations

import json
from array import array
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from itertools import chain
from typing import TypeVar

from sqlalchemy import Connection, bindparam, delete, insert, select, update
from sqlmodel import Session
from sqlmodel import select as orm_select

from nudger import bulk, events
from nudger.calendar import WorkCalendar
from nudger.config import Settings
from nudger.inbound import bounces
from nudger.measure.checkpoints import Measure
from nudger.models import (
    AuditLog,
    DashboardSnapshot,
    Enrolment,
    ImportBatch,
    Journey,
    Person,
    Step,
)
from nudger.roster.checks import EnrolmentRow, PersonRow, RowChecker
from nudger.roster.known import KnownPeople, chunks, key_chunk, key_list
from nudger.roster.result import RowError
from nudger.schedule import JourneyPlan, default_start, next_slot

T = TypeVar("T")

WRITE_CHUNK = 5000  # rows per executemany: bounds the dicts alive at once


# --- what the database already holds ------------------------------------------------


def journey_plans(session: Session) -> dict[str, JourneyPlan]:
    """Return every journey's schedule and steps by slug; a handful of rows, so the ORM is fine."""
    steps: dict[int, list[Step]] = {}
    for step in session.exec(orm_select(Step)):
        steps.setdefault(step.journey_id, []).append(step)
    return {
        j.slug: JourneyPlan.build(j, steps.get(j.id, [])) for j in session.exec(orm_select(Journey))
    }


def unmeasured_journeys(session: Session) -> set[int]:
    """Return the journeys that measure nothing: their enrolments have no check-ins to plan."""
    return {j.id for j in session.exec(orm_select(Journey)) if Measure.of(j) is None}


def existing_enrolments(conn: Connection, person_ids: list[int], journey_ids: set[int]) -> dict:
    """Return {(person_id, journey_id): (status, start_date)} on the file's journeys."""
    t = Enrolment.__table__
    stmt = select(t.c.person_id, t.c.journey_id, t.c.status, t.c.start_date).where(
        key_list(conn, t.c.person_id),
        t.c.journey_id.in_(sorted(journey_ids)),
    )
    found = {}
    for chunk in chunks(person_ids, key_chunk(conn)):
        for r in conn.execute(stmt, {"keys": chunk}):
            found[(r.person_id, r.journey_id)] = (r.status, r.start_date)
    return found


# --- deciding what to write ---------------------------------------------------------


class Enrolments:
    """The enrolments to write, in order: (email, journey id, start date, next_action_at).

    A million 4-tuples would cost some 80 MB; an enrolment here is a reference to
    its person's email and one index into the few (journey, start, next_action_at)
    a roster repeats.
    """

    def __init__(self) -> None:
        self._emails: list[str] = []
        self._which = array("I")
        self._kinds: list[tuple[int, date, datetime | None]] = []
        self._index: dict[tuple, int] = {}

    def append(self, email: str, journey_id: int, start: date, next_at: datetime | None) -> None:
        kind = (journey_id, start, next_at)
        i = self._index.get(kind)
        if i is None:
            i = self._index[kind] = len(self._kinds)
            self._kinds.append(kind)
        self._emails.append(email)
        self._which.append(i)

    def __len__(self) -> int:
        return len(self._emails)

    def __iter__(self) -> Iterator[tuple[str, int, date, datetime | None]]:
        kinds = self._kinds
        for email, i in zip(self._emails, self._which, strict=True):
            yield (email, *kinds[i])


@dataclass(slots=True)
class NewPerson:
    """Someone the file names only as a manager: added with the defaults."""

    name: str
    timezone: str
    country: str
    row: int  # the first row naming them
    manager: str = ""
    id: int | None = None


@dataclass
class WritePlan:
    """Exactly what a commit writes; a dry run stops here."""

    # By email: the file's own record of each new learner (time zone and country filled
    # in), or a NewPerson for a manager who is not in the file.
    new_people: dict[str, PersonRow | NewPerson] = field(default_factory=dict)
    updates: dict[str, tuple[int, str, str, str, str]] = field(default_factory=dict)
    enrolments: Enrolments = field(default_factory=Enrolments)
    unchanged: int = 0
    unmeasured: set[int] = field(default_factory=set)  # journeys with no check-ins to plan
    # Learners whose mail bounced, enrolled again from this file: an admin vouches for the
    # address (fixed mailbox, corrected typo upstream), so sending resumes.
    deliverable_again: dict[str, int] = field(default_factory=dict)
    # Whether anything receives events (a webhook endpoint, the LRS): if not, the import's
    # `enrolment.created` events are written as dispatched already.
    events_heard: bool = True

    @property
    def empty(self) -> bool:
        return not (self.new_people or self.updates or self.enrolments or self.deliverable_again)


class _Starts:
    """Work out start dates, cached per journey, zone and country (rosters repeat them)."""

    def __init__(self, now: datetime) -> None:
        self.now = now
        self._defaults: dict[tuple, date] = {}
        self._slots: dict[tuple, date] = {}
        self._first: dict[tuple, datetime | None] = {}

    def start(self, journey: JourneyPlan, tz: str, country: str, given: date | None):
        """Return (start date, whether a past `given` date moved to the next send slot)."""
        cal = WorkCalendar(journey.weekdays, country, journey.skip_holidays)
        key = (journey.journey_id, tz, country)
        if given is None:
            if key not in self._defaults:
                self._defaults[key] = default_start(cal, tz, self.now)
            return self._defaults[key], False
        if key not in self._slots:
            self._slots[key] = next_slot(cal, tz, journey.send_time, self.now)
        slot = self._slots[key]
        # A start whose first send time is behind us would send every step due by now at once.
        if given < slot and cal.next_working_day(given) < slot:
            return slot, True
        return given, False

    def next_action(self, journey: JourneyPlan, tz: str, country: str, start: date):
        """Return when the tick must first look at a new enrolment: its first send time.

        What the first tick would work out, done here once per journey, zone,
        country and start date (a roster repeats them), so that a big import
        leaves the next tick only the enrolments whose first step is due. A
        first step due already is left to the tick at `now`; a journey without
        steps has nothing to look at.
        """
        key = (journey.journey_id, tz, country, start)
        if key not in self._first:
            at = None
            if journey.steps:
                cal = journey.country_calendar(country)
                at = max(journey.send_at(cal, tz, start, 0, journey.steps[0]), self.now)
            self._first[key] = at
        return self._first[key]


def plan_writes(
    reader: RowChecker, known: KnownPeople, enrolled: dict, settings: Settings, now
) -> WritePlan:
    """Compare the file with the database: who is new, who changed, which enrolments.

    This takes over the reader's people and pairs: the plan holds what is left of them.
    """
    plan, starts = WritePlan(), _Starts(now)
    zone, country = settings.default_timezone, settings.default_country.upper()
    # The reader's records of new people become the plan's, in place: a copy of each, or a
    # second dict of a million entries, would cost over 100 MB at the import's peak.
    plan.new_people = people = reader.people
    reader.people = {}
    stored = []
    for email, p in people.items():
        row = known.by_email.get(email)
        if row is None:
            p.timezone, p.country = p.timezone or zone, p.country or country
        else:
            stored.append(email)
            current = (row.name, row.timezone, row.country, known.manager_email(email))
            given = (p.name, p.timezone, p.country, p.manager)
            # A blank cell keeps what the database has; it never resets a value to the default.
            wanted = tuple(mine or theirs for mine, theirs in zip(given, current, strict=True))
            if wanted != current:
                plan.updates[email] = (row.id, *wanted)
        _plan_pair(plan, p, reader, known, enrolled, starts)  # their first enrolment
    for email in stored:
        del people[email]
    for email, (first_row, name) in reader.managers.items():
        if email not in plan.new_people and email not in known.by_email:
            plan.new_people[email] = NewPerson(name, zone, country, first_row)
            if email in reader.rejected:
                continue  # in the file, on a row with an error: nothing will be written
            named = f"named {name!r}" if name else "with no name"
            message = f"manager not in the file: added as a person {named}"
            reader.warnings.append(RowError(first_row, "manager_email", email, message))
    for key in list(reader.pairs):
        pair = reader.pairs.pop(key)
        _plan_pair(plan, pair, reader, known, enrolled, starts)
    reader.pairs = {}  # an emptied dict keeps its table: a new one lets it go
    return plan


def _plan_pair(
    plan: WritePlan,
    pair: PersonRow | EnrolmentRow,
    reader: RowChecker,
    known: KnownPeople,
    enrolled: dict,
    starts: _Starts,
) -> None:
    """Add the pair's enrolment to the plan, or count its rows as unchanged."""
    email, row = pair.email, known.by_email.get(pair.email)
    if row is not None and row.undeliverable_at is not None:
        plan.deliverable_again[email] = row.id
    existing = enrolled.get((row.id, pair.journey.journey_id)) if row is not None else None
    if existing is not None:
        status, started = existing
        if status != "active" or (pair.start and pair.start != started):
            message = f"already enrolled ({status}, starting {started}): left as it is"
            reader.warnings.append(RowError(pair.row, "journey", pair.journey.slug, message))
        if email not in plan.updates:
            plan.unchanged += reader.rows_of(pair)
        return
    if row is None:  # new: their record in the plan has the defaults filled in
        tz, country = plan.new_people[email].timezone, plan.new_people[email].country
    elif email in plan.updates:
        _id, _name, tz, country, _manager = plan.updates[email]
    else:
        tz, country = row.timezone, row.country
    start, moved = starts.start(pair.journey, tz, country, pair.start)
    if moved:
        message = f"in the past: starts on {start}, the next send slot, instead"
        reader.warnings.append(RowError(pair.row, "start_date", pair.start.isoformat(), message))
    next_at = starts.next_action(pair.journey, tz, country, start)
    plan.enrolments.append(email, pair.journey.journey_id, start, next_at)


# --- writing ------------------------------------------------------------------------


class PersonIds:
    """Person ids by email: stored people's from `known`, new people's from their records in the
    plan, set as they are written (a second dict of a million emails would cost some 70 MB)."""

    def __init__(self, known: dict[str, int], new: dict[str, PersonRow | NewPerson]) -> None:
        self.known, self.new = known, new

    def __getitem__(self, email: str) -> int:
        p = self.new.get(email)
        if p is None:
            return self.known[email]
        if p.id is None:
            raise KeyError(email)
        return p.id

    def __contains__(self, email: object) -> bool:
        p = self.new.get(email)  # type: ignore[call-overload]
        return email in self.known if p is None else p.id is not None


def _insert_people(conn: Connection, plan: WritePlan, ids: PersonIds, now: datetime) -> None:
    """Insert new people managers first, so each row carries its manager_id from the start."""
    t = Person.__table__
    stmt = insert(t).returning(t.c.id, t.c.email)
    pending = list(plan.new_people.items())
    while pending:
        # One layer of the reporting lines per pass: every manager has an id before their
        # reports are inserted, which spares a bulk UPDATE of manager_id afterwards.
        ready = [(e, p) for e, p in pending if not p.manager or p.manager in ids]
        pending = [(e, p) for e, p in pending if p.manager and p.manager not in ids]
        if not ready:
            raise RuntimeError("a manager loop among new people slipped past the checks")
        for chunk in chunks(ready, WRITE_CHUNK):
            values = [
                dict(email=email, name=p.name, timezone=p.timezone, country=p.country,
                     created_at=now, updated_at=now,
                     manager_id=ids[p.manager] if p.manager else None)
                for email, p in chunk
            ]  # fmt: skip
            for r in conn.execute(stmt, values):
                plan.new_people[r.email].id = r.id


def _update_people(conn: Connection, plan: WritePlan, ids: PersonIds, now: datetime) -> None:
    t = Person.__table__
    stmt = (
        update(t)
        .where(t.c.id == bindparam("pid"))
        .values(name=bindparam("v_name"), timezone=bindparam("v_tz"),
                country=bindparam("v_country"), manager_id=bindparam("v_manager"), updated_at=now)
    )  # fmt: skip
    rows = (
        dict(pid=pid, v_name=name, v_tz=tz, v_country=country,
             v_manager=ids[manager] if manager else None)
        for pid, name, tz, country, manager in plan.updates.values()
    )  # fmt: skip
    for chunk in chunks(rows, WRITE_CHUNK):
        conn.execute(stmt, chunk)


def _insert_enrolments(
    session: Session, plan: WritePlan, ids: PersonIds, batch_id: int, now
) -> None:
    """Insert the enrolments and, in the same statements' wake, their `enrolment.created`."""
    # next_action_at is the first send time worked out in the plan: the tick looks at each
    # enrolment when its first step is due, not all of them at the next minute.
    same = dict(status="active", shift_days=0, paused_at=None, reminders_muted=False,
                import_batch_id=batch_id, created_at=now, updated_at=now)  # fmt: skip
    rows = (
        dict(same, person_id=ids[email], journey_id=journey_id, start_date=start,
             next_action_at=next_at, checkins_planned=journey_id in plan.unmeasured)
        for email, journey_id, start, next_at in plan.enrolments
    )  # fmt: skip
    t = Enrolment.__table__
    stmt = insert(t).returning(t.c.id, t.c.person_id, t.c.journey_id, t.c.start_date)
    conn = session.connection()
    slugs = dict(conn.execute(select(Journey.__table__.c.id, Journey.__table__.c.slug)).all())
    for chunk in chunks(rows, WRITE_CHUNK):
        created = conn.execute(stmt, chunk).all()
        events.record_many(
            session,
            (
                (events.ENROLMENT_CREATED, r.id, {"enrolment_id": r.id, "person_id": r.person_id,
                 "journey": slugs[r.journey_id], "start_date": r.start_date.isoformat(),
                 "import_batch_id": batch_id}, None)
                for r in created
            ),
            now=now, heard=plan.events_heard,
        )  # fmt: skip


def _lift_suppression(session: Session, plan: WritePlan, actor: str, now: datetime) -> None:
    if plan.deliverable_again:
        ids = sorted(plan.deliverable_again.values())
        bounces.lift_many(session, ids, actor, now, why="enrolled again from an import")


def _copy_people(session: Session, plan: WritePlan, ids: PersonIds, now: datetime) -> None:
    """PostgreSQL: take the new people's ids first, then COPY them with their manager_ids.

    One COPY is one statement: its foreign keys are checked at its end, so a
    manager may come after their reports.
    """
    t = Person.__table__
    taken = chain.from_iterable(bulk.new_ids(session, t, len(plan.new_people)))
    # New managers take their ids first, so that a report written before them can name them.
    for email in sorted({p.manager for p in plan.new_people.values()} & plan.new_people.keys()):
        plan.new_people[email].id = next(taken)

    def rows() -> Iterator[tuple]:
        for email, p in plan.new_people.items():
            if p.id is None:
                p.id = next(taken)
            yield (p.id, email, p.name, p.timezone, p.country, now, now,
                   ids[p.manager] if p.manager else None)  # fmt: skip
            # Nothing reads the row number once the plan is made: letting it go makes room
            # for the id just taken, an int of the same size (30 MB at a million people).
            p.row = 0

    columns = ("id", "email", "name", "timezone", "country", "created_at", "updated_at",
               "manager_id")  # fmt: skip
    bulk.copy_rows(session, t, columns, rows())


def _copy_enrolments(session: Session, plan: WritePlan, ids: PersonIds, batch_id: int, now) -> None:
    """PostgreSQL: COPY the enrolments with ids taken first, then their `enrolment.created`."""
    t = Enrolment.__table__
    runs = bulk.new_ids(session, t, len(plan.enrolments))
    rows = (
        (eid, ids[email], journey_id, "active", start, 0, next_at, None, False,
         journey_id in plan.unmeasured, batch_id, now, now)
        for eid, (email, journey_id, start, next_at) in zip(
            chain.from_iterable(runs), plan.enrolments, strict=True
        )
    )  # fmt: skip
    columns = ("id", "person_id", "journey_id", "status", "start_date", "shift_days",
               "next_action_at", "paused_at", "reminders_muted", "checkins_planned",
               "import_batch_id", "created_at", "updated_at")  # fmt: skip
    bulk.copy_rows(session, t, columns, rows)
    conn = session.connection()
    j = Journey.__table__
    # The data as json.dumps writes it, put together here: a million dicts dumped one by one
    # would cost more than the COPY itself.
    slugs = {jid: json.dumps(slug) for jid, slug in conn.execute(select(j.c.id, j.c.slug))}
    days: dict[date, str] = {}
    created = (
        (events.ENROLMENT_CREATED, eid,
         f'{{"enrolment_id": {eid}, "person_id": {ids[email]}, "journey": {slugs[journey_id]}, '
         f'"start_date": "{days.get(start) or days.setdefault(start, start.isoformat())}", '
         f'"import_batch_id": {batch_id}}}')
        for eid, (email, journey_id, start, _) in zip(
            chain.from_iterable(runs), plan.enrolments, strict=True
        )
    )  # fmt: skip
    events.copy_many(session, created, now=now, heard=plan.events_heard)


def write_all(
    session: Session, plan: WritePlan, known_ids: dict[str, int], batch: dict, detail: dict
) -> int:
    """Write the batch, people, enrolments and the audit row, and commit; return the batch id.

    `known_ids` holds the ids of the people already stored, by email.
    """
    now = batch["created_at"]
    ids = PersonIds(known_ids, plan.new_people)
    try:
        conn = session.connection()
        t = ImportBatch.__table__
        batch_id = conn.execute(insert(t).returning(t.c.id), batch).scalar_one()
        if conn.dialect.name == "postgresql":
            _copy_people(session, plan, ids, now)
            _update_people(conn, plan, ids, now)
            _lift_suppression(session, plan, batch["actor"], now)
            _copy_enrolments(session, plan, ids, batch_id, now)
        else:
            _insert_people(conn, plan, ids, now)
            _update_people(conn, plan, ids, now)
            _lift_suppression(session, plan, batch["actor"], now)
            _insert_enrolments(session, plan, ids, batch_id, now)
        audit = dict(at=now, actor=batch["actor"], action="import", subject_type="import_batch",
                     subject_id=batch_id, detail=detail)  # fmt: skip
        conn.execute(insert(AuditLog.__table__), audit)
        # The dashboard's stored figures predate these learners: the next view counts them.
        conn.execute(delete(DashboardSnapshot.__table__))
        session.commit()
    except BaseException:
        session.rollback()
        raise
    return batch_id
