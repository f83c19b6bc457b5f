"""Claiming, sending and marking outbox rows, over a real SMTP server on loopback."""

from __future__ import annotations

import copy
import dataclasses
from datetime import UTC, date, datetime, timedelta
from email.generator import BytesGenerator
from io import BytesIO

import pytest
from sqlmodel import select

from nudger.mail.render import KINDS
from nudger.models import CapturedMail, EnrolmentStep, Outbox
from nudger.outbox.sending import claim, renew, send_batch
from nudger.outbox.transport.smtp_data import wire
from nudger.tick.run import requeue_stale, tick
from tests.factories import make_enrolment, make_journey, make_person
from tests.mail.test_emails import ctx_for, message, request_invite
from tests.smtpd import SmtpSink

START = date(2027, 3, 1)  # a Monday; London is on GMT until 28 March
NINE = datetime(2027, 3, 1, 9, 0, tzinfo=UTC)  # step 1 goes out
LEASE = timedelta(minutes=5)


def due(session, settings, learners: int = 3) -> list[int]:
    """Enrol `learners` people, tick at nine and return the step emails' outbox ids."""
    journey = make_journey(session)
    for i in range(learners):
        person = make_person(session, f"learner{i}@example.com", f"Learner {i}")
        make_enrolment(session, person, journey, START)
    tick(session, settings, NINE, enqueue=False)
    return list(session.exec(select(Outbox.id).order_by(Outbox.id)))


def rows(session, ids: list[int]) -> list[Outbox]:
    session.expire_all()
    return [session.get(Outbox, i) for i in ids]


def over(settings, sink: SmtpSink, **changes):
    return dataclasses.replace(settings, smtp_url=sink.url(), **changes)


def test_a_batch_goes_out_over_one_connection_and_every_row_is_marked_sent(
    session, engine, settings
):
    ids = due(session, settings, learners=4)
    with SmtpSink() as sink:
        counts = send_batch(engine, over(settings, sink), ids, NINE)

    assert counts == {"sent": 4, "skipped": 0}
    assert sink.connections == 1
    assert sorted(m.rcpt_tos[0] for m in sink.messages) == [
        f"learner{i}@example.com" for i in range(4)
    ]
    for row in rows(session, ids):
        assert (row.state, row.attempts, row.lease_until) == ("sent", 1, None)
        assert NINE <= row.sent_at < NINE + timedelta(seconds=30)  # `now` plus time spent


def test_the_row_records_the_message_id_and_subject_the_recipient_got(session, engine, settings):
    ids = due(session, settings, learners=2)
    with SmtpSink() as sink:
        send_batch(engine, over(settings, sink), ids, NINE)

    got = {m.rcpt_tos[0]: m.message for m in sink.messages}
    for row in rows(session, ids):
        assert row.message_id == got[row.to_email]["Message-ID"]
        assert row.subject == got[row.to_email]["Subject"]
        assert row.message_id.startswith(f"<nudger.{row.id}.")


def test_a_row_another_worker_claimed_is_skipped(session, engine, settings):
    ids = due(session, settings, learners=2)
    assert claim(session, ids[:1], NINE, LEASE) == ids[:1]
    with SmtpSink() as sink:
        counts = send_batch(engine, over(settings, sink), ids, NINE)

    assert counts == {"sent": 1, "skipped": 1}
    assert [m.rcpt_tos[0] for m in sink.messages] == [rows(session, ids)[1].to_email]


def test_a_duplicate_job_does_not_send_a_row_before_its_backoff_is_over(session, engine, settings):
    ids = due(session, settings, learners=1)
    with SmtpSink() as sink:
        sink.fail_next(1, 451)
        assert send_batch(engine, over(settings, sink), ids, NINE)["retrying"] == 1
        # A second job for the same rows, enqueued at nine (before the backoff began).
        counts = send_batch(engine, over(settings, sink), ids, NINE, due_by=NINE)

    assert counts == {"skipped": 1}
    assert sink.messages == []
    assert rows(session, ids)[0].state == "pending"


def test_a_lease_that_ran_out_and_went_to_another_worker_is_not_renewed(session, settings):
    ids = due(session, settings, learners=2)
    first = claim(session, ids, NINE, LEASE)
    held = NINE + LEASE
    # The first worker stalls; the tick returns its rows and a second worker claims one.
    later = NINE + LEASE + timedelta(seconds=1)
    assert requeue_stale(session, later) == 2
    session.commit()
    assert claim(session, ids[:1], later, LEASE) == ids[:1]

    kept = renew(session, first, held, later + LEASE)

    assert kept == set()  # ids[1] is pending again, ids[0] is the other worker's
    assert rows(session, ids)[0].lease_until == later + LEASE


