"""Builders for measurement tests: a measured journey, its people, and the tick."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlmodel import Session, select

from nudger.models import Checkin, Journey, Outbox
from nudger.tick.run import tick
from tests.factories import make_journey

GOAL = [
    {"key": "asks-open-questions", "text": "Asks open questions before suggesting"},
    "Opens 1:1s with a question about the person's goal",
]


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def make_measured_journey(
    session: Session,
    slug: str = "coaching",
    measure: dict | None = None,
    goal: list | None = None,
    **extra: object,
) -> Journey:
    """Add a journey (steps on days 0, 2 and 5, due after 2) that measures its goal."""
    journey = make_journey(session, slug)
    journey.spec = {
        **journey.spec,
        "goal": goal or GOAL,
        "measure": measure if measure is not None else {"at": ["start", "end", 20]},
        **extra,
    }
    session.add(journey)
    session.commit()
    return journey


def run(session: Session, settings, now: datetime) -> dict[str, int]:
    return tick(session, settings, now, enqueue=False)


def checkin_mail(session: Session) -> list[Outbox]:
    return list(session.exec(select(Outbox).where(Outbox.kind == "checkin").order_by(Outbox.id)))


def checkins(session: Session) -> list[Checkin]:
    session.expire_all()
    return list(session.exec(select(Checkin).order_by(Checkin.id)))
