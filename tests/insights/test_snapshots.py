"""The dashboard shows figures computed every few minutes, not counted on every view."""

from __future__ import annotations

from datetime import timedelta

from rq import SimpleWorker
from sqlmodel import select

from nudger.insights import snapshots
from nudger.models import DashboardSnapshot, Enrolment
from nudger.queue import DEFAULT_QUEUE, queue
from tests.adminkit import admin_app, build_cohort, make_admin, redis, sign_in
from tests.factories import make_enrolment, make_person

__all__ = ["redis"]


def enrolled(client) -> str:
    """The All journeys table's Enrolled cell of the cohort's journey."""
    page = client.get("/admin/").get_data(as_text=True)
    table = page.split("<tbody>", 1)[1].split("</tbody>", 1)[0]
    return table.split("<td>", 1)[1].split("</td>", 1)[0]


def test_a_view_shows_the_stored_figures_until_they_are_too_old(session, settings, now):
    cohort = build_cohort(session, settings, now)
    at = cohort["later"]
    make_admin(session, at)
    clock = {"now": at}
    app = admin_app(settings, at)
    app.config["NUDGER_CLOCK"] = lambda: clock["now"]
    client = app.test_client()
    sign_in(client)
    assert enrolled(client) == "5"
    journey_id = session.exec(select(Enrolment.journey_id)).first()
    make_enrolment(session, make_person(session, "new@example.com"), cohort["journey"], at.date())
    session.commit()

    clock["now"] = at + snapshots.SNAPSHOT_TTL - timedelta(seconds=1)
    stored = enrolled(client)
    clock["now"] = at + snapshots.SNAPSHOT_TTL
    fresh = enrolled(client)

    assert (stored, fresh) == ("5", "6")
    figures = snapshots.figures(session, clock["now"])
    assert figures.computed_at == at + snapshots.SNAPSHOT_TTL
    assert figures.details[journey_id].stats.enrolled == 6
    assert len(session.exec(select(DashboardSnapshot)).all()) == 1  # older ones replaced


def test_the_clock_asks_a_worker_for_fresh_figures_once_they_get_old(
    session, settings, now, redis, monkeypatch
):
    from nudger.db import get_engine
    from workers import clock, jobs

    build_cohort(session, settings, now)
    monkeypatch.setattr(clock, "utcnow", lambda: now)
    monkeypatch.setattr("nudger.db.utcnow", lambda: now)  # the job's clock
    monkeypatch.setattr(jobs, "runtime", lambda: (settings, get_engine(settings.database_url)))

    first = clock.run_once(settings)
    again = clock.run_once(settings)  # the job is still waiting: not asked twice
    SimpleWorker([queue(settings, DEFAULT_QUEUE)], connection=redis).work(burst=True)
    session.expire_all()

    assert (first["dashboard_refresh"], again["dashboard_refresh"]) == (1, 0)
    assert snapshots.latest(session) is not None and not snapshots.stale(session, now)
    assert "dashboard_refresh" not in clock.run_once(settings)  # fresh: nothing to ask


def test_an_import_drops_the_stored_figures_so_the_next_view_counts_its_learners(
    session, settings, now
):
    import io

    from nudger.roster import import_roster

    build_cohort(session, settings, now)
    snapshots.refresh(session, now)
    rows = "email,name,journey\nnew@example.com,New,giving-feedback\n"
    assert import_roster(session, settings, io.BytesIO(rows.encode()), now=now).ok
    assert snapshots.latest(session) is None
    assert sum(j.enrolled for j in snapshots.figures(session, now).journeys) == 6
