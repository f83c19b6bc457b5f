"""Time the admin console's busiest pages with 100,000 enrolments.

    .venv/bin/python bench/admin.py [--enrolments 100000] [--database-url URL] [--requests 7]
                                    [--no-build]

Without --database-url it builds a fresh SQLite file; with one it DROPS AND
RECREATES every Nudger table in that database, so point it at a scratch one
(e.g. postgresql+psycopg://postgres@127.0.0.1:5432/nudger_bench).

The data is written with bulk Core inserts: four journeys of ten steps,
enrolments started over the last eight weeks (5% paused, 5% withdrawn), each
with the steps it has been sent by now and one outbox row per step email (1%
bounced). Learners are 60% diligent (95% of steps done), 30% lagging (60%) and
10% lapsed (15%), so about a fifth of sent steps are open, most of them past
due and many escalated: a cohort in poor shape, not a flattering one.

Pages are requested through the Flask test client as a signed-in admin; each
page is fetched once to warm up, then --requests times, and the median is
reported. Target: every page under 500 ms.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import func, insert, select  # noqa: E402
from sqlmodel import Session, SQLModel  # noqa: E402

from nudger import create_app, models  # noqa: E402
from nudger.admins import create_or_update_admin  # noqa: E402
from nudger.config import load_settings  # noqa: E402
from nudger.db import get_engine  # noqa: E402

NOW = datetime(2027, 3, 1, 12, 0, tzinfo=UTC)
JOURNEYS = 4
STEPS = 10
CHUNK = 10_000
TARGET_MS = 500


def journey_spec(slug: str) -> dict:
    return {
        "slug": slug,
        "title": slug.replace("-", " ").title(),
        "schedule": {"send_time": "09:00", "days": ["mon", "tue", "wed", "thu", "fri"],
                     "holidays": True, "due_after": 2},
        "reminders": [{"after": 1}, {"after": 4}],
        "escalations": [{"after": 3, "notify": "manager"}, {"after": 8, "notify": "skip_level"}],
        "digest": {"every": "day", "at": "08:00"},
        "steps": [{"key": f"step-{i}", "day": 3 * i, "kind": "read", "title": f"Step {i + 1}"}
                  for i in range(STEPS)],
    }  # fmt: skip


def chunks(rows, size: int = CHUNK):
    batch = []
    for row in rows:
        batch.append(row)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def build(engine, n: int, seed: int = 7) -> None:
    """Write n enrolments and everything they have been sent, with bulk Core inserts."""
    rng = random.Random(seed)
    SQLModel.metadata.drop_all(engine)
    SQLModel.metadata.create_all(engine)
    t = {name: SQLModel.metadata.tables[name] for name in SQLModel.metadata.tables}
    with engine.begin() as conn:
        for j in range(JOURNEYS):
            spec = journey_spec(f"journey-{j + 1}")
            conn.execute(insert(t["journey"]), {
                "id": j + 1, "slug": spec["slug"], "title": spec["title"], "owner": None,
                "spec": spec, "checksum": "bench", "version": 1, "source": "", "synced_at": NOW,
            })  # fmt: skip
            conn.execute(insert(t["step"]), [
                {"id": j * STEPS + i + 1, "journey_id": j + 1, "key": s["key"], "position": i,
                 "day": s["day"], "kind": "read", "title": s["title"], "minutes": 15,
                 "link": None, "body": None, "due_after": None, "confirmed_by": None, "at": None,
                 "removed": False}
                for i, s in enumerate(spec["steps"])
            ])  # fmt: skip
        managers = max(1, n // 50)
        people = (
            {"id": i + 1, "email": f"manager{i}@example.com" if i < managers
             else f"learner{i - managers}@example.com",
             "name": f"Manager {i}" if i < managers else f"Learner {i - managers}",
             "manager_id": None if i < managers else rng.randrange(managers) + 1,
             "timezone": "Europe/London", "country": "GB", "digest_every": None,
             "created_at": NOW, "updated_at": NOW}
            for i in range(managers + n)
        )  # fmt: skip
        for batch in chunks(people):
            conn.execute(insert(t["person"]), batch)
    es_id = outbox_id = 0
    with engine.begin() as conn:
        enrolments, sent, mail = [], [], []
        for i in range(n):
            journey = i % JOURNEYS + 1
            start = (NOW - timedelta(days=rng.randrange(0, 56))).date()
            roll = rng.random()
            status = ("paused" if roll < 0.05 else "withdrawn" if roll < 0.10
                      else "active")  # fmt: skip
            working_days = int((NOW.date() - start).days * 5 / 7)
            due_steps = min(STEPS, working_days // 3 + 1)
            # Most people do most steps; some lag; a few lapse (about 20% of sent steps open).
            diligent = rng.choices((0.95, 0.6, 0.15), weights=(60, 30, 10))[0]
            enrolments.append({
                "id": i + 1, "person_id": managers + i + 1, "journey_id": journey,
                "status": status, "start_date": start, "shift_days": 0,
                "next_action_at": NOW + timedelta(days=1) if status == "active" else None,
                "paused_at": NOW if status == "paused" else None, "reminders_muted": False,
                "import_batch_id": None, "created_at": NOW, "updated_at": NOW,
            })  # fmt: skip
            for k in range(due_steps):
                es_id += 1
                outbox_id += 1
                sent_at = datetime.combine(start + timedelta(days=k * 4), datetime.min.time(),
                                           tzinfo=UTC) + timedelta(hours=9)  # fmt: skip
                due_at = sent_at + timedelta(days=3)
                done = rng.random() < diligent
                overdue_days = (NOW - due_at).days
                sent.append({
                    "id": es_id, "enrolment_id": i + 1, "step_id": (journey - 1) * STEPS + k + 1,
                    "status": "done" if done else ("cancelled" if status == "withdrawn"
                                                   else "sent"),
                    "sent_at": sent_at, "due_at": due_at,
                    "done_at": sent_at + timedelta(hours=rng.randrange(1, 96)) if done else None,
                    "note": None, "note_shared": True, "awaiting_confirmation": False,
                    "confirmed_by_id": None, "invite_sequence": 0, "invite_start": None,
                    "reminders_sent": 0,
                    "escalation_level": 1 if (not done and overdue_days > 4) else 0,
                    "snoozed_until": None,
                })  # fmt: skip
                failed = rng.random() < 0.01
                mail.append({
                    "id": outbox_id, "dedupe_key": f"step:{i + 1}:{k}", "kind": "step",
                    "to_email": f"learner{i}@example.com", "person_id": managers + i + 1,
                    "enrolment_id": i + 1, "payload": {"enrolment_step_ids": [es_id]},
                    "state": "failed" if failed else "sent", "attempts": 1,
                    "next_attempt_at": sent_at, "lease_until": None, "enqueued_at": sent_at,
                    "last_error": "550 5.1.1 no such user" if failed else None,
                    "message_id": f"<nudger.{outbox_id}@example.org>", "subject": f"Step {k + 1}",
                    "created_at": sent_at, "sent_at": None if failed else sent_at,
                })  # fmt: skip
            if len(sent) >= CHUNK:
                conn.execute(insert(t["enrolment"]), enrolments)
                conn.execute(insert(t["enrolmentstep"]), sent)
                conn.execute(insert(t["outbox"]), mail)
                enrolments, sent, mail = [], [], []
        for table, rows in (("enrolment", enrolments), ("enrolmentstep", sent), ("outbox", mail)):
            if rows:
                conn.execute(insert(t[table]), rows)
        conn.execute(insert(t["tickrun"]), {"started_at": NOW, "now": NOW, "duration_ms": 40,
                                            "counts": {"steps": 12}})  # fmt: skip
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:
            for table in ("person", "journey", "step", "enrolment", "enrolmentstep", "outbox"):
                conn.exec_driver_sql(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                    f"(SELECT max(id) FROM {table}))"
                )
    if engine.dialect.name == "postgresql":
        # What autovacuum does soon after a load: statistics, and the visibility map
        # that lets PostgreSQL answer from an index alone.
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM ANALYZE")
    else:
        with engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE")


def signed_in(app):
    client = app.test_client()
    html = client.get("/admin/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)
    response = client.post("/admin/login", data={
        "email": "bench@example.com", "password": "bench password 123", "csrf_token": token,
    })  # fmt: skip
    assert response.status_code == 302, response.get_data(as_text=True)
    return client


def time_pages(app, urls: list[str], requests: int) -> dict[str, float]:
    client = signed_in(app)
    results = {}
    for url in urls:
        first = client.get(url)
        assert first.status_code == 200, (url, first.status_code, first.get_data(as_text=True))
        times = []
        for _ in range(requests):
            started = time.perf_counter()
            response = client.get(url)
            response.get_data()
            times.append((time.perf_counter() - started) * 1000)
        results[url] = round(statistics.median(times), 1)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--enrolments", type=int, default=100_000)
    parser.add_argument("--database-url", default="")
    parser.add_argument("--requests", type=int, default=7)
    parser.add_argument(
        "--no-build",
        action="store_true",
        help="time the pages on data an earlier run left at --database-url",
    )
    args = parser.parse_args()
    instance = Path(tempfile.mkdtemp(prefix="nudger-bench-admin-"))
    url = args.database_url or f"sqlite:///{instance / 'bench.db'}"
    settings = load_settings({
        "instance_path": instance, "database_url": url, "secret_key": "bench",
        "base_url": "http://bench.test",
    })  # fmt: skip
    engine = get_engine(url)
    started = time.perf_counter()
    if not args.no_build:
        build(engine, args.enrolments)
    built = time.perf_counter() - started
    with Session(engine) as session:
        counts = {
            name: session.execute(
                select(func.count()).select_from(getattr(models, name))
            ).scalar_one()
            for name in ("Enrolment", "EnrolmentStep", "Outbox", "Person")
        }
        create_or_update_admin(session, "bench@example.com", "bench password 123", NOW)
        session.commit()  # fmt: skip
    app = create_app(settings)
    app.config["NUDGER_CLOCK"] = lambda: NOW
    with Session(engine) as session:
        last = session.execute(select(func.max(models.Enrolment.id))).scalar_one()
        someone = session.execute(
            select(models.Enrolment.person_id).where(models.Enrolment.id == last // 2)
        ).scalar_one()
    urls = [
        "/admin/",
        "/admin/?journey=journey-3",
        "/admin/enrolments",
        "/admin/enrolments?behind=yes",
        "/admin/enrolments?behind=escalated&journey=journey-2",
        "/admin/enrolments?journey=journey-1&status=active&behind=no",
        "/admin/enrolments?q=learner4242",
        "/admin/enrolments?manager=manager7@example.com",
        f"/admin/enrolments?before={last // 2}",
        "/admin/mail",
        "/admin/mail?state=bounced",
        f"/admin/people/{someone}",
    ]
    results = time_pages(app, urls, args.requests)
    dialect = engine.dialect.name
    print(f"database: {dialect}; data: {counts}; built in {built:.1f} s; "
          f"median of {args.requests} requests per page (target {TARGET_MS} ms)")  # fmt: skip
    for url, ms in results.items():
        flag = "ok " if ms < TARGET_MS else "SLOW"
        print(f"  {flag} {ms:8.1f} ms  {url}")
    print(json.dumps({"database": dialect, "counts": counts, "median_ms": results}))
    if any(ms >= TARGET_MS for ms in results.values()):
        sys.exit(1)


if __name__ == "__main__":
    main()
