"""Benchmark escalations and manager digests against step sending, in one run.

    .venv/bin/python bench/digest.py [--learners 50000] [--managers 2000] [--behind 0.2]
        [--database-url URL] [--sample 5000] [--batch-size 100]

On a fresh schema (a new SQLite file, or a new PostgreSQL schema), with
`--learners` learners in Europe/London split evenly under `--managers`
managers, on a two-step journey (reminder after 1 working day overdue, the
manager hears after 1, daily digest at 08:00), it runs the real tick and
`outbox.send_batch` into bench/smtpsink.py (a fast loopback SMTP sink in its
own process), timing:

1. the step tick (Mon 1 March, 09:00): every learner's first step;
2. step sending: `--sample` of those emails, batches of `--batch-size`;
3. the escalation tick (Thu 4 March, 09:00) once `--behind` of the learners
   have not done the step: a reminder each and an event for their manager;
4. an idle tick a minute later: what every clock minute costs while those
   events wait for the next digest time;
5. the digest tick (Fri 5 March, 08:00): one digest row per manager;
6. digest sending: all of them, the same way as the steps.

Step and digest sending are measured the same way in the same run, so their
rates compare directly. Nothing here is mocked: the counts the sink reports
are checked against the outbox.
"""

from __future__ import annotations

import argparse
import os
import smtplib
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import create_engine, func, insert, text, update  # noqa: E402
from sqlalchemy.engine import Engine  # noqa: E402
from sqlmodel import Session, SQLModel, select  # noqa: E402

from nudger import models  # noqa: E402
from nudger.config import load_settings  # noqa: E402
from nudger.outbox.sending import send_batch  # noqa: E402
from nudger.tick.run import tick  # noqa: E402

START = date(2027, 3, 1)  # a Monday
STEP_TICK = datetime(2027, 3, 1, 9, 0, tzinfo=UTC)  # London is on GMT: 09:00 local
ESCALATION_TICK = datetime(2027, 3, 4, 9, 0, tzinfo=UTC)  # due Wed 3rd, 1 working day over
DIGEST_TICK = datetime(2027, 3, 5, 8, 0, tzinfo=UTC)
OWNER = "learning@example.com"
BODY = "Read it **twice**, then note one real situation from this week.\n\n- situation\n- impact"
SPEC = {
    "slug": "giving-feedback",
    "title": "Giving feedback that lands",
    "schedule": {"send_time": "09:00", "invite_time": "10:00", "holidays": True, "due_after": 2,
                 "days": ["mon", "tue", "wed", "thu", "fri"]},
    "reminders": [{"after": 1}],
    "escalations": [{"after": 1, "notify": "manager"}],
    "digest": {"every": "day", "at": "08:00", "on": "mon"},
}  # fmt: skip


def start_sink() -> tuple[subprocess.Popen, int]:
    """Start bench/smtpsink.py in its own process; return it and its port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "bench" / "smtpsink.py"), str(port)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    proc.stdout.readline()  # "listening on ..."
    return proc, port


def sink(port: int, verb: str) -> list[int]:
    """Send XSTAT or XRESET to the sink; return the numbers it answers."""
    with smtplib.SMTP("127.0.0.1", port) as s:
        code, reply = s.docmd(verb)
        assert code == 250, reply
        return [int(x) for x in reply.split() if x.isdigit()]


def fresh_engine(url: str, tmp: Path) -> tuple[Engine, str, str]:
    """Return an engine on an empty schema, the URL it uses, and the schema to drop."""
    if not url:
        url = f"sqlite:///{tmp / 'digest.db'}"
        return create_engine(url), url, ""
    schema = f"bench_digest_{uuid.uuid4().hex[:10]}"
    with create_engine(url).begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    sep = "&" if "?" in url else "?"
    scoped = f"{url}{sep}options=-csearch_path%3D{schema}%2Cpublic"  # public: pg_trgm
    return create_engine(scoped, pool_size=5), scoped, schema


def seed(engine: Engine, learners: int, managers: int) -> None:
    """Create the tables, the journey, the managers and their learners, all enrolled."""
    SQLModel.metadata.create_all(engine)
    now = STEP_TICK - timedelta(days=7)
    stamps = {"created_at": now, "updated_at": now}
    person, enrolment = models.Person.__table__, models.Enrolment.__table__
    with Session(engine) as session:
        journey = models.Journey(
            slug=SPEC["slug"], title=SPEC["title"], owner=OWNER, spec=SPEC, checksum="bench"
        )
        session.add(journey)
        session.flush()
        for position, day in enumerate((0, 20)):
            session.add(models.Step(
                journey_id=journey.id, key=f"step-{position}", position=position, day=day,
                kind="read", title=f"Step {position + 1}: read the one-pager", minutes=15,
                body=BODY, link="https://intranet.example.com/sbi.pdf",
            ))  # fmt: skip
        session.commit()
        journey_id = journey.id
    with engine.begin() as conn:
        boss_ids = conn.execute(
            insert(person).returning(person.c.id),
            [dict(email=f"manager{m}@example.com", name=f"Manager {m}", timezone="Europe/London",
                  country="GB", **stamps) for m in range(managers)],
        ).scalars().all()  # fmt: skip
        learner_ids = conn.execute(
            insert(person).returning(person.c.id),
            [dict(email=f"learner{i}@example.com", name=f"Learner {i}", timezone="Europe/London",
                  country="GB", manager_id=boss_ids[i * managers // learners], **stamps)
             for i in range(learners)],
        ).scalars().all()  # fmt: skip
        conn.execute(insert(enrolment), [
            dict(person_id=pid, journey_id=journey_id, status="active", start_date=START,
                 shift_days=0, reminders_muted=False, next_action_at=now, **stamps)
            for pid in learner_ids
        ])  # fmt: skip


def analyze(engine: Engine) -> None:
    """Give PostgreSQL's planner statistics, as autovacuum would have by now in real use."""
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:
            conn.execute(text("ANALYZE"))


