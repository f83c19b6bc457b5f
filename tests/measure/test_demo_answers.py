"""The demo answers check-ins believably, so its panel has something to show."""

from __future__ import annotations

from datetime import date, timedelta

from sqlmodel import select

from nudger.demo import answer_checkins
from nudger.models import Rating
from tests.factories import make_enrolment, make_person
from tests.measure.kit import checkins, make_measured_journey, run, utc


def test_the_demo_answers_most_checkins_a_few_hours_after_they_arrive(session, settings):
    journey = make_measured_journey(session, measure={"at": ["start", "end"]})
    boss = make_person(session, "boss@example.com", "Boss")
    for i in range(12):
        person = make_person(session, f"p{i}@example.com", f"P{i}", manager=boss)
        make_enrolment(session, person, journey, date(2027, 3, 1))
    sent = utc(2027, 3, 1, 9)
    run(session, settings, sent)
    answer_checkins(session, sent + timedelta(hours=2))
    assert session.exec(select(Rating)).all() == []  # not yet: people answer later
    answer_checkins(session, sent + timedelta(hours=4))
    run(session, settings, utc(2027, 3, 11, 9))
    answer_checkins(session, utc(2027, 3, 11, 14))
    values = session.exec(select(Rating.checkpoint, Rating.value)).all()
    answered = [c for c in checkins(session) if c.answered_at]
    assert len(answered) >= 0.6 * 48
    assert all(v is None or 1 <= v <= 5 for _, v in values)
    start = [v for c, v in values if c == "start" and v]
    end = [v for c, v in values if c == "end" and v]
    assert sum(end) / len(end) > sum(start) / len(start) + 0.5  # a real shift
