"""`nudger demo`: the whole product in one process on the embedded default.

It loads the example journeys and learners, replays the last two weeks at
half-hour ticks (some learners keep up, some fall behind), sending each
tick's mail as of that tick into the captured outbox, then serves the web
app and keeps ticking every minute, as the clock would, with an RQ worker
in a thread sending what each tick enqueues.

An earlier intake (examples/earlier-cohort.csv) started on the one-to-ones
journey about five weeks before, so its end check-ins fall inside the
replayed fortnight and the Behaviour change panel shows a shift from the
status quo. The weeks before the fortnight are replayed at coarser ticks:
only that intake is active then, and its past needs no half-hour detail.
"""

from __future__ import annotations

import csv
import hashlib
import os
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from functools import cache
from pathlib import Path

import click
from rq import SimpleWorker
from rq.timeouts import TimerDeathPenalty
from sqlmodel import Session, select

from nudger.config import ROOT, Settings, load_settings
from nudger.db import get_engine, utcnow

DEMO_ADMIN = ("admin@example.com", "demo-password")
HISTORY = timedelta(days=14)
STEP = timedelta(minutes=30)
# The earlier intake starts this long before now: the one-to-ones journey (its last
# step due about 20 working days after the start) ends inside the replayed fortnight.
EARLIER = timedelta(days=40)
EARLY_STEP = timedelta(hours=12)
EARLIER_COHORT = ROOT / "examples" / "earlier-cohort.csv"


def demo_settings(host: str, port: int, instance: Path | None = None) -> Settings:
    """Force the embedded default into a folder of its own, for this process and its jobs."""
    instance = (instance or ROOT / "instance" / "demo").absolute()
    env = {
        "NUDGER_INSTANCE_PATH": str(instance),
        "NUDGER_DATABASE_URL": f"sqlite:///{instance / 'nudger.db'}",
        "NUDGER_REDIS_URL": "",
        "NUDGER_SMTP_URL": "outbox:",
        "NUDGER_BASE_URL": f"http://{host}:{port}",
        "NUDGER_JOURNEYS_DIR": str(ROOT / "journeys"),
    }
    os.environ.update(env)
    return load_settings()


def keeps_up(email: str, step_key: str) -> bool:
    """Decide, the same way every run, whether a demo learner did a step."""
    digest = hashlib.sha256(f"{email}:{step_key}".encode()).digest()
    keen = {
        "priya.shah@example.com": 0.95,
        "aiko.tanaka@example.com": 0.8,
        "morgan.lee@example.com": 0.7,
    }
    # The earlier intake mostly kept up: most of it has finished by the fortnight replayed.
    default = 0.85 if email in earlier_intake() else 0.35
    return digest[0] / 255 < keen.get(email, default)


DEMO_NOTES = (
    "Done: it helped.",
    "Easier than I expected once I had put the time in my calendar.",
    "Did it straight after a team meeting, while it was fresh. That worked.",
    "Harder than it looks: I had to try twice before it felt natural.",
    "Talked it over with a colleague first, which made it much less awkward.",
)


def demo_note(email: str, step_key: str) -> tuple[str, bool]:
    """Pick a demo learner's note on a step, and whether it is offered to later learners.

    About a third are offered, so that a step's page and the console's notes show
    what sharing looks like without anyone having to share one first.
    """
    digest = hashlib.sha256(f"note:{email}:{step_key}".encode()).digest()
    note = DEMO_NOTES[digest[0] % len(DEMO_NOTES)]
    # "Done: it helped." tells a later learner nothing: it is kept for the manager only.
    return note, digest[1] % 3 == 0 and note != DEMO_NOTES[0]


@cache
def earlier_intake() -> frozenset[str]:
    """Return the addresses of the earlier intake's learners."""
    with EARLIER_COHORT.open(newline="", encoding="utf-8") as f:
        return frozenset(row["email"] for row in csv.DictReader(f))


