"""A manager's view: their reports and, for a skip-level manager, their reports' reports."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

from sqlmodel import Session, select

from nudger.config import Settings
from nudger.insights.timeline import Timeline, timelines
from nudger.models import Enrolment, Person

# Direct reports, then their reports: the digest's skip-level reaches this far too.
DEPTH = 2

# Most urgent first on the page.
ORDER = {"escalated": 0, "behind": 1, "on_track": 2, "paused": 3, "completed": 4}


@dataclass
class Member:
    """One person in a manager's tree, with their journeys."""

    person: Person
    depth: int  # 1: reports to the viewer; 2: reports to one of the viewer's reports
    manager: Person
    journeys: list[Timeline] = field(default_factory=list)

    @property
    def standing(self) -> str:
        """Return the most urgent standing over this person's journeys."""
        if not self.journeys:
            return "on_track"
        return min((t.standing for t in self.journeys), key=lambda s: ORDER.get(s, 9))


@dataclass
class Team:
    """Everything /team shows one manager."""

    manager: Person
    members: list[Member]

    def direct(self) -> list[Member]:
        return [m for m in self.members if m.depth == 1]

    def indirect(self) -> list[Member]:
        return [m for m in self.members if m.depth > 1]

    def counts(self) -> Counter:
        """Count people per standing."""
        return Counter(m.standing for m in self.members if m.journeys)


def tree(session: Session, manager_id: int) -> list[tuple[Person, int, Person]]:
    """Return (person, depth, their manager) for everyone up to DEPTH levels below."""
    manager = session.get(Person, manager_id)
    found: list[tuple[Person, int, Person]] = []
    seen = {manager_id}
    level, bosses = 1, {manager_id: manager}
    while bosses and level <= DEPTH:
        rows = session.exec(select(Person).where(Person.manager_id.in_(list(bosses)))).all()
        nxt = {}
        for person in sorted(rows, key=lambda p: (p.name or p.email).lower()):
            if person.id in seen:  # the importer refuses loops; never trust that here
                continue
            seen.add(person.id)
            found.append((person, level, bosses[person.manager_id]))
            nxt[person.id] = person
        bosses, level = nxt, level + 1
    return found


def team(session: Session, settings: Settings, manager: Person, now: datetime) -> Team:
    """Return the manager's tree with each person's live and finished journeys."""
    members = [Member(p, depth, boss) for p, depth, boss in tree(session, manager.id)]
    by_person = {m.person.id: m for m in members}
    if by_person:
        enrolments = session.exec(
            select(Enrolment)
            .where(Enrolment.person_id.in_(list(by_person)), Enrolment.status != "withdrawn")
            .order_by(Enrolment.id)
        ).all()
        for t in timelines(session, settings, list(enrolments), now):
            by_person[t.person.id].journeys.append(t)
    members.sort(key=lambda m: (m.depth, ORDER.get(m.standing, 9)))
    return Team(manager, members)


def in_tree(session: Session, manager_id: int, person_id: int) -> bool:
    """Say whether `person_id` is within the manager's tree."""
    return any(p.id == person_id for p, _, _ in tree(session, manager_id))
