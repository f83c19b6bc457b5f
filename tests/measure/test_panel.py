"""The admin dashboard's Behaviour change panel and the ratings export."""

from __future__ import annotations

import csv
import io

from nudger.insights import charts
from tests.adminkit import admin_app, make_admin, redis, sign_in
from tests.measure.kit import utc
from tests.measure.test_results import A, answered_journey

__all__ = ["redis"]  # the fixture, used by name

NOW = utc(2027, 3, 12, 12)


def signed_in(session, settings):
    make_admin(session, NOW)
    client = admin_app(settings, NOW).test_client()
    sign_in(client)
    return client


def test_the_panel_shows_distributions_shifts_gap_and_response_rates(session, settings, redis):
    answered_journey(session, settings)
    client = signed_in(session, settings)
    page = client.get("/admin/?journey=coaching").get_data(as_text=True)
    assert "Behaviour change" in page
    assert "Asks open questions before suggesting" in page
    assert "<svg" in page and "answers from learners at the start and the latest" in page
    assert "+0.83" in page  # the learners' mean shift over 6 pairs
    assert "67%" in page  # moved up by a point or more
    assert "the mean over the 6 people rated by both at the end" in page
    assert "6 of 6 (100%)" in page


def test_with_fewer_than_five_pairs_the_panel_shows_n_and_hides_means(session, settings, redis):
    answered_journey(session, settings, learners=4)
    page = signed_in(session, settings).get("/admin/?journey=coaching").get_data(as_text=True)
    assert "fewer than 5 pairs: means hidden" in page
    assert "+0.83" not in page and "1.83" not in page


def test_every_rating_exports_as_csv(session, settings, redis):
    answered_journey(session, settings)
    response = signed_in(session, settings).get("/admin/dashboard/coaching/ratings.csv")
    assert response.status_code == 200
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True).lstrip("\ufeff"))))
    # 6 learners x 2 behaviours x 2 checkpoints + 6 x 1 behaviour x 2 from the manager
    assert len(rows) == 24 + 12
    first = rows[0]
    assert (first["behaviour"], first["rater"], first["checkpoint"], first["value"]) == (
        A,
        "learner",
        "start",
        "1",
    )
    assert first["answer"] == "Never"


def test_scale_bars_say_their_numbers_in_text():
    svg = str(charts.scale_bars("x", "T", ["Never", "Always"], [("Start", [3, 1])]))
    assert "Start (4 answers): Never 3, Always 1" in svg
    assert "Never 3 (75%)" in svg
