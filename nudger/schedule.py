"""When each step of an enrolment is sent, due, and chased."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from functools import cached_property

from nudger.calendar import (
    WorkCalendar,
    local_date,
    local_instant,
    slots_between,
    weekday_numbers,
)
from nudger.journeys.spec import DigestSpec, ScheduleSpec
from nudger.models import Journey, Person, Step


@dataclass(frozen=True)
class PlanStep:
    """The parts of a step the scheduler needs, detached from the session."""

    id: int
    key: str
    position: int
    day: int
    title: str
    due_after: int
    minutes: int | None
    at: datetime | None
    confirmed_by: str | None


@dataclass
class JourneyPlan:
    """A journey's schedule and live steps, loaded once per tick."""

    journey_id: int
    slug: str
    title: str
    owner: str | None
    send_time: time
    invite_time: time
    weekdays: frozenset[int]
    skip_holidays: bool
    reminders: list[int]
    escalations: list[tuple[int, str]]
    digest: dict
    steps: list[PlanStep] = field(default_factory=list)
    # One calendar per country, made once: a tick asks for one per enrolment.
    _calendars: dict[str, WorkCalendar] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    @classmethod
    def build(cls, journey: Journey, steps: list[Step]) -> JourneyPlan:
        spec = journey.spec
        # The spec's own model fills in whatever a stored spec leaves out.
        sched = ScheduleSpec.model_validate(spec.get("schedule") or {})
        digest = DigestSpec.model_validate(spec.get("digest") or {})
        live = sorted((s for s in steps if not s.removed), key=lambda s: s.position)
        return cls(
            journey_id=journey.id,
            slug=journey.slug,
            title=journey.title,
            owner=journey.owner,
            send_time=sched.send_time,
            invite_time=sched.invite_time,
            weekdays=weekday_numbers(sched.days),
            skip_holidays=sched.holidays,
            reminders=[int(r["after"]) for r in spec.get("reminders", [])],
            escalations=[(int(e["after"]), e["notify"]) for e in spec.get("escalations", [])],
            digest=digest.model_dump(mode="json"),
            steps=[
                PlanStep(
                    id=s.id,
                    key=s.key,
                    position=i,
                    day=s.day,
                    title=s.title,
                    due_after=s.due_after if s.due_after is not None else sched.due_after,
                    minutes=s.minutes,
                    at=datetime.fromisoformat(s.at) if s.at else None,
                    confirmed_by=s.confirmed_by,
                )
                for i, s in enumerate(live)
            ],
        )

    def calendar(self, person: Person, default_country: str = "") -> WorkCalendar:
        """Return the working-day calendar of this journey for this person."""
        return self.country_calendar(person.country or default_country)

    def country_calendar(self, country: str) -> WorkCalendar:
        """Return the working-day calendar of this journey in a country's holidays."""
        cal = self._calendars.get(country)
        if cal is None:
            cal = self._calendars[country] = WorkCalendar(
                weekdays=self.weekdays, country=country.upper(), skip_holidays=self.skip_holidays
            )
        return cal

    @cached_property
    def steps_by_id(self) -> dict[int, PlanStep]:
        """Return the live steps by id (built once: the plan's steps do not change)."""
        return {s.id: s for s in self.steps}

    def send_date(self, cal: WorkCalendar, start: date, shift: int, step: PlanStep) -> date:
        """Return the learner-local date on which `step` goes out."""
        return cal.add_working_days(start, step.day + shift)

    def send_at(
        self, cal: WorkCalendar, tz: str, start: date, shift: int, step: PlanStep
    ) -> datetime:
        """Return the UTC instant at which `step` goes out."""
        return local_instant(self.send_date(cal, start, shift, step), self.send_time, tz)

    def due_at(self, cal: WorkCalendar, tz: str, sent_at: datetime, step: PlanStep) -> datetime:
        """Return when a step sent at `sent_at` becomes overdue."""
        sent_day = cal.next_working_day(local_date(sent_at, tz))
        return local_instant(cal.add_working_days(sent_day, step.due_after), self.send_time, tz)

    def after_due(self, cal: WorkCalendar, tz: str, due_at: datetime, days: int) -> datetime:
        """Return the instant a step due at `due_at` is `days` working days overdue."""
        due_day = local_date(due_at, tz)
        return local_instant(cal.add_working_days(due_day, days), self.send_time, tz)

    def overdue_days(self, cal: WorkCalendar, tz: str, due_at: datetime, now: datetime) -> int:
        """Return how many working days a step due at `due_at` is overdue at `now`."""
        return slots_between(cal, tz, self.send_time, due_at, now)

    def paused_days(
        self,
        cal: WorkCalendar,
        tz: str,
        start: date,
        shift: int,
        paused_at: datetime,
        now: datetime,
    ) -> int:
        """Return the journey's working days whose send time passed while paused: its length.

        Days before the journey's first day do not count: pausing someone who
        has not started yet delays their start by the days they would have had.
        """
        first = local_instant(cal.add_working_days(start, shift), self.send_time, tz)
        since = max(paused_at, first - timedelta(microseconds=1))
        return slots_between(cal, tz, self.send_time, since, now)

    def invite_start(
        self, cal: WorkCalendar, tz: str, start: date, shift: int, step: PlanStep
    ) -> datetime:
        """Return the UTC start of the time blocked for `step`."""
        if step.at is not None:
            return local_instant(step.at.date(), step.at.time(), tz)
        return local_instant(self.send_date(cal, start, shift, step), self.invite_time, tz)


def default_start(cal: WorkCalendar, tz: str, now: datetime) -> date:
    """Return the learner's next working day after today: the CSV's default start."""
    return cal.next_working_day(local_date(now, tz) + timedelta(days=1))


def next_slot(cal: WorkCalendar, tz: str, send_time: time, now: datetime) -> date:
    """Return the first working day whose send time is still ahead of `now`."""
    today = local_date(now, tz)
    day = cal.next_working_day(today)
    if local_instant(day, send_time, tz) <= now:
        day = cal.add_working_days(day, 1)
    return day
