"""Small builders for test data, written by hand per test."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from sqlmodel import Session

from nudger.models import Enrolment, Journey, Person, Step

DEFAULT_SPEC: dict[str, Any] = {
    "schedule": {
        "send_time": "09:00",
        "invite_time": "10:00",
        "days": ["mon", "tue", "wed", "thu", "fri"],
        "holidays": True,
        "due_after": 2,
    },
    "reminders": [{"after": 1}, {"after": 4}],
    "escalations": [
        {"after": 3, "notify": "manager"},
        {"after": 8, "notify": "skip_level"},
        {"after": 12, "notify": "admin"},
    ],
    "digest": {"every": "day", "at": "08:00", "on": "mon"},
}


def make_journey(
    session: Session,
    slug: str = "giving-feedback",
    steps: list[dict] | None = None,
    owner: str | None = "learning@example.com",
    **schedule: Any,
) -> Journey:
    """Add a journey with steps (default: three steps on days 0, 2 and 5)."""
    spec = {**DEFAULT_SPEC, "schedule": {**DEFAULT_SPEC["schedule"], **schedule}}
    steps = steps or [
        {"key": "read", "day": 0, "kind": "read", "title": "Read the one-pager", "minutes": 15},
        {"key": "discuss", "day": 2, "kind": "discuss", "title": "Discuss it", "minutes": 20},
        {"key": "reflect", "day": 5, "kind": "reflect", "title": "Reflect", "minutes": 10},
    ]
    spec = {**spec, "slug": slug, "title": slug.replace("-", " ").title(), "steps": steps}
    journey = Journey(slug=slug, title=spec["title"], owner=owner, spec=spec, checksum="x")
    session.add(journey)
    session.flush()
    for i, s in enumerate(steps):
        session.add(
            Step(
                journey_id=journey.id,
                key=s["key"],
                position=i,
                day=s["day"],
                kind=s.get("kind", "read"),
                title=s.get("title", s["key"]),
                minutes=s.get("minutes"),
                link=s.get("link"),
                body=s.get("body"),
                due_after=s.get("due_after"),
                confirmed_by=s.get("confirmed_by"),
                at=s.get("at"),
            )
        )
    session.commit()
    return journey


def make_person(
    session: Session,
    email: str = "ada@example.com",
    name: str = "Ada Lovelace",
    manager: Person | None = None,
    timezone: str = "Europe/London",
    country: str = "GB",
) -> Person:
    """Add a person."""
    person = Person(
        email=email.lower(),
        name=name,
        manager_id=manager.id if manager else None,
        timezone=timezone,
        country=country,
    )
    session.add(person)
    session.commit()
    return person


def make_enrolment(
    session: Session, person: Person, journey: Journey, start: date, **kw: Any
) -> Enrolment:
    """Enrol a person; like an import, it asks the next tick to look at it at once."""
    kw.setdefault("next_action_at", datetime(2000, 1, 1, tzinfo=UTC))
    enrolment = Enrolment(person_id=person.id, journey_id=journey.id, start_date=start, **kw)
    session.add(enrolment)
    session.commit()
    return enrolment
