"""What `journeys sync` says and does about measurement when a journey is edited."""

from __future__ import annotations

from datetime import date

from nudger.enrolments.journey_edits import apply_sync, plan_sync
from nudger.journeys.spec import JourneySpec
from tests.factories import make_enrolment, make_person
from tests.measure.kit import GOAL, checkins, make_measured_journey, run, utc

START = date(2027, 3, 1)


def spec_from(journey, **changes) -> JourneySpec:
    return JourneySpec.model_validate({**journey.spec, **changes})


def test_the_dry_run_says_what_each_goal_edit_does_to_ratings(session):
    journey = make_measured_journey(session)
    edited = spec_from(
        journey,
        goal=[
            {"key": "asks-open-questions", "text": "Asks three open questions before suggesting"},
            "Opens every 1:1 with a question about the person's goal",
            "Summarises what they heard",
        ],
    )
    change = plan_sync(session, edited, utc(2027, 3, 1, 12))
    text = change.describe()
    assert "behaviour reworded 'asks-open-questions': keeps its ratings" in text
    assert (
        "behaviour reworded without a key: "
        "'opens-every-1-1-with-a-question-about-the-person-s-goal' is a new behaviour" in text
    )
    assert "'opens-1-1s-with-a-question-about-the-person-s-goal' keeps its ratings" in text
    assert "behaviour added 'summarises-what-they-heard'" in text
    assert "left out of its pairs" in text
    assert change.replan_checkins is False


def test_a_removed_behaviour_keeps_its_ratings(session):
    journey = make_measured_journey(session)
    change = plan_sync(session, spec_from(journey, goal=GOAL[:1]), utc(2027, 3, 1, 12))
    assert change.measurement == [
        "behaviour removed 'opens-1-1s-with-a-question-about-the-person-s-goal': "
        "its ratings stay in the export, hidden from the panel"
    ]


def test_changing_at_re_times_checkins_not_yet_sent(session, settings):
    journey = make_measured_journey(session, measure={"at": ["start", "end"]})
    make_enrolment(session, make_person(session), journey, START)
    run(session, settings, utc(2027, 3, 1, 9))
    edited = spec_from(journey, measure={"at": ["start", "end", 5]})
    change = apply_sync(session, edited, utc(2027, 3, 2, 12))
    session.commit()
    assert "measure changed: check-ins not yet sent are re-timed; sent ones stay" in (
        change.describe()
    )
    run(session, settings, utc(2027, 3, 2, 13))
    found = {(c.checkpoint, c.state) for c in checkins(session) if c.rater == "learner"}
    assert found == {("start", "sent"), ("end", "planned"), ("5", "planned")}
    five = next(c for c in checkins(session) if c.checkpoint == "5" and c.rater == "learner")
    assert five.send_at == utc(2027, 3, 18, 9)  # end Thursday 11 March + 5 working days


def test_removing_measure_stops_checkins_not_yet_sent(session, settings):
    journey = make_measured_journey(session, measure={"raters": ["learner"], "at": ["end"]})
    make_enrolment(session, make_person(session), journey, START)
    run(session, settings, utc(2027, 3, 1, 9))
    assert [c.state for c in checkins(session)] == ["planned"]
    spec = dict(journey.spec)
    del spec["measure"]
    apply_sync(session, JourneySpec.model_validate(spec), utc(2027, 3, 2, 12))
    session.commit()
    run(session, settings, utc(2027, 3, 20, 9))
    assert checkins(session) == []
