"""Benchmark the learner CSV import against bare CSV parsing plus Core inserts.

    .venv/bin/python bench/import.py [--rows 100000] [--database-url URL] [--runs 3]

Each measurement runs in a fresh subprocess on a fresh schema (a new SQLite
file, or a new PostgreSQL schema), so the import's peak RSS is its own.
Targets: the import within 5x of the baseline, and under 300 MB.
"""

from __future__ import annotations

import argparse
import csv
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import Engine, create_engine, insert, text  # noqa: E402
from sqlmodel import Session, SQLModel  # noqa: E402

from nudger import models  # noqa: E402
from nudger.config import load_settings  # noqa: E402
from nudger.roster import import_roster  # noqa: E402

NOW = datetime(2027, 3, 1, 7, 0, tzinfo=UTC)
SLUG = "bench-journey"
ZONES = [
    ("Europe/London", "GB"), ("America/New_York", "US"), ("Europe/Paris", "FR"),
    ("Asia/Tokyo", "JP"), ("Australia/Sydney", "AU"), ("Europe/Berlin", "DE"),
    ("Asia/Kolkata", "IN"), ("America/Sao_Paulo", "BR"),
]  # fmt: skip
HEADER = ["email", "first_name", "last_name", "manager_email", "manager_name", "journey",
          "start_date", "timezone", "country"]  # fmt: skip


def manager_of(i: int) -> tuple[str, str]:
    """Return learner i's manager: a 25-wide tree, every other team led by an outsider."""
    if i == 0:
        return "ceo@corp.example.net", "The CEO"
    team = (i - 1) // 25
    if team % 2 == 0:
        return f"learner{team}@example.com", ""  # a manager who is also a learner
    return f"manager{team}@corp.example.net", f"Manager {team}"  # not in the file


def write_csv(path: Path, rows: int) -> None:
    """Write `rows` learners with managers, varied zones, countries and start dates."""
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(HEADER)
        for i in range(rows):
            tz, country = ZONES[i % len(ZONES)]
            start = "" if i % 3 else (date(2027, 3, 8) + timedelta(days=i % 20)).isoformat()
            manager, manager_name = manager_of(i)
            row = [f"learner{i}@example.com", f"First{i}", f"Last{i}", manager, manager_name,
                   SLUG, start, tz, country]  # fmt: skip
            writer.writerow(row)


def fresh_engine(url: str) -> tuple[Engine, str]:
    """Return an engine on an empty schema (a new SQLite file or PostgreSQL schema)."""
    schema = ""
    if url.startswith("sqlite"):
        engine = create_engine(url)
    else:
        schema = f"bench_{uuid.uuid4().hex[:12]}"
        with create_engine(url).begin() as conn:
            conn.execute(text(f"CREATE SCHEMA {schema}"))
        # public stays on the path for pg_trgm's operator classes
        engine = create_engine(url, connect_args={"options": f"-csearch_path={schema},public"})
    SQLModel.metadata.create_all(engine)
    return engine, schema


def drop(engine: Engine, schema: str, url: str) -> None:
    """Remove the schema the measurement used."""
    engine.dispose()
    if schema:
        with create_engine(url).begin() as conn:
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))


def baseline(engine, path: Path) -> None:
    """Parse the file and insert its people and enrolments with bare Core executemany."""
    people, pairs = {}, []
    with path.open(newline="", encoding="utf-8") as f:
        for r in csv.DictReader(f):
            stamps = {"created_at": NOW, "updated_at": NOW}
            name = f"{r['first_name']} {r['last_name']}"
            learner = dict(
                email=r["email"], name=name, timezone=r["timezone"], country=r["country"]
            )
            manager = dict(email=r["manager_email"], name=r["manager_name"], timezone="UTC")
            people[learner["email"]] = learner | stamps
            people.setdefault(manager["email"], manager | stamps | {"country": ""})
            pairs.append((r["email"], r["start_date"]))
    person, enrolment = models.Person.__table__, models.Enrolment.__table__
    with engine.begin() as conn:
        returned = conn.execute(insert(person).returning(person.c.id, person.c.email),
                                list(people.values()))  # fmt: skip
        ids = {r.email: r.id for r in returned}
        conn.execute(insert(enrolment), [
            dict(person_id=ids[email], journey_id=1, status="active", shift_days=0,
                 start_date=date.fromisoformat(start) if start else date(2027, 3, 2),
                 reminders_muted=False, next_action_at=NOW,
                 created_at=NOW, updated_at=NOW)
            for email, start in pairs
        ])  # fmt: skip


