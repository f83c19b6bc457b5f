"""Keep each journey's rating tallies as answers are saved, so sums never scan every rating.

Per behaviour and kind of rater: the matched pairs (count, start and latest
sums, how many moved up a point); per checkpoint: how many gave each answer,
and how many people rated by both themselves and their manager had each
difference between the two (the self-manager gap over matched pairs).
A save changes at most one enrolment's pairs, so its change to the tallies is
worked out from that enrolment's few ratings before and after. `rebuild`
writes the tallies again from the ratings themselves (after a bulk load).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping

from sqlalchemy import delete, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session

from nudger.measure.results import GAPS_FROM_RATINGS, PAIRS_FROM_RATINGS
from nudger.models import RatingCount, RatingGap, RatingSummary

Pair = tuple[int, int, int, int]  # pairs, start sum, latest sum, improved
NO_PAIR: Pair = (0, 0, 0, 0)


def pair_of(values: Mapping[int, int | None]) -> Pair:
    """Return one enrolment's pair from its answers by checkpoint order (None: no value)."""
    start = values.get(0)
    later = [order for order, value in values.items() if order > 0 and value is not None]
    if start is None or not later:
        return NO_PAIR
    latest = values[max(later)]
    return (1, start, latest, int(latest >= start + 1))  # type: ignore[operator]


def _bump(session: Session, table, keys: dict, deltas: dict) -> None:
    """Add `deltas` to the row with `keys`, creating it: one atomic upsert."""
    dialect = session.get_bind().dialect.name
    module = postgresql if dialect == "postgresql" else sqlite
    stmt = module.insert(table).values(**keys, **deltas)
    stmt = stmt.on_conflict_do_update(
        index_elements=list(keys),
        set_={name: table.c[name] + stmt.excluded[name] for name in deltas},
    )
    session.execute(stmt)


def apply_change(
    session: Session,
    journey_id: int,
    rater: str,
    behaviour: str,
    order: int,
    before: Mapping[int, int | None],
    after: Mapping[int, int | None],
) -> None:
    """Move the tallies from one enrolment's answers `before` to `after` (by checkpoint order)."""
    old, new = pair_of(before), pair_of(after)
    if old != new:
        names = ("pairs", "start_sum", "latest_sum", "improved")
        deltas = {n: b - a for n, a, b in zip(names, old, new, strict=True)}
        keys = {"journey_id": journey_id, "behaviour": behaviour, "rater": rater}
        _bump(session, RatingSummary.__table__, keys, deltas)
    counts: Counter = Counter()
    if order in before:
        counts[before[order] or 0] -= 1
    if order in after:
        counts[after[order] or 0] += 1
    for value, delta in sorted(counts.items()):
        if delta:
            keys = {"journey_id": journey_id, "behaviour": behaviour, "rater": rater,
                    "checkpoint_order": order, "value": value}  # fmt: skip
            _bump(session, RatingCount.__table__, keys, {"count": delta})


def difference(learner: int | None, manager: int | None) -> int | None:
    """Return self minus manager for one person, or None unless both gave a value."""
    return None if learner is None or manager is None else learner - manager


def apply_gap_change(
    session: Session,
    journey_id: int,
    behaviour: str,
    order: int,
    before: int | None,
    after: int | None,
) -> None:
    """Move one person's self-manager difference at a checkpoint from `before` to `after`."""
    if before == after:
        return
    keys = {"journey_id": journey_id, "behaviour": behaviour, "checkpoint_order": order}
    for value, delta in ((before, -1), (after, 1)):
        if value is not None:
            _bump(session, RatingGap.__table__, {**keys, "difference": value}, {"count": delta})


_REBUILD_GAPS = text(
    """
    INSERT INTO ratinggap (journey_id, behaviour, checkpoint_order, difference, count)
    SELECT :journey, behaviour, checkpoint_order, difference, n FROM ("""
    + GAPS_FROM_RATINGS.text
    + """) AS gaps
    """
)

_REBUILD_COUNTS = text(
    """
    INSERT INTO ratingcount (journey_id, behaviour, rater, checkpoint_order, value, count)
    SELECT journey_id, behaviour, rater, checkpoint_order, COALESCE(value, 0), COUNT(*)
    FROM rating WHERE journey_id = :journey
    GROUP BY journey_id, behaviour, rater, checkpoint_order, COALESCE(value, 0)
    """
)


def rebuild(session: Session, journey_id: int) -> None:
    """Write a journey's tallies again from its ratings (the plain, slow path)."""
    session.execute(delete(RatingSummary).where(RatingSummary.journey_id == journey_id))
    session.execute(delete(RatingCount).where(RatingCount.journey_id == journey_id))
    session.execute(delete(RatingGap).where(RatingGap.journey_id == journey_id))
    for key, rater, pairs, start, latest, improved in session.execute(
        PAIRS_FROM_RATINGS, {"journey": journey_id}
    ):
        session.add(
            RatingSummary(
                journey_id=journey_id, behaviour=key, rater=rater, pairs=pairs,
                start_sum=int(start), latest_sum=int(latest), improved=int(improved),
            )
        )  # fmt: skip
    session.execute(_REBUILD_COUNTS, {"journey": journey_id})
    session.execute(_REBUILD_GAPS, {"journey": journey_id})
    session.flush()
