"""The tallies kept as answers are saved equal the sums of every rating."""

from __future__ import annotations

import random
from datetime import timedelta

from sqlmodel import select

from nudger.measure.answers import save_answers
from nudger.measure.results import journey_figures
from nudger.measure.tally import pair_of, rebuild
from nudger.models import RatingCount, RatingGap, RatingSummary
from tests.measure.kit import checkins
from tests.measure.test_results import A, B, answered_journey


def figures_json(session, journey, **kw) -> dict:
    f = journey_figures(session, journey, **kw)
    out = f.to_json()
    out["distribution"] = {b.key: b.distribution for b in f.behaviours}
    out["gap"] = {b.key: (b.gap, b.gap_n) for b in f.behaviours}
    return out


def tallies(session) -> tuple[list, list, list]:
    session.expire_all()
    s = sorted(
        (r.behaviour, r.rater, r.pairs, r.start_sum, r.latest_sum, r.improved)
        for r in session.exec(select(RatingSummary))
        if r.pairs
    )
    c = sorted(
        (r.behaviour, r.rater, r.checkpoint_order, r.value, r.count)
        for r in session.exec(select(RatingCount))
        if r.count
    )
    g = sorted(
        (r.behaviour, r.checkpoint_order, r.difference, r.count)
        for r in session.exec(select(RatingGap))
        if r.count
    )
    assert g, "the answers give self-manager pairs"
    return s, c, g


def test_tallies_kept_on_save_equal_the_sums_of_every_rating(session, settings):
    journey = answered_journey(session, settings)
    rnd = random.Random(5)
    everything = checkins(session)
    # People change their minds: new values, "no chance", back again, in any order.
    for _ in range(300):
        c = rnd.choice(everything)
        answers = {k: rnd.choice([0, 1, 2, 3, 4, 5]) for k in (A, B) if rnd.random() < 0.7}
        save_answers(session, c.id, answers, c.sent_at + timedelta(hours=2))
    session.commit()
    assert figures_json(session, journey) == figures_json(session, journey, from_ratings=True)
    kept = tallies(session)
    rebuild(session, journey.id)
    session.commit()
    assert tallies(session) == kept


def test_a_pair_needs_a_start_value_and_a_later_one():
    assert pair_of({0: 2, 1: 4}) == (1, 2, 4, 1)
    assert pair_of({0: 2, 1: 4, 21: 2}) == (1, 2, 2, 0)  # the latest counts
    assert pair_of({0: 2, 1: 4, 21: None}) == (1, 2, 4, 1)  # no chance: not a value
    assert pair_of({0: None, 1: 4}) == (0, 0, 0, 0)
    assert pair_of({1: 4}) == (0, 0, 0, 0)
