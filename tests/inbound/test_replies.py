"""What a stored message does once processed: steps, check-ins, confirmations, bounces."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from dataclasses import replace
from datetime import timedelta

import pytest
from sqlmodel import select

from nudger.inbound.receiving import store
from nudger.models import (
    AuditLog,
    Checkin,
    EnrolmentStep,
    Event,
    InboundMessage,
    Outbox,
    Person,
    Rating,
)
from nudger.privacy.erasure import erase_person
from nudger.privacy.retention import prune_mail
from nudger.progress import complete_step
from nudger.roster import import_roster
from tests.adminkit import admin_app, make_admin, post, sign_in
from tests.factories import make_enrolment, make_person
from tests.inbound.kit import (
    bounce_sample,
    captured,
    envelope_sender,
    process_all,
    reply,
    send_due,
    send_first_step,
)
from tests.measure.kit import make_measured_journey

TWO_STEPS = [
    {"key": "read", "day": 0, "kind": "read", "title": "Read the one-pager", "minutes": 15},
    {"key": "watch", "day": 0, "kind": "video", "title": "Watch the talk", "minutes": 20},
    {"key": "reflect", "day": 5, "kind": "reflect", "title": "Reflect", "minutes": 10},
]


def deliver(session, msg, rcpt: str, now) -> int:
    raw = msg if isinstance(msg, bytes) else msg.as_bytes()
    inbound_id, _ = store(session, raw, recipient=rcpt, envelope_from="", via="smtp", now=now)
    return inbound_id


def reply_address(msg) -> str:
    return str(msg["Reply-To"]).split("<")[-1].rstrip(">")


def steps(session) -> list[EnrolmentStep]:
    session.expire_all()
    return list(session.exec(select(EnrolmentStep).order_by(EnrolmentStep.step_id)))


def test_without_an_inbound_domain_emails_carry_no_reply_to_and_no_return_path(
    session, engine, settings, now
):
    sent = send_first_step(session, settings, engine, now)
    assert sent.message["Reply-To"] is None and sent.message["Return-Path"] is None
    assert 'reply "done"' not in sent.message.get_body(("plain",)).get_content()


def test_step_emails_carry_a_signed_reply_to_and_a_verp_return_path(
    session, engine, inbound_settings, now
):
    sent = send_first_step(session, inbound_settings, engine, now)
    assert reply_address(sent.message).startswith(f"r-{sent.row.id}-")
    assert envelope_sender(sent.message).startswith(f"b-{sent.row.id}-")
    assert str(sent.message["Reply-To"]).startswith("Nudger <")
    assert 'Or reply "done" to this email' in sent.message.get_body(("plain",)).get_content()


@pytest.mark.parametrize(
    "text", ["done", "Did it", "Completed.", "✓", "Erledigt", "C'est fait", "Hecho", "Feito"]
)
def test_done_in_any_of_five_languages_completes_every_open_step_of_the_email(
    session, engine, inbound_settings, now, text
):
    sent = send_first_step(session, inbound_settings, engine, now, steps=TWO_STEPS)
    deliver(session, reply(sent.message, text), reply_address(sent.message), now)
    process_all(session, inbound_settings, now)
    assert [es.status for es in steps(session)] == ["done", "done"]


def test_done_2_completes_only_the_second_step_and_keeps_the_rest_as_its_note(
    session, engine, inbound_settings, now
):
    sent = send_first_step(session, inbound_settings, engine, now, steps=TWO_STEPS)
    deliver(session, reply(sent.message, "done 2 - great talk"), reply_address(sent.message), now)
    assert process_all(session, inbound_settings, now) == [
        "completed 'Watch the talk' with their note"
    ]
    read, watch = steps(session)
    assert (read.status, watch.status, watch.note) == ("sent", "done", "great talk")


def test_a_reply_that_is_not_done_is_kept_as_the_note_and_shows_in_the_report(
    session, engine, inbound_settings, settings, now, tmp_path
):
    sent = send_first_step(session, inbound_settings, engine, now)
    deliver(session, reply(sent.message, "Not yet, Thursday"), reply_address(sent.message), now)
    process_all(session, inbound_settings, now)
    (es,) = steps(session)
    assert (es.status, es.note) == ("sent", "Not yet, Thursday")


def test_a_manager_confirms_a_step_by_replying_yes_to_the_digest(
    session, engine, inbound_settings, now
):
    confirmed = [
        {"key": "ask", "day": 0, "kind": "feedback", "title": "Ask for feedback",
         "confirmed_by": "manager"},
        {"key": "later", "day": 9, "kind": "read", "title": "Later"},
    ]  # fmt: skip
    sent = send_first_step(session, inbound_settings, engine, now, steps=confirmed)
    (es,) = steps(session)
    complete_step(session, es.id, now + timedelta(hours=3))
    digest = None
    for day in range(1, 4):
        for row in send_due(session, inbound_settings, engine, now + timedelta(days=day, hours=2)):
            if row.kind == "digest":
                digest = row
    assert digest is not None and digest.to_email == "mia@example.com"
    msg = captured(session, digest)
    deliver(session, reply(msg, "Yes"), reply_address(msg), now + timedelta(days=4))
    assert process_all(session, inbound_settings, now + timedelta(days=4)) == ["confirmed 1 step"]
    (es,) = steps(session)[:1]
    assert (es.status, es.confirmed_by_id) == ("done", sent.manager.id)


def test_a_reply_to_a_check_in_with_one_digit_per_behaviour_records_the_ratings(
    session, engine, inbound_settings, now
):
    journey = make_measured_journey(session)
    learner = make_person(session, "dan@example.com", "Dan Learner")
    make_enrolment(session, learner, journey, now.date())
    rows = send_due(session, inbound_settings, engine, now + timedelta(hours=2))
    checkin_row = next(r for r in rows if r.kind == "checkin")
    msg = captured(session, checkin_row)
    deliver(session, reply(msg, "4 2"), reply_address(msg), now + timedelta(hours=3))
    assert process_all(session, inbound_settings, now + timedelta(hours=3)) == [
        "recorded the ratings 4 2"
    ]
    ratings = session.exec(select(Rating).order_by(Rating.id)).all()
    assert [(r.behaviour, r.value) for r in ratings] == [
        ("asks-open-questions", 4),
        (ratings[1].behaviour, 2),
    ]
    session.expire_all()
    assert session.get(Checkin, checkin_row.payload["checkin_ids"][0]).answered_at is not None


@pytest.mark.parametrize(
    ("sample", "status"),
    [
        ("postfix.eml", "5.1.1"),
        ("exim.eml", "5.1.1"),
        ("exchange.eml", "5.1.10"),
        ("gmail.eml", "5.1.1"),
    ],
)
def test_a_permanent_bounce_in_each_servers_format_makes_the_address_undeliverable(
    session, engine, inbound_settings, now, sample, status
):
    sent = send_first_step(session, inbound_settings, engine, now)
    verp = envelope_sender(sent.message)
    deliver(session, bounce_sample(sample, verp), verp, now)
    process_all(session, inbound_settings, now)
    session.expire_all()
    row = session.get(Outbox, sent.row.id)
    assert (row.state, row.last_error.split()[0]) == ("bounced", status)
    assert session.get(Person, sent.learner.id).undeliverable_reason.startswith(status)
    inbound = session.exec(select(InboundMessage)).one()
    assert (inbound.kind, inbound.status) == ("bounce", status)
    bounced = session.exec(select(Event).where(Event.type == "email.bounced")).one()
    assert bounced.enrolment_id == sent.row.enrolment_id
    assert bounced.data == {"outbox_id": sent.row.id, "kind": "step", "status": status,
                            "permanent": True, "person_id": sent.learner.id}  # fmt: skip


def test_three_temporary_failures_within_a_week_make_the_address_undeliverable(
    session, engine, inbound_settings, now
):
    sent = send_first_step(session, inbound_settings, engine, now)
    verp = envelope_sender(sent.message)
    for day in range(3):
        at = now + timedelta(days=day * 2)
        deliver(session, bounce_sample("postfix-delayed.eml", verp, f"delay{day}"), verp, at)
        process_all(session, inbound_settings, at)
        session.expire_all()
        undeliverable = session.get(Person, sent.learner.id).undeliverable_at
        assert (undeliverable is not None) == (day == 2)


def test_an_admin_lifts_the_suppression_and_it_is_audited(session, engine, inbound_settings, now):
    sent = send_first_step(session, inbound_settings, engine, now)
    verp = envelope_sender(sent.message)
    deliver(session, bounce_sample("gmail.eml", verp), verp, now)
    process_all(session, inbound_settings, now)
    make_admin(session, now)
    client = admin_app(inbound_settings, now).test_client()
    sign_in(client)
    page = client.get(f"/admin/people/{sent.learner.id}").get_data(as_text=True)
    assert "Undeliverable since" in page and "5.1.1" in page and "Mail received (1)" in page
    listing = client.get("/admin/inbound").get_data(as_text=True)
    assert "1 address is undeliverable" in listing
    assert "NUDGER_INBOUND_DOMAIN</code> is not set" not in listing
    assert "cannot be reached" in client.get("/admin/").get_data(as_text=True)

    response = post(client, f"/admin/people/{sent.learner.id}/deliverable")
    assert response.status_code == 302
    session.expire_all()
    assert session.get(Person, sent.learner.id).undeliverable_at is None
    audit = session.exec(select(AuditLog).where(AuditLog.action == "person.deliverable")).one()
    assert audit.actor == "admin@example.com" and audit.detail["was"].startswith("5.1.1")


def test_the_report_says_whether_each_enrolment_is_deliverable(
    session, engine, inbound_settings, now, tmp_path
):
    sent = send_first_step(session, inbound_settings, engine, now)
    verp = envelope_sender(sent.message)
    deliver(session, bounce_sample("exim.eml", verp), verp, now)
    process_all(session, inbound_settings, now)
    env = {
        "NUDGER_INSTANCE_PATH": str(tmp_path),
        "NUDGER_DATABASE_URL": inbound_settings.database_url,
        "NUDGER_SECRET_KEY": inbound_settings.secret_key,
        "PATH": "/usr/bin:/bin",
    }
    out = subprocess.run(
        [sys.executable, "-m", "nudger.cli", "report", "--format", "json"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    (enrolment,) = json.loads(out.stdout)["enrolments"]
    assert enrolment["deliverable"] is False


def test_post_inbound_takes_raw_mime_with_the_shared_secret_only(
    session, engine, inbound_settings, now
):
    sent = send_first_step(session, inbound_settings, engine, now)
    raw = reply(sent.message, "done, via the provider").as_bytes()
    client = admin_app(inbound_settings, now).test_client()
    assert client.post("/inbound", data=raw).status_code == 401
    wrong = {"Authorization": "Bearer nope"}
    assert client.post("/inbound", data=raw, headers=wrong).status_code == 401
    good = {"Authorization": "Bearer s3cret-route", "Content-Type": "message/rfc822"}
    assert client.post("/inbound", data=raw, headers=good).status_code == 202
    assert client.post("/inbound", data=raw, headers=good).status_code == 200  # again: no-op
    assert len(session.exec(select(InboundMessage)).all()) == 1
    process_all(session, inbound_settings, now)
    assert steps(session)[0].status == "done"
    # A raw message posted with the form type (as `curl --data-binary` does) is read whole.
    second = reply(sent.message, "done, again").as_bytes()
    as_form = {"Authorization": "Bearer s3cret-route",
               "Content-Type": "application/x-www-form-urlencoded"}  # fmt: skip
    assert client.post("/inbound", data=second, headers=as_form).status_code == 202
    assert len(session.exec(select(InboundMessage)).all()) == 2
    off = admin_app(replace(inbound_settings, inbound_secret=""), now).test_client()
    assert off.post("/inbound", data=raw, headers=good).status_code == 404


def test_erasing_a_person_erases_the_mail_they_sent_back(session, engine, inbound_settings, now):
    sent = send_first_step(session, inbound_settings, engine, now)
    deliver(session, reply(sent.message, "Not yet"), reply_address(sent.message), now)
    process_all(session, inbound_settings, now)
    erase_person(session, sent.learner.id, actor="admin@example.com", now=now)
    session.commit()
    session.expire_all()
    inbound = session.exec(select(InboundMessage)).one()
    assert (inbound.raw, inbound.from_email, inbound.subject) == (b"", "", "")
    assert b"dan@example.com" not in inbound.raw and inbound.outcome == "erased"


def test_the_managers_digest_says_a_learner_is_out_of_office(
    session, engine, inbound_settings, now
):
    sent = send_first_step(session, inbound_settings, engine, now)
    away = reply(
        sent.message, "I am away until the 15th.", headers={"Auto-Submitted": "auto-replied"}
    )
    deliver(session, away, reply_address(sent.message), now + timedelta(days=1))
    process_all(session, inbound_settings, now + timedelta(days=1))
    digests = []
    for day in range(1, 10):
        rows = send_due(session, inbound_settings, engine, now + timedelta(days=day, hours=2))
        digests += [r for r in rows if r.kind == "digest" and r.to_email == "mia@example.com"]
    assert digests
    text = captured(session, digests[0]).get_body(("plain",)).get_content()
    assert "Dan Learner" in text and "Out of office: an automatic reply came back on" in text


def test_received_mail_is_pruned_with_the_rest_after_the_retention_period(
    session, engine, inbound_settings, now
):
    sent = send_first_step(session, inbound_settings, engine, now)
    deliver(session, reply(sent.message, "Not yet"), reply_address(sent.message), now)
    process_all(session, inbound_settings, now)
    prune_mail(session, now + timedelta(days=179), 180)
    session.expire_all()
    assert b"Not yet" in session.exec(select(InboundMessage)).one().raw  # not old enough
    prune_mail(session, now + timedelta(days=181), 180)
    session.expire_all()
    inbound = session.exec(select(InboundMessage)).one()
    assert inbound.raw == b"" and inbound.outcome.startswith("saved as the note")


def test_the_inbound_page_says_when_nothing_can_be_received(session, settings, now):
    make_admin(session, now)
    client = admin_app(settings, now).test_client()  # NUDGER_INBOUND_DOMAIN unset
    sign_in(client)
    page = client.get("/admin/inbound").get_data(as_text=True)
    assert "<code>NUDGER_INBOUND_DOMAIN</code> is not set" in page


def test_enrolling_an_undeliverable_learner_again_from_a_csv_lifts_the_suppression(
    session, engine, inbound_settings, now
):
    sent = send_first_step(session, inbound_settings, engine, now)
    verp = envelope_sender(sent.message)
    deliver(session, bounce_sample("gmail.eml", verp), verp, now)
    process_all(session, inbound_settings, now)
    session.expire_all()
    assert session.get(Person, sent.learner.id).undeliverable_at is not None
    csv = (
        "email,first_name,last_name,manager_email,journey,timezone\n"
        "dan@example.com,Dan,Learner,mia@example.com,giving-feedback,Europe/London\n"
    )
    result = import_roster(session, inbound_settings, io.BytesIO(csv.encode()), now=now,
                           actor="admin@example.com")  # fmt: skip
    assert result.ok
    session.expire_all()
    dan = session.get(Person, sent.learner.id)
    assert (dan.undeliverable_at, dan.undeliverable_reason) == (None, None)
    lifted = session.exec(select(AuditLog).where(AuditLog.action == "person.deliverable")).one()
    assert (lifted.actor, lifted.subject_id) == ("admin@example.com", dan.id)
