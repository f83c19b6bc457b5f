"""The demo's replay: every email as it would have been at its moment."""

from __future__ import annotations

import time
from datetime import timedelta
from email import message_from_bytes
from email.utils import parsedate_to_datetime

from rq import Worker
from sqlmodel import select

from nudger.demo import DemoWorker, replay_history, start_worker
from nudger.insights import ledger
from nudger.mail.view import read
from nudger.models import CapturedMail, Outbox
from nudger.queue import queue, redis_connection
from nudger.tick.run import tick
from tests.factories import make_enrolment, make_journey, make_person
from workers import jobs


def test_replay_sends_each_tick_mail_dated_and_composed_at_that_tick(settings, session, now):
    journey = make_journey(session)
    boss = make_person(session, "boss@example.com", "Grace Hopper")
    learner = make_person(session, "slow.learner@example.com", "Sam Slow", manager=boss)
    make_enrolment(session, learner, journey, now.date())

    replay_history(settings, now, now + timedelta(days=14))

    mails = session.exec(select(CapturedMail).order_by(CapturedMail.id)).all()
    sent = {r.message_id: r for r in session.exec(select(Outbox))}
    assert {m.kind for m in mails} >= {"step", "reminder", "digest"}
    for mail in mails:
        date = parsedate_to_datetime(message_from_bytes(mail.raw)["Date"])
        # Shown at /outbox when it went in the replay, not when the replay ran.
        assert mail.at == date
        assert abs(date - sent[mail.message_id].sent_at) < timedelta(seconds=1)
        assert now <= mail.at <= now + timedelta(days=14)
    assert len({m.at for m in mails}) > len(mails) // 2
    # A reminder names only steps that had gone out when it was written.
    titles = ("Read the one-pager", "Discuss it", "Reflect")
    reminders = [m for m in mails if m.kind == "reminder"]
    assert reminders
    for reminder in reminders:
        gone_out = {m.subject for m in mails if m.kind == "step" and m.at <= reminder.at}
        named = {t for t in titles if t in read(reminder.raw).text}
        assert named and all(any(t in subject for subject in gone_out) for t in named)


def test_the_demo_worker_counts_as_running_and_sends_what_the_tick_enqueues(
    settings, session, now, monkeypatch
):
    # The job reads its settings from the environment, as in the demo.
    monkeypatch.setenv("NUDGER_INSTANCE_PATH", str(settings.instance_path))
    monkeypatch.setenv("NUDGER_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("NUDGER_REDIS_URL", settings.redis_url)
    monkeypatch.setenv("NUDGER_SMTP_URL", "outbox:")
    jobs.runtime.cache_clear()
    conn = redis_connection(settings)
    conn.flushdb()
    journey = make_journey(session)
    make_enrolment(session, make_person(session), journey, now.date())
    # A demo killed before left its worker registered: it is not counted twice.
    DemoWorker(queue(settings), connection=conn, name="nudger-demo").register_birth()
    worker, thread = start_worker(settings)
    try:
        deadline = time.monotonic() + 10
        while not Worker.count(connection=conn) and time.monotonic() < deadline:
            time.sleep(0.05)
        sent_at = now + timedelta(hours=2)
        assert ledger.health(session, settings, sent_at).workers == 1
        tick(session, settings, sent_at)
        while not session.exec(select(CapturedMail)).all() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert [m.kind for m in session.exec(select(CapturedMail))] == ["step"]
    finally:
        worker.stop()
        thread.join(timeout=15)
        jobs.runtime.cache_clear()
    assert not thread.is_alive() and Worker.count(connection=conn) == 0


def test_stopping_the_demo_during_a_job_lets_the_job_finish(settings):
    conn = redis_connection(settings)
    conn.flushdb()
    job = queue(settings).enqueue("time.sleep", 1.0)
    worker, thread = start_worker(settings)
    try:
        deadline = time.monotonic() + 10
        while job.get_status(refresh=True) != "started" and time.monotonic() < deadline:
            time.sleep(0.02)
        assert job.get_status() == "started"
    finally:
        worker.stop()  # what Ctrl-C and SIGTERM do in `nudger demo`
        thread.join(timeout=15)
    assert job.get_status(refresh=True) == "finished"
    assert not thread.is_alive()


def test_the_earlier_intake_gives_the_panel_a_real_shift(settings, session, now):
    from nudger.config import ROOT
    from nudger.demo import EARLIER, EARLIER_COHORT, EARLY_STEP, HISTORY
    from nudger.enrolments.journey_edits import apply_sync
    from nudger.journeys.loading import load_journeys
    from nudger.measure.results import all_figures
    from nudger.roster import import_roster

    earlier, start = now - EARLIER, now - HISTORY
    for spec in load_journeys([ROOT / "journeys"]):
        apply_sync(session, spec, earlier, source=f"journeys/{spec.slug}.yaml", actor="demo")
    session.commit()
    result = import_roster(
        session, settings, EARLIER_COHORT, filename=EARLIER_COHORT.name, now=earlier, actor="demo"
    )
    assert result.ok, result.errors
    replay_history(settings, earlier, start - EARLY_STEP, step=EARLY_STEP)
    replay_history(settings, start, now)
    session.expire_all()

    [figures] = all_figures(session, "running-effective-one-to-ones")
    assert figures.response_rates["end"]["learner"]["sent"] == result.rows
    for b in figures.behaviours:
        for rater in ("learner", "manager"):
            shown = b.raters[rater]
            assert shown.pairs >= 5 and shown.shift is not None, (b.key, rater)
            assert shown.shift > 0  # people moved, as the demo's answers have them do
        assert b.gap is not None  # the self-manager gap over matched pairs shows too


def test_the_replay_offers_some_notes_to_later_learners(settings, session, now):
    from nudger.config import ROOT
    from nudger.demo import EARLIER, EARLIER_COHORT, EARLY_STEP, HISTORY
    from nudger.enrolments.journey_edits import apply_sync
    from nudger.journeys.loading import load_journeys
    from nudger.models import EnrolmentStep
    from nudger.roster import import_roster

    earlier = now - EARLIER
    for spec in load_journeys([ROOT / "journeys"]):
        apply_sync(session, spec, earlier, source=f"journeys/{spec.slug}.yaml", actor="demo")
    session.commit()
    import_roster(
        session, settings, EARLIER_COHORT, filename=EARLIER_COHORT.name, now=earlier, actor="demo"
    )
    replay_history(settings, earlier, now - HISTORY, step=EARLY_STEP)
    session.expire_all()

    done = session.exec(select(EnrolmentStep).where(EnrolmentStep.note.is_not(None))).all()
    offered = [es for es in done if es.note_for_others]
    offered_notes = {es.note for es in offered}
    # A visitor sees shared notes on a step's page and in the console from the start.
    assert offered and len(offered) < len(done)
    assert len({es.note for es in offered}) > 1 and "Done: it helped." not in offered_notes
