"""Headless Chromium walks a learner and a manager through the real pages.

The learner starts from the link in a real email: the tick decides the step,
the outbox renders and "sends" it to the capture transport, and the test reads
the done URL out of the captured MIME message. Screenshots land in
docs/screenshots/ for the README.
"""

from __future__ import annotations

import os
import re
from datetime import timedelta
from email import policy
from email.parser import BytesParser
from pathlib import Path

import pytest
from sqlmodel import select

from nudger import tokens
from nudger.models import CapturedMail, LinkHit, Outbox
from nudger.outbox.sending import send_batch
from nudger.progress import complete_step
from nudger.tick.run import tick
from tests.factories import make_enrolment, make_journey, make_person
from tests.pagekit import (
    CHROMIUM,
    SEND,
    assert_accessible,
    chromium,
    fresh,
    live_server,
    sent_steps,
)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"{CHROMIUM} is not installed"),
]

SHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1100, "height": 900}

STEPS = [
    {
        "key": "read-sbi",
        "day": 0,
        "kind": "read",
        "title": "Read the SBI one-pager",
        "minutes": 15,
        "link": "https://intranet.example.com/sbi.pdf",
        "body": "Situation, behaviour, impact. Read it twice, then note one "
        "conversation from last week where it would have helped.",
    },
    {"key": "watch", "day": 0, "kind": "video", "title": "Watch the 3-minute SBI video"},
    {"key": "try-sbi", "day": 2, "kind": "practice", "title": "Use SBI once", "minutes": 20},
    {
        "key": "manager-feedback",
        "day": 4,
        "kind": "feedback",
        "title": "Ask your manager for feedback on a real conversation",
        "minutes": 30,
        "confirmed_by": "manager",
    },
    {"key": "reflect", "day": 6, "kind": "reflect", "title": "Reflect: what changed?"},
]


def shot(page, name: str) -> None:
    """Check the page with axe-core, then save its screenshot."""
    assert_accessible(page)
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / name), full_page=True)


def emailed_done_url(session, engine, settings, base: str, at) -> str:
    """Send the outbox's pending step email and return the done link a person would click."""
    ids = [r.id for r in session.exec(select(Outbox).where(Outbox.kind == "step"))]
    assert send_batch(engine, settings, ids, at)["sent"] == len(ids)
    mail = session.exec(select(CapturedMail).where(CapturedMail.kind == "step")).first()
    msg = BytesParser(policy=policy.default).parsebytes(mail.raw)
    text = msg.get_body(("plain",)).get_content()
    match = re.search(rf"Mark it done here:\s*({re.escape(base)}/done/\S+)", text)
    assert match, text
    html = msg.get_body(("html",)).get_content()
    assert f'href="{match.group(1)}"' in html  # the button carries the same link
    return match.group(1)


def only_local_requests(page, base: str) -> list[str]:
    """Collect every request the page makes that leaves the server (there must be none)."""
    outside: list[str] = []
    page.on("request", lambda r: None if r.url.startswith(base) else outside.append(r.url))
    return outside


def test_a_learner_goes_from_the_email_link_to_done_with_a_note(settings, session, engine, now):
    journey = make_journey(session, "giving-feedback", steps=STEPS)
    person = make_person(session, "maya@example.com", "Maya Patel")
    others = [make_person(session, f"p{i}@example.com", f"Peer {i}") for i in range(3)]
    enrolment = make_enrolment(session, person, journey, now.date())
    for other in others:
        make_enrolment(session, other, journey, now.date())
    at = now + SEND
    with live_server(settings, at) as (base, app):
        live = app.extensions["nudger.settings"]
        tick(session, live, at, enqueue=False)
        for i, other in enumerate(others[:2]):  # two peers got there first; one shares a note
            peer = session.exec(select(Outbox).where(Outbox.to_email == other.email)).one()
            note = "Read it on paper; the impact examples stuck better." if i else None
            complete_step(session, peer.payload["enrolment_step_ids"][0], at, note=note,
                          for_others=bool(note))  # fmt: skip
        url = emailed_done_url(session, engine, live, base, at)
        with chromium() as browser:
            page = browser.new_page(viewport=PHONE)
            outside = only_local_requests(page, base)
            page.goto(url)
            assert page.get_by_role("heading", name="Read the SBI one-pager").is_visible()
            assert page.get_by_role("link", name="Open the material").is_visible()
            others_notes = page.get_by_role("region", name="From others who did this step")
            assert "the impact examples stuck better" in others_notes.inner_text()
            assert "Peer" not in others_notes.inner_text()  # words only, no name
            shot(page, "learner-done.png")

            note = page.get_by_label("What did you try? What happened?")
            note.fill("Used it in my 1:1 with Sam. Naming the impact made it land.")
            page.get_by_role("button", name="Mark as done").click()
            page.wait_for_load_state()
            assert page.get_by_role("heading", name="Done: “Read the SBI one-pager”.").is_visible()
            body = page.inner_text("main")
            assert "1 of 5 steps done" in body
            assert "3 of the 4 people on this journey have done this step." in body
            assert "Watch the 3-minute SBI video · due Wednesday 3 March" in body
            assert "Use SBI once arrives by email on Wednesday 3 March at 09:00" in body
            shot(page, "learner-complete.png")

            page.get_by_role("link", name="See your whole journey").click()
            page.wait_for_load_state()
            body = page.inner_text("main")
            assert "Naming the impact made it land." in body
            assert "Due (1)" in body
            assert "Coming up (3)" in body
            assert page.get_by_role("button", name="Mark as done: Watch the 3-minute SBI video")
            shot(page, "learner-me.png")
            assert outside == []
    es = sent_steps(session, enrolment)["read-sbi"]
    assert es.status == "done"
    assert es.note == "Used it in my 1:1 with Sam. Naming the impact made it land."
    assert es.note_shared is True


