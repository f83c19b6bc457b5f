"""Where each person started and where they are now, for the learner's and manager's pages."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from sqlmodel import Session, select

from nudger.bulk import among
from nudger.journeys.spec import SCALE, JourneySpec
from nudger.models import Enrolment, Journey, Person, Rating


@dataclass
class Answer:
    """One rater's answer at one checkpoint, as words."""

    checkpoint: str
    value: int | None

    @property
    def label(self) -> str:
        return SCALE[self.value - 1] if self.value else "No chance to observe"


@dataclass
class BehaviourProgress:
    """A behaviour's start and latest answer from each rater shown."""

    key: str
    text: str
    start: dict[str, Answer]  # rater -> answer
    latest: dict[str, Answer]  # rater -> answer at the latest later checkpoint


@dataclass
class JourneyProgress:
    """A person's behaviours on one journey, and whose answers are shown."""

    enrolment_id: int
    journey_title: str
    raters: list[str]
    behaviours: list[BehaviourProgress]
    person: Person | None = None


def _progress(
    session: Session, enrolments: list[tuple[Enrolment, Journey]], raters_of
) -> list[JourneyProgress]:
    ids = [e.id for e, _ in enrolments]
    found: dict[int, list[Rating]] = defaultdict(list)
    if ids:
        query = select(Rating).where(among(session, Rating.enrolment_id, ids))
        for r in session.exec(query.order_by(Rating.checkpoint_order)):
            found[r.enrolment_id].append(r)
    out = []
    for enrolment, journey in enrolments:
        if not journey.spec.get("measure"):
            continue
        spec = JourneySpec.model_validate(journey.spec)
        raters = raters_of(spec)
        rows = []
        for b in spec.behaviours():
            start: dict[str, Answer] = {}
            latest: dict[str, Answer] = {}
            for r in found[enrolment.id]:
                if r.behaviour != b.key or r.rater not in raters:
                    continue
                target = start if r.checkpoint_order == 0 else latest
                target[r.rater] = Answer(r.checkpoint, r.value)  # ordered: the last is the latest
            rows.append(BehaviourProgress(b.key, b.text, start, latest))
        out.append(JourneyProgress(enrolment.id, journey.title, raters, rows))
    return out


def learner_progress(session: Session, enrolment: Enrolment) -> JourneyProgress | None:
    """Return a learner's own ratings (and their manager's, if the journey shares them)."""
    journey = session.get(Journey, enrolment.journey_id)

    def raters(spec: JourneySpec) -> list[str]:
        return ["learner", "manager"] if spec.share_manager_ratings else ["learner"]

    found = _progress(session, [(enrolment, journey)], raters)
    return found[0] if found else None


def team_progress(session: Session, manager_id: int) -> list[JourneyProgress]:
    """Return each direct report's start and latest, from the manager's own ratings."""
    rows = session.exec(
        select(Enrolment, Journey, Person)
        .join(Journey, Journey.id == Enrolment.journey_id)
        .join(Person, Person.id == Enrolment.person_id)
        .where(Person.manager_id == manager_id, Enrolment.status != "withdrawn")
        .order_by(Person.name, Person.email, Enrolment.id)
    ).all()
    people = {e.id: p for e, _, p in rows}
    found = _progress(session, [(e, j) for e, j, _ in rows], lambda spec: ["manager"])
    for item in found:
        item.person = people[item.enrolment_id]
    return [item for item in found if any(b.start or b.latest for b in item.behaviours)]
