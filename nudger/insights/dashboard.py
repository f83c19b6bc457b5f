"""Aggregates for the admin dashboard, each one GROUP BY query, never a loop over rows.

Words used on the dashboard (the same as `nudger report`):
- behind: an active enrolment with a sent step past its due time, not yet done;
- overdue: behind, and a step has crossed an escalation threshold (someone was told);
- on track: active and not behind.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from sqlalchemy import Date, case, cast, func, literal_column
from sqlmodel import Session, select

from nudger.models import Enrolment, EnrolmentStep, Journey, Step

STATUSES = ("active", "paused", "completed", "withdrawn")
MEDIAN_SAMPLE = 200  # latest completions per step behind "typical days to do it"


@dataclass
class StepStats:
    """One step of a journey: who got it, who did it, who is stuck on it now."""

    key: str
    title: str
    position: int
    sent: int = 0
    done: int = 0
    stuck: int = 0  # sent, past due and not done, now
    median_days: float | None = None  # sent to done, over the latest completions


@dataclass
class JourneyStats:
    """What the dashboard shows for one journey."""

    id: int
    slug: str
    title: str
    statuses: dict[str, int] = field(default_factory=dict)
    behind: int = 0  # includes the overdue
    overdue: int = 0
    steps: list[StepStats] = field(default_factory=list)

    @property
    def enrolled(self) -> int:
        """Everyone ever enrolled, withdrawn included: the funnel's base."""
        return sum(self.statuses.values())

    @property
    def on_track(self) -> int:
        return self.statuses.get("active", 0) - self.behind

    @property
    def behind_only(self) -> int:
        return self.behind - self.overdue

    def status_rows(self) -> list[tuple[str, str, int]]:
        """Return (colour key, label, count) for the status bar, in reading order."""
        return [
            ("on_track", "On track", self.on_track),
            ("behind", "Behind", self.behind_only),
            ("overdue", "Overdue (escalated)", self.overdue),
            ("paused", "Paused", self.statuses.get("paused", 0)),
            ("completed", "Completed", self.statuses.get("completed", 0)),
        ]

    def stalls(self, limit: int = 5) -> list[StepStats]:
        """Return the steps most people are stuck on now, worst first."""
        stuck = [s for s in self.steps if s.stuck]
        return sorted(stuck, key=lambda s: (-s.stuck, s.position))[:limit]


def open_past_due(now: datetime):
    """Return the condition "sent, not done, past its due time" for EnrolmentStep.

    'sent' is a literal, not a parameter, so the databases can use the partial
    index of open steps (ix_enrolmentstep_open).
    """
    return (EnrolmentStep.status == literal_column("'sent'")) & (EnrolmentStep.due_at <= now)


def overview(session: Session, now: datetime) -> list[JourneyStats]:
    """Return status and behind counts for every journey (steps not loaded)."""
    stats = {
        j.id: JourneyStats(j.id, j.slug, j.title)
        for j in session.exec(select(Journey).order_by(Journey.title))
    }
    rows = session.exec(
        select(Enrolment.journey_id, Enrolment.status, func.count()).group_by(
            Enrolment.journey_id, Enrolment.status
        )
    )
    for journey_id, status, n in rows:
        stats[journey_id].statuses[status] = n
    # One pass over the open steps (not over all history), grouped per enrolment.
    per_enrolment = (
        select(
            EnrolmentStep.enrolment_id.label("enrolment_id"),
            func.max(EnrolmentStep.escalation_level).label("level"),
        )
        .where(open_past_due(now))
        .group_by(EnrolmentStep.enrolment_id)
        .subquery()
    )
    query = (
        select(
            Enrolment.journey_id,
            func.count(),
            func.sum(case((per_enrolment.c.level > 0, 1), else_=0)),
        )
        .join(per_enrolment, per_enrolment.c.enrolment_id == Enrolment.id)
        .where(Enrolment.status == "active")
        .group_by(Enrolment.journey_id)
    )
    for journey_id, behind, overdue in session.exec(query):
        stats[journey_id].behind, stats[journey_id].overdue = behind, int(overdue or 0)
    return list(stats.values())


def late(now: datetime, escalated: bool = False):
    """EXISTS: the enrolment has an open step past due (and escalated, if asked)."""
    # SELECT id, not *, so that SQLite answers from the partial index alone.
    query = select(EnrolmentStep.id).where(
        EnrolmentStep.enrolment_id == Enrolment.id, open_past_due(now)
    )
    if escalated:
        query = query.where(EnrolmentStep.escalation_level > 0)
    return query.exists()