def timed(label: str, fn):
    """Run fn(), print and return (result, seconds)."""
    started = time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - started
    print(f"  {label:<44} {seconds:8.2f} s", flush=True)
    return result, seconds


def idle_ticks(engine: Engine, settings, after: datetime) -> float:
    """Return the median time of five ticks, a minute apart, that find nothing to do."""
    times = []
    for minute in range(1, 6):
        with Session(engine, expire_on_commit=False) as session:
            started = time.perf_counter()
            counts = tick(session, settings, after + timedelta(minutes=minute), enqueue=False)
            times.append(time.perf_counter() - started)
        assert not any(counts.get(k) for k in ("steps", "reminder", "digest")), counts
    return statistics.median(times)


def send(engine: Engine, settings, ids: list[int], now: datetime, batch: int) -> float:
    """Send these outbox rows with send_batch in batches; return seconds."""
    started = time.perf_counter()
    for start in range(0, len(ids), batch):
        counts = send_batch(engine, settings, ids[start : start + batch], now)
        if counts.get("sent", 0) != len(ids[start : start + batch]):
            raise SystemExit(f"send_batch did not send everything: {counts}")
    return time.perf_counter() - started


def pending(engine: Engine, kind: str) -> list[int]:
    with Session(engine) as session:
        rows = session.exec(
            select(models.Outbox.id)
            .where(models.Outbox.kind == kind, models.Outbox.state == "pending")
            .order_by(models.Outbox.id)
        )
        return list(rows)


