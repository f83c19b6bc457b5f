"""In Chromium: answering a check-in with the keyboard alone at phone width, and the panel.

The panel's screenshot goes to docs/screenshots/behaviour-panel.png.
"""

from __future__ import annotations

import os
import re
from datetime import date, timedelta
from pathlib import Path

import pytest
from sqlmodel import select

from nudger.demo import answer_checkins
from nudger.mail.compose import compose
from nudger.models import Outbox, Rating
from tests.adminkit import PASSWORD, make_admin, redis
from tests.factories import make_enrolment, make_person
from tests.measure.kit import make_measured_journey, run, utc
from tests.pagekit import CHROMIUM, chromium, live_server

__all__ = ["redis"]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"{CHROMIUM} is not installed"),
]

SHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}
A, B = "asks-open-questions", "opens-1-1s-with-a-question-about-the-person-s-goal"
SENT = utc(2027, 3, 1, 9)


def focused(page) -> str:
    return page.evaluate("document.activeElement.id || document.activeElement.textContent")


def test_a_learner_answers_a_checkin_with_the_keyboard_at_phone_width(session, settings):
    journey = make_measured_journey(session, measure={"raters": ["learner"], "at": ["start"]})
    make_enrolment(session, make_person(session), journey, date(2027, 3, 1))
    at = SENT + timedelta(hours=1)
    with live_server(settings, at) as (_base, app):
        live = app.extensions["nudger.settings"]
        run(session, live, SENT)
        row = session.exec(select(Outbox).where(Outbox.kind == "checkin")).one()
        text = compose(session, live, row, SENT).get_body(("plain",)).get_content()
        often = re.search(r"Often: (\S+)", text)[1]  # the first behaviour's "Often"
        with chromium() as browser:
            page = browser.new_page(viewport=PHONE)
            page.goto(often)
            assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
            assert page.is_checked(f"#a-3-{A}")  # Often, chosen by the link, not saved
            assert session.exec(select(Rating)).all() == []
            # Into the first group: the focus lands on its chosen answer.
            for _ in range(10):
                page.keyboard.press("Tab")
                if focused(page) == f"a-3-{A}":
                    break
            assert focused(page) == f"a-3-{A}"
            outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
            assert outline == "solid"  # the keyboard focus is visible
            # The second group has no answer yet: Tab reaches its first; arrows choose.
            page.keyboard.press("Tab")
            assert focused(page) == f"a-0-{B}"
            page.keyboard.press("ArrowDown")
            page.keyboard.press("ArrowDown")
            assert page.is_checked(f"#a-2-{B}")  # Sometimes
            page.keyboard.press("Tab")
            assert focused(page).strip() == "Save"
            with page.expect_navigation():
                page.keyboard.press("Enter")
            assert "Saved." in page.inner_text("main")
    session.expire_all()
    found = {r.behaviour: r.value for r in session.exec(select(Rating))}
    assert found == {A: 4, B: 3}


def test_the_behaviour_change_panel_in_the_browser(session, settings, redis):
    journey = make_measured_journey(session, measure={"at": ["start", "end"]})
    boss = make_person(session, "boss@example.com", "Grace Hopper")
    other = make_person(session, "other@example.com", "Alan Turing")
    for i in range(24):
        manager = boss if i % 2 else other
        person = make_person(session, f"p{i}@example.com", f"Person {i}", manager=manager)
        make_enrolment(session, person, journey, date(2027, 3, 1))
    run(session, settings, SENT)
    answer_checkins(session, SENT + timedelta(hours=24))
    run(session, settings, utc(2027, 3, 11, 14))
    answer_checkins(session, utc(2027, 3, 12, 14))
    later = utc(2027, 3, 15, 12)
    make_admin(session, later)
    with live_server(settings, later) as (base, _app), chromium() as browser:
        page = browser.new_page(viewport=DESKTOP)
        page.goto(f"{base}/admin/login")
        page.get_by_label("Email").fill("admin@example.com")
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(f"{base}/admin/")
        page.goto(f"{base}/admin/?journey=coaching")
        panel = page.locator("#behaviour-change")
        assert "Behaviour change" in panel.inner_text()
        assert panel.locator("svg").count() == 4  # two behaviours, two raters
        assert "means hidden" not in panel.inner_text()
        SHOTS.mkdir(parents=True, exist_ok=True)
        panel.screenshot(path=str(SHOTS / "behaviour-panel.png"))
