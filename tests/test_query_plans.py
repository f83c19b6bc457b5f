"""No hot path reads a big table from end to end: every query has an index to use.

PostgreSQL only. The real code paths run against a small cohort while every
statement they send is recorded; each recorded SELECT, UPDATE and DELETE is
then EXPLAINed with `enable_seqscan = off`, so that the planner picks a
sequential scan only where no index can serve the query at all. A sequential
scan of a table that grows with the learners (a million enrolments, ten
million ledger rows) fails the test, naming the query.

The dashboard's figures are left out on purpose: they are summarised by a
worker every few minutes (nudger.insights.snapshots), reading whole indexes.
"""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlalchemy import event, text

from nudger.db import get_engine
from nudger.insights import snapshots
from nudger.privacy import retention
from nudger.tick.run import tick
from tests.adminkit import admin_app, build_cohort, make_admin, sign_in
from tests.conftest import TEST_DATABASE_URL

pytestmark = pytest.mark.skipif(not TEST_DATABASE_URL, reason="query plans are PostgreSQL's")

BIG = {"person", "enrolment", "enrolmentstep", "outbox", "escalationevent", "linkhit",
       "auditlog", "checkin", "rating", "capturedmail"}  # fmt: skip


def seq_scans(plan: dict) -> list[str]:
    """Return the tables a plan (EXPLAIN FORMAT JSON) reads with a sequential scan."""
    found = [plan["Relation Name"]] if plan.get("Node Type") == "Seq Scan" else []
    for child in plan.get("Plans", []):
        found += seq_scans(child)
    return found


class Recorder:
    """Every statement an engine sends while on, with its parameters."""

    def __init__(self, engine) -> None:
        self.engine, self.on, self.statements = engine, False, []
        event.listen(engine, "before_cursor_execute", self._record)

    def _record(self, conn, cursor, statement, parameters, context, executemany) -> None:
        verb = statement.lstrip().split(None, 1)[0].upper()
        if self.on and not executemany and verb in ("SELECT", "UPDATE", "DELETE", "WITH"):
            self.statements.append((statement, parameters))

    def close(self) -> None:
        event.remove(self.engine, "before_cursor_execute", self._record)


def test_the_hot_paths_read_the_big_tables_by_index(session, settings, now, monkeypatch):
    cohort = build_cohort(session, settings, now)
    at = cohort["later"]
    make_admin(session, at)
    app = admin_app(settings, at)
    client = app.test_client()
    sign_in(client)
    # Figures stored now: the page reads them and leaves the summarising out.
    snapshots.refresh(session, at)
    engine = get_engine(settings.database_url)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("ANALYZE"))
    person_id = cohort["people"]["bob"].id
    pages = [
        "/admin/",
        "/admin/enrolments",
        "/admin/enrolments?behind=yes",
        "/admin/enrolments?behind=escalated",
        "/admin/enrolments?behind=no&status=active",
        f"/admin/enrolments?journey={cohort['journey'].slug}&before=3",
        "/admin/enrolments?q=bob",
        "/admin/enrolments?manager=boss@example.com",
        f"/admin/people/{person_id}",
        "/admin/mail",
        "/admin/mail?before=3",
        "/admin/mail?state=bounced",
        "/admin/mail?state=failed",
        "/admin/mail?state=queued",
        "/admin/mail?kind=digest",
        "/admin/mail?q=bob",
    ]
    recorder = Recorder(engine)
    recorder.on = True
    try:
        for minutes in range(0, 3 * 24 * 60, 6 * 60):  # steps, reminders, escalations, digests
            tick(session, settings, at + timedelta(minutes=minutes), enqueue=False)
        retention.prune_mail(session, at + timedelta(days=400), 180)
        retention.prune_history(session, at + timedelta(days=800), 730)
        for url in pages:
            assert client.get(url).status_code == 200, url
    finally:
        recorder.on = False
        recorder.close()
    assert len(recorder.statements) > 50  # the paths above really ran

    scanned = []
    with engine.connect() as conn:
        conn.execute(text("SET enable_seqscan = off"))
        raw = conn.connection.dbapi_connection
        for statement, parameters in recorder.statements:
            with raw.cursor() as cursor:
                cursor.execute(f"EXPLAIN (FORMAT JSON) {statement}", parameters)
                plan = cursor.fetchone()[0]
            plan = plan if isinstance(plan, list) else json.loads(plan)
            big = sorted(set(seq_scans(plan[0]["Plan"])) & BIG)
            if big:
                scanned.append((big, " ".join(statement.split())[:300]))
        conn.rollback()
    assert not scanned, "sequential scans of big tables:\n" + "\n".join(map(str, scanned))
