"""Benchmark the tick: its cost must follow the work due, not the enrolments held.

    .venv/bin/python bench/tick.py [--sizes 10000,100000] [--database-url URL]
                                   [--runs 5] [--due-fraction 0.01 | --due-count 100]
                                   [--redis-url redis://127.0.0.1:6379/13]

For each size it builds, with bulk Core inserts, N learners in eight time zones
and countries on a ten-step journey, started over the past three weeks. Every
step already due has been sent (older ones done, the latest open, with its due
date), and `next_action_at` is each enrolment's next send. A share of them
(--due-fraction, default 1%, or exactly --due-count) is due at the tick: their
latest step has not gone out yet. The built database is kept as a template;
each run gets a fresh copy (a SQLite file copy, or CREATE DATABASE ... TEMPLATE),
ticks once at another instant to warm the connection (nothing is due then),
clears the calendar caches, and times one tick at the benchmark instant. With
--redis-url the timed tick also enqueues its send jobs, as the clock does.

Prints the median tick time per size and the ratio of the largest to the
smallest. Targets: 100k within 1.5x of 10k, and under one second.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import create_engine, insert, text  # noqa: E402
from sqlalchemy.engine import Engine, make_url  # noqa: E402
from sqlmodel import Session, SQLModel, select  # noqa: E402

from nudger import calendar, models  # noqa: E402
from nudger.config import load_settings  # noqa: E402
from nudger.db import get_engine  # noqa: E402
from nudger.schedule import JourneyPlan  # noqa: E402
from nudger.tick.run import tick  # noqa: E402

NOW = datetime(2027, 3, 10, 12, 0, tzinfo=UTC)  # a Wednesday
# A few other enrolments are due half an hour earlier: a warm-up tick then runs
# every statement once (SQLAlchemy compiles per engine), as a clock's first minute does.
WARM_UP = NOW - timedelta(minutes=30)
WARM_SET = 20
ZONES = [
    ("Europe/London", "GB"), ("America/New_York", "US"), ("Europe/Paris", "FR"),
    ("Asia/Tokyo", "JP"), ("Australia/Sydney", "AU"), ("Europe/Berlin", "DE"),
    ("Asia/Kolkata", "IN"), ("America/Los_Angeles", "US"),
]  # fmt: skip
SPEC = {
    "slug": "bench",
    "title": "Bench journey",
    "schedule": {"send_time": "09:00", "invite_time": "10:00", "due_after": 2,
                 "days": ["mon", "tue", "wed", "thu", "fri"], "holidays": True},
    "reminders": [{"after": 1}, {"after": 4}],
    "escalations": [{"after": 3, "notify": "manager"}, {"after": 8, "notify": "admin"}],
    "digest": {"every": "day", "at": "08:00", "on": "mon"},
}  # fmt: skip
DAYS = [0, 2, 4, 6, 8, 10, 12, 14, 16, 18]
BATCH = 5000


def build(engine: Engine, size: int, due: int) -> int:
    """Fill an empty schema; return how many enrolments are due at NOW."""
    SQLModel.metadata.create_all(engine)
    with Session(engine) as session:
        journey = models.Journey(slug="bench", title="Bench", owner="learning@example.com",
                                 spec=SPEC, checksum="bench")  # fmt: skip
        session.add(journey)
        session.flush()
        for i, day in enumerate(DAYS):
            session.add(models.Step(journey_id=journey.id, key=f"step-{i}", position=i, day=day,
                                    kind="read", title=f"Step {i}", minutes=15))  # fmt: skip
        session.commit()
        steps = list(session.exec(select(models.Step).order_by(models.Step.position)))
        plan = JourneyPlan.build(journey, steps)
        journey_id = journey.id
    every = max(1, size // due) if due else 0
    people, enrolments, rows, due_now, warm = [], [], [], 0, 0
    for i in range(size):
        tz, country = ZONES[i % len(ZONES)]
        cal = plan.country_calendar(country)
        start = NOW.date() - timedelta(days=1 + (i * 7919) % 21)  # spread over three weeks
        sends = [plan.send_at(cal, tz, start, 0, s) for s in plan.steps]
        sent = [k for k, at in enumerate(sends) if at <= WARM_UP]
        catching_up = len(sent) > 1
        if every and i % every == 0 and due_now < due and catching_up:
            sent.pop()  # its latest step is due and not yet sent: the tick sends it
            next_at, due_now = NOW - timedelta(minutes=1), due_now + 1
        elif warm < WARM_SET and catching_up:
            sent.pop()
            next_at, warm = WARM_UP - timedelta(minutes=30), warm + 1
        else:
            next_at = sends[len(sent)] if len(sent) < len(sends) else None
        people.append({"id": i + 1, "email": f"learner{i}@example.com", "name": f"Learner {i}",
                       "timezone": tz, "country": country, "created_at": NOW,
                       "updated_at": NOW})  # fmt: skip
        enrolments.append({"id": i + 1, "person_id": i + 1, "journey_id": journey_id,
                           "status": "active", "start_date": start, "shift_days": 0,
                           "next_action_at": next_at, "reminders_muted": False,
                           "created_at": NOW, "updated_at": NOW})  # fmt: skip
        for k in sent:
            latest = k == sent[-1]
            rows.append({"enrolment_id": i + 1, "step_id": plan.steps[k].id,
                         "status": "sent" if latest else "done", "sent_at": sends[k],
                         "due_at": plan.due_at(cal, tz, sends[k], plan.steps[k]),
                         "done_at": None if latest else sends[k] + timedelta(hours=5),
                         "invite_start": sends[k] + timedelta(hours=1), "invite_sequence": 0,
                         "reminders_sent": 0, "escalation_level": 0, "note_shared": True,
                         "awaiting_confirmation": False})  # fmt: skip
    with engine.begin() as conn:
        for table, values in ((models.Person, people), (models.Enrolment, enrolments),
                              (models.EnrolmentStep, rows)):  # fmt: skip
            for start in range(0, len(values), BATCH):
                conn.execute(insert(table.__table__), values[start : start + BATCH])
        if engine.dialect.name == "postgresql":
            for table in ("person", "enrolment"):
                sql = f"SELECT setval('{table}_id_seq', (SELECT max(id) FROM {table}))"
                conn.execute(text(sql))
        conn.execute(text("ANALYZE"))
    return due_now


class Store:
    """A built database kept as a template, copied afresh for every run."""

    def __init__(self, url: str, tmp: Path, size: int) -> None:
        self.url, self.tmp, self.size = url, tmp, size
        self.sqlite = not url or url.startswith("sqlite")
        self.name = f"bench_tick_{size}_{uuid.uuid4().hex[:8]}"

    def template_url(self) -> str:
        if self.sqlite:
            return f"sqlite:///{self.tmp / (self.name + '.db')}"
        return make_url(self.url).set(database=self.name).render_as_string(hide_password=False)

    def create_template(self) -> Engine:
        if not self.sqlite:
            self._admin(f'CREATE DATABASE "{self.name}"')
        return create_engine(self.template_url())

    def copy(self, run: int) -> str:
        """Return the URL of a fresh copy of the template."""
        if self.sqlite:
            path = self.tmp / f"{self.name}-run{run}.db"
            shutil.copyfile(self.tmp / (self.name + ".db"), path)
            url = f"sqlite:///{path}"
        else:
            name = f"{self.name}_run{run}"
            self._admin(f'CREATE DATABASE "{name}" TEMPLATE "{self.name}" STRATEGY FILE_COPY')
            url = make_url(self.url).set(database=name).render_as_string(hide_password=False)
        # The copy leaves the disk busy writing it back; the tick's commits would wait on that.
        os.sync()
        return url

    def drop(self, url: str) -> None:
        get_engine(url).dispose()
        if self.sqlite:
            Path(make_url(url).database).unlink(missing_ok=True)
        else:
            self._admin(f'DROP DATABASE IF EXISTS "{make_url(url).database}"')

    def _admin(self, sql: str) -> None:
        admin = create_engine(self.url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(sql))
        admin.dispose()


def timed_tick(url: str, tmp: Path, redis_url: str) -> tuple[float, float, dict]:
    """Warm up on another instant, then time one tick at NOW on a fresh copy.

    Returns wall seconds, this process's CPU seconds (less disturbed by other
    work on a shared machine; with PostgreSQL it leaves out the server's share)
    and the tick's counts.
    """
    settings = load_settings({"instance_path": tmp, "database_url": url, "redis_url": redis_url,
                              "secret_key": "bench", "smtp_url": "outbox:"})  # fmt: skip
    engine = get_engine(url)
    with Session(engine, expire_on_commit=False) as session:
        tick(session, settings, WARM_UP, enqueue=bool(redis_url))
        # As if a worker had sent them: the timed tick must not re-enqueue them.
        session.execute(text("UPDATE outbox SET state = 'sent'"))
        session.commit()
    if redis_url:
        from nudger.queue import queue

        queue(settings).empty()
    calendar._add_working_days.cache_clear()
    calendar.local_instant.cache_clear()
    with Session(engine, expire_on_commit=False) as session:
        started, cpu = time.perf_counter(), time.process_time()
        counts = tick(session, settings, NOW, enqueue=bool(redis_url))
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    if redis_url:
        from nudger.queue import queue

        queue(settings).empty()
    return seconds, cpu, counts


def measure(size: int, args, tmp: Path) -> dict:
    """Build one size and time `args.runs` ticks on fresh copies."""
    store = Store(args.database_url, tmp, size)
    engine = store.create_template()
    due = args.due_count if args.due_count is not None else round(size * args.due_fraction)
    started = time.perf_counter()
    due_now = build(engine, size, due)
    engine.dispose()
    print(f"{size:,} enrolments built in {time.perf_counter() - started:.1f}s "
          f"({due_now} due at {NOW.isoformat()})", flush=True)  # fmt: skip
    times, cpus = [], []
    for run in range(args.runs):
        url = store.copy(run)
        try:
            seconds, cpu, counts = timed_tick(url, tmp, args.redis_url)
        finally:
            store.drop(url)
        times.append(seconds)
        cpus.append(cpu)
        print(f"  run {run + 1}: {seconds * 1000:.0f} ms (CPU {cpu * 1000:.0f} ms)  {counts}",
              flush=True)  # fmt: skip
        if counts.get("step", 0) != due_now:
            raise SystemExit(f"expected {due_now} step emails, the tick wrote {counts}")
    store.drop(store.template_url())
    return {"size": size, "due": due_now, "median": statistics.median(times),
            "cpu": statistics.median(cpus)}  # fmt: skip


def main() -> None:
    """Measure every size and print medians and the ratio against the targets."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--database-url", default="", help="PostgreSQL server (default SQLite)")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--due-fraction", type=float, default=0.01)
    parser.add_argument("--due-count", type=int, help="exactly this many due, at every size")
    parser.add_argument("--redis-url", default="", help="enqueue send jobs to this Redis too")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        results = [measure(size, args, Path(tmp)) for size in sizes]
    kind = "PostgreSQL" if args.database_url.startswith("postgres") else "SQLite"
    enqueue = "with enqueue to Redis" if args.redis_url else "without enqueue"
    print(f"\n{kind}, {enqueue}, median of {args.runs} runs:")
    for r in results:
        per_due = r["median"] / r["due"] * 1e6 if r["due"] else 0
        print(f"  {r['size']:>9,} enrolments, {r['due']:>5} due: {r['median'] * 1000:7.0f} ms, "
              f"CPU {r['cpu'] * 1000:5.0f} ms ({per_due:.0f} us per due enrolment)")  # fmt: skip
    if len(results) > 1:
        first, last = results[0], results[-1]
        ratio, cpu_ratio = last["median"] / first["median"], last["cpu"] / first["cpu"]
        work = last["due"] / first["due"] if first["due"] else float("nan")
        print(f"  ratio {last['size']:,}/{first['size']:,}: {ratio:.2f}x wall, "
              f"{cpu_ratio:.2f}x CPU (work due: {work:.1f}x; target <= 1.5x); largest under 1 s: "
              f"{last['median'] < 1}")  # fmt: skip


if __name__ == "__main__":
    main()