def test_a_learner_can_do_it_all_with_the_keyboard(settings, session, engine, now):
    journey = make_journey(session, "giving-feedback", steps=STEPS)
    person = make_person(session, "maya@example.com", "Maya Patel")
    enrolment = make_enrolment(session, person, journey, now.date())
    at = now + SEND
    with live_server(settings, at) as (base, app):
        live = app.extensions["nudger.settings"]
        tick(session, live, at, enqueue=False)
        url = emailed_done_url(session, engine, live, base, at)
        with chromium() as browser:
            page = browser.new_page(viewport=DESKTOP)
            page.goto(url)
            for _ in range(12):
                page.keyboard.press("Tab")
                if page.evaluate("document.activeElement.id") == "note-step":
                    break
            assert page.evaluate("document.activeElement.id") == "note-step"
            page.keyboard.type("Tried it by keyboard.")
            # Onward to the button: the two share boxes first, then "Mark as done".
            page.keyboard.press("Tab")
            page.keyboard.press("Tab")
            assert page.evaluate("document.activeElement.id") == "later-step"
            page.keyboard.press("Space")  # offer the note to the people who do the step later
            assert page.is_checked("#later-step")
            page.keyboard.press("Tab")
            assert page.evaluate("document.activeElement.textContent") == "Mark as done"
            outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
            assert outline == "solid"  # the keyboard focus is visible
            with page.expect_navigation():
                page.keyboard.press("Enter")
            assert "Done:" in page.inner_text("h1")
    done = sent_steps(session, enrolment)["read-sbi"]
    assert (done.note, done.note_for_others) == ("Tried it by keyboard.", True)


def test_a_manager_confirms_a_feedback_step(settings, session, engine, now):
    journey = make_journey(session, "giving-feedback", steps=STEPS)
    sam = make_person(session, "sam@example.com", "Sam Lee")
    maya = make_person(session, "maya@example.com", "Maya Patel", manager=sam)
    olu = make_person(session, "olu@example.com", "Olu Ade", manager=sam)
    enrol_maya = make_enrolment(session, maya, journey, now.date())
    make_enrolment(session, olu, journey, now.date())
    # A week on: steps up to day 4 have gone out; Olu has done nothing.
    for day in (0, 2, 4):
        tick(session, settings, now + SEND + timedelta(days=day), enqueue=False)
    sent = sent_steps(session, enrol_maya)
    at = now + SEND + timedelta(days=7)
    complete_step(session, sent["read-sbi"].id, at, note="Clearer than I expected.")
    complete_step(session, sent["watch"].id, at)
    complete_step(session, sent["try-sbi"].id, at, note="Used it with a supplier.")
    complete_step(session, sent["manager-feedback"].id, at, note="We talked after the review.")
    with live_server(settings, at) as (base, _app), chromium() as browser:
        page = browser.new_page(viewport=DESKTOP)
        outside = only_local_requests(page, base)
        page.goto(f"{base}/team/{tokens.make_token(settings, 'team', sam.id)}")
        card = page.locator(f"#person-{maya.id}")
        assert "We talked after the review." in card.inner_text()
        assert "On track" in card.inner_text()
        olu_card = page.locator(f"#person-{olu.id}").inner_text()
        assert "Escalated" in olu_card or "Behind" in olu_card
        shot(page, "manager-team.png")
        card.get_by_role("button", name=re.compile("Confirm it's done")).click()
        page.wait_for_load_state()
        assert "Confirmed: Maya Patel has done" in page.inner_text("main")
        assert_accessible(page)
        assert page.locator(f"#confirm-{sent['manager-feedback'].id}").count() == 0
        assert outside == []
    row = fresh(session, sent["manager-feedback"])
    assert row.status == "done"
    assert row.confirmed_by_id == sam.id


def test_mute_and_expired_link_pages(settings, session, now):
    journey = make_journey(session, "giving-feedback", steps=STEPS)
    person = make_person(session, "maya@example.com", "Maya Patel")
    enrolment = make_enrolment(session, person, journey, now.date())
    tick(session, settings, now + SEND, enqueue=False)
    es = sent_steps(session, enrolment)["read-sbi"]
    enrolment = fresh(session, enrolment)
    enrolment.status, enrolment.updated_at = "completed", now
    session.add(enrolment)
    session.commit()
    later = now + timedelta(days=500)
    with live_server(settings, later) as (base, _app), chromium() as browser:
        page = browser.new_page(viewport=PHONE)
        page.goto(f"{base}/mute/{tokens.make_token(settings, 'mute', enrolment.id, later)}")
        assert page.get_by_role("button", name="Mute reminders").is_visible()
        shot(page, "mute.png")
        page.get_by_role("button", name="Mute reminders").click()
        page.wait_for_load_state()
        assert page.get_by_role("heading", name="Reminders muted").is_visible()
        assert_accessible(page)

        response = page.goto(f"{base}/done/{tokens.make_token(settings, 'done', es.id, now)}")
        assert response.status == 410
        assert page.get_by_role("heading", name="This link has expired").is_visible()
        shot(page, "error-link.png")
        page.get_by_role("button", name="Email me a fresh link").click()
        page.wait_for_load_state()
        assert "We've emailed fresh links to m•••@example.com" in page.inner_text("main")
        assert_accessible(page)
    assert fresh(session, enrolment).reminders_muted is True
    rows = session.exec(select(Outbox).where(Outbox.kind == "links")).all()
    assert [r.to_email for r in rows] == ["maya@example.com"]
    hits = session.exec(select(LinkHit).where(LinkHit.purpose == "mute")).all()
    assert [h.method for h in hits] == ["GET", "POST"]
