"""Journeys in the console: the timeline, every email previewed as sent, "send me a test"."""

from __future__ import annotations

import dataclasses
import re

import pytest
from sqlmodel import select

from nudger.calendar import WorkCalendar
from nudger.mail import previews
from nudger.mail.compose import compose
from nudger.models import AuditLog, Journey, Outbox
from nudger.outbox.sending import send_batch
from nudger.queue import SEND_QUEUE, queue
from nudger.schedule import default_start
from nudger.tick.run import tick
from tests.adminkit import admin_app, make_admin, post, redis, sign_in
from tests.factories import make_enrolment, make_journey, make_person
from tests.smtpd import SmtpSink

__all__ = ["redis"]

STEPS = [
    {"key": "read", "day": 0, "kind": "read", "title": "Read the <SBI> one-pager", "minutes": 15,
     "body": "Read it **twice**.", "link": "https://intranet.example.com/sbi.pdf"},
    {"key": "talk", "day": 3, "kind": "feedback", "title": "Ask your manager", "minutes": 30,
     "confirmed_by": "manager"},
    {"key": "reflect", "day": 6, "kind": "reflect", "title": "Reflect"},
]  # fmt: skip


@pytest.fixture
def console(settings, session, now, redis):
    make_journey(session, steps=STEPS)
    make_admin(session, now)
    client = admin_app(settings, now).test_client()
    sign_in(client)
    return client


def test_the_journey_page_draws_the_steps_on_a_timeline(console):
    html = console.get("/admin/journeys/giving-feedback").get_data(as_text=True)
    svg = re.search(r'<svg class="chart".*?</svg>', html, re.S).group(0)
    assert '<title id="timeline-t">Giving Feedback: when each step is sent and due</title>' in svg
    assert "1. Read the &lt;SBI&gt; one-pager" in svg  # escaped, never markup
    assert "Read the &lt;SBI&gt; one-pager: day 0, due day 2" in svg
    assert ">M<title>manager told 3 working days after due" in svg
    assert "reminder 1 working days after due" in svg


def test_every_email_of_the_journey_has_a_preview(console, session):
    html = console.get("/admin/journeys/giving-feedback").get_data(as_text=True)
    keys = re.findall(r'href="/admin/journeys/giving-feedback/emails/([^"]+)"', html)
    kinds = {k.split(":")[0] for k in keys}
    assert kinds == {"step", "reminder", "digest", "invite-update", "invite-cancel"}
    assert len([k for k in keys if k.startswith("step:")]) == 3
    assert {"digest:manager", "digest:skip_level", "digest:admin"} <= set(keys)
    for key in keys:
        page = console.get(f"/admin/journeys/giving-feedback/emails/{key}")
        assert page.status_code == 200, key
        frame = console.get(f"/admin/journeys/giving-feedback/emails/{key}/html")
        policy = frame.headers["Content-Security-Policy"]
        assert policy.startswith("sandbox") and "allow-scripts" not in policy
        assert "default-src 'none'" in policy and "script-src" not in policy
        assert "<html" in frame.get_data(as_text=True)


def test_the_preview_page_shows_subject_text_invite_and_a_sandboxed_frame(console):
    html = console.get("/admin/journeys/giving-feedback/emails/step:read").get_data(as_text=True)
    assert re.search(r"<h1>[^<]*Read the &lt;SBI&gt; one-pager</h1>", html)
    assert 'sandbox="allow-same-origin allow-popups allow-popups-to-escape-sandbox"' in html
    assert "allow-scripts" not in html
    assert "BEGIN:VCALENDAR" in html and "METHOD:REQUEST" in html
    assert "Hi Sam," in html
    digest = console.get("/admin/journeys/giving-feedback/emails/digest:manager").get_data(
        as_text=True
    )
    assert "Waiting for you to confirm it" in digest or "Confirm" in digest
    assert console.get("/admin/journeys/giving-feedback/emails/step:nope").status_code == 404


def without_tokens(text: str) -> str:
    return re.sub(r"/(done|me|mute|team|prefs)/[A-Za-z0-9._-]+", r"/\1/TOKEN", text)


def test_a_step_preview_is_the_email_the_worker_sends(settings, session, now):
    """Same templates, same invite: a real learner like the sample gets the same message."""
    journey = make_journey(session, steps=STEPS)
    sample = make_person(session, "sam.sample@example.com", "Sam Sample", timezone="UTC",
                         country="")  # fmt: skip
    start = default_start(WorkCalendar(), "UTC", now)
    enrolment = make_enrolment(session, sample, journey, start)
    send_at = previews.load_plan(session, journey)[0].send_at(
        WorkCalendar(), "UTC", start, 0, previews.load_plan(session, journey)[0].steps[0]
    )
    tick(session, settings, send_at, enqueue=False)
    row = session.exec(select(Outbox).where(Outbox.enrolment_id == enrolment.id)).one()
    real = compose(session, settings, row, send_at)
    preview = previews.build_preview(session, settings, journey, "step:read", now)
    assert preview["Subject"] == real["Subject"]
    assert preview["X-Nudger-Kind"] == real["X-Nudger-Kind"] == "step"
    assert preview["Date"] == real["Date"]
    assert without_tokens(preview.get_body(("plain",)).get_content()) == without_tokens(
        real.get_body(("plain",)).get_content()
    )
    assert without_tokens(preview.get_body(("html",)).get_content()) == without_tokens(
        real.get_body(("html",)).get_content()
    )


def test_send_me_a_test_mails_the_preview_to_the_admin(console, settings, session, engine, now):
    page = console.get("/admin/journeys/giving-feedback/emails/step:read").get_data(as_text=True)
    nonce = re.search(r'name="nonce" value="([^"]+)"', page).group(1)
    url = "/admin/journeys/giving-feedback/emails/step:read/test"
    first = post(console, url, {"nonce": nonce}, follow_redirects=True).get_data(as_text=True)
    again = post(console, url, {"nonce": nonce}, follow_redirects=True).get_data(as_text=True)
    assert "Test email queued to admin@example.com" in first
    assert "That test was already sent to admin@example.com" in again  # a double click
    row = session.exec(select(Outbox).where(Outbox.kind == "test")).one()
    assert (row.to_email, row.payload["preview"]) == ("admin@example.com", "step:read")
    [job] = queue(settings, SEND_QUEUE).jobs
    assert job.args[0] == [row.id]
    with SmtpSink() as sink:
        smtp = dataclasses.replace(settings, smtp_url=sink.url())
        assert send_batch(engine, smtp, job.args[0], now)["sent"] == 1
        [received] = sink.messages
    assert received.rcpt_tos == ["admin@example.com"]
    journey = session.exec(select(Journey)).one()
    shown = previews.build_preview(session, settings, journey, "step:read", now)["Subject"]
    assert received.message["Subject"] == f"[Test] {shown}"
    assert received.message["X-Nudger-Kind"] == "test"
    assert received.message["X-Nudger-Preview"] == "step"
    assert "Hi Sam," in received.message.get_body(("plain",)).get_content()
    audit = session.exec(select(AuditLog).where(AuditLog.action == "email.test")).one()
    assert audit.actor == "admin@example.com"
