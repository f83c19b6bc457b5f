"""The dashboard's figures, summarised: computed every few minutes, not on every view.

Counting a million enrolments and their open steps takes seconds, and a page
view must not. The figures of every journey (statuses, behind, step by step,
completions per day) are computed together and stored as one JSON row; a view
shows the stored figures, with the time they were computed, while they are
younger than SNAPSHOT_TTL. The clock asks a worker for fresh ones once they are
REFRESH_AFTER old, so that views rarely meet old figures; a view that does
(or finds none: a new install, no worker, or an import has just enrolled
people and dropped them) computes them itself and stores them. Other changes
show within SNAPSHOT_TTL.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy import delete
from sqlmodel import Session, select

from nudger.insights import dashboard
from nudger.insights.dashboard import JourneyStats, StepStats
from nudger.models import DashboardSnapshot, Journey

SNAPSHOT_TTL = timedelta(minutes=5)
REFRESH_AFTER = timedelta(minutes=2)
REFRESH_JOB_ID = "refresh-dashboard"


@dataclass
class Detail:
    """One journey's full picture and its completions chart."""

    stats: JourneyStats
    span: int
    days: list[tuple[date, int]]


@dataclass
class Figures:
    """Every journey's figures as of `computed_at`."""

    computed_at: datetime
    journeys: list[JourneyStats]
    details: dict[int, Detail]

    def detail(self, session: Session, journey: Journey, now: datetime) -> Detail:
        """Return a journey's detail; one the snapshot lacks (a new journey) is computed."""
        found = self.details.get(journey.id)
        if found is None:
            known = next((j for j in self.journeys if j.id == journey.id), None)
            found = _detail(session, journey, now, known)
        return found


def _detail(session: Session, journey: Journey, now: datetime, known) -> Detail:
    stats = dashboard.journey_stats(session, journey, now, known)
    span = dashboard.completion_days(session, journey.id, now)
    return Detail(stats, span, dashboard.completions_by_day(session, journey.id, now, days=span))


def compute(session: Session, now: datetime) -> Figures:
    """Work out every journey's figures at `now` (the expensive part)."""
    journeys = dashboard.overview(session, now)
    details = {}
    for known in journeys:
        journey = session.get(Journey, known.id)
        details[known.id] = _detail(session, journey, now, known)
    return Figures(now, journeys, details)


def _encode(figures: Figures) -> dict:
    return {
        "journeys": [dataclasses.asdict(j) for j in figures.journeys],
        "details": {
            str(k): {
                "stats": dataclasses.asdict(d.stats),
                "span": d.span,
                "days": [[day.isoformat(), n] for day, n in d.days],
            }
            for k, d in figures.details.items()
        },
    }


def _stats(data: dict) -> JourneyStats:
    return JourneyStats(**{**data, "steps": [StepStats(**s) for s in data["steps"]]})


def _decode(row: DashboardSnapshot) -> Figures:
    data = row.data
    details = {
        int(k): Detail(
            _stats(d["stats"]), d["span"], [(date.fromisoformat(x), n) for x, n in d["days"]]
        )
        for k, d in data["details"].items()
    }
    return Figures(row.computed_at, [_stats(j) for j in data["journeys"]], details)


def latest(session: Session) -> DashboardSnapshot | None:
    return session.exec(
        select(DashboardSnapshot).order_by(DashboardSnapshot.id.desc()).limit(1)
    ).first()


def refresh(session: Session, now: datetime) -> Figures:
    """Compute the figures, store them in place of older ones, commit; return them."""
    figures = compute(session, now)
    row = DashboardSnapshot(computed_at=now, data=_encode(figures))
    session.add(row)
    session.flush()
    session.execute(delete(DashboardSnapshot).where(DashboardSnapshot.id < row.id))
    session.commit()
    return figures


def figures(session: Session, now: datetime) -> Figures:
    """Return the stored figures if younger than SNAPSHOT_TTL, else fresh ones (stored)."""
    row = latest(session)
    if row is not None and timedelta(0) <= now - row.computed_at < SNAPSHOT_TTL:
        return _decode(row)
    return refresh(session, now)


def stale(session: Session, now: datetime) -> bool:
    """True when the stored figures are REFRESH_AFTER old (or missing): time for new ones."""
    row = latest(session)
    return row is None or not timedelta(0) <= now - row.computed_at < REFRESH_AFTER
