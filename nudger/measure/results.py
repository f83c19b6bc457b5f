"""Sum a journey's ratings: matched pairs, shifts, distributions and response rates.

A pair is one enrolment's start answer and its latest later answer to one
behaviour, from the same kind of rater (both with a value). Means over fewer
than `MIN_PAIRS` pairs are withheld, here and wherever they are shown: with a
handful of people a mean tells who answered what.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import text
from sqlmodel import Session, select

from nudger.journeys.spec import RATERS, JourneySpec, checkpoint_order
from nudger.models import Journey

MIN_PAIRS = 5

# One row per behaviour and rater: pairs, their mean start and latest value,
# and how many moved up by a point or more. Reads ix_rating_panel only.
_PAIRS = text(
    """
    WITH latest AS (
        SELECT behaviour, rater, enrolment_id, MAX(checkpoint_order) AS o
        FROM rating
        WHERE journey_id = :journey AND checkpoint_order > 0 AND value IS NOT NULL
        GROUP BY behaviour, rater, enrolment_id
    )
    SELECT s.behaviour, s.rater, COUNT(*), AVG(s.value * 1.0), AVG(l.value * 1.0),
           SUM(CASE WHEN l.value >= s.value + 1 THEN 1 ELSE 0 END)
    FROM rating s
    JOIN latest ON latest.behaviour = s.behaviour AND latest.rater = s.rater
               AND latest.enrolment_id = s.enrolment_id
    JOIN rating l ON l.journey_id = s.journey_id AND l.behaviour = s.behaviour
                 AND l.rater = s.rater AND l.checkpoint_order = latest.o
                 AND l.enrolment_id = s.enrolment_id
    WHERE s.journey_id = :journey AND s.checkpoint_order = 0 AND s.value IS NOT NULL
    GROUP BY s.behaviour, s.rater
    """
)

# How many answered each value, per behaviour, rater and checkpoint (None: no chance).
_DISTRIBUTION = text(
    """
    SELECT behaviour, rater, checkpoint_order, value, COUNT(*)
    FROM rating WHERE journey_id = :journey
    GROUP BY behaviour, rater, checkpoint_order, value
    """
)

# Self against manager at one checkpoint, over enrolments both answered with a value.
_GAP = text(
    """
    SELECT l.behaviour, l.checkpoint_order, COUNT(*), AVG(l.value * 1.0 - m.value)
    FROM rating l
    JOIN rating m ON m.journey_id = l.journey_id AND m.behaviour = l.behaviour
                 AND m.checkpoint_order = l.checkpoint_order AND m.enrolment_id = l.enrolment_id
                 AND m.rater = 'manager' AND m.value IS NOT NULL
    WHERE l.journey_id = :journey AND l.rater = 'learner' AND l.value IS NOT NULL
    GROUP BY l.behaviour, l.checkpoint_order
    """
)

_RATES = text(
    """
    SELECT checkpoint, rater, state, COUNT(*), COUNT(answered_at)
    FROM checkin WHERE journey_id = :journey AND state IN ('sent', 'no-manager')
    GROUP BY checkpoint, rater, state
    """
)


@dataclass
class RaterFigures:
    """One behaviour's figures from one kind of rater."""

    pairs: int = 0
    start: float | None = None  # mean start value over pairs
    latest: float | None = None  # mean latest value over the same pairs
    improved: float | None = None  # share of pairs up by a point or more

    @property
    def shift(self) -> float | None:
        return None if self.start is None or self.latest is None else self.latest - self.start

    def to_json(self) -> dict:
        return {
            "pairs": self.pairs,
            "start": _round(self.start),
            "latest": _round(self.latest),
            "shift": _round(self.shift),
            "improved": _round(self.improved),
        }


@dataclass
class BehaviourFigures:
    """A behaviour's figures: per rater, distributions per checkpoint, self-manager gap."""

    key: str
    text: str
    raters: dict[str, RaterFigures] = field(default_factory=dict)
    # rater -> checkpoint order -> value (0: no chance to observe) -> count
    distribution: dict[str, dict[int, dict[int, int]]] = field(default_factory=dict)
    gap: float | None = None  # mean self minus manager at the latest shared checkpoint
    gap_n: int = 0

    def start_answers(self) -> int:
        """Return how many start answers were given, by either kind of rater."""
        return sum(sum(d.get(0, {}).values()) for d in self.distribution.values())


