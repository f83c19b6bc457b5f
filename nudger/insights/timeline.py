"""Where a learner stands on a journey: each step done, due, overdue or coming up.

One function reads many enrolments with a handful of queries, so a manager's
page over a large team costs the same few round trips as a learner's own.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime
from functools import lru_cache

from sqlalchemy import bindparam
from sqlmodel import Session, select

from nudger.calendar import WorkCalendar, local_instant
from nudger.config import Settings
from nudger.models import Enrolment, EnrolmentStep, Journey, Person, Step
from nudger.schedule import JourneyPlan, PlanStep

# Without a manager escalation in the journey, a learner this many working days
# behind counts as "escalated" (see the glossary in nudger.wording).
DEFAULT_OVERDUE_AFTER = 3

# Built once: the page after every "Mark as done" runs these.
_JOURNEY_STEPS = select(Step).where(Step.journey_id == bindparam("journey_id"))
_SENT_STEPS = select(EnrolmentStep).where(EnrolmentStep.enrolment_id == bindparam("enrolment_id"))


@dataclass
class Entry:
    """One live step of the journey as this learner sees it."""

    step: Step
    es: EnrolmentStep | None
    status: str  # done|awaiting|overdue|due|upcoming|closed
    send_at: datetime | None  # when it was sent, or is planned to be
    due_at: datetime | None
    days_overdue: int = 0  # whole working days past the due date (0 on the due day itself)
    snoozed_until: datetime | None = None
    number: int = 0  # 1-based place among the journey's live steps

    @property
    def open(self) -> bool:
        return self.status in ("due", "overdue")


@dataclass
class Timeline:
    """A learner's journey: every live step in order, and how they stand."""

    enrolment: Enrolment
    journey: Journey
    person: Person
    entries: list[Entry] = field(default_factory=list)
    overdue_after: int = DEFAULT_OVERDUE_AFTER

    @property
    def tz(self) -> str:
        return self.person.timezone

    @property
    def total(self) -> int:
        return len(self.entries)

    @property
    def done_count(self) -> int:
        return sum(1 for e in self.entries if e.status == "done")

    def by_status(self, *statuses: str) -> list[Entry]:
        return [e for e in self.entries if e.status in statuses]

    @property
    def next_upcoming(self) -> Entry | None:
        return next((e for e in self.entries if e.status == "upcoming"), None)

    @property
    def days_overdue(self) -> int:
        """Return how far the oldest overdue step is past its due date, in working days."""
        return max((e.days_overdue for e in self.entries if e.status == "overdue"), default=0)

    @property
    def standing(self) -> str:
        """Return on_track, behind, escalated, paused, completed or withdrawn."""
        if self.enrolment.status in ("paused", "completed", "withdrawn"):
            return self.enrolment.status
        if not self.by_status("overdue"):
            return "on_track"
        return "escalated" if self.days_overdue >= self.overdue_after else "behind"


def _overdue_after(plan: JourneyPlan) -> int:
    thresholds = [after for after, notify in plan.escalations if notify == "manager"]
    return min(thresholds) if thresholds else DEFAULT_OVERDUE_AFTER


def timelines(
    session: Session, settings: Settings, enrolments: list[Enrolment], now: datetime
) -> list[Timeline]:
    """Return the timeline of each enrolment, in the order given."""
    if not enrolments:
        return []
    journey_ids = {e.journey_id for e in enrolments}
    journeys = {j.id: j for j in session.exec(select(Journey).where(Journey.id.in_(journey_ids)))}
    steps_by_journey: dict[int, list[Step]] = defaultdict(list)
    for step in session.exec(select(Step).where(Step.journey_id.in_(journey_ids))):
        steps_by_journey[step.journey_id].append(step)
    plans = {jid: JourneyPlan.build(journeys[jid], steps_by_journey[jid]) for jid in journey_ids}
    person_ids = {e.person_id for e in enrolments}
    people = {p.id: p for p in session.exec(select(Person).where(Person.id.in_(person_ids)))}
    sent: dict[int, dict[int, EnrolmentStep]] = defaultdict(dict)
    ids = [e.id for e in enrolments]
    for start in range(0, len(ids), 1000):
        query = select(EnrolmentStep).where(
            EnrolmentStep.enrolment_id.in_(ids[start : start + 1000])
        )
        for row in session.exec(query):
            sent[row.enrolment_id][row.step_id] = row
    return [
        _timeline(
            settings,
            enrolment,
            journeys[enrolment.journey_id],
            people[enrolment.person_id],
            plans[enrolment.journey_id],
            {s.id: s for s in steps_by_journey[enrolment.journey_id]},
            sent[enrolment.id],
            now,
        )
        for enrolment in enrolments
    ]


