"""Every kind of email, made by the real flows, rendered by headless Chromium.

Two learners go through the example journey (journeys/giving-feedback.yaml)
for two weeks without doing anything: the tick sends their steps, reminds
them, and tells their manager in a digest; the workshop is moved and one
learner withdrawn. Every message goes through the real outbox into the
development capture; Chromium opens each one the way the /outbox page shows
it, checks the screenshot is not blank and saves it to docs/emails/<kind>.png
for the README.
"""

from __future__ import annotations

import os
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from PIL import Image
from sqlmodel import select

from nudger.enrolments.changes import withdraw
from nudger.enrolments.journey_edits import apply_sync
from nudger.journeys.loading import load_journeys
from nudger.journeys.spec import JourneySpec
from nudger.mail.render import KINDS
from nudger.models import CapturedMail, Enrolment, Journey, Outbox, Person
from nudger.outbox.sending import send_batch
from nudger.tick.run import tick
from tests.factories import make_enrolment, make_person
from tests.pagekit import CHROMIUM, chromium, live_server

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"{CHROMIUM} is not installed"),
]

ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "docs" / "emails"
START = date(2027, 1, 25)  # a Monday; the journey's workshop is on 10 February
DESKTOP = {"width": 720, "height": 900}


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def two_weeks(session, engine, settings) -> dict[str, int]:
    """Run the journey for two learners; return the captured mail id to show for each kind."""
    spec = example_journey()
    apply_sync(session, spec, utc(2027, 1, 18))
    session.commit()
    journey = session.exec(select(Journey)).one()
    sam = make_person(session, "sam.lee@example.com", "Sam Lee")
    maya = make_person(session, "maya.patel@example.com", "Maya Patel", manager=sam)
    olu = make_person(session, "olu.ade@example.com", "Olu Ade", manager=sam)
    for person in (maya, olu):
        make_enrolment(session, person, journey, START)

    def run(when: datetime) -> None:
        tick(session, settings, when, enqueue=False)
        ids = list(session.exec(select(Outbox.id).where(Outbox.state == "pending")))
        send_batch(engine, settings, ids, when)

    day = utc(2027, 1, 25)
    while day < utc(2027, 2, 9):
        for hour in (8, 9):  # the manager's digest time, the learners' send time
            run(day.replace(hour=hour))
        day += timedelta(days=1)
    edited = spec.model_dump(mode="json")
    workshop = next(s for s in edited["steps"] if s["key"] == "workshop-feedback-lab")
    workshop["at"] = "2027-02-11T14:00"  # the workshop moves a day later
    apply_sync(session, JourneySpec.model_validate(edited), utc(2027, 2, 9, 10))
    session.commit()
    run(utc(2027, 2, 9, 10))
    withdraw(session, session.exec(select(Enrolment).where(Enrolment.person_id == olu.id)).one(),
             utc(2027, 2, 9, 11))  # fmt: skip
    session.commit()
    run(utc(2027, 2, 9, 11))

    def first(kind: str, to: Person, subject: str = "") -> int:
        query = select(CapturedMail.id).where(
            CapturedMail.kind == kind, CapturedMail.to_email == to.email
        )
        if subject:
            query = query.where(CapturedMail.subject.contains(subject))
        found = session.exec(query.order_by(CapturedMail.id)).first()
        assert found, f"no {kind} email to {to.email} {subject}".strip()
        return found

    return {
        "step": first("step", maya, "Read the SBI one-pager"),
        "reminder": first("reminder", maya),
        "digest": first("digest", sam),
        "invite-update": first("invite-update", maya),
        "invite-cancel": first("invite-cancel", olu),
    }


def example_journey() -> JourneySpec:
    [spec] = load_journeys(ROOT / "journeys" / "giving-feedback.yaml")
    return spec


def not_blank(path: Path) -> tuple[int, float]:
    """Return the screenshot's number of colours and its share of non-background pixels."""
    image = Image.open(path).convert("RGB")
    colours = image.getcolors(maxcolors=1 << 24)
    background = max(colours)[1]
    inked = sum(n for n, rgb in colours if rgb != background)
    return len(colours), inked / (image.width * image.height)


def test_every_kind_of_email_renders_in_chromium(session, engine, settings):
    with live_server(settings, utc(2027, 2, 9, 12)) as (base, app):
        live = app.extensions["nudger.settings"]
        shown = two_weeks(session, engine, live)
        assert sorted(shown) == sorted(KINDS)
        SHOTS.mkdir(parents=True, exist_ok=True)
        with chromium() as browser:
            page = browser.new_page(viewport=DESKTOP)
            outside: list[str] = []
            page.on("request", lambda r: None if r.url.startswith(base) else outside.append(r.url))
            for kind, mail_id in shown.items():
                response = page.goto(f"{base}/outbox/{mail_id}/html")
                assert response.ok, kind
                page.wait_for_load_state("networkidle")
                path = SHOTS / f"{kind}.png"
                page.screenshot(path=str(path), full_page=True)

                colours, inked = not_blank(path)
                size = Image.open(path).size
                assert colours > 100, f"{kind}: only {colours} colours"
                assert inked > 0.10, f"{kind}: {inked:.0%} of the page has anything on it"
                assert size[1] > 400, f"{kind}: {size}"
                text = page.inner_text("body")
                assert "Nudger" in text and "Giving feedback that lands" in text, kind
            assert outside == []  # an email loads nothing from elsewhere


def test_the_outbox_page_shows_the_email_and_its_button_opens_the_done_page(
    session, engine, settings
):
    with live_server(settings, utc(2027, 1, 25, 9)) as (base, app):
        live = app.extensions["nudger.settings"]
        apply_sync(session, example_journey(), utc(2027, 1, 18))
        session.commit()
        journey = session.exec(select(Journey)).one()
        make_enrolment(session, make_person(session, "maya.patel@example.com", "Maya Patel"),
                       journey, START)  # fmt: skip
        tick(session, live, utc(2027, 1, 25, 9), enqueue=False)
        ids = list(session.exec(select(Outbox.id)))
        # The first step and the example journey's status-quo check-in.
        assert send_batch(engine, live, ids, utc(2027, 1, 25, 9))["sent"] == 2
        with chromium() as browser:
            page = browser.new_page(viewport={"width": 1200, "height": 1000})
            page.goto(f"{base}/outbox")
            page.get_by_role("link", name="Step 1 of 11: Read the SBI one-pager").click()
            page.wait_for_load_state()
            assert page.get_by_role("heading", name="Calendar invite").is_visible()
            assert "METHOD:REQUEST" in page.inner_text("main")

            frame = page.frame_locator("iframe.mail")
            button = frame.get_by_role("link", name="Mark as done")
            assert button.is_visible()
            SHOTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SHOTS / "outbox-page.png"), full_page=True)
            # A sandboxed frame: the click opens the done page in a new tab, unsandboxed.
            with page.context.expect_page() as opened:
                button.click()
            done = opened.value
            done.wait_for_load_state()
            assert done.url.startswith(f"{base}/done/")
            assert done.get_by_role("button", name="Mark as done").is_visible()
