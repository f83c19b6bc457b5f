"""The dashboard: standing counts, funnel, completion over time, stalls, charts and exports."""

from __future__ import annotations

import csv
import io
import re
from datetime import timedelta

import pytest

from nudger.insights import charts, dashboard
from tests.adminkit import admin_app, build_cohort, make_admin, redis, sign_in

__all__ = ["redis"]


@pytest.fixture
def cohort(session, settings, now):
    return build_cohort(session, settings, now)


def test_standing_counts_on_track_behind_and_escalated(session, cohort):
    stats = dashboard.journey_stats(session, cohort["journey"], cohort["later"])
    assert stats.statuses == {"active": 3, "paused": 1, "withdrawn": 1}
    assert (stats.on_track, stats.behind_only, stats.overdue) == (1, 1, 1)
    assert stats.enrolled == 5


def test_the_overview_agrees_with_the_journey_detail(session, cohort):
    [overview] = dashboard.overview(session, cohort["later"])
    detail = dashboard.journey_stats(session, cohort["journey"], cohort["later"])
    assert (overview.statuses, overview.behind, overview.overdue) == (
        detail.statuses, detail.behind, detail.overdue,
    )  # fmt: skip


def test_the_funnel_counts_who_got_and_who_did_each_step(session, cohort):
    steps = dashboard.journey_stats(session, cohort["journey"], cohort["later"]).steps
    assert [(s.key, s.sent, s.done) for s in steps] == [
        ("read", 3, 2), ("discuss", 3, 1), ("reflect", 3, 0),
    ]  # fmt: skip


def test_stalls_rank_the_steps_people_are_stuck_on_now(session, cohort):
    stats = dashboard.journey_stats(session, cohort["journey"], cohort["later"])
    assert [(s.key, s.stuck) for s in stats.stalls()] == [("discuss", 2), ("read", 1)]


def test_completions_are_counted_per_day_including_empty_days(session, cohort):
    days = dashboard.completions_by_day(session, cohort["journey"].id, cohort["later"], days=9)
    assert [(d.isoformat(), n) for d, n in days if n] == [("2027-03-01", 2), ("2027-03-03", 1)]
    assert len(days) == 9 and days[-1][0].isoformat() == "2027-03-09"


def test_charts_are_svg_with_a_title_and_their_numbers_as_text():
    svg = charts.funnel("f", "Funnel <of> steps", [("Read it", 10, 4), ("Do it", 5, 1)], 12)
    assert svg.startswith('<svg class="chart" role="img"')
    assert '<title id="f-t">Funnel &lt;of&gt; steps</title>' in svg
    assert "4 done (33%) · 10 sent" in svg and ">Read it</text>" in svg
    assert 'aria-labelledby="f-t f-d"' in svg


def test_a_chart_with_no_data_says_so_in_words():
    assert "Nobody is enrolled yet." in charts.funnel("f", "Funnel", [], 0)
    assert "No steps completed in this period." in charts.daily("d", "Daily", [])


def test_the_dashboard_page_shows_every_chart_and_the_counts(settings, session, cohort, redis):
    make_admin(session, cohort["later"])
    client = admin_app(settings, cohort["later"]).test_client()
    sign_in(client)
    html = client.get("/admin/").get_data(as_text=True)
    assert html.count('<svg class="chart"') == 4
    for title in ("Where people are on Giving Feedback", "Steps sent and done",
                  "Steps completed per day, last 9 days",
                  "Steps people are stuck on now"):  # fmt: skip
        assert title in html
    link = "/admin/enrolments?journey=giving-feedback&amp;status=active&amp;behind=escalated"
    assert re.search(rf'<a href="{re.escape(link)}">1</a>', html)


def test_the_dashboard_exports_are_csv_with_the_same_numbers(settings, session, cohort, redis):
    make_admin(session, cohort["later"])
    client = admin_app(settings, cohort["later"]).test_client()
    sign_in(client)
    text = client.get("/admin/dashboard/giving-feedback/steps.csv").data.decode("utf-8-sig")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [(r["step"], r["sent"], r["done"], r["stuck_now"]) for r in rows] == [
        ("read", "3", "2", "1"), ("discuss", "3", "1", "2"), ("reflect", "3", "0", "0"),
    ]  # fmt: skip
    overview = client.get("/admin/dashboard/journeys.csv").data.decode("utf-8-sig")
    [row] = list(csv.DictReader(io.StringIO(overview)))
    assert (row["on_track"], row["behind"], row["overdue"], row["paused"]) == ("1", "1", "1", "1")
    progress = client.get("/admin/reports/progress.csv?journey=giving-feedback")
    lines = list(csv.DictReader(io.StringIO(progress.data.decode("utf-8-sig"))))
    assert len(lines) == 5 * 3


def test_the_completion_chart_covers_the_days_since_the_journey_began(session, cohort):
    # Enrolled on Monday 1 March, looked at on Tuesday 9 March: nine days, not sixty.
    assert dashboard.completion_days(session, cohort["journey"].id, cohort["later"]) == 9
    far_later = cohort["later"] + timedelta(days=200)
    assert dashboard.completion_days(session, cohort["journey"].id, far_later) == 60


def test_the_completion_chart_of_a_journey_nobody_began_shows_a_week(session, cohort):
    early = cohort["later"] - timedelta(days=30)
    assert dashboard.completion_days(session, cohort["journey"].id, early) == 7
