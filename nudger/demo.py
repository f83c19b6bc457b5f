"""`nudger demo`: the whole product in one process on the embedded default.

It loads the example journeys and learners, replays the last two weeks at
half-hour ticks (some learners keep up, some fall behind), sends everything
into the captured outbox, then serves the web app and keeps ticking every
minute, as the clock would.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from datetime import datetime, timedelta

import click
from sqlmodel import Session, select

from nudger.config import ROOT, Settings, load_settings
from nudger.db import get_engine, utcnow

DEMO_ADMIN = ("admin@example.com", "demo-password")
HISTORY = timedelta(days=14)
STEP = timedelta(minutes=30)


def demo_settings(host: str, port: int) -> Settings:
    """Force the embedded default into a folder of its own, for this process and its jobs."""
    instance = ROOT / "instance" / "demo"
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
    return digest[0] / 255 < keen.get(email, 0.35)


def replay_history(settings: Settings, start: datetime, end: datetime) -> None:
    """Tick through the past fortnight, completing steps for the learners who keep up."""
    from nudger.models import Enrolment as E
    from nudger.models import EnrolmentStep, Person, Step
    from nudger.progress import complete_step
    from nudger.tick.run import tick

    engine = get_engine(settings.database_url)
    now = start
    with Session(engine, expire_on_commit=False) as session:
        while now <= end:
            tick(session, settings, now, enqueue=False)
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
                    complete_step(session, es.id, now, note="Done: it helped.", actor="demo")
            answer_checkins(session, now)
            now += STEP


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


def run_demo(host: str, port: int) -> None:
    """Set up the demo, then serve it until Ctrl-C."""
    from rq import SimpleWorker
    from werkzeug.serving import make_server

    from nudger import create_app
    from nudger.admins import create_or_update_admin
    from nudger.enrolments.journey_edits import apply_sync
    from nudger.journeys.loading import load_journeys
    from nudger.migrate import upgrade
    from nudger.queue import QUEUES, queue, redis_connection
    from nudger.roster import import_roster
    from nudger.tick.run import tick

    settings = demo_settings(host, port)
    # A fresh demo every time: nobody should debug last week's demo data.
    for suffix in ("", "-wal", "-shm"):
        (settings.instance_path / f"nudger.db{suffix}").unlink(missing_ok=True)
    click.echo("Setting up the demo database ...")
    upgrade(settings)
    engine = get_engine(settings.database_url)
    real_now = utcnow()
    start = real_now - HISTORY
    with Session(engine, expire_on_commit=False) as session:
        for spec in load_journeys([settings.journeys_dir]):
            apply_sync(session, spec, start, source=f"journeys/{spec.slug}.yaml", actor="demo")
        create_or_update_admin(session, *DEMO_ADMIN, real_now)
        session.commit()
        result = import_roster(
            session,
            settings,
            ROOT / "examples" / "learners.csv",
            filename="learners.csv",
            now=start,
            actor="demo",
        )
        if not result.ok:
            raise click.ClickException(f"demo learners rejected: {result.errors}")
    click.echo(f"Replaying the last {HISTORY.days} days for {result.rows} learners ...")
    replay_history(settings, start, real_now)
    with Session(engine, expire_on_commit=False) as session:
        tick(session, settings, real_now)  # enqueues everything written during the replay
    conn = redis_connection(settings)
    worker = SimpleWorker([queue(settings, q) for q in QUEUES], connection=conn)
    worker.work(burst=True, logging_level="WARNING")

    app = create_app(settings)
    server = make_server(host, port, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = settings.base_url
    click.echo(
        "\nNudger demo is running.\n"
        f"  Captured mail:  {base}/outbox   (open a step email and press 'Mark as done')\n"
        f"  Admin console:  {base}/admin    ({DEMO_ADMIN[0]} / {DEMO_ADMIN[1]})\n"
        f"  Health:         {base}/healthz\n"
        "The clock ticks every minute and the worker sends what is due. Ctrl-C stops.\n"
    )
    try:
        while True:
            time.sleep(60 - time.time() % 60)
            with Session(engine, expire_on_commit=False) as session:
                counts = tick(session, settings, utcnow())
            worker.work(burst=True, logging_level="WARNING")
            sent = {k: v for k, v in counts.items() if v and k != "enrolments"}
            if sent:
                click.echo(f"{datetime.now():%H:%M} tick: {sent}")
    except KeyboardInterrupt:
        click.echo("Stopping.")
    finally:
        server.shutdown()