def run(args, port: int, tmp: Path) -> None:
    engine, url, schema = fresh_engine(args.database_url, tmp)
    settings = load_settings({
        "instance_path": tmp, "database_url": url, "smtp_url": f"smtp://127.0.0.1:{port}",
        "secret_key": "bench-secret", "from_addr": "Nudger <nudger@example.org>",
        "base_url": "https://nudger.example.org", "batch_size": args.batch_size,
    })  # fmt: skip
    try:
        _, seed_s = timed(f"seed {args.learners:,} learners, {args.managers:,} managers",
                          lambda: seed(engine, args.learners, args.managers))  # fmt: skip
        with Session(engine, expire_on_commit=False) as session:
            steps, step_tick_s = timed(
                "step tick", lambda: tick(session, settings, STEP_TICK, enqueue=False)
            )
        analyze(engine)
        ids = pending(engine, "step")[: args.sample]
        sink(port, "XRESET")
        step_send_s = send(engine, settings, ids, STEP_TICK, args.batch_size)
        got = sink(port, "XSTAT")
        assert got[0] == got[1] == len(ids), f"sink got {got} for {len(ids)} step emails"
        step_bytes = got[2] / len(ids)
        print(f"  {'send ' + format(len(ids), ',') + ' step emails':<44} {step_send_s:8.2f} s")

        # The learners who keep up do the step; every 1/behind-th learner does not. Teams
        # are runs of consecutive ids, so each manager has the same share behind.
        every = round(1 / args.behind)
        es, en = models.EnrolmentStep, models.Enrolment
        with engine.begin() as conn:
            done = conn.execute(
                update(es)
                .where(es.enrolment_id.in_(select(en.id).where(en.person_id % every != 0)))
                .values(status="done", done_at=STEP_TICK + timedelta(hours=3))
            ).rowcount
        behind = args.learners - done
        analyze(engine)
        with Session(engine, expire_on_commit=False) as session:
            escalations, esc_tick_s = timed(
                f"escalation tick ({behind:,} behind)",
                lambda: tick(session, settings, ESCALATION_TICK, enqueue=False),
            )
        idle_s = idle_ticks(engine, settings, ESCALATION_TICK)
        print(f"  {'idle tick, events waiting (median of 5)':<44} {idle_s:8.2f} s")
        with Session(engine, expire_on_commit=False) as session:
            digests, digest_tick_s = timed(
                "digest tick", lambda: tick(session, settings, DIGEST_TICK, enqueue=False)
            )
        quiet_s = idle_ticks(engine, settings, DIGEST_TICK)
        print(f"  {'idle tick after the digests (median of 5)':<44} {quiet_s:8.2f} s")
        digest_ids = pending(engine, "digest")
        sink(port, "XRESET")
        digest_send_s = send(engine, settings, digest_ids, DIGEST_TICK, args.batch_size)
        got = sink(port, "XSTAT")
        assert got[0] == got[1] == len(digest_ids), f"sink got {got} for {len(digest_ids)} digests"
        digest_bytes = got[2] / len(digest_ids)
        print(f"  {'send ' + format(len(digest_ids), ',') + ' digests':<44} {digest_send_s:8.2f} s")
        reminder_ids = pending(engine, "reminder")[: args.sample]
        reminder_send_s = send(engine, settings, reminder_ids, ESCALATION_TICK, args.batch_size)
        with Session(engine) as session:
            events = session.exec(select(func.count()).select_from(models.EscalationEvent)).one()
            audits = session.exec(select(func.count()).select_from(models.AuditLog)).one()
    finally:
        engine.dispose()
        if schema:
            with create_engine(args.database_url).begin() as conn:
                conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))

    report(
        args,
        db="PostgreSQL" if url.startswith("postgres") else "SQLite",
        behind=behind,
        seed_s=seed_s,
        ticks={
            "step": (step_tick_s, steps),
            "escalation": (esc_tick_s, escalations),
            "digest": (digest_tick_s, digests),
        },
        idle=(idle_s, quiet_s, events),
        sends={
            "step": (len(ids), step_send_s, step_bytes),
            "digest": (len(digest_ids), digest_send_s, digest_bytes),
            "reminder": (len(reminder_ids), reminder_send_s, None),
        },
        audits=audits,
    )


def report(args, *, db, behind, seed_s, ticks, idle, sends, audits) -> None:
    """Print the figures, every sending rate against the step-sending rate."""
    print(
        f"\n{args.learners:,} learners under {args.managers:,} managers, {behind:,} behind "
        f"({args.behind:.0%}), {db}, batch size {args.batch_size}, {os.cpu_count()} CPUs:"
    )
    seconds, counts = ticks["step"]
    print(f"  step tick        {seconds:7.2f} s   {counts.get('steps', 0):,} steps")
    seconds, counts = ticks["escalation"]
    print(
        f"  escalation tick  {seconds:7.2f} s   {counts.get('enrolments', 0):,} enrolments looked "
        f"at, {counts.get('reminder', 0):,} reminders, {counts.get('escalations', 0):,} events"
    )
    waiting, quiet, events = idle
    print(f"  idle tick        {waiting * 1000:7.0f} ms  with {events:,} events awaiting a digest")
    print(f"  idle tick        {quiet * 1000:7.0f} ms  once they are digested")
    seconds, counts = ticks["digest"]
    print(f"  digest tick      {seconds:7.2f} s   {counts.get('digest', 0):,} digests decided")
    count, seconds, _ = sends["step"]
    step_rate = count / seconds
    for kind, (count, seconds, size) in sends.items():
        rate = count / seconds
        each = f", {size / 1024:.1f} kB each" if size else ""
        print(
            f"  {kind} sending {'':<{8 - len(kind)}}{rate:7.0f} /s   {count:,} in {seconds:.2f} s"
            f"{each}; {rate / step_rate:.2f}x the step-sending rate"
        )
    digest_total = ticks["digest"][0] + sends["digest"][1]
    print(
        f"  digest tick + sending: {digest_total:.2f} s for {sends['digest'][0]:,} managers; "
        f"{audits:,} audit rows in all; seeding took {seed_s:.1f} s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--learners", type=int, default=50_000)
    parser.add_argument("--managers", type=int, default=2_000)
    parser.add_argument("--behind", type=float, default=0.2)
    parser.add_argument("--sample", type=int, default=5_000, help="step emails to send and time")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--database-url", default="", help="default: a SQLite file")
    args = parser.parse_args()
    proc, port = start_sink()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            run(args, port, Path(tmp))
    finally:
        proc.terminate()
        proc.wait()


if __name__ == "__main__":
    main()