@dataclass
class JourneyFigures:
    """A journey's measurement: behaviours in the goal's order, then removed ones."""

    slug: str
    title: str
    checkpoints: list[str]
    behaviours: list[BehaviourFigures]
    removed: list[BehaviourFigures]
    # checkpoint -> rater -> {"sent", "answered", "rate", "no_manager"}
    response_rates: dict[str, dict[str, dict]]

    def to_json(self) -> dict:
        return {
            "slug": self.slug,
            "title": self.title,
            "behaviours": [
                {
                    "key": b.key,
                    "text": b.text,
                    "raters": {r: f.to_json() for r, f in b.raters.items()},
                }
                for b in self.behaviours
            ],
            "response_rates": self.response_rates,
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def journey_figures(session: Session, journey: Journey) -> JourneyFigures:
    """Return a journey's measurement figures, in four grouped queries."""
    spec = JourneySpec.model_validate(journey.spec)
    raters = list(spec.measure.raters) if spec.measure else list(RATERS)
    current = {b.key: BehaviourFigures(b.key, b.text) for b in spec.behaviours()}
    others: dict[str, BehaviourFigures] = {}

    def figures(key: str) -> BehaviourFigures:
        if key in current:
            return current[key]
        return others.setdefault(key, BehaviourFigures(key, key))

    params = {"journey": journey.id}
    for key, rater, pairs, start, latest, improved in session.execute(_PAIRS, params):
        shown = pairs >= MIN_PAIRS
        figures(key).raters[rater] = RaterFigures(
            pairs=pairs,
            start=float(start) if shown else None,
            latest=float(latest) if shown else None,
            improved=int(improved) / pairs if shown else None,
        )
    for key, rater, order, value, count in session.execute(_DISTRIBUTION, params):
        by_order = figures(key).distribution.setdefault(rater, {}).setdefault(order, {})
        by_order[value or 0] = count
    latest_gap: dict[str, int] = {}
    for key, order, n, gap in session.execute(_GAP, params):
        if order > 0 and order >= latest_gap.get(key, 0):
            latest_gap[key] = order
            b = figures(key)
            b.gap_n, b.gap = n, float(gap) if n >= MIN_PAIRS else None
    for b in [*current.values(), *others.values()]:
        for rater in raters:
            b.raters.setdefault(rater, RaterFigures())
    checkpoints = spec.measure.checkpoints() if spec.measure else []
    rates: dict[str, dict[str, dict]] = {
        c: {r: {"sent": 0, "answered": 0, "rate": None, "no_manager": 0} for r in raters}
        for c in checkpoints
    }
    for checkpoint, rater, state, count, answered in session.execute(_RATES, params):
        cell = rates.setdefault(checkpoint, {}).setdefault(
            rater, {"sent": 0, "answered": 0, "rate": None, "no_manager": 0}
        )
        if state == "no-manager":
            cell["no_manager"] += count
        else:
            cell["sent"] += count
            cell["answered"] += answered
    for by_rater in rates.values():
        for cell in by_rater.values():
            cell["rate"] = round(cell["answered"] / cell["sent"], 2) if cell["sent"] else None
    ordered = dict(sorted(rates.items(), key=lambda item: checkpoint_order(item[0])))
    return JourneyFigures(
        slug=journey.slug,
        title=journey.title,
        checkpoints=checkpoints,
        behaviours=list(current.values()),
        removed=sorted(others.values(), key=lambda b: b.key),
        response_rates=ordered,
    )


def measured_journeys(session: Session, slug: str | None = None) -> list[Journey]:
    """Return the journeys that measure (or once measured) their goal, by slug."""
    query = select(Journey).order_by(Journey.slug)
    if slug:
        query = query.where(Journey.slug == slug)
    return [j for j in session.exec(query) if j.spec.get("measure") or slug]


def all_figures(session: Session, slug: str | None = None) -> list[JourneyFigures]:
    """Return the figures of every measured journey (or of one, by slug)."""
    return [journey_figures(session, j) for j in measured_journeys(session, slug)]
