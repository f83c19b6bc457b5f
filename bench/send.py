"""Benchmark sending: `nudger tick` + `nudger worker --burst` against bare smtplib.

    .venv/bin/python bench/send.py [--messages 5000] [--runs 3] [--workers 1 2]
        [--database-url URL] [--redis-url URL] [--batch-size 100]
        [--sink fast|aiosmtpd] [--no-pipelining]

Both measurements use one fast loopback SMTP sink (bench/smtpsink.py, in its
own process), so they see the same server:

- nudger: a fresh schema seeded with `--messages` learners whose first step
  (with a calendar invite) is due; then the real `nudger tick --now ...` and
  `N` real `nudger worker --burst` processes, timed from the start of the tick
  to the exit of the last worker (process start-up included). The sink's count
  of messages and distinct Message-IDs, and the outbox rows' states, are
  checked after every run.
- bare smtplib: one connection, `sendmail` of one of the messages Nudger just
  sent (the same bytes, so the same size), `--messages` times.

Runs alternate (nudger, smtplib, nudger, ...) so background load hits both
alike; the medians are printed with the ratio, and the CPU seconds each side
used (wall time on a busy machine says more about the machine). Target: one
worker at least 0.5 of bare smtplib (goal 0.7), and two workers close to twice
one. The sink offers PIPELINING (RFC 2920), as production relays do: Nudger
uses it and smtplib does not. `--no-pipelining` measures without it, and
`--sink aiosmtpd` against the server the tests use (which never offers it).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import smtplib
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, date, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import create_engine, func, text  # noqa: E402
from sqlmodel import Session, SQLModel, select  # noqa: E402

from nudger import models  # noqa: E402
from nudger.config import load_settings  # noqa: E402

NOW = datetime(2027, 3, 3, 23, 0, tzinfo=UTC)  # a Wednesday: day 0 (Mon 1 March) is due everywhere
START = date(2027, 3, 1)
ZONES = [
    ("Europe/London", "GB"),
    ("America/New_York", "US"),
    ("Europe/Paris", "FR"),
    ("Asia/Tokyo", "JP"),
    ("Australia/Sydney", "AU"),
    ("Europe/Berlin", "DE"),
    ("Asia/Kolkata", "IN"),
    ("America/Sao_Paulo", "BR"),
]
BODY = """Read the one-pager **twice**: once for the idea, once for the words.

Then note one real situation from this week where feedback would have helped:

- what happened (the *situation*),
- what the person did (the *behaviour*),
- what it changed (the *impact*).

