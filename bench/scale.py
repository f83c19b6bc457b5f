"""A million learners on one database: every figure of issue 18, with its baseline.

    .venv/bin/python bench/scale.py --database-url postgresql+psycopg://postgres@127.0.0.1:5432/scale1m
        [--baseline-url postgresql+psycopg://postgres@127.0.0.1:5432/scale100k]
        [--enrolments 1000000] [--baseline-enrolments 100000] [--only tick,digest,...]
        [--no-build] [--runs 5] [--requests 7] [--redis-url redis://127.0.0.1:6379/5]
        [--sqlite-baseline bench/scale_sqlite.json] [--save-sqlite-baseline]

Without --database-url everything runs on SQLite files in a temporary directory
(the embedded default; run it at --enrolments 100000).

The data set: four ten-step journeys, `--enrolments` learners in eight time
zones under one manager per 25 learners, started over the past five weeks.
Every step already due has been sent (the latest open, earlier ones done; a
fifth of the learners are behind, an earlier step open and escalated), and
`next_action_at` is each enrolment's next send, so that exactly 1% of the
largest size is due at the timed tick. Each sent step has its step email in
the outbox and two in three a reminder too (about 10 million rows at a million
enrolments; 1% of them bounced), and half the done steps a link hit. On
PostgreSQL the computed rows travel by COPY (psycopg's `cursor.copy`) with the
secondary indexes dropped and foreign-key triggers off, the derived outbox
and link-hit rows by INSERT ... SELECT, then the indexes are rebuilt and the
tables VACUUM ANALYZEd, as autovacuum would have by the time anyone looks. The
database is kept (--no-build measures it again).

Parts (--only, comma separated; default all):

- tick: `tick(now)` with 1% of the largest size due, against the baseline size
  with the same number due (same due work); each run inside a transaction rolled
  back afterwards (PostgreSQL) or on a fresh file copy (SQLite).
- digest: the tick when 20% of the learners are behind and every manager's
  digest is due (40,000 managers at a million), nothing else due.
- pages: the admin dashboard, enrolment search and filters, a person's page
  and the sent-mail ledger (first page, deep pages, every filter), through the
  Flask test client as a signed-in admin; median of --requests.
- import: `nudger import` (import_roster) of --enrolments rows into an empty
  schema with the ten-step journeys, in a subprocess (its own peak RSS),
  against a bare csv parse plus COPY (SQLite: executemany) of the same people
  and enrolments; then the first tick after it.
- upload: the console's upload of the same file: the web process (a
  subprocess: its peak RSS) stores it and enqueues the check; an RQ worker
  runs the check and then the commit while the page's status.json is polled
  for progress.

Every line of the table is printed with its figure, its baseline and PASS or
FAIL against the issue's target; medians throughout, CPU time where it means
something.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import date, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import create_engine, func, insert, select, text  # noqa: E402
from sqlalchemy.engine import Engine, make_url  # noqa: E402
from sqlmodel import Session, SQLModel  # noqa: E402

from nudger import calendar, models  # noqa: E402
from nudger.config import load_settings  # noqa: E402
from nudger.db import get_engine  # noqa: E402
from nudger.schedule import JourneyPlan  # noqa: E402
from nudger.tick.run import tick  # noqa: E402


def _bench(name: str):
    """Load a sibling benchmark as a module (bench/ is not a package; `import` is a keyword)."""
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


admin_bench = _bench("admin")
import_bench = _bench("import")
tick_bench = _bench("tick")

NOW = tick_bench.NOW  # Wednesday 10 March 2027, 12:00 UTC
WARM_UP = tick_bench.WARM_UP
WARM_SET = tick_bench.WARM_SET
ZONES = tick_bench.ZONES
JOURNEYS = 4
DAYS = tick_bench.DAYS  # ten steps, two working days apart
TEAM = 25  # learners per manager: 40,000 managers at a million
IMPORT_NOW = import_bench.NOW
SQLITE_TOLERANCE = 1.3  # a shared machine's noise; "stays where it is" within this


def spec(j: int) -> dict:
    return dict(tick_bench.SPEC, slug=f"journey-{j + 1}", title=f"Journey {j + 1}")


# --- building ---------------------------------------------------------------------------------


class Loader:
    """Write rows fast: COPY on PostgreSQL, executemany on SQLite."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.pg = engine.dialect.name == "postgresql"

    def load(self, table: str, columns: list[str], rows) -> int:
        n = 0
        if self.pg:
            raw = self.engine.raw_connection()
            try:
                cur = raw.cursor()
                cur.execute("SET LOCAL session_replication_role = replica")  # no FK triggers
                with cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
                    for row in rows:
                        copy.write_row(row)
                        n += 1
                raw.commit()
            finally:
                raw.close()
            return n
        t = SQLModel.metadata.tables[table]
        batch = []
        with self.engine.begin() as conn:
            for row in rows:
                batch.append(dict(zip(columns, row, strict=True)))
                if len(batch) == 10_000:
                    conn.execute(insert(t), batch)
                    n, batch = n + len(batch), []
            if batch:
                conn.execute(insert(t), batch)
                n += len(batch)
        return n


