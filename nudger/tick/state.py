"""What one tick reads and shares: learners and steps as plain rows, and the context.

The tick (nudger.tick.run) and the follow-ups it runs (nudger.tick.followups) work on
these rather than ORM objects: a tick reads thousands of rows and changes a
few columns of some, which it writes back in bulk.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import NamedTuple

from sqlmodel import Session, select

from nudger import outbox
from nudger.config import Settings
from nudger.models import Journey, Step
from nudger.schedule import JourneyPlan


class Learner(NamedTuple):
    """What the tick reads of the person on an enrolment."""

    id: int
    email: str
    timezone: str
    country: str
    manager_id: int | None


class DueEnrolment(NamedTuple):
    """An enrolment the tick visits: read as a plain row, its one change written in bulk."""

    id: int
    person_id: int
    journey_id: int
    status: str
    start_date: date
    shift_days: int
    reminders_muted: bool
    learner: Learner


class NewSteps(NamedTuple):
    """The steps an enrolment gets at this tick, and when its next step is due.

    The same for every enrolment on the same journey, calendar, zone, start and
    shift that already has the same steps: a cohort is worked out once per tick.
    """

    due: list[tuple[int, datetime, datetime | None]]  # (step id, due at, invite start)
    next_at: datetime | None


NO_STEPS: frozenset[int] = frozenset()


class ClosedStep(NamedTuple):
    """A done or cancelled step of an enrolment: read-only, the tick never changes one."""

    id: int
    enrolment_id: int
    step_id: int
    status: str


@dataclass(slots=True)
class OpenStep:
    """A sent step not done yet: reminders and escalations move its counters.

    Read as a plain row; the counters that changed are written back in bulk.
    """

    id: int
    enrolment_id: int
    step_id: int
    due_at: datetime | None
    snoozed_until: datetime | None
    awaiting_confirmation: bool
    reminders_sent: int
    escalation_level: int
    status: str = "sent"
    loaded: tuple[int, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.loaded = (self.reminders_sent, self.escalation_level)


@dataclass
class DueSteps:
    """The steps one enrolment gets in one email, before they are written."""

    enrolment_id: int
    person_id: int
    email: str
    rows: list[dict]
    journey_id: int = 0


@dataclass
class FollowUpNotes:
    """What the follow-ups (`nudger.tick.followups.chase`) decided, waiting for `flush`."""

    events: list[dict] = field(default_factory=list)
    reminders: list[dict] = field(default_factory=list)
    # Steps found past their due date, for `step.overdue` events (keyed: written once).
    overdue: list[dict] = field(default_factory=list)
    # Why each message or event was written: audit rows, inserted together.
    audits: list[dict] = field(default_factory=list)
    # (email, manager id) by person id, kept for the whole tick: managers repeat.
    # person id -> (email, manager id, digest_every)
    people: dict[int, tuple[str, int | None, str | None]] = field(default_factory=dict)
    admins: list[str] | None = None


class Cohort(NamedTuple):
    """Enrolments for which the schedule answers alike: worked out once per tick for each.

    `now` is fixed for a tick, so the steps due and the first follow-up check
    depend only on these.
    """

    journey_id: int
    country: str
    timezone: str
    start: date
    shift_days: int
    have: frozenset[int]  # the steps the enrolment already has


@dataclass
class TickContext:
    """What one tick shares across enrolments: settings, plans, counts."""

    session: Session
    settings: Settings
    now: datetime
    plans: dict[int, JourneyPlan] = field(default_factory=dict)
    new_steps: dict[Cohort, NewSteps] = field(default_factory=dict)
    first_checks: dict[Cohort, datetime | None] = field(default_factory=dict)
    followups: FollowUpNotes = field(default_factory=FollowUpNotes)
    counts: Counter = field(default_factory=Counter)
    new_outbox_ids: list[int] = field(default_factory=list)
    # Steps decided in this chunk, written together by `write_sent_steps`.
    due_steps: list[DueSteps] = field(default_factory=list)

    def plan(self, journey_id: int) -> JourneyPlan:
        plan = self.plans.get(journey_id)
        if plan is None:
            journey = self.session.get(Journey, journey_id)
            steps = self.session.exec(select(Step).where(Step.journey_id == journey_id))
            plan = self.plans[journey_id] = JourneyPlan.build(journey, list(steps))
        return plan

    def add_outboxes(self, messages: list[dict]) -> list[outbox.Added]:
        """Write the tick's outbox rows (see `outbox.add`), counted and enqueued after commit."""
        added = outbox.add(self.session, messages, self.now, enqueued_at=self.now)
        for row in added:
            self.counts[row.kind] += 1
            self.new_outbox_ids.append(row.id)
        return added