Keep the note: you will use it in step 3 with a colleague. See
[the SBI model](https://intranet.example.com/sbi) if you want more background.
"""
STEPS = [
    ("read-sbi", 0, "read", "Read the SBI one-pager", 15, BODY),
    ("spot-it", 5, "experiment", "Spot one feedback moment a day", 10, "Write them down."),
    ("discuss", 10, "discuss", "Discuss your notes with a peer", 30, "Book 30 minutes."),
    ("practise", 15, "practice", "Practise SBI on a small thing", 20, "Keep it small."),
    ("feedback", 20, "feedback", "Ask your manager for feedback", 30, "Ask for one thing."),
    ("reflect", 25, "reflect", "Reflect on what changed", 15, "Five lines."),
]
SPEC = {
    "slug": "giving-feedback",
    "title": "Giving feedback that lands",
    "summary": "Six weeks from avoiding feedback conversations to holding them well.",
    "schedule": {
        "send_time": "09:00",
        "invite_time": "10:00",
        "holidays": True,
        "due_after": 2,
        "days": ["mon", "tue", "wed", "thu", "fri"],
    },
    "reminders": [{"after": 1}, {"after": 4}],
    "escalations": [{"after": 3, "notify": "manager"}],
    "digest": {"every": "day", "at": "08:00", "on": "mon"},
}


def free_port() -> int:
    """Return a loopback port that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_sink(kind: str = "fast", pipelining: bool = True) -> tuple[subprocess.Popen, int]:
    """Start bench/smtpsink.py in its own process; return it and its port."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "bench" / "smtpsink.py"), str(port)]
        + (["--aiosmtpd"] if kind == "aiosmtpd" else [])
        + ([] if pipelining else ["--no-pipelining"]),
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    proc.stdout.readline()  # "listening on ..."
    return proc, port


def children_cpu() -> float:
    """Return the CPU seconds used by this process's finished child processes."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def process_cpu(pid: int) -> float:
    """Return the CPU seconds a running process has used (from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def sink_command(port: int, verb: str) -> list[int]:
    """Send XSTAT or XRESET to the sink; return the numbers it answers."""
    with smtplib.SMTP("127.0.0.1", port) as s:
        code, reply = s.docmd(verb)
        assert code == 250, reply
        return [int(x) for x in reply.split() if x.isdigit()]


def fresh_database(url: str) -> tuple[str, str]:
    """Return a URL to an empty schema (a new SQLite file or PostgreSQL schema)."""
    if url.startswith("sqlite"):
        return url, ""
    schema = f"bench_send_{uuid.uuid4().hex[:10]}"
    with create_engine(url).begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    sep = "&" if "?" in url else "?"
    return f"{url}{sep}options=-csearch_path%3D{schema}%2Cpublic", schema  # public: pg_trgm


def drop_database(url: str, base_url: str, schema: str) -> None:
    """Remove the run's schema or file."""
    if schema:
        with create_engine(base_url).begin() as conn:
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
    elif url.startswith("sqlite:///"):
        for suffix in ("", "-wal", "-shm"):
            Path(url.removeprefix("sqlite:///") + suffix).unlink(missing_ok=True)


def seed(url: str, messages: int) -> None:
    """Create the tables, one journey, and `messages` learners whose first step is due."""
    engine = create_engine(url)
    SQLModel.metadata.create_all(engine)
    with Session(engine) as session:
        journey = models.Journey(
            slug=SPEC["slug"],
            title=SPEC["title"],
            owner="learning@example.com",
            spec={**SPEC, "steps": []},
            checksum="bench",
        )
        session.add(journey)
        session.flush()
        for position, (key, day, kind, title, minutes, body) in enumerate(STEPS):
            session.add(
                models.Step(
                    journey_id=journey.id,
                    key=key,
                    position=position,
                    day=day,
                    kind=kind,
                    title=title,
                    minutes=minutes,
                    body=body,
                    link=f"https://intranet.example.com/{key}",
                )
            )
        people = [
            models.Person(
                email=f"learner{i}@example.com",
                name=f"Learner {i} Example",
                timezone=ZONES[i % len(ZONES)][0],
                country=ZONES[i % len(ZONES)][1],
            )
            for i in range(messages)
        ]
        session.add_all(people)
        session.flush()
        session.add_all(
            models.Enrolment(
                person_id=p.id,
                journey_id=journey.id,
                start_date=START,
                next_action_at=datetime(2027, 1, 1, tzinfo=UTC),
            )
            for p in people
        )
        session.commit()
    engine.dispose()


def nudger_env(url: str, redis_url: str, smtp_url: str, batch: int, instance: Path) -> dict:
    """Return the environment the nudger processes run with."""
    return {
        **os.environ,
        "NUDGER_DATABASE_URL": url,
        "NUDGER_REDIS_URL": redis_url,
        "NUDGER_SMTP_URL": smtp_url,
        "NUDGER_BATCH_SIZE": str(batch),
        "NUDGER_INSTANCE_PATH": str(instance),
        "NUDGER_SECRET_KEY": "bench-secret",
        "NUDGER_FROM": "Nudger <nudger@example.org>",
        "NUDGER_BASE_URL": "https://nudger.example.org",
    }


def run_nudger(
    args, sink: subprocess.Popen, port: int, workers: int, tmp: Path, keep_sample: bool
) -> dict:
    """Time one tick + `workers` burst workers on a fresh schema; check every message arrived."""
    url, schema = fresh_database(args.database_url or f"sqlite:///{tmp}/send-{uuid.uuid4().hex}.db")
    seed(url, args.messages)
    env = nudger_env(url, args.redis_url, f"smtp://127.0.0.1:{port}", args.batch_size, tmp)
    from rq import Queue

    from nudger.queue import QUEUES, redis_connection

    settings = load_settings({"instance_path": tmp, "redis_url": args.redis_url})
    for name in QUEUES:
        Queue(name, connection=redis_connection(settings)).empty()
    sink_command(port, "XRESET")
    nudger = [sys.executable, "-m", "nudger.cli"]
    cpu, sink_cpu = children_cpu(), process_cpu(sink.pid)
    started = time.perf_counter()
    tick = subprocess.run(
        [*nudger, "tick", "--now", NOW.isoformat(), "--json"],
        env=env,
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    ticked = time.perf_counter()
    if tick.returncode:
        raise SystemExit(f"tick failed:\n{tick.stderr}")
    procs = [
        subprocess.Popen(
            [*nudger, "worker", "--burst"], env=env, cwd=ROOT, stderr=subprocess.PIPE, text=True
        )
        for _ in range(workers)
    ]
    for p in procs:
        _, err = p.communicate()
        if p.returncode:
            raise SystemExit(f"worker failed:\n{err}")
    seconds = time.perf_counter() - started
    cpu, sink_cpu = children_cpu() - cpu, process_cpu(sink.pid) - sink_cpu
    received, distinct, size = sink_command(port, "XSTAT")
    engine = create_engine(url)
    with Session(engine) as session:
        query = select(models.Outbox.state, func.count()).group_by(models.Outbox.state)
        states = {state: n for state, n in session.execute(query)}
        sample = _sample_message(session, url, tmp) if keep_sample else None
    engine.dispose()
    drop_database(url, args.database_url, schema)
    if received != args.messages or distinct != args.messages or states != {"sent": received}:
        raise SystemExit(f"lost or duplicated mail: sink {received}/{distinct}, rows {states}")
    return {
        "seconds": seconds,
        "tick": ticked - started,
        "bytes": size / received,
        "sample": sample,
        "tick_counts": json.loads(tick.stdout),
        "cpu": cpu,
        "sink_cpu": sink_cpu,
    }


def _sample_message(session: Session, url: str, tmp: Path) -> bytes:
    """Compose one of the sent messages again, byte for byte as the worker built it."""
    from nudger.mail.compose import compose
    from nudger.outbox.transport.smtp_data import wire

    settings = load_settings(
        {
            "instance_path": tmp,
            "database_url": url,
            "secret_key": "bench-secret",
            "from_addr": "Nudger <nudger@example.org>",
            "base_url": "https://nudger.example.org",
        }
    )
    row = session.exec(select(models.Outbox).order_by(models.Outbox.id)).first()
    return wire(compose(session, settings, row, NOW))  # CRLF, exactly as the worker sends it


def run_smtplib(sink: subprocess.Popen, port: int, message: bytes, count: int) -> dict:
    """Time bare smtplib sending `message` `count` times over one connection."""
    sink_command(port, "XRESET")
    cpu, sink_cpu = time.process_time(), process_cpu(sink.pid)
    started = time.perf_counter()
    with smtplib.SMTP("127.0.0.1", port) as s:
        for _ in range(count):
            s.sendmail("nudger@example.org", ["learner@example.com"], message)
    seconds = time.perf_counter() - started
    cpu, sink_cpu = time.process_time() - cpu, process_cpu(sink.pid) - sink_cpu
    received = sink_command(port, "XSTAT")[0]
    assert received == count, f"smtplib: sink got {received} of {count}"
    return {"seconds": seconds, "cpu": cpu, "sink_cpu": sink_cpu}


def main() -> None:
    """Alternate the measurements, then print medians, rates and ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--database-url", default="", help="default: a SQLite file per run")
    parser.add_argument(
        "--redis-url",
        default=os.environ.get("NUDGER_REDIS_URL", ""),
        help="default: NUDGER_REDIS_URL, else the embedded Redis",
    )
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument(
        "--sink",
        choices=["fast", "aiosmtpd"],
        default="fast",
        help="the loopback SMTP server both measurements send to",
    )
    parser.add_argument(
        "--no-pipelining",
        action="store_true",
        help="the fast sink does not offer PIPELINING (aiosmtpd never does)",
    )
    args = parser.parse_args()
    sink, port = start_sink(args.sink, pipelining=not args.no_pipelining)
    runs: dict[str, list[dict]] = {"smtplib": []}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            message = b""
            for run in range(args.runs):
                for workers in args.workers:
                    r = run_nudger(args, sink, port, workers, Path(tmp), keep_sample=not message)
                    message = message or r["sample"]
                    runs.setdefault(f"x{workers}", []).append(r)
                    print(
                        f"run {run + 1}: tick + {workers} worker(s): {r['seconds']:.2f} s "
                        f"(tick {r['tick']:.2f} s; CPU {r['cpu']:.1f} s, "
                        f"sink {r['sink_cpu']:.1f} s), {r['bytes']:.0f} bytes/message",
                        flush=True,
                    )
                b = run_smtplib(sink, port, message, args.messages)
                runs["smtplib"].append(b)
                print(
                    f"run {run + 1}: bare smtplib: {b['seconds']:.2f} s (CPU {b['cpu']:.1f} s, "
                    f"sink {b['sink_cpu']:.1f} s), {len(message)} bytes",
                    flush=True,
                )
    finally:
        sink.terminate()
        sink.wait()

    def median(key: str, field: str) -> float:
        return statistics.median(r[field] for r in runs[key])

    n = args.messages
    pipelining = args.sink == "fast" and not args.no_pipelining
    sink_name = f"{args.sink} sink ({'with' if pipelining else 'no'} PIPELINING)"
    db = "PostgreSQL" if args.database_url.startswith("postgres") else "SQLite"
    load = os.getloadavg()[0]
    print(
        f"\n{n:,} step emails with invites, {db}, batch size {args.batch_size}, {sink_name}, "
        f"median of {args.runs} runs, {os.cpu_count()} CPUs (load now {load:.1f}):"
    )
    base = n / median("smtplib", "seconds")
    print(
        f"  bare smtplib, one connection:  {base:6.0f} messages/s   "
        f"{1000 * median('smtplib', 'cpu') / n:.2f} ms CPU/message"
    )
    one = None
    for workers in args.workers:
        key = f"x{workers}"
        rate = n / median(key, "seconds")
        one = one or rate
        print(
            f"  nudger tick + {workers} worker(s):     {rate:6.0f} messages/s   "
            f"{1000 * median(key, 'cpu') / n:.2f} ms CPU/message (tick and workers, "
            f"start-up included)   ratio {rate / base:.2f}"
            + (f", {rate / one:.2f}x one worker" if workers > 1 else "")
        )
    print(f"  the tick alone (process start-up included): median {median('x1', 'tick'):.2f} s")


if __name__ == "__main__":
    main()
