"""The dashboard: every journey's standing, one journey's funnel, pace and stalls; exports."""

from __future__ import annotations

from flask import Blueprint, abort, render_template, request
from sqlmodel import select

from nudger import webhooks
from nudger.inbound import listing
from nudger.insights import charts, dashboard, ledger, snapshots
from nudger.insights.reports import progress
from nudger.measure.panel import RATING_HEADER, behaviour_panel, rating_rows
from nudger.models import AuditLog, Journey
from nudger.web import db, id_arg
from nudger.web.admin.console import clock
from nudger.web.admin.csv import csv_download

bp = Blueprint("dashboard", __name__)

AUDIT_PAGE = 100


def _journey(slug: str | None, journeys: list[dashboard.JourneyStats]) -> Journey | None:
    if slug:
        return db().exec(select(Journey).where(Journey.slug == slug)).first() or abort(404)
    busiest = max(journeys, key=lambda j: j.enrolled, default=None)
    return db().get(Journey, busiest.id) if busiest else None


@bp.get("/")
def index():
    now = clock()
    session = db()
    figures = snapshots.figures(session, now)
    journeys = figures.journeys
    journey = _journey(request.args.get("journey"), journeys)
    detail = charts_for = panel = None
    if journey is not None:
        found = figures.detail(session, journey, now)
        detail, span, days = found.stats, found.span, found.days
        charts_for = {
            "status": charts.stacked(
                "status", f"Where people are on {journey.title}", detail.status_rows()
            ),
            "funnel": charts.funnel(
                "funnel",
                f"Steps sent and done, {journey.title}",
                [(f"{s.position + 1}. {s.title}", s.sent, s.done) for s in detail.steps],
                detail.enrolled,
            ),
            "daily": charts.daily(
                "daily", f"Steps completed per day, last {span} days (UTC)", days
            ),
            "stalls": charts.hbars(
                "stalls",
                "Steps people are stuck on now (sent, past due, not done)",
                [
                    (f"{s.position + 1}. {s.title}", s.stuck, f"{s.stuck} stuck")
                    for s in detail.stalls(10)
                ],
                colour="stall",
            ),
        }
        panel = behaviour_panel(session, journey)
    last_tick = ledger.last_tick(session)
    return render_template(
        "admin/dashboard.html",
        journeys=journeys,
        journey=journey,
        detail=detail,
        charts=charts_for,
        panel=panel,
        last_tick=last_tick,
        clock_late=ledger.clock_late(last_tick, now),
        undeliverable=listing.undeliverable_count(session),
        disabled_webhooks=webhooks.disabled_endpoints(session),
        computed_at=figures.computed_at,
        now=now,
    )


@bp.get("/dashboard/journeys.csv")
def journeys_csv():
    rows = [
        (j.slug, j.title, j.enrolled, j.on_track, j.behind_only, j.overdue,
         j.statuses.get("paused", 0), j.statuses.get("completed", 0),
         j.statuses.get("withdrawn", 0))
        for j in dashboard.overview(db(), clock())
    ]  # fmt: skip
    header = ["journey", "title", "enrolled", "on_track", "behind", "overdue", "paused",
              "completed", "withdrawn"]  # fmt: skip
    return csv_download("nudger-journeys.csv", header, rows)


@bp.get("/dashboard/<slug>/steps.csv")
def steps_csv(slug: str):
    journey = db().exec(select(Journey).where(Journey.slug == slug)).first() or abort(404)
    stats = dashboard.journey_stats(db(), journey, clock())
    rows = [
        (slug, s.position + 1, s.key, s.title, s.sent, s.done, s.stuck,
         "" if s.median_days is None else s.median_days)
        for s in stats.steps
    ]  # fmt: skip
    header = ["journey", "position", "step", "title", "sent", "done", "stuck_now",
              "median_days_to_done"]  # fmt: skip
    return csv_download(f"nudger-{slug}-steps.csv", header, rows)


@bp.get("/dashboard/<slug>/completions.csv")
def completions_csv(slug: str):
    journey = db().exec(select(Journey).where(Journey.slug == slug)).first() or abort(404)
    days = dashboard.completions_by_day(db(), journey.id, clock(), days=365)
    return csv_download(f"nudger-{slug}-completions.csv", ["date", "steps_done"], days)


@bp.get("/dashboard/<slug>/ratings.csv")
def ratings_csv(slug: str):
    journey = db().exec(select(Journey).where(Journey.slug == slug)).first() or abort(404)
    return csv_download(
        f"nudger-{slug}-ratings.csv", RATING_HEADER, lambda session: rating_rows(session, journey)
    )


@bp.get("/reports/progress.csv")
def progress_csv():
    slug = request.args.get("journey") or None
    now = clock()

    def rows(session):
        for row in progress(session, now, slug):
            for s in row["steps"]:
                yield (row["email"], row["journey"], row["status"], row["start_date"], s["key"],
                       s["status"], s["sent_at"] or "", s["done_at"] or "")  # fmt: skip

    header = ["email", "journey", "enrolment_status", "start_date", "step", "status", "sent_at",
              "done_at"]  # fmt: skip
    return csv_download(f"nudger-progress{'-' + slug if slug else ''}.csv", header, rows)


@bp.get("/audit")
def audit():
    before = id_arg("before")
    query = select(AuditLog)
    if request.args.get("actor"):
        query = query.where(AuditLog.actor == request.args["actor"].strip().lower())
    if before:
        query = query.where(AuditLog.id < before)
    rows = list(db().exec(query.order_by(AuditLog.id.desc()).limit(AUDIT_PAGE + 1)))
    next_before = rows[AUDIT_PAGE - 1].id if len(rows) > AUDIT_PAGE else None
    return render_template(
        "admin/audit.html",
        rows=rows[:AUDIT_PAGE],
        before=before,
        next_before=next_before,
        actor=request.args.get("actor", ""),
    )