def _pg_secondary_indexes(conn, tables: list[str]) -> list[tuple[str, str, str, str | None]]:
    """Return (table, index, create statement, constraint name) of non-primary indexes."""
    rows = conn.exec_driver_sql(
        """SELECT t.relname, c.relname, pg_get_indexdef(i.indexrelid), con.conname,
                  pg_get_constraintdef(con.oid)
           FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
           JOIN pg_class t ON t.oid = i.indrelid
           LEFT JOIN pg_constraint con ON con.conindid = i.indexrelid AND con.contype = 'u'
           WHERE NOT i.indisprimary AND t.relname = ANY(%(tables)s)
             AND t.relnamespace = current_schema()::regnamespace""",
        {"tables": tables},
    ).all()
    return [(t, idx, cons_def if cons else ddl, cons) for t, idx, ddl, cons, cons_def in rows]


def build(engine: Engine, n: int, due: int) -> dict:
    """Fill an empty schema with n enrolments and their history; return what was built."""
    SQLModel.metadata.drop_all(engine)
    SQLModel.metadata.create_all(engine)
    loader = Loader(engine)
    big = ["person", "enrolment", "enrolmentstep", "outbox", "linkhit"]
    dropped = []
    if loader.pg:
        with engine.begin() as conn:
            dropped = _pg_secondary_indexes(conn, big)
            for table, index, _ddl, constraint in dropped:
                if constraint:
                    conn.exec_driver_sql(f"ALTER TABLE {table} DROP CONSTRAINT {constraint}")
                else:
                    conn.exec_driver_sql(f"DROP INDEX {index}")
    plans = []
    with Session(engine) as session:
        for j in range(JOURNEYS):
            s = spec(j)
            journey = models.Journey(slug=s["slug"], title=s["title"], spec=s, checksum="bench",
                                     owner="learning@example.com")  # fmt: skip
            session.add(journey)
            session.flush()
            for i, day in enumerate(DAYS):
                session.add(models.Step(journey_id=journey.id, key=f"step-{i}", position=i,
                                        day=day, kind="read", title=f"Step {i + 1}",
                                        minutes=15))  # fmt: skip
            session.flush()
        session.commit()
        for journey in session.exec(select(models.Journey).order_by(models.Journey.id)).scalars():
            steps = list(
                session.exec(
                    select(models.Step)
                    .where(models.Step.journey_id == journey.id)
                    .order_by(models.Step.position)
                ).scalars()
            )
            plans.append((journey.id, JourneyPlan.build(journey, steps)))
    managers = max(1, n // TEAM)
    stamp = NOW - timedelta(days=60)
    people_cols = ["id", "email", "name", "manager_id", "timezone", "country", "created_at",
                   "updated_at"]  # fmt: skip

    def people():
        for m in range(managers):
            yield (m + 1, f"manager{m}@example.com", f"Manager {m}", None, "Europe/London",
                   "GB", stamp, stamp)  # fmt: skip
        for i in range(n):
            tz, country = ZONES[(i // JOURNEYS) % len(ZONES)]
            yield (managers + i + 1, f"learner{i}@example.com", f"Learner {i}",
                   1 + (i // TEAM) % managers, tz, country, stamp, stamp)  # fmt: skip

    loader.load("person", people_cols, people())
    cache: dict = {}

    def timings(j: int, tz: str, country: str, start: date):
        key = (j, tz, country, start)
        if key not in cache:
            plan = plans[j][1]
            cal = plan.country_calendar(country)
            sends = [plan.send_at(cal, tz, start, 0, s) for s in plan.steps]
            dues = [plan.due_at(cal, tz, at, s) for at, s in zip(sends, plan.steps, strict=True)]
            cache[key] = (sends, dues, [s.id for s in plan.steps])
        return cache[key]

    enrolment_cols = ["id", "person_id", "journey_id", "status", "start_date", "shift_days",
                      "next_action_at", "paused_at", "reminders_muted", "checkins_planned",
                      "created_at", "updated_at"]  # fmt: skip
    step_cols = ["enrolment_id", "step_id", "status", "sent_at", "due_at", "done_at",
                 "note_shared", "awaiting_confirmation", "invite_sequence", "invite_start",
                 "reminders_sent", "escalation_level"]  # fmt: skip
    counts = {"due": 0, "warm": 0}
    step_rows: list = []

    def enrolments():
        for i in range(n):
            j = i % JOURNEYS
            tz, country = ZONES[(i // JOURNEYS) % len(ZONES)]
            start = NOW.date() - timedelta(days=1 + (i * 7919) % 35)
            sends, dues, step_ids = timings(j, tz, country, start)
            sent = [k for k, at in enumerate(sends) if at <= WARM_UP]
            roll = (i * 31) % 100
            status = "paused" if roll < 3 else "withdrawn" if roll < 5 else "active"
            catching_up = len(sent) > 1 and status == "active"
            if catching_up and counts["due"] < due * (i + 1) // n:
                sent.pop()  # its latest step is due and not yet sent: the tick sends it
                next_at, counts["due"] = NOW - timedelta(minutes=1), counts["due"] + 1
            elif counts["warm"] < WARM_SET and catching_up:
                sent.pop()
                next_at, counts["warm"] = WARM_UP - timedelta(minutes=30), counts["warm"] + 1
            elif status != "active":
                next_at = None
            else:
                next_at = sends[len(sent)] if len(sent) < len(sends) else None
            behind = i % 5 == 1
            for k in sent:
                latest = k == sent[-1]
                open_ = latest or (behind and k == sent[-1] - 1)
                closed = "cancelled" if status == "withdrawn" else "sent"
                step_rows.append((i + 1, step_ids[k], closed if open_ else "done", sends[k],
                                  dues[k], None if open_ else sends[k] + timedelta(hours=5),
                                  True, False, 0, sends[k] + timedelta(hours=1), 0,
                                  1 if open_ and not latest else 0))  # fmt: skip
            yield (i + 1, managers + i + 1, plans[j][0], status, start, 0, next_at,
                   NOW - timedelta(days=2) if status == "paused" else None, False, True,
                   stamp, stamp)  # fmt: skip

    def chunked_enrolments():
        # Steps are written as their enrolments are generated, a chunk at a time.
        gen = enrolments()
        while True:
            chunk = [row for _, row in zip(range(50_000), gen, strict=False)]
            if not chunk:
                return
            loader.load("enrolment", enrolment_cols, chunk)
            loader.load("enrolmentstep", step_cols, step_rows)
            step_rows.clear()

    chunked_enrolments()
    payload = "'{}'"
    concat_id = "CAST(es.id AS TEXT)"
    one_day = "es.sent_at + interval '1 day'" if loader.pg else "datetime(es.sent_at, '+1 day')"
    if loader.pg:
        payload = "'{}'::json"
        one_day = "es.sent_at + interval '1 day'"
    else:
        one_day = "strftime('%Y-%m-%d %H:%M:%f000', es.sent_at, '+1 day')"
    outbox_cols = ("dedupe_key, kind, to_email, person_id, enrolment_id, payload, state, attempts,"
                   " next_attempt_at, enqueued_at, last_error, message_id, subject, created_at,"
                   " sent_at")  # fmt: skip
    mail = [("step", "es.sent_at", "1 = 1"), ("reminder", one_day, "es.id % 3 <> 0")]
    with engine.begin() as conn:
        if loader.pg:
            conn.exec_driver_sql("SET LOCAL session_replication_role = replica")
        for kind, at, where in mail:
            conn.execute(text(f"""
                INSERT INTO outbox ({outbox_cols})
                SELECT '{kind}:' || {concat_id}, '{kind}', p.email, p.id, e.id, {payload},
                       CASE WHEN es.id % 100 = 7 THEN 'failed' ELSE 'sent' END, 1, {at}, {at},
                       CASE WHEN es.id % 100 = 7 THEN '550 5.1.1 no such user' END,
                       '<nudger.{kind}.' || {concat_id} || '@example.org>',
                       'Step ' || {concat_id}, {at},
                       CASE WHEN es.id % 100 = 7 THEN NULL ELSE {at} END
                FROM enrolmentstep es JOIN enrolment e ON e.id = es.enrolment_id
                JOIN person p ON p.id = e.person_id
                WHERE es.sent_at IS NOT NULL AND {where}
                ORDER BY es.sent_at"""))  # fmt: skip
        conn.execute(
            text("""
            INSERT INTO linkhit (at, purpose, subject_id, method, user_agent, ip)
            SELECT es.done_at, 'step', es.id, 'GET', 'Mozilla/5.0', '192.0.2.1'
            FROM enrolmentstep es WHERE es.status = 'done' AND es.id % 2 = 0""")
        )
    if loader.pg:
        with engine.begin() as conn:
            conn.exec_driver_sql("SET maintenance_work_mem = '512MB'")
            for table, _index, ddl, constraint in dropped:
                ddl = ddl.replace("%", "%%")  # a partial index's LIKE: not a placeholder
                if constraint:
                    conn.exec_driver_sql(f"ALTER TABLE {table} ADD CONSTRAINT {constraint} {ddl}")
                else:
                    conn.exec_driver_sql(ddl)
            for table in ("person", "journey", "step", "enrolment", "enrolmentstep", "outbox",
                          "linkhit"):  # fmt: skip
                conn.exec_driver_sql(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                    f"(SELECT max(id) FROM {table}))"
                )
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM ANALYZE")
    else:
        with engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE")
    return {"due": counts["due"], **table_counts(engine)}


def table_counts(engine: Engine) -> dict:
    with Session(engine) as session:
        return {
            name: session.exec(select(func.count()).select_from(getattr(models, name))).one()[0]
            for name in ("Person", "Enrolment", "EnrolmentStep", "Outbox", "LinkHit")
        }


# --- measuring --------------------------------------------------------------------------------


def settings_for(url: str, tmp: Path, **extra):
    return load_settings({"instance_path": tmp, "database_url": url, "secret_key": "bench",
                          "smtp_url": "outbox:", "base_url": "http://bench.test",
                          **extra})  # fmt: skip


class Scratch:
    """Work on the built database and throw the changes away afterwards."""

    def __init__(self, url: str, tmp: Path) -> None:
        self.url, self.tmp = url, tmp
        self.sqlite = url.startswith("sqlite")

    def run(self, fn):
        """Call fn(session, url) on a throw-away state of the database; return its result."""
        if self.sqlite:
            source = Path(make_url(self.url).database)
            copy = self.tmp / f"scratch-{uuid.uuid4().hex[:8]}.db"
            shutil.copyfile(source, copy)
            url = f"sqlite:///{copy}"
            try:
                with Session(get_engine(url), expire_on_commit=False) as session:
                    return fn(session, url)
            finally:
                get_engine(url).dispose()
                copy.unlink()
        engine = get_engine(self.url)
        with engine.connect() as conn:
            outer = conn.begin()
            session = Session(bind=conn, join_transaction_mode="create_savepoint",
                              expire_on_commit=False)  # fmt: skip
            try:
                return fn(session, self.url)
            finally:
                session.close()
                outer.rollback()


def clear_caches() -> None:
    calendar._add_working_days.cache_clear()
    calendar.local_instant.cache_clear()


def timed_tick(session, settings) -> tuple[float, float, dict]:
    """Tick at NOW from cold caches: (wall seconds, CPU seconds, the tick's counts)."""
    clear_caches()
    started, cpu = time.perf_counter(), time.process_time()
    counts = tick(session, settings, NOW, enqueue=False)
    return time.perf_counter() - started, time.process_time() - cpu, counts


def medians(results: list[tuple[float, float, dict]]) -> dict:
    """The median wall and CPU time of several timed ticks, and the last one's counts."""
    return {"wall": statistics.median(r[0] for r in results),
            "cpu": statistics.median(r[1] for r in results), "counts": results[-1][2]}  # fmt: skip


def time_tick(url: str, tmp: Path, runs: int) -> dict:
    """Median wall and CPU seconds of tick(NOW) after a warm-up tick, on throw-away state."""
    settings = settings_for(url, tmp)
    scratch = Scratch(url, tmp)

    def once(session, _url):
        tick(session, settings, WARM_UP, enqueue=False)
        session.execute(text("UPDATE outbox SET state = 'sent' WHERE state = 'pending'"))
        session.commit()
        return timed_tick(session, settings)

    return medians([scratch.run(once) for _ in range(runs)])


def time_digest(url: str, tmp: Path, runs: int) -> dict:
    """The tick at an instant when only digests are due: 20% of learners behind, escalated."""
    settings = settings_for(url, tmp)
    scratch = Scratch(url, tmp)
    yesterday = NOW - timedelta(days=1)

    def once(session, _url):
        session.execute(
            text("UPDATE enrolment SET next_action_at = :later WHERE next_action_at <= :now"),
            {"later": (NOW + timedelta(days=1)).replace(tzinfo=None),
             "now": NOW.replace(tzinfo=None)},
        )  # fmt: skip
        session.execute(
            text("""
            INSERT INTO escalationevent (enrolment_step_id, enrolment_id, level, recipient_email,
                                         created_at)
            SELECT max(es.id), e.id, 'manager', m.email, :at
            FROM enrolment e JOIN enrolmentstep es ON es.enrolment_id = e.id
            JOIN person p ON p.id = e.person_id JOIN person m ON m.id = p.manager_id
            WHERE e.status = 'active' AND es.status = 'sent' AND e.id % 5 = 2
            GROUP BY e.id, m.email"""),
            {"at": yesterday.replace(tzinfo=None)},
        )  # fmt: skip
        # As the tick that raised them would have: each waits for its recipient's digest.
        session.execute(text("INSERT INTO digestqueue (event_id) SELECT id FROM escalationevent"))
        session.execute(text("ANALYZE escalationevent"))
        session.commit()
        return timed_tick(session, settings)

    return medians([scratch.run(once) for _ in range(runs)])


def page_urls(engine: Engine) -> dict[str, list[str]]:
    with Session(engine) as session:
        last = session.exec(select(func.max(models.Enrolment.id))).one()[0]
        someone = session.exec(
            select(models.Enrolment.person_id).where(models.Enrolment.id == last // 2)
        ).one()[0]
        top = session.exec(select(func.max(models.Outbox.id))).one()[0]
    learner = f"learner{last // 3}"
    return {
        "dashboard": ["/admin/", "/admin/?journey=journey-3"],
        "search": [
            "/admin/enrolments",
            "/admin/enrolments?behind=yes",
            "/admin/enrolments?behind=escalated&journey=journey-2",
            "/admin/enrolments?journey=journey-1&status=active&behind=no",
            "/admin/enrolments?status=paused",
            f"/admin/enrolments?q={learner}",
            "/admin/enrolments?q=Learner%2042",
            "/admin/enrolments?manager=manager7@example.com",
            f"/admin/enrolments?before={last // 2}",
            f"/admin/enrolments?behind=yes&before={last // 10}",
        ],
        "person": [f"/admin/people/{someone}"],
        "ledger": [
            "/admin/mail",
            f"/admin/mail?before={top // 2}",
            f"/admin/mail?before={top // 50}",
            "/admin/mail?state=bounced",
            f"/admin/mail?state=bounced&before={top // 10}",
            "/admin/mail?state=failed",
            "/admin/mail?state=queued",
            "/admin/mail?state=sent",
            "/admin/mail?kind=reminder",
            f"/admin/mail?kind=digest&before={top // 2}",
            f"/admin/mail?q={learner}@example.com",
            "/admin/mail?q=learner77",
            f"/admin/mail?q=learner77&state=bounced&before={top // 3}",
        ],
    }


def time_pages(url: str, tmp: Path, requests: int) -> dict[str, dict[str, float]]:
    from nudger import create_app
    from nudger.admins import create_or_update_admin

    engine = get_engine(url)
    with Session(engine) as session:
        create_or_update_admin(session, "bench@example.com", "bench password 123", NOW)
        session.commit()
    app = create_app(settings_for(url, tmp))
    app.config["NUDGER_CLOCK"] = lambda: NOW
    groups = page_urls(engine)
    results = {name: admin_bench.time_pages(app, urls, requests) for name, urls in groups.items()}
    # What the worker's refresh of the dashboard's figures costs, every few minutes.
    from nudger.insights import snapshots

    with Session(engine) as session:
        started = time.perf_counter()
        snapshots.refresh(session, NOW)
        results["refresh_s"] = time.perf_counter() - started
    return results


# --- import and upload, each in a subprocess of its own -----------------------------------------


def peak_rss_mb() -> float:
    """This process's own peak RSS: VmHWM, not ru_maxrss, which Linux carries over an exec
    from the forking parent (every child would report at least the parent's size)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def add_journeys(engine: Engine) -> None:
    """The import's journey, with ten steps, as the CSV names it."""
    with Session(engine) as session:
        s = dict(tick_bench.SPEC, slug=import_bench.SLUG, title="Bench")
        journey = models.Journey(slug=s["slug"], title=s["title"], spec=s, checksum="bench",
                                 owner="learning@example.com")  # fmt: skip
        session.add(journey)
        session.flush()
        for i, day in enumerate(DAYS):
            session.add(models.Step(journey_id=journey.id, key=f"step-{i}", position=i, day=day,
                                    kind="read", title=f"Step {i + 1}", minutes=15))  # fmt: skip
        session.commit()


def fresh_schema(url: str) -> tuple[Engine, str, str]:
    """An empty schema (PostgreSQL) or file (SQLite) with the tables and the journey."""
    if url.startswith("sqlite"):
        engine = create_engine(url)
        SQLModel.metadata.create_all(engine)
        add_journeys(engine)
        return engine, "", url
    # A schema of its own; public stays on the path for pg_trgm's operator classes.
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    with create_engine(url).begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    engine = create_engine(url, connect_args={"options": f"-csearch_path={schema},public"})
    # checkfirst would find public's tables on the path and create none here.
    SQLModel.metadata.create_all(engine, checkfirst=False)
    add_journeys(engine)
    sep = "&" if "?" in url else "?"
    return engine, schema, f"{url}{sep}options=-csearch_path%3D{schema}%2Cpublic"


def bare_copy(engine: Engine, path: Path) -> None:
    """Parse the file and COPY its people and enrolments: what any import must at least do."""
    people: dict[str, tuple] = {}
    pairs = []
    stamp = IMPORT_NOW
    with path.open(newline="", encoding="utf-8") as f:
        for r in csv.DictReader(f):
            name = f"{r['first_name']} {r['last_name']}"
            people[r["email"]] = (r["email"], name, r["timezone"], r["country"], stamp, stamp)
            people.setdefault(
                r["manager_email"], (r["manager_email"], r["manager_name"], "UTC", "", stamp, stamp)
            )
            pairs.append((r["email"], r["start_date"]))  # fmt: skip
    loader = Loader(engine)
    cols = ["email", "name", "timezone", "country", "created_at", "updated_at"]
    loader.load("person", cols, people.values())
    with engine.connect() as conn:
        ids = dict(conn.exec_driver_sql("SELECT email, id FROM person").all())
    default = date(2027, 3, 2)
    rows = (
        (ids[email], 1, "active", date.fromisoformat(start) if start else default, 0, IMPORT_NOW,
         False, IMPORT_NOW, IMPORT_NOW)
        for email, start in pairs
    )  # fmt: skip
    loader.load("enrolment", ["person_id", "journey_id", "status", "start_date", "shift_days",
                              "next_action_at", "reminders_muted", "created_at", "updated_at"],
                rows)  # fmt: skip


def import_child(part: str, path: Path, url: str) -> None:
    """In this fresh process: the baseline or the import, then the first tick; print JSON."""
    engine, schema, scoped = fresh_schema(url)
    out = {}
    try:
        started, cpu = time.perf_counter(), time.process_time()
        if part == "baseline":
            bare_copy(engine, path)
        else:
            from nudger.roster import import_roster

            settings = settings_for(scoped, Path(tempfile.gettempdir()))
            with Session(get_engine(scoped), expire_on_commit=False) as session:
                result = import_roster(session, settings, path, now=IMPORT_NOW)
            if not result.ok:
                raise SystemExit(f"import rejected: {result.errors[:5]}")
        out["seconds"] = time.perf_counter() - started
        out["cpu"] = time.process_time() - cpu
        out["rss_mb"] = peak_rss_mb()
        if part == "import":
            settings = settings_for(scoped, Path(tempfile.gettempdir()))
            with Session(get_engine(scoped), expire_on_commit=False) as session:
                started = time.perf_counter()
                counts = tick(session, settings, IMPORT_NOW + timedelta(minutes=1), enqueue=False)
                out["first_tick"] = time.perf_counter() - started
                out["first_tick_counts"] = counts
    finally:
        get_engine(scoped).dispose()
        import_bench.drop(engine, schema, url)
    print(json.dumps(out))


def run_child(args: list[str]) -> dict:
    done = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{args[:2]} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def upload_child(path: Path, url: str, redis_url: str, tmp: Path) -> None:
    """The web process: sign in, upload, poll status.json while a worker runs the jobs."""
    from nudger import create_app
    from nudger.admins import create_or_update_admin

    engine, schema, scoped = fresh_schema(url)
    instance = tmp / "upload-instance"
    instance.mkdir(exist_ok=True)
    settings = settings_for(scoped, instance, redis_url=redis_url)
    worker = None
    out: dict = {"progress": []}
    try:
        with Session(get_engine(scoped)) as session:
            create_or_update_admin(session, "bench@example.com", "bench password 123", NOW)
            session.commit()
        app = create_app(settings)
        client = admin_bench.signed_in(app)
        env = dict(os.environ, NUDGER_DATABASE_URL=scoped, NUDGER_REDIS_URL=redis_url,
                   NUDGER_INSTANCE_PATH=str(instance), NUDGER_SECRET_KEY="bench",
                   NUDGER_SMTP_URL="outbox:", PYTHONPATH=str(ROOT))  # fmt: skip
        from nudger.queue import queue

        queue(settings).empty()
        out["rss_before_mb"] = peak_rss_mb()
        started = time.perf_counter()
        html = client.get("/admin/upload").get_data(as_text=True)
        token = re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)
        # The request body streams from a file, as a browser's would arrive: the test
        # client must not hold a million rows in this process's memory.
        body, boundary = tmp / "upload-body", uuid.uuid4().hex
        with body.open("wb") as out_file:
            for name, value in (("csrf_token", token), ("journey", "")):
                out_file.write(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"'
                               f"\r\n\r\n{value}\r\n".encode())  # fmt: skip
            out_file.write(f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
                           'filename="roster.csv"\r\nContent-Type: text/csv\r\n\r\n'
                           .encode())  # fmt: skip
            with path.open("rb") as f:
                shutil.copyfileobj(f, out_file)
            out_file.write(f"\r\n--{boundary}--\r\n".encode())
        kind = f"multipart/form-data; boundary={boundary}"
        with body.open("rb") as f:
            response = client.post("/admin/upload", input_stream=f, content_type=kind,
                                   content_length=body.stat().st_size)  # fmt: skip
        assert response.status_code == 302, response.status_code
        out["upload_request_s"] = time.perf_counter() - started
        upload_id = response.headers["Location"].rstrip("/").split("/")[-1]
        worker = subprocess.Popen(
            [str(Path(sys.executable).with_name("nudger")), "worker", "--burst"],
            env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip

        def poll(phase: str) -> dict:
            deadline = time.perf_counter() + 3600
            while time.perf_counter() < deadline:
                status = client.get(f"/admin/upload/{upload_id}/status.json").get_json()
                out["progress"].append((phase, round(status.get("progress") or 0, 3)))
                if not status["running"]:
                    return status
                time.sleep(0.5)
            raise SystemExit(f"the {phase} job did not finish within an hour")

        checked = poll("check")
        out["check_s"] = time.perf_counter() - started
        worker.wait()
        html = client.get(f"/admin/upload/{upload_id}").get_data(as_text=True)
        token = re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)
        client.post(f"/admin/upload/{upload_id}/commit", data={"csrf_token": token})
        worker = subprocess.Popen(
            [str(Path(sys.executable).with_name("nudger")), "worker", "--burst"],
            env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        committed = poll("commit")
        worker.wait()
        out["total_s"] = time.perf_counter() - started
        out["state"] = committed.get("state")
        out["error"] = committed.get("error") or checked.get("error")
        with Session(get_engine(scoped)) as session:
            out["enrolments"] = session.exec(
                select(func.count()).select_from(models.Enrolment)
            ).one()[0]
        out["web_rss_mb"] = peak_rss_mb()
    finally:
        if worker is not None and worker.poll() is None:
            worker.kill()
            worker.wait()
        get_engine(scoped).dispose()
        import_bench.drop(engine, schema, url)
    print(json.dumps(out))


# --- the table --------------------------------------------------------------------------------


class Table:
    def __init__(self) -> None:
        self.rows: list[tuple[str, str, str, str, bool | None]] = []

    def add(self, what: str, figure: str, baseline: str, target: str, ok: bool | None) -> None:
        self.rows.append((what, figure, baseline, target, ok))
        verdict = "-" if ok is None else "PASS" if ok else "FAIL"
        print(f"  [{verdict}] {what}: {figure} | baseline: {baseline} | target: {target}",
              flush=True)  # fmt: skip

    def print(self, title: str) -> None:
        print(f"\n{title}\n")
        print("| what | figure | baseline / ratio | target | |")
        print("|---|---|---|---|---|")
        for what, figure, baseline, target, ok in self.rows:
            verdict = "" if ok is None else "PASS" if ok else "FAIL"
            print(f"| {what} | {figure} | {baseline} | {target} | {verdict} |")


def ms(seconds: float) -> str:
    return f"{seconds * 1000:,.0f} ms"


def worst(group: dict[str, float]) -> tuple[str, float]:
    url = max(group, key=group.get)
    return url, group[url]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default="", help="PostgreSQL database (default SQLite)")
    parser.add_argument("--baseline-url", default="", help="database for the baseline size")
    parser.add_argument("--enrolments", type=int, default=1_000_000)
    parser.add_argument("--baseline-enrolments", type=int)
    parser.add_argument("--only", default="tick,digest,pages,import,upload")
    parser.add_argument("--no-build", action="store_true", help="measure the databases as built")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--import-runs", type=int, default=1)
    parser.add_argument("--requests", type=int, default=7)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/5")
    parser.add_argument(
        "--sqlite-baseline", type=Path, default=ROOT / "bench" / "scale_sqlite.json"
    )
    parser.add_argument("--save-sqlite-baseline", action="store_true")
    parser.add_argument("--child", choices=["baseline", "import", "upload"], help=argparse.SUPPRESS)
    parser.add_argument("--csv", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child in ("baseline", "import"):
        return import_child(args.child, args.csv, args.database_url)
    if args.child == "upload":
        return upload_child(args.csv, args.database_url, args.redis_url, args.csv.parent)
    parts = set(args.only.split(","))
    n = args.enrolments
    small = args.baseline_enrolments or max(1, n // 10)
    due = max(1, n // 100)
    tmp = Path(tempfile.mkdtemp(prefix="nudger-scale-"))
    sqlite = not args.database_url
    url = args.database_url or f"sqlite:///{tmp / 'big.db'}"
    base_url = args.baseline_url or f"sqlite:///{tmp / 'small.db'}"
    kind = "SQLite" if sqlite else "PostgreSQL"
    table = Table()
    figures: dict[str, float] = {}
    try:
        needs_data = parts & {"tick", "digest", "pages"}
        if needs_data and not args.no_build:
            for u, size in ((url, n), (base_url, small)):
                if u == base_url and "tick" not in parts:
                    continue
                started = time.perf_counter()
                built = build(get_engine(u), size, due)
                get_engine(u).dispose()
                print(f"built {size:,} enrolments in {time.perf_counter() - started:.0f} s: "
                      f"{built}", flush=True)  # fmt: skip
        if "tick" in parts:
            big = time_tick(url, tmp, args.runs)
            base = time_tick(base_url, tmp, args.runs)
            ratio = big["wall"] / base["wall"]
            figures["tick"] = big["wall"]
            sent = big["counts"].get("step", 0)
            table.add(f"tick(now), {sent:,} due of {n:,}",
                      f"{ms(big['wall'])} (CPU {ms(big['cpu'])})",
                      f"{small:,} with {base['counts'].get('step', 0):,} due: {ms(base['wall'])}"
                      f" (CPU {ms(base['cpu'])}); ratio {ratio:.2f}x",
                      "< 1 s and <= 1.5x", big["wall"] < 1 and ratio <= 1.5)  # fmt: skip
        if "digest" in parts:
            d = time_digest(url, tmp, max(1, args.runs // 2))
            figures["digest"] = d["wall"]
            table.add(f"digest tick, {n // TEAM:,} managers, 20% behind",
                      f"{ms(d['wall'])} (CPU {ms(d['cpu'])}), {d['counts'].get('digest', 0):,} "
                      "digests", "-", "< 10 s", d["wall"] < 10)  # fmt: skip
        if "pages" in parts:
            pages = time_pages(url, tmp, args.requests)
            refresh_s = pages.pop("refresh_s")
            for name, target in (("dashboard", 500), ("search", 200), ("person", 100),
                                 ("ledger", 200)):  # fmt: skip
                where, worst_ms = worst(pages[name])
                figures[name] = worst_ms / 1000
                detail = ", ".join(f"{u.removeprefix('/admin/')} {v:.0f}"
                                   for u, v in pages[name].items())  # fmt: skip
                label = {"dashboard": "admin dashboard (all panels)",
                         "search": "enrolment search and filters, slowest",
                         "person": "a person's page",
                         "ledger": "sent-mail ledger, any page/filter, slowest"}[name]  # fmt: skip
                if name == "dashboard":
                    detail += f"; the worker's refresh of the figures {refresh_s:.1f} s"
                table.add(label, f"{worst_ms:,.0f} ms ({where})", f"all (ms): {detail}",
                          f"< {target} ms", worst_ms < target)  # fmt: skip
        if parts & {"import", "upload"}:
            path = tmp / "roster.csv"
            import_bench.write_csv(path, n)
        if "import" in parts:
            runs = []
            for i in range(args.import_runs):
                child_url = url if not sqlite else f"sqlite:///{tmp / f'imp{i}.db'}"
                base_child = url if not sqlite else f"sqlite:///{tmp / f'base{i}.db'}"
                b = run_child(["--child", "baseline", "--csv", str(path),
                               "--database-url", base_child])  # fmt: skip
                m = run_child(["--child", "import", "--csv", str(path),
                               "--database-url", child_url])  # fmt: skip
                print(f"  import run {i + 1}: baseline {b['seconds']:.1f} s, import "
                      f"{m['seconds']:.1f} s, first tick {m['first_tick']:.1f} s "
                      f"{m['first_tick_counts']}", flush=True)  # fmt: skip
                runs.append((b, m))
            med = lambda k, p: statistics.median(r[p][k] for r in runs)  # noqa: E731
            ratio = med("seconds", 1) / med("seconds", 0)
            rss = med("rss_mb", 1)
            figures["import"] = med("seconds", 1)
            figures["first_tick"] = med("first_tick", 1)
            table.add(f"first tick after importing {n:,} learners",
                      f"{med('first_tick', 1):.1f} s", "-", "< 10 s",
                      med("first_tick", 1) < 10)  # fmt: skip
            table.add(f"`nudger import` of {n:,} rows",
                      f"{med('seconds', 1):.1f} s (CPU {med('cpu', 1):.1f} s), "
                      f"peak RSS {rss:.0f} MB",
                      f"parse + {'COPY' if not sqlite else 'executemany'} {med('seconds', 0):.1f} s"
                      f" (RSS {med('rss_mb', 0):.0f} MB); ratio {ratio:.2f}x",
                      "<= 3x, RSS < 500 MB", ratio <= 3 and rss < 500)  # fmt: skip
        if "upload" in parts:
            child_url = url if not sqlite else f"sqlite:///{tmp / 'upload.db'}"
            u = run_child(["--child", "upload", "--csv", str(path), "--database-url", child_url,
                           "--redis-url", args.redis_url])  # fmt: skip
            steps = [p for p in u["progress"] if 0 < p[1] < 1]
            ok = u["state"] == "committed" and u["enrolments"] >= n and u["web_rss_mb"] < 200
            table.add(f"web upload of {n:,} rows",
                      f"{u['state']} in {u['total_s']:.0f} s ({u['enrolments']:,} enrolments), "
                      f"web RSS {u['web_rss_mb']:.0f} MB, {len(steps)} progress readings "
                      f"between 0 and 1{'; ' + u['error'] if u['error'] else ''}",
                      f"upload request {u['upload_request_s']:.1f} s; web RSS before the upload "
                      f"{u['rss_before_mb']:.0f} MB",
                      "a job with progress; web < 200 MB", ok)  # fmt: skip
        if sqlite:
            sqlite_row(args, n, figures, table)
        table.print(f"{kind}, {n:,} enrolments (baseline {small:,}); medians; "
                    f"{os.cpu_count()} CPUs")  # fmt: skip
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def sqlite_row(args, n: int, figures: dict[str, float], table: Table) -> None:
    """Compare the SQLite figures with those recorded before (--save-sqlite-baseline)."""
    if args.save_sqlite_baseline:
        args.sqlite_baseline.write_text(json.dumps({"enrolments": n, **figures}, indent=1) + "\n")
        table.add("SQLite figures saved", json.dumps(figures), "-", "-", None)
        return
    if not args.sqlite_baseline.exists():
        table.add("SQLite at this size", "no recorded baseline", "-", "-", None)
        return
    before = json.loads(args.sqlite_baseline.read_text())
    worse = {k: v / before[k] for k, v in figures.items() if before.get(k)}
    detail = ", ".join(f"{k} {v:.2f}x" for k, v in worse.items())
    table.add(f"SQLite at {n:,}: against the figures recorded before",
              detail or "-", f"recorded at {before.get('enrolments', 0):,}",
              f"each <= {SQLITE_TOLERANCE}x (noise)",
              all(v <= SQLITE_TOLERANCE for v in worse.values()))  # fmt: skip


if __name__ == "__main__":
    main()