def test_the_lease_is_renewed_during_a_long_batch(session, engine, settings):
    ids = due(session, settings, learners=3)
    # A one-second lease is renewed every third of a second; each message takes 0.4 s.
    with SmtpSink(delay=0.4) as sink:
        counts = send_batch(engine, over(settings, sink, send_lease_seconds=1), ids, NINE)

    assert counts == {"sent": 3, "skipped": 0}
    assert len(sink.messages) == 3


def test_a_message_of_an_unknown_kind_fails_with_a_clear_reason(session, engine, settings):
    row = Outbox(dedupe_key="x:1", kind="postcard", to_email="a@example.com", payload={})
    session.add(row)
    session.commit()
    with SmtpSink() as sink:
        counts = send_batch(engine, over(settings, sink), [row.id], NINE)

    assert counts == {"failed": 1, "skipped": 0}
    assert sink.messages == []
    failed = rows(session, [row.id])[0]
    assert failed.state == "failed"
    assert failed.last_error == "no email is defined for messages of kind 'postcard'"


def test_a_message_that_cannot_be_rendered_fails_and_the_batch_goes_on(session, engine, settings):
    ids = due(session, settings, learners=2)
    broken = rows(session, ids)[0]
    broken.payload = {"steps": "a payload from some other version"}
    session.commit()
    with SmtpSink() as sink:
        counts = send_batch(engine, over(settings, sink), ids, NINE)

    assert counts == {"failed": 1, "sent": 1, "skipped": 0}
    assert rows(session, ids)[0].last_error.startswith("could not render: ")
    assert len(sink.messages) == 1


def test_a_step_cancelled_before_its_email_went_out_is_not_sent(session, engine, settings):
    ids = due(session, settings, learners=1)
    for es in session.exec(select(EnrolmentStep)):
        es.status = "cancelled"
    session.commit()
    with SmtpSink() as sink:
        counts = send_batch(engine, over(settings, sink), ids, NINE)

    assert counts == {"cancelled": 1, "skipped": 0}
    assert sink.messages == []
    assert rows(session, ids)[0].state == "cancelled"


def test_transient_failures_stop_after_the_attempt_limit(session, engine, settings):
    ids = due(session, settings, learners=1)
    limited = dataclasses.replace(settings, max_attempts=2)
    with SmtpSink() as sink:
        sink.fail_next(2, 451, "4.7.1 Greylisted, try again")
        send_batch(engine, over(limited, sink), ids, NINE)
        counts = send_batch(engine, over(limited, sink), ids, NINE + timedelta(minutes=1))

    assert counts == {"failed": 1, "skipped": 0}
    row = rows(session, ids)[0]
    assert (row.state, row.attempts) == ("failed", 2)
    assert row.last_error == "gave up after 2 attempts: 451 4.7.1 Greylisted, try again"


def test_the_development_outbox_keeps_every_message_to_show_it(session, engine, settings):
    ids = due(session, settings, learners=2)
    counts = send_batch(engine, settings, ids, NINE)  # NUDGER_SMTP_URL=outbox:

    assert counts == {"sent": 2, "skipped": 0}
    captured = session.exec(select(CapturedMail).order_by(CapturedMail.id)).all()
    assert [c.message_id for c in captured] == [r.message_id for r in rows(session, ids)]
    assert {c.kind for c in captured} == {"step"}
    assert all(b"BEGIN:VCALENDAR" in c.raw for c in captured)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("invites", [0, 1, 2])
def test_messages_go_on_the_wire_byte_for_byte_as_smtplib_would_write_them(kind, invites):
    attached = [request_invite(f"step-{n}") for n in range(invites)]
    msg = message(kind, ctx_for(kind), invite=attached or None)
    expected = BytesIO()
    # What smtplib.send_message writes: the Generator over a copy, CRLF line ends.
    BytesGenerator(expected).flatten(copy.copy(msg), linesep="\r\n")

    assert wire(msg) == expected.getvalue()


def test_a_row_whose_worker_dies_every_time_fails_after_the_attempt_limit(session, settings):
    ids = due(session, settings, learners=2)
    limited = dataclasses.replace(settings, max_attempts=3)
    when = NINE
    for _ in range(3):  # claimed, and its worker dies before it is marked
        claim(session, ids[:1], when, LEASE)
        when += LEASE + timedelta(minutes=1)
        counts = tick(session, limited, when, enqueue=False)

    failed, other = rows(session, ids)
    assert counts["requeued"] == 0
    assert (failed.state, failed.attempts) == ("failed", 3)
    assert failed.last_error == "gave up after 3 attempts: the worker stopped while sending it"
    assert other.state == "pending"
