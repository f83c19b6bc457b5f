"""Every page, the learner's as much as the admin's, refuses framing, sniffing and foreign code."""

from __future__ import annotations

import os

import pytest
from sqlmodel import select

from nudger import tokens
from nudger.models import CapturedMail, Outbox
from nudger.outbox.sending import send_batch
from tests.adminkit import make_admin, redis, sign_in
from tests.factories import make_person
from tests.pagekit import CHROMIUM, SEND, app_for, chromium, learner_with_first_step, live_server

__all__ = ["redis"]

STRICT = {
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


def assert_strict(response, where: str) -> None:
    for name, value in STRICT.items():
        assert response.headers.get(name) == value, f"{where}: {name}"
    policy = response.headers.get("Content-Security-Policy", "")
    for directive in ("frame-ancestors 'none'", "script-src 'self'", "style-src 'self'",
                      "object-src 'none'", "base-uri 'none'", "form-action 'self'"):  # fmt: skip
        assert directive in policy, f"{where}: {directive} not in {policy!r}"
    assert "unsafe-inline" not in policy, where


@pytest.fixture
def cohort(session, settings, now):
    """A learner with a sent step and a manager, and a link of every purpose."""
    boss = make_person(session, "boss@example.com", "Bea Boss")
    person, enrolment, step = learner_with_first_step(session, settings, now, manager=boss)
    make = lambda purpose, subject: tokens.make_token(settings, purpose, subject)  # noqa: E731
    return {
        "done": make("done", step.id),
        "me": make("me", enrolment.id),
        "team": make("team", boss.id),
        "mute": make("mute", enrolment.id),
        "prefs": make("prefs", person.id),
        "step": step,
    }


def test_every_page_family_sends_the_security_headers(session, engine, settings, now, cohort):
    client = app_for(settings, now + SEND).test_client()
    ids = list(session.exec(select(Outbox.id)))
    send_batch(engine, settings, ids, now + SEND)
    mail_id = session.exec(select(CapturedMail.id)).first()

    pages = {
        "done": client.get(f"/done/{cohort['done']}"),
        "me": client.get(f"/me/{cohort['me']}"),
        "team": client.get(f"/team/{cohort['team']}"),
        "mute": client.get(f"/mute/{cohort['mute']}"),
        "prefs": client.get(f"/prefs/{cohort['prefs']}"),
        "bad link": client.get("/done/not-a-token"),
        "fresh": client.post(f"/fresh/done/{cohort['done']}"),  # 400: no CSRF token
        "healthz": client.get("/healthz"),
        "outbox": client.get("/outbox"),
        "outbox mail": client.get(f"/outbox/{mail_id}"),
        "outbox eml": client.get(f"/outbox/{mail_id}.eml"),
        "static": client.get("/static/app.css"),
        "404": client.get("/no/such/page"),
        "405": client.get("/outbox/clear"),
        "400 bad query": client.get("/outbox?before=soon"),
        "admin login": client.get("/admin/login"),
    }

    assert pages["done"].status_code == 200 and pages["bad link"].status_code == 404
    assert pages["fresh"].status_code == 400 and pages["404"].status_code == 404
    assert pages["400 bad query"].status_code == 400 and pages["405"].status_code == 405
    for where, response in pages.items():
        assert_strict(response, where)


def test_a_signed_in_console_page_keeps_its_headers_and_stays_out_of_caches(
    settings, session, now, redis
):
    make_admin(session, now)
    client = app_for(settings, now).test_client()
    sign_in(client)
    response = client.get("/admin/")
    assert response.status_code == 200
    assert_strict(response, "/admin/")
    assert response.headers["Cache-Control"] == "no-store"


def test_an_email_in_the_outbox_may_be_framed_by_the_outbox_only(
    session, engine, settings, now, cohort
):
    client = app_for(settings, now + SEND).test_client()
    send_batch(engine, settings, list(session.exec(select(Outbox.id))), now + SEND)
    mail_id = session.exec(select(CapturedMail.id)).first()

    frame = client.get(f"/outbox/{mail_id}/html")

    policy = frame.headers["Content-Security-Policy"]
    assert policy.startswith("sandbox ") and "allow-scripts" not in policy
    assert "frame-ancestors 'self'" in policy and "script-src" not in policy
    assert frame.headers["X-Frame-Options"] == "SAMEORIGIN"
    assert frame.headers["X-Content-Type-Options"] == "nosniff"


@pytest.mark.browser
@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"{CHROMIUM} is not installed")
def test_chromium_shows_the_pages_and_the_framed_email_without_a_policy_refusal(
    session, engine, settings, now, cohort
):
    with live_server(settings, now + SEND) as (base, app), chromium() as browser:
        # Sent by the live app, so the email's links lead back to it.
        served = app.extensions["nudger.settings"]
        send_batch(engine, served, list(session.exec(select(Outbox.id))), now + SEND)
        mail_id = session.exec(select(CapturedMail.id)).first()
        page = browser.new_page()
        refused: list[str] = []
        # favicon.ico is a 404 (there is none); anything else in red is a refusal.
        page.on(
            "console",
            lambda m: (
                None
                if m.type != "error" or m.text.startswith("Failed to load resource")
                else refused.append(m.text)
            ),
        )

        page.goto(f"{base}/me/{cohort['me']}")
        bar = page.locator("progress.bar").first
        assert bar.get_attribute("value") == "0" and bar.bounding_box()["width"] > 100

        page.goto(f"{base}/outbox/{mail_id}")
        frame = page.frame_locator("iframe.mail")
        button = frame.get_by_role("link", name="Mark as done")
        assert button.is_visible()  # a blocked frame would have no content
        with page.context.expect_page() as opened:
            button.click()
        done = opened.value
        done.wait_for_load_state()
        assert done.url.startswith(f"{base}/done/")
        assert done.get_by_role("button", name="Mark as done").is_visible()

        assert refused == [], refused

        # Another site cannot frame a learner's page.
        page.set_content(f'<iframe src="{base}/done/{cohort["done"]}"></iframe>')
        page.wait_for_timeout(500)
        assert "Mark as done" not in page.frames[1].content()
        assert any("frame-ancestors 'none'" in text for text in refused), refused