def add_journey(engine) -> None:
    """Add the journey the CSV names (three steps, weekdays, holidays on)."""
    spec = {"slug": SLUG, "title": "Bench", "schedule": {"send_time": "09:00"}, "steps": []}
    with Session(engine) as session:
        journey = models.Journey(slug=SLUG, title="Bench", spec=spec, checksum="x")
        session.add(journey)
        session.commit()


def run_import(engine, path: Path, url: str) -> dict:
    """Import the file with import_roster and return its counts."""
    settings = load_settings(
        {"instance_path": Path(tempfile.gettempdir()), "database_url": url, "secret_key": "bench"}
    )
    with Session(engine, expire_on_commit=False) as session:
        result = import_roster(session, settings, path, now=NOW)
    if not result.ok:
        raise SystemExit(f"import rejected: {result.errors[:5]}")
    return {"people": result.people_created, "enrolments": result.enrolments_created}


def child(part: str, path: Path, url: str, trace: bool) -> None:
    """Measure one part in this (fresh) process and print one JSON line."""
    engine, schema = fresh_engine(url)
    add_journey(engine)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if trace:
        tracemalloc.start()
    started, cpu_started = time.perf_counter(), time.process_time()
    counts = baseline(engine, path) if part == "baseline" else run_import(engine, path, url)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    peak = tracemalloc.get_traced_memory()[1] if trace else None
    rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    drop(engine, schema, url)
    print(
        json.dumps(
            {
                "seconds": seconds,
                "cpu": cpu,
                "rss_mb": rss_after / 1024,
                "counts": counts,
                "rss_delta_mb": (rss_after - rss_before) / 1024,
                "traced_peak_mb": peak / 2**20 if peak else None,
            }
        )
    )


def measure(part: str, path: Path, url: str, trace: bool = False) -> dict:
    """Run one part in a subprocess and return its JSON report."""
    cmd = [sys.executable, __file__, "--child", part, "--csv", str(path), "--database-url", url]
    done = subprocess.run(cmd + (["--trace"] if trace else []), capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{part} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def summary(kind: str, rows: int, runs: list[tuple[dict, dict]], traced: float | None) -> str:
    """Return medians of wall and CPU times, the ratios and the memory, against the targets."""

    def median(part: int, key: str) -> float:
        return statistics.median(run[part][key] for run in runs)

    wall, cpu = (median(0, "seconds"), median(1, "seconds")), (median(0, "cpu"), median(1, "cpu"))
    per_run = statistics.median(imp["seconds"] / base["seconds"] for base, imp in runs)
    lines = [
        f"{kind}, {rows:,} rows, median of {len(runs)} run(s)       wall      CPU (this process)",
        f"  baseline (csv + Core executemany) {wall[0]:7.2f} s {cpu[0]:7.2f} s",
        f"  import_roster                     {wall[1]:7.2f} s {cpu[1]:7.2f} s",
        f"  ratio of medians                  {wall[1] / wall[0]:7.2f} x {cpu[1] / cpu[0]:7.2f} x"
        "   (target <= 5x)",
        f"  median of per-run ratios          {per_run:7.2f} x",
        f"  import RSS growth {median(1, 'rss_delta_mb'):.0f} MB, peak RSS "
        f"{median(1, 'rss_mb'):.0f} MB (target < 300 MB)",
    ]
    if traced is not None:
        lines.append(f"  import tracemalloc peak {traced:.0f} MB")
    return "\n".join(lines)


def main() -> None:
    """Generate the roster, run both parts `--runs` times, print medians against the targets."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--database-url", default="", help="default: SQLite files in a temp dir")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--tracemalloc", action="store_true", help="one more, traced, import run")
    parser.add_argument("--child", choices=["baseline", "import"], help=argparse.SUPPRESS)
    parser.add_argument("--csv", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--trace", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.child, args.csv, args.database_url, args.trace)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "roster.csv"
        write_csv(path, args.rows)
        runs = []
        for i in range(args.runs):
            base = measure("baseline", path, args.database_url or f"sqlite:///{tmp}/base{i}.db")
            imp = measure("import", path, args.database_url or f"sqlite:///{tmp}/import{i}.db")
            runs.append((base, imp))
            print(f"run {i + 1}: baseline {base['seconds']:.2f} s, import {imp['seconds']:.2f} s "
                  f"{imp['counts']}, RSS +{imp['rss_delta_mb']:.0f} MB", flush=True)  # fmt: skip
        traced = None
        if args.tracemalloc:
            url = args.database_url or f"sqlite:///{tmp}/traced.db"
            traced = measure("import", path, url, trace=True)["traced_peak_mb"]
    kind = "PostgreSQL" if args.database_url.startswith("postgres") else "SQLite"
    print(summary(kind, args.rows, runs, traced))


if __name__ == "__main__":
    main()
