"""The check-in page's rules: what a rater sees, and recording their answers.

Opening the page (GET or HEAD, as mail scanners do) reads only; answers are
recorded by `save_answers`, from a POST. Saving again while the checkpoint
is open replaces the earlier answers; after it closes nothing changes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlmodel import Session, select

from nudger import events
from nudger.audit import record
from nudger.bulk import insert_ignoring
from nudger.journeys.spec import SCALE, BehaviourSpec, JourneySpec, checkpoint_order
from nudger.measure.tally import apply_change, apply_gap_change, difference
from nudger.models import Checkin, Enrolment, Journey, Person, Rating

# "No chance to observe": an answer, recorded without a value.
NO_CHANCE = 0


class CheckinClosed(Exception):
    """The checkpoint stopped taking answers; nothing was recorded."""


class BadAnswers(ValueError):
    """The form named a behaviour or an answer that does not exist; nothing was recorded."""


@dataclass
class CheckinPage:
    """What the check-in page shows."""

    checkin: Checkin
    learner: Person
    rater: Person
    journey: Journey
    behaviours: list[BehaviourSpec]
    answers: dict[str, int] = field(default_factory=dict)  # key -> 1..5, or 0: no chance

    @property
    def by_manager(self) -> bool:
        return self.checkin.rater == "manager"

    def closed(self, now: datetime) -> bool:
        """Say whether the checkpoint has stopped taking answers."""
        return self.checkin.closes_at is not None and self.checkin.closes_at <= now


def load_checkin(session: Session, checkin_id: int) -> CheckinPage | None:
    """Return what the page for a sent check-in shows, with answers saved so far; None if gone."""
    checkin = session.get(Checkin, checkin_id)
    if checkin is None or checkin.state != "sent" or checkin.rater_id is None:
        return None
    enrolment = session.get(Enrolment, checkin.enrolment_id)
    journey = session.get(Journey, checkin.journey_id)
    learner = session.get(Person, enrolment.person_id)
    rater = session.get(Person, checkin.rater_id)
    saved = session.exec(
        select(Rating.behaviour, Rating.value).where(Rating.checkin_id == checkin.id)
    ).all()
    return CheckinPage(
        checkin=checkin,
        learner=learner,
        rater=rater,
        journey=journey,
        behaviours=JourneySpec.model_validate(journey.spec).behaviours(),
        answers={key: NO_CHANCE if value is None else value for key, value in saved},
    )


def parse_answer(value: str | None) -> int | None:
    """Read one answer from a form or link: 1..5, 0 for no chance, None for none given."""
    if value is None or value == "":
        return None
    if value.isdigit() and 0 <= int(value) <= len(SCALE):
        return int(value)
    raise BadAnswers(f"{value!r} is not an answer")


def save_answers(
    session: Session, checkin_id: int, answers: dict[str, int], now: datetime
) -> CheckinPage:
    """Record a rater's answers (behaviour key -> 1..5, or 0 for no chance to observe).

    Behaviours left out keep what was saved before. Raises CheckinClosed after
    the checkpoint closed, BadAnswers for an unknown behaviour or answer, and
    LookupError when the check-in is gone.
    """
    # Saves of one check-in take turns, so each moves the tallies from what the last left.
    session.execute(select(Checkin.id).where(Checkin.id == checkin_id).with_for_update())
    page = load_checkin(session, checkin_id)
    if page is None:
        raise LookupError(checkin_id)
    if page.closed(now):
        raise CheckinClosed(checkin_id)
    known = {b.key for b in page.behaviours}
    unknown = sorted(set(answers) - known)
    if unknown:
        raise BadAnswers(f"not a behaviour of this journey: {', '.join(unknown)}")
    if any(not 0 <= v <= len(SCALE) for v in answers.values()):
        raise BadAnswers("answers are 1 to 5, or 0 for no chance to observe")
    checkin = page.checkin
    changed = {k: v for k, v in answers.items() if page.answers.get(k) != v}
    if changed:
        _tally(session, checkin, changed)
        rows = [
            {
                "checkin_id": checkin.id,
                "enrolment_id": checkin.enrolment_id,
                "journey_id": checkin.journey_id,
                "behaviour": key,
                "rater": checkin.rater,
                "checkpoint": checkin.checkpoint,
                "checkpoint_order": checkpoint_order(checkin.checkpoint),
                "value": value or None,
                "recorded_at": now,
            }
            for key, value in sorted(changed.items())
        ]
        cols = ("checkin_id", "behaviour")
        new = {r.behaviour for r in insert_ignoring(session, Rating.__table__, rows, cols, cols)}
        for row in rows:
            if row["behaviour"] not in new:  # answered before: this answer replaces it
                session.execute(
                    Rating.__table__.update()
                    .where(Rating.checkin_id == checkin.id, Rating.behaviour == row["behaviour"])
                    .values(value=row["value"], recorded_at=now)
                )
        page.answers.update(changed)
        events.record(
            session,
            events.RATING_RECORDED,
            {
                "enrolment_id": checkin.enrolment_id,
                "checkin_id": checkin.id,
                "journey": page.journey.slug,
                "rater": checkin.rater,
                "rater_id": checkin.rater_id,
                "checkpoint": checkin.checkpoint,
                # 1..5, or 0: no chance to observe
                "answers": dict(sorted(changed.items())),
            },
            now=now,
            enrolment_id=checkin.enrolment_id,
        )
    if answers:
        checkin.answered_at = checkin.answered_at or now
        checkin.remind_at = checkin.digest_at = None
        session.add(checkin)
        record(
            session,
            f"{checkin.rater}:{checkin.rater_id}",
            "checkin.answer",
            now,
            "checkin",
            checkin.id,
            answers=dict(sorted(answers.items())),
        )
    session.flush()
    return page


def _tally(session: Session, checkin: Checkin, changed: dict[str, int]) -> None:
    """Move the journey's tallies by what these answers change in this enrolment's pairs."""
    before: dict[str, dict[int, int | None]] = {key: {} for key in changed}
    rows = session.exec(
        select(Rating.behaviour, Rating.checkpoint_order, Rating.value).where(
            Rating.enrolment_id == checkin.enrolment_id,
            Rating.rater == checkin.rater,
            Rating.behaviour.in_(sorted(changed)),
        )
    )
    for key, order, value in rows:
        before[key][order] = value
    order = checkpoint_order(checkin.checkpoint)
    # The other kind of rater's values at this checkpoint: the pairs the gap is taken over.
    other = "manager" if checkin.rater == "learner" else "learner"
    theirs = dict(
        session.exec(
            select(Rating.behaviour, Rating.value).where(
                Rating.enrolment_id == checkin.enrolment_id,
                Rating.rater == other,
                Rating.checkpoint_order == order,
                Rating.behaviour.in_(sorted(changed)),
            )
        ).all()
    )
    for key, value in sorted(changed.items()):
        after = {**before[key], order: value or None}
        apply_change(session, checkin.journey_id, checkin.rater, key, order, before[key], after)
        mine_before, mine_after, other_value = before[key].get(order), after[order], theirs.get(key)
        if checkin.rater == "learner":  # self minus manager, whoever saved
            old, new = difference(mine_before, other_value), difference(mine_after, other_value)
        else:
            old, new = difference(other_value, mine_before), difference(other_value, mine_after)
        apply_gap_change(session, checkin.journey_id, key, order, old, new)
