"""Time the Behaviour change panel and `nudger ratings` over 3 million ratings.

    .venv/bin/python bench/ratings.py [--enrolments 100000] [--database-url URL] [--requests 5]
                                      [--no-build]

Without --database-url it builds a fresh SQLite file; with one it DROPS AND
RECREATES every Nudger table in that database, so point it at a scratch one
(e.g. postgresql+psycopg://postgres@127.0.0.1:5432/nudger_bench_ratings).

One journey measures 5 behaviours by 2 raters at 3 checkpoints (start, end,
20): --enrolments x 30 ratings (3 million by default), with one check-in row
per enrolment, rater and checkpoint (600,000). About 8% of check-ins go
unanswered, 6% of answers are "no chance to observe", and answers drift up a
point or so between the start and the later checkpoints.

The tallies the panel reads are written from the ratings once loaded
(`nudger.measure.tally.rebuild`), as saving answers one by one keeps them.
Targets: the admin dashboard with the panel under 500 ms (median of
--requests, through the Flask test client as a signed-in admin), and
`nudger ratings` (in a subprocess, so its start-up counts) under 2 s.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from admin import signed_in  # noqa: E402  (bench/admin.py: the console, signed in)
from sqlalchemy import func, insert, select  # noqa: E402
from sqlmodel import Session, SQLModel  # noqa: E402

from nudger import create_app, models  # noqa: E402
from nudger.admins import create_or_update_admin  # noqa: E402
from nudger.config import load_settings  # noqa: E402
from nudger.db import get_engine  # noqa: E402
from nudger.measure.tally import rebuild  # noqa: E402

NOW = datetime(2027, 6, 1, 12, 0, tzinfo=UTC)
BEHAVIOURS = [f"behaviour-{i}" for i in range(1, 6)]
CHECKPOINTS = [("start", 0), ("end", 1), ("20", 21)]
CHUNK = 20_000
PANEL_MS, CLI_MS = 500, 2000


def spec() -> dict:
    return {
        "slug": "bench",
        "title": "Bench journey",
        "goal": [{"key": k, "text": f"Does observable thing {k[-1]}"} for k in BEHAVIOURS],
        "measure": {"raters": ["learner", "manager"], "at": ["start", "end", "20"]},
        "steps": [{"key": f"s{i}", "day": 2 * i, "kind": "read", "title": f"Step {i}"}
                  for i in range(10)],
    }  # fmt: skip


def build(engine, n: int, seed: int = 11) -> None:
    rnd = random.Random(seed)
    SQLModel.metadata.drop_all(engine)
    SQLModel.metadata.create_all(engine)
    t = models
    with engine.begin() as conn:
        journey_id = conn.execute(
            insert(t.Journey.__table__).returning(t.Journey.id),
            {"slug": "bench", "title": "Bench journey", "owner": None, "spec": spec(),
             "checksum": "x", "version": 1, "source": "", "synced_at": NOW},
        ).scalar_one()  # fmt: skip
        managers = max(1, n // 8)
        people = [{"email": f"p{i}@example.com", "name": f"Person {i}", "timezone": "UTC",
                   "country": "", "created_at": NOW, "updated_at": NOW}
                  for i in range(n + managers)]  # fmt: skip
        for start in range(0, len(people), CHUNK):
            conn.execute(insert(t.Person.__table__), people[start : start + CHUNK])
        enrolments = [{"person_id": managers + i + 1, "journey_id": journey_id,
                       "status": "completed", "start_date": date(2027, 3, 1), "shift_days": 0,
                       "checkins_planned": True, "created_at": NOW, "updated_at": NOW}
                      for i in range(n)]  # fmt: skip
        for start in range(0, n, CHUNK):
            conn.execute(insert(t.Enrolment.__table__), enrolments[start : start + CHUNK])
    checkin_id = 0
    for start in range(0, n, CHUNK // 6):
        checkins, ratings = [], []
        for e in range(start + 1, min(n, start + CHUNK // 6) + 1):
            level = {"learner": rnd.choice((1, 2, 2, 3)), "manager": rnd.choice((1, 2, 3))}
            for rater in ("learner", "manager"):
                for checkpoint, order in CHECKPOINTS:
                    checkin_id += 1
                    sent = NOW - timedelta(days=90 - 20 * order)
                    answered = rnd.random() > 0.08
                    checkins.append({"id": checkin_id, "enrolment_id": e,
                        "journey_id": journey_id, "rater": rater, "checkpoint": checkpoint,
                        "state": "sent", "send_at": sent, "sent_at": sent, "rater_id": None,
                        "closes_at": sent + timedelta(days=14), "remind_at": None,
                        "answered_at": sent + timedelta(hours=5) if answered else None,
                    })  # fmt: skip
                    if not answered:
                        continue
                    for b in BEHAVIOURS:
                        lift = 0 if order == 0 else rnd.choice((0, 1, 1, 2))
                        value = None if rnd.random() < 0.06 else min(5, level[rater] + lift)
                        ratings.append({"checkin_id": checkin_id, "enrolment_id": e,
                            "journey_id": journey_id, "behaviour": b, "rater": rater,
                            "checkpoint": checkpoint, "checkpoint_order": order,
                            "value": value, "recorded_at": sent + timedelta(hours=5)})  # fmt: skip
        with engine.begin() as conn:
            conn.execute(insert(t.Checkin.__table__), checkins)
            for i in range(0, len(ratings), CHUNK):
                conn.execute(insert(t.Rating.__table__), ratings[i : i + CHUNK])
    # Statistics first: without them SQLite plans the plain path's self-join badly.
    with engine.begin() as conn:
        conn.exec_driver_sql("ANALYZE")
    # Ratings were bulk-loaded, not saved one by one: write the tallies from them.
    started = time.perf_counter()
    with Session(engine) as session:
        rebuild(session, journey_id)
        session.commit()
    print(f"tallies rebuilt from every rating in {time.perf_counter() - started:.1f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--enrolments", type=int, default=100_000)
    parser.add_argument("--database-url", default="")
    parser.add_argument("--requests", type=int, default=5)
    parser.add_argument("--no-build", action="store_true")
    args = parser.parse_args()
    instance = Path(tempfile.mkdtemp(prefix="nudger-bench-ratings-"))
    url = args.database_url or f"sqlite:///{instance / 'bench.db'}"
    settings = load_settings({"instance_path": instance, "database_url": url,
                              "secret_key": "bench", "base_url": "http://bench.test"})  # fmt: skip
    engine = get_engine(url)
    started = time.perf_counter()
    if not args.no_build:
        build(engine, args.enrolments)
    built = time.perf_counter() - started
    with Session(engine) as session:
        ratings = session.execute(select(func.count()).select_from(models.Rating)).scalar_one()
        create_or_update_admin(session, "bench@example.com", "bench password 123", NOW)
        session.commit()
    app = create_app(settings)
    app.config["NUDGER_CLOCK"] = lambda: NOW
    client = signed_in(app)
    page = client.get("/admin/?journey=bench")
    assert page.status_code == 200 and b"Behaviour change" in page.data
    times = []
    for _ in range(args.requests):
        t0 = time.perf_counter()
        client.get("/admin/?journey=bench").get_data()
        times.append((time.perf_counter() - t0) * 1000)
    panel_ms = statistics.median(times)
    env = {**os.environ, "NUDGER_DATABASE_URL": url, "NUDGER_INSTANCE_PATH": str(instance),
           "NUDGER_SECRET_KEY": "bench"}  # fmt: skip
    nudger = str(Path(sys.executable).parent / "nudger")
    cli = []
    for _ in range(3):
        t0 = time.perf_counter()
        out = subprocess.run([nudger, "ratings", "--format", "json"], env=env,
                             capture_output=True, text=True, check=True)  # fmt: skip
        cli.append((time.perf_counter() - t0) * 1000)
    figures = json.loads(out.stdout)["journeys"][0]["behaviours"][0]["raters"]["learner"]
    cli_ms = statistics.median(cli)
    print(f"database: {engine.dialect.name}; {ratings} ratings; built in {built:.0f} s")
    print(f"  {'ok ' if panel_ms < PANEL_MS else 'SLOW'} {panel_ms:8.1f} ms  dashboard with "
          f"the panel (target {PANEL_MS} ms)")  # fmt: skip
    print(f"  {'ok ' if cli_ms < CLI_MS else 'SLOW'} {cli_ms:8.1f} ms  nudger ratings "
          f"(target {CLI_MS} ms); first behaviour, learners: {figures}")  # fmt: skip
    if panel_ms >= PANEL_MS or cli_ms >= CLI_MS:
        sys.exit(1)


if __name__ == "__main__":
    main()