def timeline(session: Session, settings: Settings, enrolment: Enrolment, now: datetime) -> Timeline:
    """Return one enrolment's timeline (journey and person from the session when loaded)."""
    journey = session.get(Journey, enrolment.journey_id)
    person = session.get(Person, enrolment.person_id)
    steps = list(session.exec(_JOURNEY_STEPS, params={"journey_id": journey.id}))
    plan = JourneyPlan.build(journey, steps)
    rows = session.exec(_SENT_STEPS, params={"enrolment_id": enrolment.id})
    sent = {row.step_id: row for row in rows}
    by_id = {s.id: s for s in steps}
    return _timeline(settings, enrolment, journey, person, plan, by_id, sent, now)


def _timeline(
    settings: Settings,
    enrolment: Enrolment,
    journey: Journey,
    person: Person,
    plan: JourneyPlan,
    steps: dict[int, Step],
    sent: dict[int, EnrolmentStep],
    now: datetime,
) -> Timeline:
    cal = plan.calendar(person, settings.default_country)
    result = Timeline(enrolment, journey, person, overdue_after=_overdue_after(plan))
    dates = _send_dates(cal, plan, enrolment, [ps for ps in plan.steps if ps.id not in sent])
    for ps in plan.steps:
        es = sent.get(ps.id)
        if es is None:
            entry = _upcoming(plan, person.timezone, enrolment, steps[ps.id], dates.get(ps.id))
        else:
            entry = _sent(cal, person.timezone, plan, enrolment, steps[ps.id], es, now)
        entry.number = ps.position + 1
        result.entries.append(entry)
    return result


def _send_dates(
    cal: WorkCalendar, plan: JourneyPlan, enrolment: Enrolment, unsent: list[PlanStep]
) -> dict[int, date]:
    """Return the learner-local send date of each unsent step of an active enrolment."""
    # A paused enrolment's dates move when it resumes: show none rather than wrong ones.
    if enrolment.status != "active":
        return {}
    start, shift = enrolment.start_date, enrolment.shift_days
    return {ps.id: working_day(cal, start, ps.day + shift) for ps in unsent}


@lru_cache(maxsize=16384)
def working_day(cal: WorkCalendar, start: date, offset: int) -> date:
    """Return working day `offset` from `start`, remembered: a cohort shares its start date."""
    return cal.add_working_days(start, offset)


def _upcoming(
    plan: JourneyPlan, tz: str, enrolment: Enrolment, step: Step, send_date: date | None
) -> Entry:
    closed = enrolment.status in ("withdrawn", "completed")
    planned = local_instant(send_date, plan.send_time, tz) if send_date else None
    return Entry(step, None, "closed" if closed else "upcoming", planned, None)


def _sent(
    cal: WorkCalendar,
    tz: str,
    plan: JourneyPlan,
    enrolment: Enrolment,
    step: Step,
    es: EnrolmentStep,
    now: datetime,
) -> Entry:
    entry = Entry(step, es, "due", es.sent_at, es.due_at, snoozed_until=es.snoozed_until)
    if es.status == "done":
        entry.status = "done"
    elif es.status == "cancelled" or enrolment.status == "withdrawn":
        entry.status = "closed"
    elif es.awaiting_confirmation:
        entry.status = "awaiting"
    elif es.due_at is not None and es.due_at <= now:
        entry.status = "overdue"
        entry.days_overdue = plan.overdue_days(cal, tz, es.due_at, now)
    if entry.snoozed_until is not None and entry.snoozed_until <= now:
        entry.snoozed_until = None
    return entry