def replay_history(
    settings: Settings, start: datetime, end: datetime, step: timedelta = STEP
) -> None:
    """Tick from `start` to `end` every `step`, completing steps for the learners who keep up.

    Each tick's mail is sent at that tick's time, before anyone acts on it, so
    every email says what it would have said then (the steps open then, the
    date then) and the outbox shows when it went.
    """
    from nudger.models import Enrolment as E
    from nudger.models import EnrolmentStep, Person, Step
    from nudger.progress import complete_step
    from nudger.tick.run import tick

    engine = get_engine(settings.database_url)
    now = start
    with Session(engine, expire_on_commit=False) as session:
        while now <= end:
            tick(session, settings, now, enqueue=False)
            send_due(engine, settings, now)
            # Learners who keep up finish a step about a day after it arrives.
            open_steps = session.exec(
                select(EnrolmentStep, Step.key, Person.email)
                .join(Step, Step.id == EnrolmentStep.step_id)
                .join(E, E.id == EnrolmentStep.enrolment_id)
                .join(Person, Person.id == E.person_id)
                .where(
                    EnrolmentStep.status == "sent", EnrolmentStep.awaiting_confirmation.is_(False)
                )
            ).all()
            for es, key, email in open_steps:
                if now - es.sent_at >= timedelta(hours=26) and keeps_up(email, key):
                    note, offered = demo_note(email, key)
                    complete_step(session, es.id, now, note=note, actor="demo", for_others=offered)
            answer_checkins(session, now)
            now += step


def send_due(engine, settings: Settings, now: datetime) -> None:
    """Send the outbox rows due at `now` as the worker would have sent them then."""
    from nudger.models import Outbox
    from nudger.outbox.sending import send_batch

    with Session(engine) as session:
        ids = session.exec(
            select(Outbox.id)
            .where(Outbox.state == "pending", Outbox.next_attempt_at <= now)
            .order_by(Outbox.id)
        ).all()
    for first in range(0, len(ids), settings.batch_size):
        send_batch(engine, settings, list(ids[first : first + settings.batch_size]), now=now)


class DemoWorker(SimpleWorker):
    """An RQ worker in a thread of the demo: registered, so the console counts it.

    Signals belong to the main thread (Ctrl-C stops the demo), and job
    timeouts use a timer instead of SIGALRM, which only the main thread gets.
    """

    death_penalty_class = TimerDeathPenalty

    def _install_signal_handlers(self) -> None:
        pass

    def stop(self) -> None:
        """Ask the worker to stop, and wake it: it checks between jobs, not while it waits."""
        self._stop_requested = True
        self.queues[0].enqueue("builtins.len", ())


def start_worker(settings: Settings) -> tuple[DemoWorker, threading.Thread]:
    """Start the demo's RQ worker in a thread; it sends what each tick enqueues."""
    from nudger.queue import QUEUES, queue, redis_connection

    conn = redis_connection(settings)
    worker = DemoWorker([queue(settings, q) for q in QUEUES], connection=conn, name="nudger-demo")
    worker.register_death()  # a demo killed before could not say it stopped
    working = threading.Thread(target=worker.work, kwargs={"logging_level": "WARNING"}, daemon=True)
    working.start()
    return worker, working


def answer_checkins(session: Session, now: datetime) -> None:
    """Answer the demo's check-ins a few hours after they arrive, as believable people would.

    Most people answer; the status quo is mostly Rarely or Sometimes, and later
    checkpoints a point or so higher, so the Behaviour change panel shows a shift.
    """
    from nudger.journeys.spec import JourneySpec, checkpoint_order
    from nudger.measure.answers import save_answers
    from nudger.models import Checkin, Journey

    due = session.exec(
        select(Checkin, Journey)
        .join(Journey, Journey.id == Checkin.journey_id)
        .where(Checkin.state == "sent", Checkin.answered_at.is_(None))
    ).all()
    for checkin, journey in due:
        if now - checkin.sent_at < timedelta(hours=3):
            continue
        seed = f"{checkin.enrolment_id}:{checkin.rater}:{checkin.checkpoint}"
        if hashlib.sha256(seed.encode()).digest()[0] < 40:  # about one in six never answers
            continue
        lift = min(checkpoint_order(checkin.checkpoint), 2)
        answers = {}
        for b in JourneySpec.model_validate(journey.spec).behaviours():
            roll = hashlib.sha256(f"{seed}:{b.key}".encode()).digest()[0]
            # Managers see a little less than people credit themselves with.
            base = 2 + roll % 2 - (roll % 5 == 0 and checkin.rater == "manager")
            answers[b.key] = 0 if roll > 245 else max(1, min(5, base + lift))
        save_answers(session, checkin.id, answers, now)
    session.commit()


