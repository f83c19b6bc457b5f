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
from nudger.models import Journey, RatingCount, RatingGap, RatingSummary

MIN_PAIRS = 5

# The plain path, summing the ratings themselves: one row per behaviour and
# rater with its pairs, the sums of their start and latest values, and how many
# moved up by a point or more. `nudger.measure.tally` keeps the same figures as
# answers are saved; tests hold the two equal.
PAIRS_FROM_RATINGS = text(
    """
    WITH latest AS (
        SELECT behaviour, rater, enrolment_id, MAX(checkpoint_order) AS o
        FROM rating
        WHERE journey_id = :journey AND checkpoint_order > 0 AND value IS NOT NULL
        GROUP BY behaviour, rater, enrolment_id
    )
    SELECT s.behaviour, s.rater, COUNT(*), SUM(s.value), SUM(l.value),
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

# How many gave each answer, per behaviour, rater and checkpoint (0: no chance to observe).
DISTRIBUTION_FROM_RATINGS = text(
    """
    SELECT behaviour, rater, checkpoint_order, COALESCE(value, 0), COUNT(*)
    FROM rating WHERE journey_id = :journey
    GROUP BY behaviour, rater, checkpoint_order, COALESCE(value, 0)
    """
)

# Per behaviour and checkpoint, how many people rated by both themselves and their
# manager had each difference (self minus manager): the gap over matched pairs.
GAPS_FROM_RATINGS = text(
    """
    SELECT s.behaviour, s.checkpoint_order, s.value - m.value AS difference, COUNT(*) AS n
    FROM rating s
    JOIN rating m ON m.enrolment_id = s.enrolment_id AND m.behaviour = s.behaviour
                 AND m.checkpoint_order = s.checkpoint_order AND m.rater = 'manager'
    WHERE s.journey_id = :journey AND s.rater = 'learner'
      AND s.value IS NOT NULL AND m.value IS NOT NULL
    GROUP BY s.behaviour, s.checkpoint_order, s.value - m.value
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
    # checkpoint order -> self minus manager -> how many people, rated by both
    gaps: dict[int, dict[int, int]] = field(default_factory=dict)
    gap: float | None = None  # mean of self minus manager over the pairs, latest checkpoint
    gap_n: int = 0  # the people rated by both there (the gap is withheld below MIN_PAIRS)
    gap_order: int = 0  # the checkpoint it is from

    def work_out_gap(self) -> None:
        """Set the self-manager gap over matched pairs at the latest checkpoint that has any.

        A pair is one person rated on this behaviour at one checkpoint by both
        themselves and their manager; the gap is the mean of self minus manager
        over those pairs, never a difference of two means over different people.
        """
        found = [o for o, by_diff in self.gaps.items() if sum(by_diff.values())]
        if not found:
            return
        self.gap_order = max(found)
        by_diff = self.gaps[self.gap_order]
        self.gap_n = sum(by_diff.values())
        if self.gap_n >= MIN_PAIRS:
            self.gap = sum(d * c for d, c in by_diff.items()) / self.gap_n

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


def journey_figures(
    session: Session, journey: Journey, *, from_ratings: bool = False
) -> JourneyFigures:
    """Return a journey's figures from its tallies (or, `from_ratings`, from every rating)."""
    spec = JourneySpec.model_validate(journey.spec)
    raters = list(spec.measure.raters) if spec.measure else list(RATERS)
    current = {b.key: BehaviourFigures(b.key, b.text) for b in spec.behaviours()}
    others: dict[str, BehaviourFigures] = {}

    def figures(key: str) -> BehaviourFigures:
        if key in current:
            return current[key]
        return others.setdefault(key, BehaviourFigures(key, key))

    params = {"journey": journey.id}
    if from_ratings:
        pair_rows = session.execute(PAIRS_FROM_RATINGS, params).all()
        count_rows = session.execute(DISTRIBUTION_FROM_RATINGS, params).all()
        gap_rows = session.execute(GAPS_FROM_RATINGS, params).all()
    else:
        s, c = RatingSummary, RatingCount
        pair_rows = session.execute(
            select(s.behaviour, s.rater, s.pairs, s.start_sum, s.latest_sum, s.improved).where(
                s.journey_id == journey.id, s.pairs > 0
            )
        ).all()
        count_rows = session.execute(
            select(c.behaviour, c.rater, c.checkpoint_order, c.value, c.count).where(
                c.journey_id == journey.id, c.count > 0
            )
        ).all()
        g = RatingGap
        gap_rows = session.execute(
            select(g.behaviour, g.checkpoint_order, g.difference, g.count).where(
                g.journey_id == journey.id, g.count > 0
            )
        ).all()
    for key, rater, pairs, start_sum, latest_sum, improved in pair_rows:
        shown = pairs >= MIN_PAIRS
        figures(key).raters[rater] = RaterFigures(
            pairs=pairs,
            start=int(start_sum) / pairs if shown else None,
            latest=int(latest_sum) / pairs if shown else None,
            improved=int(improved) / pairs if shown else None,
        )
    for key, rater, order, value, count in count_rows:
        by_order = figures(key).distribution.setdefault(rater, {}).setdefault(order, {})
        by_order[value] = count
    for key, order, diff, count in gap_rows:
        figures(key).gaps.setdefault(order, {})[diff] = count
    for b in [*current.values(), *others.values()]:
        b.work_out_gap()
        for rater in raters:
            b.raters.setdefault(rater, RaterFigures())
    checkpoints = spec.measure.checkpoints() if spec.measure else []
    return JourneyFigures(
        slug=journey.slug,
        title=journey.title,
        checkpoints=checkpoints,
        behaviours=list(current.values()),
        removed=sorted(others.values(), key=lambda b: b.key),
        response_rates=response_rates(session, journey.id, checkpoints, raters),
    )


def response_rates(
    session: Session, journey_id: int, checkpoints: list[str], raters: list[str]
) -> dict[str, dict[str, dict]]:
    """Return, per checkpoint and rater, check-ins sent and answered (and without a manager)."""

    def empty() -> dict:
        return {"sent": 0, "answered": 0, "rate": None, "no_manager": 0}

    rates: dict[str, dict[str, dict]] = {c: {r: empty() for r in raters} for c in checkpoints}
    for checkpoint, rater, state, count, answered in session.execute(
        _RATES, {"journey": journey_id}
    ):
        cell = rates.setdefault(checkpoint, {}).setdefault(rater, empty())
        if state == "no-manager":
            cell["no_manager"] += count
        else:
            cell["sent"] += count
            cell["answered"] += answered
    for by_rater in rates.values():
        for cell in by_rater.values():
            cell["rate"] = round(cell["answered"] / cell["sent"], 2) if cell["sent"] else None
    return dict(sorted(rates.items(), key=lambda item: checkpoint_order(item[0])))


def measured_journeys(session: Session, slug: str | None = None) -> list[Journey]:
    """Return the journeys that measure (or once measured) their goal, by slug."""
    query = select(Journey).order_by(Journey.slug)
    if slug:
        query = query.where(Journey.slug == slug)
    return [j for j in session.exec(query) if j.spec.get("measure") or slug]


def all_figures(session: Session, slug: str | None = None) -> list[JourneyFigures]:
    """Return the figures of every measured journey (or of one, by slug)."""
    return [journey_figures(session, j) for j in measured_journeys(session, slug)]