def journey_stats(
    session: Session, journey: Journey, now: datetime, known: JourneyStats | None = None
) -> JourneyStats:
    """Return the full picture of one journey: statuses, behind, and step by step.

    `known` is this journey's line of overview(), when the caller has it: its
    counts are reused rather than queried again.
    """
    stats = JourneyStats(journey.id, journey.slug, journey.title)
    if known is not None:
        stats.statuses, stats.behind, stats.overdue = known.statuses, known.behind, known.overdue
    else:
        rows = session.exec(
            select(Enrolment.status, func.count())
            .where(Enrolment.journey_id == journey.id)
            .group_by(Enrolment.status)
        )
        stats.statuses = dict(rows.all())
        # One index probe per active enrolment of this journey.
        behind, overdue = session.exec(
            select(func.count(), func.sum(case((late(now, escalated=True), 1), else_=0))).where(
                Enrolment.journey_id == journey.id, Enrolment.status == "active", late(now)
            )
        ).one()
        stats.behind, stats.overdue = behind, int(overdue or 0)
    steps = session.exec(
        select(Step)
        .where(Step.journey_id == journey.id, Step.removed.is_(False))
        .order_by(Step.position)
    ).all()
    by_id = {s.id: StepStats(s.key, s.title, s.position) for s in steps}
    if by_id:
        # Grouped by (step, status) so that it reads ix_enrolmentstep_step_status alone.
        due = case((EnrolmentStep.due_at <= now, 1), else_=0)
        query = (
            select(
                EnrolmentStep.step_id,
                EnrolmentStep.status,
                func.count(EnrolmentStep.sent_at),
                func.sum(due),
            )
            .where(EnrolmentStep.step_id.in_(list(by_id)))
            .group_by(EnrolmentStep.step_id, EnrolmentStep.status)
        )
        for step_id, status, sent, n_due in session.exec(query):
            s = by_id[step_id]
            s.sent += sent
            if status == "done":
                s.done = sent
            elif status == "sent":
                s.stuck = int(n_due or 0)
        for step_id, s in by_id.items():
            s.median_days = _median_days(session, step_id)
    stats.steps = list(by_id.values())
    return stats


def _median_days(session: Session, step_id: int) -> float | None:
    """Return the median days from sent to done over the step's latest completions."""
    rows = session.exec(
        select(EnrolmentStep.sent_at, EnrolmentStep.done_at)
        .where(
            EnrolmentStep.step_id == step_id,
            EnrolmentStep.status == "done",
            EnrolmentStep.done_at.is_not(None),
            EnrolmentStep.sent_at.is_not(None),
        )
        .order_by(EnrolmentStep.done_at.desc())
        .limit(MEDIAN_SAMPLE)
    ).all()
    if not rows:
        return None
    days = [(done - sent).total_seconds() / 86400 for sent, done in rows]
    return round(statistics.median(days), 1)


def completions_by_day(
    session: Session, journey_id: int, now: datetime, days: int = 60
) -> list[tuple[date, int]]:
    """Return steps completed per UTC day over the last `days` days, zero days included."""
    first = (now - timedelta(days=days - 1)).date()
    since = datetime.combine(first, datetime.min.time(), tzinfo=now.tzinfo)
    day = _day(session, EnrolmentStep.done_at)
    query = (
        select(day, func.count())
        .where(
            EnrolmentStep.step_id.in_(select(Step.id).where(Step.journey_id == journey_id)),
            EnrolmentStep.status == "done",
            EnrolmentStep.done_at >= since,
        )
        .group_by(day)
    )
    counts = {_as_date(d): n for d, n in session.exec(query)}
    every_day = [first + timedelta(days=i) for i in range(days)]
    return [(d, counts.get(d, 0)) for d in every_day]


def completion_days(
    session: Session, journey_id: int, now: datetime, most: int = 60, least: int = 7
) -> int:
    """Return how many days, up to today, the completion chart covers: since the first start.

    A journey that began two weeks ago gets two weeks, not two empty months;
    `least` keeps a new journey's chart readable and `most` keeps an old one recent.
    """
    first = session.exec(
        select(func.min(Enrolment.start_date)).where(Enrolment.journey_id == journey_id)
    ).one()
    if first is None:
        return least
    return max(least, min(most, (now.date() - _as_date(first)).days + 1))


def _day(session: Session, column):
    """Return the SQL for a timestamp's UTC date, cheap on each dialect."""
    if session.get_bind().dialect.name == "sqlite":
        # Stored as "YYYY-MM-DD HH:MM:SS...": the prefix is the date, no parsing needed.
        return func.substr(column, 1, 10)
    return cast(column, Date)


def _as_date(value) -> date:
    # SQLite's date() answers a string, PostgreSQL's a date.
    return value if isinstance(value, date) else date.fromisoformat(str(value))