def run_demo(
    host: str,
    port: int,
    *,
    instance_path: Path | None = None,
    on_ready: Callable[[dict[str, str]], None] | None = None,
) -> None:
    """Set up the demo, then serve it until Ctrl-C (or SIGTERM: see nudger.serving).

    `on_ready` gets the demo's addresses once it serves them.
    """

    from werkzeug.serving import make_server

    from nudger import create_app
    from nudger.admins import create_or_update_admin
    from nudger.enrolments.journey_edits import apply_sync
    from nudger.journeys.loading import load_journeys
    from nudger.migrate import upgrade
    from nudger.queue import redis_connection
    from nudger.roster import import_roster
    from nudger.summaries import describe_tick
    from nudger.tick.run import tick

    settings = demo_settings(host, port, instance_path)
    # A fresh demo every time: nobody should debug last week's demo data.
    for suffix in ("", "-wal", "-shm"):
        (settings.instance_path / f"nudger.db{suffix}").unlink(missing_ok=True)
    click.echo("Setting up the demo database ...")
    upgrade(settings)
    engine = get_engine(settings.database_url)
    real_now = utcnow()
    start, earlier = real_now - HISTORY, real_now - EARLIER
    with Session(engine, expire_on_commit=False) as session:
        for spec in load_journeys([settings.journeys_dir]):
            apply_sync(session, spec, earlier, source=f"journeys/{spec.slug}.yaml", actor="demo")
        create_or_update_admin(session, *DEMO_ADMIN, real_now)
        session.commit()
    rows = 0
    for name, at in ((EARLIER_COHORT.name, earlier), ("learners.csv", start)):
        with Session(engine, expire_on_commit=False) as session:
            result = import_roster(
                session, settings, ROOT / "examples" / name, filename=name, now=at, actor="demo"
            )
        if not result.ok:
            raise click.ClickException(f"demo learners rejected: {result.errors}")
        rows += result.rows
        if at == earlier:
            click.echo(f"Replaying an earlier intake of {result.rows} learners ...")
            replay_history(settings, earlier, start - EARLY_STEP, step=EARLY_STEP)
    click.echo(f"Replaying the last {HISTORY.days} days for {rows} learners ...")
    replay_history(settings, start, real_now)
    conn = redis_connection(settings)
    conn.flushdb()  # jobs left by an earlier demo name rows of the database just replaced
    with Session(engine, expire_on_commit=False) as session:
        tick(session, settings, real_now)  # enqueues anything left from the replay
    worker, working = start_worker(settings)

    app = create_app(settings)
    try:
        server = make_server(host, port, app, threaded=True)
    except OSError as exc:  # taken since `nudger demo` checked it
        raise click.ClickException(
            f"cannot listen on {host}:{port}: {exc.strerror}; choose another port with --port"
        ) from None
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = settings.base_url
    click.echo(
        "\nNudger demo is running.\n"
        f"  Start here:     {base}/\n"
        f"  Captured mail:  {base}/outbox   (open a step email and press 'Mark as done')\n"
        f"  Admin console:  {base}/admin    ({DEMO_ADMIN[0]} / {DEMO_ADMIN[1]})\n"
        f"  Health:         {base}/healthz\n"
        "The clock ticks every minute and the worker sends what is due. Ctrl-C stops.\n"
    )
    if on_ready is not None:
        on_ready(
            {
                "url": base,
                "outbox": f"{base}/outbox",
                "admin": f"{base}/admin",
                "admin_email": DEMO_ADMIN[0],
                "admin_password": DEMO_ADMIN[1],
                "health": f"{base}/healthz",
            }
        )
    try:
        while True:
            time.sleep(60 - time.time() % 60)
            now = utcnow()
            with Session(engine, expire_on_commit=False) as session:
                counts = tick(session, settings, now)
            if any(v for k, v in counts.items() if k != "enrolments"):
                # The same words as `nudger tick`, not the counts' dict.
                click.echo(describe_tick(now, counts, enqueued=True).replace("\n", " "))
    except KeyboardInterrupt:
        click.echo("Stopping.")
    finally:
        worker.stop()  # between jobs: one being sent finishes; the console stops counting it
        working.join(timeout=10)
        server.shutdown()
