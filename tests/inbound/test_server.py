"""The real `nudger inbound` process, driven over SMTP as the internet would."""

from __future__ import annotations

import signal
import smtplib
import subprocess
import sys
import textwrap
from datetime import timedelta

import pytest
from sqlmodel import select

from nudger.db import utcnow
from nudger.inbound.processing import pending, process
from nudger.insights import ledger
from nudger.models import CapturedMail, EnrolmentStep, InboundMessage, Outbox, Person
from nudger.queue import DEFAULT_QUEUE, queue
from nudger.summaries import describe_tick
from nudger.tick.run import tick
from tests.inbound.kit import (
    DOMAIN,
    bounce_sample,
    envelope_sender,
    process_all,
    reply,
    send_due,
    send_first_step,
    smtp_send,
)

pytestmark = pytest.mark.slow


def test_a_done_reply_quoting_the_original_completes_the_step_with_its_note(
    session, engine, inbound_settings, inbound_server, environment, now
):
    sent = send_first_step(session, inbound_settings, engine, now)
    answer = reply(sent.message, "Done, used it in my 1:1 today")
    smtp_send(inbound_server, str(sent.message["Reply-To"]).split("<")[-1].rstrip(">"), answer)

    # The worker, as it runs in production, picks up the job the server queued.
    worker = subprocess.run(
        [sys.executable, "-m", "nudger.cli", "worker", "--burst"],
        env=environment, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert worker.returncode == 0, worker.stderr
    session.expire_all()
    es = session.exec(select(EnrolmentStep)).one()
    assert es.status == "done"
    assert es.note == "used it in my 1:1 today"
    inbound = session.exec(select(InboundMessage)).one()
    assert (inbound.kind, inbound.trusted, inbound.state) == ("reply", True, "done")
    assert "completed" in inbound.outcome


def test_a_reply_from_another_address_changes_nothing(
    session, engine, inbound_settings, inbound_server, now
):
    sent = send_first_step(session, inbound_settings, engine, now)
    answer = reply(sent.message, "Done!", sender="Eve <eve@example.net>")
    smtp_send(inbound_server, _reply_to(sent.message), answer)
    outcomes = process_all(session, inbound_settings, now)

    assert "not dan@example.com: nothing done" in outcomes[0]
    es = session.exec(select(EnrolmentStep)).one()
    assert (es.status, es.note) == ("sent", None)
    inbound = session.exec(select(InboundMessage)).one()
    assert (inbound.trusted, inbound.person_id) == (False, sent.learner.id)


def test_a_reply_whose_dkim_failed_changes_nothing(
    session, engine, inbound_settings, inbound_server, now
):
    sent = send_first_step(session, inbound_settings, engine, now)
    failed = {"Authentication-Results": "mx.example.org; dkim=fail header.d=example.com; spf=pass"}
    smtp_send(inbound_server, _reply_to(sent.message), reply(sent.message, "done", headers=failed))
    assert "DKIM or SPF" in process_all(session, inbound_settings, now)[0]
    assert session.exec(select(EnrolmentStep)).one().status == "sent"


def test_an_out_of_office_reply_changes_nothing_and_shows_on_the_person(
    session, engine, inbound_settings, inbound_server, now
):
    sent = send_first_step(session, inbound_settings, engine, now)
    away = reply(
        sent.message,
        "Done with the year! I am out of the office until 8 March.",
        headers={"Auto-Submitted": "auto-replied", "X-Autoreply": "yes"},
    )
    away.replace_header("Subject", "Automatic reply: Out of Office")
    smtp_send(inbound_server, _reply_to(sent.message), away)
    process_all(session, inbound_settings, now)

    session.expire_all()
    assert session.exec(select(EnrolmentStep)).one().status == "sent"
    dan = session.get(Person, sent.learner.id)
    assert dan.out_of_office_at is not None
    inbound = session.exec(select(InboundMessage)).one()
    assert inbound.kind == "auto-reply"
    assert "out of office" in inbound.outcome
    # No answer of any kind went back: no mail loop can start.
    assert [r.id for r in session.exec(select(Outbox))] == [sent.row.id]


def test_a_5_1_1_dsn_stops_all_further_mail_and_shows_in_the_ledger_and_the_digest(
    session, engine, inbound_settings, inbound_server, now
):
    sent = send_first_step(session, inbound_settings, engine, now)
    verp = envelope_sender(sent.message)
    assert verp.startswith(f"b-{sent.row.id}-") and verp.endswith("@" + DOMAIN)
    smtp_send(inbound_server, verp, bounce_sample("postfix.eml", verp))
    process_all(session, inbound_settings, now)

    session.expire_all()
    assert session.get(Outbox, sent.row.id).state == "bounced"
    assert session.get(Outbox, sent.row.id).last_error.startswith("5.1.1 550 5.1.1")
    dan = session.get(Person, sent.learner.id)
    assert dan.undeliverable_at is not None

    # Two weeks on: more steps and reminders fall due for Dan, and his manager's digest.
    rows = []
    for day in range(1, 15):
        rows += send_due(session, inbound_settings, engine, now + timedelta(days=day, hours=2))
    to_dan = [r for r in rows if r.to_email == "dan@example.com"]
    assert to_dan and {r.state for r in to_dan} == {"suppressed"}
    assert not session.exec(
        select(CapturedMail).where(CapturedMail.to_email == "dan@example.com")
    ).all()[1:], "only the first step ever went out"
    counts = ledger.counts(session)
    assert counts["suppressed"] == len(to_dan) and counts["bounced"] == 1
    digests = [r for r in rows if r.kind == "digest" and r.to_email == "mia@example.com"]
    assert digests and digests[-1].state == "sent"
    text = (
        session.exec(select(CapturedMail).where(CapturedMail.message_id == digests[-1].message_id))
        .one()
        .raw.decode()
    )
    assert "We cannot reach Dan Learner" in text.replace("=\r\n", "").replace("=\n", "")


def test_the_same_message_delivered_twice_acts_once(
    session, engine, inbound_settings, inbound_server, now
):
    sent = send_first_step(session, inbound_settings, engine, now)
    answer = reply(sent.message, "A good read, I will try it on Thursday")
    smtp_send(inbound_server, _reply_to(sent.message), answer)
    smtp_send(inbound_server, _reply_to(sent.message), answer)  # a sender's retry
    assert len(session.exec(select(InboundMessage)).all()) == 1
    first = process_all(session, inbound_settings, now)
    inbound_id = session.exec(select(InboundMessage.id)).one()
    assert process(session, inbound_settings, inbound_id, now) is None  # a second job
    assert first == ["saved as the note on 'Read the one-pager' (not completed)"]
    es = session.exec(select(EnrolmentStep)).one()
    assert (es.status, es.note) == ("sent", "A good read, I will try it on Thursday")


def test_a_worker_killed_mid_processing_loses_nothing(
    session, engine, inbound_settings, inbound_server, environment, now, tmp_path
):
    sent = send_first_step(session, inbound_settings, engine, now)
    smtp_send(inbound_server, _reply_to(sent.message), reply(sent.message, "done, easy"))
    inbound_id = session.exec(select(InboundMessage.id)).one()
    # A worker that has done the work but dies (SIGKILL) before it commits.
    script = tmp_path / "dies.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import os, signal
            from dataclasses import replace
            from sqlmodel import Session
            from nudger.config import load_settings
            from nudger.db import get_engine, utcnow
            from nudger.inbound import processing

            settings = replace(load_settings(), inbound_domain={DOMAIN!r})
            real = processing._act
            def act_then_die(*args):
                outcome = real(*args)
                args[0].flush()  # written, not committed
                os.kill(os.getpid(), signal.SIGKILL)
            processing._act = act_then_die
            with Session(get_engine(settings.database_url)) as session:
                processing.process(session, settings, {inbound_id}, utcnow())
            """
        )
    )
    died = subprocess.run([sys.executable, str(script)], env=environment, timeout=120)
    assert died.returncode == -signal.SIGKILL

    session.expire_all()
    assert session.exec(select(EnrolmentStep)).one().status == "sent"
    assert pending(session, now + timedelta(days=1)) == [inbound_id]  # still there, not lost
    # The clock's next tick queues its job again (its first job died with the worker).
    counts = tick(session, inbound_settings, utcnow() + timedelta(minutes=5))
    assert counts["inbound_requeued"] == 1
    assert "1 received message queued to be read" in describe_tick(utcnow(), counts, True)
    assert f"inbound-{inbound_id}" in queue(inbound_settings, DEFAULT_QUEUE).job_ids
    assert process_all(session, inbound_settings, now) == [
        "completed 'Read the one-pager' with their note"
    ]
    es = session.exec(select(EnrolmentStep)).one()
    assert (es.status, es.note) == ("done", "easy")


def test_the_server_refuses_other_domains_forged_addresses_and_oversized_mail(
    session, engine, inbound_settings, inbound_server, now
):
    sent = send_first_step(session, inbound_settings, engine, now)
    good = _reply_to(sent.message)
    forged = good.replace(good.split("-")[2][:4], "0000")
    for rcpt in ("someone@example.com", f"r-{sent.row.id}-{'0' * 20}@{DOMAIN}", forged):
        with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
            smtp_send(inbound_server, rcpt, reply(sent.message, "done"))
        assert next(iter(refused.value.recipients.values()))[0] == 550
    big = reply(sent.message, "done " + "x" * 300_000)
    # Refused at MAIL FROM (the SIZE it declares) or after DATA, as a server may.
    with pytest.raises((smtplib.SMTPSenderRefused, smtplib.SMTPDataError)) as too_big:
        smtp_send(inbound_server, good, big)
    assert too_big.value.smtp_code == 552
    assert session.exec(select(InboundMessage)).all() == []


def _reply_to(msg) -> str:
    return str(msg["Reply-To"]).split("<")[-1].rstrip(">")
