"""Summing ratings: matched pairs only, means withheld below five pairs, the CLI's three formats."""

from __future__ import annotations

import csv
import io
import json
from datetime import date, timedelta

from click.testing import CliRunner

from nudger.cli import main
from nudger.measure.answers import save_answers
from nudger.measure.results import all_figures
from nudger.models import Journey
from tests.adminkit import admin_app, make_admin, redis, sign_in
from tests.factories import make_enrolment, make_person
from tests.measure.kit import checkins, make_measured_journey, run, utc

__all__ = ["redis"]

START = date(2027, 3, 1)
A, B = "asks-open-questions", "opens-1-1s-with-a-question-about-the-person-s-goal"
STARTS = [1, 2, 2, 3, 1, 2]
ENDS = [3, 3, 2, 4, 2, 2]


def answered_journey(session, settings, learners: int = 6) -> Journey:
    journey = make_measured_journey(session, measure={"at": ["start", "end"]})
    boss = make_person(session, "boss@example.com", "Grace Hopper")
    for i in range(learners):
        person = make_person(session, f"p{i}@example.com", f"P{i}", manager=boss)
        make_enrolment(session, person, journey, START)
    run(session, settings, utc(2027, 3, 1, 9))
    run(session, settings, utc(2027, 3, 11, 9))
    order = {}
    for c in checkins(session):
        order.setdefault(c.enrolment_id, len(order))
    for c in checkins(session):
        i = order[c.enrolment_id]
        if c.rater == "learner":
            value = STARTS[i] if c.checkpoint == "start" else ENDS[i]
            answers = {A: value, B: 0}
        else:
            answers = {A: 2 if c.checkpoint == "start" else 3}
        save_answers(session, c.id, answers, c.sent_at + timedelta(hours=1))
    session.commit()
    return journey


def test_pairs_means_and_improved_share_come_from_matched_pairs(session, settings):
    answered_journey(session, settings)
    [figures] = all_figures(session)
    a = figures.behaviours[0]
    learner = a.raters["learner"].to_json()
    assert learner == {"pairs": 6, "start": 1.83, "latest": 2.67, "shift": 0.83, "improved": 0.67}
    assert a.raters["manager"].to_json()["pairs"] == 6
    assert a.raters["manager"].to_json()["shift"] == 1.0
    # "No chance to observe" is an answer without a value: never in a pair.
    assert figures.behaviours[1].raters["learner"].pairs == 0
    assert abs(a.gap - (sum(ENDS) / 6 - 3)) < 1e-9  # self minus manager at the end
    assert figures.response_rates["start"]["learner"] == {
        "sent": 6,
        "answered": 6,
        "rate": 1.0,
        "no_manager": 0,
    }


def test_means_are_withheld_below_five_pairs(session, settings):
    answered_journey(session, settings, learners=4)
    [figures] = all_figures(session)
    assert figures.behaviours[0].raters["learner"].to_json() == {
        "pairs": 4,
        "start": None,
        "latest": None,
        "shift": None,
        "improved": None,
    }


def cli(settings, tmp_path, *args):
    env = {
        "NUDGER_DATABASE_URL": settings.database_url,
        "NUDGER_INSTANCE_PATH": str(tmp_path),
        "NUDGER_SECRET_KEY": settings.secret_key,
    }
    return CliRunner().invoke(main, list(args), env=env)


def test_nudger_ratings_prints_json_csv_and_a_table(session, settings, tmp_path):
    answered_journey(session, settings)
    out = cli(settings, tmp_path, "ratings", "--format", "json")
    assert out.exit_code == 0, out.output
    [journey] = json.loads(out.output)["journeys"]
    assert journey["slug"] == "coaching"
    assert journey["behaviours"][0]["key"] == A
    assert journey["behaviours"][0]["raters"]["learner"]["improved"] == 0.67
    assert journey["response_rates"]["end"]["manager"]["answered"] == 6
    rows = list(
        csv.DictReader(io.StringIO(cli(settings, tmp_path, "ratings", "--format", "csv").output))
    )
    assert rows[0]["behaviour"] == A and rows[0]["rater"] == "learner" and rows[0]["pairs"] == "6"
    table = cli(settings, tmp_path, "ratings").output
    assert "Asks open questions before suggesting" in table
    assert "67%" in table
    missing = cli(settings, tmp_path, "ratings", "--journey", "nope")
    assert missing.exit_code == 1


def test_the_report_lists_each_enrolments_ratings(session, settings, tmp_path):
    answered_journey(session, settings)
    out = cli(settings, tmp_path, "report", "--format", "json", "--now", "2027-03-12T00:00:00Z")
    first = json.loads(out.output)["enrolments"][0]
    assert first["ratings"][0] == {
        "behaviour": A,
        "rater": "learner",
        "checkpoint": "start",
        "value": 1,
        "recorded_at": "2027-03-01T10:00:00+00:00",
    }
    assert {r["value"] for r in first["ratings"] if r["behaviour"] == B} == {None}


def rated_by_both(session, settings, managers_end: list[int]) -> Journey:
    """Seven learners rate themselves at the end; their manager rates the first few."""
    journey = make_measured_journey(session, measure={"at": ["end"]})
    boss = make_person(session, "boss@example.com", "Grace Hopper")
    selves = [5, 5, 2, 3, 4, 3, 2]
    for i in range(len(selves)):
        person = make_person(session, f"p{i}@example.com", f"P{i}", manager=boss)
        make_enrolment(session, person, journey, START)
    run(session, settings, utc(2027, 3, 11, 9))
    order: dict[int, int] = {}
    for c in checkins(session):
        i = order.setdefault(c.enrolment_id, len(order))
        if c.rater == "learner":
            answers = {A: selves[i]}
        elif i < len(managers_end):
            answers = {A: managers_end[i]}
        else:
            answers = {A: 0}  # no chance to observe: no value, so no pair
        save_answers(session, c.id, answers, c.sent_at + timedelta(hours=1))
    session.commit()
    return journey


def test_the_self_manager_gap_is_the_mean_difference_over_people_rated_by_both(session, settings):
    rated_by_both(session, settings, managers_end=[3, 4, 2, 2, 3])
    [figures] = all_figures(session)
    a = figures.behaviours[0]
    # Pairs: 5-3, 5-4, 2-2, 3-2, 4-3 = 2, 1, 0, 1, 1; the two learners their manager
    # could not rate are left out (a difference of means would say 24/7 - 14/5 = 0.63).
    assert (a.gap_n, a.gap) == (5, 1.0)
    assert a.gap_order == 1  # the end


def test_the_gap_is_withheld_below_five_pairs(session, settings, redis):
    journey = rated_by_both(session, settings, managers_end=[3, 4, 2, 2])
    [figures] = all_figures(session)
    assert (figures.behaviours[0].gap_n, figures.behaviours[0].gap) == (4, None)
    make_admin(session, utc(2027, 3, 12))
    client = admin_app(settings, utc(2027, 3, 12)).test_client()
    sign_in(client)
    text = client.get("/admin/").get_data(as_text=True)
    assert journey.title in text
    assert "4 people rated by both at the end; fewer than 5 pairs: mean hidden" in text
