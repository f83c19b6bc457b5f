"""Sent mail: the ledger with its SMTP answers, retrying a failure, worker and clock health."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

from rq import SimpleWorker, Worker
from sqlmodel import select

from nudger.insights import ledger
from nudger.models import AuditLog, Outbox, TickRun
from nudger.outbox.sending import send_batch
from nudger.queue import DEFAULT_QUEUE, SEND_QUEUE, queue
from nudger.tick.run import tick
from tests.adminkit import admin_app, make_admin, post, redis, sign_in
from tests.factories import make_enrolment, make_journey, make_person
from tests.pagekit import SEND
from tests.smtpd import SmtpSink

__all__ = ["redis"]


def one_step_email(session, settings, now) -> Outbox:
    make_enrolment(session, make_person(session), make_journey(session), now.date())
    tick(session, settings, now + SEND, enqueue=False)
    return session.exec(select(Outbox).where(Outbox.kind == "step")).one()


def test_a_refused_message_shows_as_bounced_with_the_servers_answer(
    settings, session, engine, now, redis
):
    row = one_step_email(session, settings, now)
    with SmtpSink() as sink:
        sink.fail_next(1, 550, "5.1.1 <ada@example.com>: no such user")
        smtp = dataclasses.replace(settings, smtp_url=sink.url())
        assert send_batch(engine, smtp, [row.id], now + SEND)["failed"] == 1
    session.expire_all()
    row = session.get(Outbox, row.id)
    assert ledger.display_state(row, now + SEND) == "bounced"
    assert ledger.counts(session)["bounced"] == 1
    make_admin(session, now)
    client = admin_app(settings, now + SEND).test_client()
    sign_in(client)
    page = client.get("/admin/mail?state=bounced").get_data(as_text=True)
    assert "550 5.1.1 &lt;ada@example.com&gt;: no such user" in page
    assert ">Retry</button>" in page
    assert "No messages" in client.get("/admin/mail?state=sent").get_data(as_text=True)


def test_a_transient_failure_waits_to_retry_and_a_give_up_is_failed_not_bounced(session, now):
    waiting = Outbox(dedupe_key="a", kind="step", to_email="a@example.com", state="pending",
                     attempts=2, next_attempt_at=now + timedelta(minutes=5),
                     last_error="421 try later")  # fmt: skip
    gave_up = Outbox(dedupe_key="b", kind="step", to_email="b@example.com", state="failed",
                     attempts=6, last_error="gave up after 6 attempts: 451 busy")  # fmt: skip
    session.add_all([waiting, gave_up])
    session.commit()
    assert ledger.display_state(waiting, now) == "retrying"
    assert ledger.display_state(gave_up, now) == "failed"
    counts = ledger.counts(session)
    assert (counts["queued"], counts["failed"], counts["bounced"]) == (1, 1, 0)
    rows, _ = ledger.page(session, ledger.MailFilter(state="failed"))
    assert [r.to_email for r in rows] == ["b@example.com"]


def test_retry_queues_a_failed_message_again_and_the_worker_sends_it(
    settings, session, engine, now, redis
):
    row = one_step_email(session, settings, now)
    with SmtpSink() as sink:
        smtp = dataclasses.replace(settings, smtp_url=sink.url())
        sink.fail_next(1, 554, "5.7.1 rejected by policy")
        send_batch(engine, smtp, [row.id], now + SEND)
        make_admin(session, now)
        client = admin_app(settings, now + SEND).test_client()
        sign_in(client)
        response = post(client, f"/admin/mail/{row.id}/retry", {"next": "/admin/mail?state=queued"})
        assert response.headers["Location"] == "/admin/mail?state=queued"
        session.expire_all()
        row = session.get(Outbox, row.id)
        assert (row.state, row.attempts, row.enqueued_at) == ("pending", 0, now + SEND)
        [job] = queue(settings, SEND_QUEUE).jobs
        assert job.args[0] == [row.id]
        assert send_batch(engine, smtp, job.args[0], now + SEND)["sent"] == 1
        assert [m.rcpt_tos for m in sink.messages] == [["ada@example.com"]]
    audit = session.exec(select(AuditLog).where(AuditLog.action == "outbox.retry")).one()
    assert (audit.actor, audit.subject_id) == ("admin@example.com", row.id)
    assert audit.detail["last_error"] == "554 5.7.1 rejected by policy"


def test_retry_leaves_a_message_that_did_not_fail_alone(settings, session, now, redis):
    row = one_step_email(session, settings, now)
    make_admin(session, now)
    client = admin_app(settings, now).test_client()
    sign_in(client)
    page = post(client, f"/admin/mail/{row.id}/retry", follow_redirects=True)
    assert "was not failed, so it was left alone" in page.get_data(as_text=True)
    assert queue(settings, SEND_QUEUE).count == 0


def failing_job() -> None:
    raise RuntimeError("a job that fails, for the registry")


def test_health_reports_the_clock_queues_failed_jobs_and_workers(settings, session, now, redis):
    one_step_email(session, settings, now)
    # The clock records when it really ran: here, one minute before the health check.
    session.add(TickRun(now=now + SEND, started_at=now + SEND, duration_ms=12, counts={"step": 1}))
    session.commit()
    default = queue(settings, DEFAULT_QUEUE)
    default.enqueue(failing_job)
    SimpleWorker([default], connection=redis).work(burst=True)
    queue(settings, SEND_QUEUE).enqueue_call("workers.jobs.send_batch", args=([1],))
    worker = Worker([queue(settings, SEND_QUEUE)], connection=redis, name="test-worker")
    worker.register_birth()
    try:
        h = ledger.health(session, settings, now + SEND + timedelta(minutes=1))
        assert h.clock_ok and h.tick_age == timedelta(minutes=1)
        assert (h.queues[SEND_QUEUE], h.failed_jobs, h.workers) == (1, 1, 1)
        make_admin(session, now)
        client = admin_app(settings, now + SEND + timedelta(minutes=1)).test_client()
        sign_in(client)
        page = client.get("/admin/mail").get_data(as_text=True)
        assert "Ticking" in page and "1 min ago" in page
    finally:
        worker.register_death()
    late = ledger.health(session, settings, now + SEND + timedelta(minutes=10))
    assert not late.clock_ok and late.workers == 0


def test_a_stopped_clock_is_flagged_on_the_dashboard(settings, session, now, redis):
    session.add(TickRun(now=now, started_at=now, duration_ms=3, counts={}))
    session.commit()
    make_admin(session, now)
    client = admin_app(settings, now + timedelta(hours=1)).test_client()
    sign_in(client)
    page = client.get("/admin/").get_data(as_text=True)
    assert "The clock last ticked" in page and "nothing is being sent" in page


def test_the_ledger_export_has_every_row_with_its_answer(settings, session, engine, now, redis):
    row = one_step_email(session, settings, now)
    with SmtpSink() as sink:
        sink.fail_next(1, 550, "=no such user")
        send_batch(engine, dataclasses.replace(settings, smtp_url=sink.url()), [row.id], now)
    make_admin(session, now)
    client = admin_app(settings, now).test_client()
    sign_in(client)
    text = client.get("/admin/mail.csv").data.decode("utf-8-sig")
    assert text.splitlines()[0].startswith("id,created_at,kind,to,subject,state")
    assert ",bounced,1," in text and "550 =no such user" in text


def test_state_counts_stop_at_the_cap_and_say_so(settings, session, now, monkeypatch):
    """A ten-million-row ledger is not counted on every page view: past the cap, "N+"."""
    monkeypatch.setattr(ledger, "COUNT_CAP", 2)
    session.add_all(
        Outbox(dedupe_key=f"s{i}", kind="step", to_email=f"p{i}@example.com", state="sent")
        for i in range(4)
    )
    session.add(Outbox(dedupe_key="f", kind="step", to_email="f@example.com", state="failed",
                       last_error="550 5.1.1 no such user"))  # fmt: skip
    session.commit()
    counts = ledger.counts(session)
    assert (counts["sent"], counts["bounced"], counts["failed"]) == (3, 1, 0)
    make_admin(session, now)
    client = admin_app(settings, now).test_client()
    sign_in(client)
    page = client.get("/admin/mail").get_data(as_text=True)
    assert 'Sent <span class="count">2+</span>' in page
    assert 'Bounced <span class="count">1</span>' in page


def test_a_whole_address_finds_that_recipient_and_a_part_finds_every_match(session):
    session.add_all(
        Outbox(dedupe_key=email, kind="step", to_email=email, state="sent")
        for email in ("ada@example.com", "bada@example.com", "ada@example.org")
    )
    session.commit()

    def found(q: str) -> list[str]:
        return sorted(r.to_email for r in ledger.page(session, ledger.MailFilter(q=q))[0])

    assert found("ada@example.com") == ["ada@example.com"]
    assert found("ada@example") == ["ada@example.com", "ada@example.org", "bada@example.com"]
