"""Headless Chromium opens every page as a new user would: the front door, a
learner's, a manager's, the development outbox and the admin console.

axe-core checks each page against WCAG 2.1 A/AA (serious and critical findings
fail); the email previews show the whole email; the journey timeline shows every
label; the forms work with the keyboard alone.
"""

from __future__ import annotations

import os
import re
from datetime import timedelta

import pytest
from sqlmodel import select

from nudger import tokens
from nudger.models import CapturedMail, Outbox
from nudger.outbox.sending import send_batch
from nudger.tick.run import tick
from tests.adminkit import PASSWORD, build_cohort, make_admin, redis
from tests.factories import make_journey
from tests.pagekit import CHROMIUM, assert_accessible, chromium, live_server, sent_steps
from tests.web.test_admin_upload import FIXED

__all__ = ["redis"]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"{CHROMIUM} is not installed"),
]

DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}

LONG_STEPS = [
    {"key": f"s{i}", "day": 2 * i, "kind": "practice", "title": title}
    for i, title in enumerate(
        [
            "Read the one-pager",
            "Watch three feedback conversations, good and not so good",
            "Talk with your manager about how feedback works in your team",
            "Check yourself on SBI in ten questions",
            "Give one piece of positive feedback using SBI",
            "Feedback lab (live workshop)",
            "Give feedback within 48 hours, three times this week",
            "Hold one redirecting feedback conversation",
            "Ask your manager for feedback on a real conversation",
            "Write down what changed in how you give feedback",
            "Agree a feedback habit with your manager",
            "Celebrate",
        ]
    )
]


def capture_all(session, engine, settings, at) -> dict[str, int]:
    """Tick, send every pending outbox row into the captured outbox; return a mail id per kind."""
    tick(session, settings, at, enqueue=False)
    ids = list(session.exec(select(Outbox.id).where(Outbox.state == "pending")))
    send_batch(engine, settings, ids, at)
    session.expire_all()
    return {m.kind: m.id for m in session.exec(select(CapturedMail).order_by(CapturedMail.id))}


def missing(page) -> list[str]:
    """Collect every response of 400 or more (a missing favicon included)."""
    failures: list[str] = []
    page.on(
        "response", lambda r: failures.append(f"{r.status} {r.url}") if r.status >= 400 else None
    )
    return failures


def sign_in(page, base: str) -> None:
    page.goto(f"{base}/admin/login")
    page.get_by_label("Email").fill("admin@example.com")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{base}/admin/")


def test_the_home_page_says_what_nudger_is_and_leads_on(settings, session, engine, now):
    with live_server(settings, now) as (base, _app), chromium() as browser:
        page = browser.new_page(viewport=DESKTOP)
        failures = missing(page)
        page.goto(f"{base}/")
        assert page.get_by_role("heading", name="Nudger").is_visible()
        assert "learning journey" in page.inner_text("main")
        page.get_by_role("link", name=re.compile("captured mail")).click()
        page.wait_for_url(f"{base}/outbox")
        page.go_back()
        page.get_by_role("link", name="Sign in as an admin").click()
        page.wait_for_url(re.compile(r".*/admin/login"))
        page.wait_for_load_state("networkidle")
        assert failures == []  # the favicon too


def test_every_page_passes_axe_for_wcag_21_aa(settings, session, engine, now, redis):
    cohort = build_cohort(session, settings, now)
    long = make_journey(session, "long-journey", steps=LONG_STEPS)
    make_admin(session, now)
    at = cohort["later"]
    ada, bob = cohort["enrolments"]["ada"], cohort["enrolments"]["bob"]
    open_step = next(es for es in sent_steps(session, bob).values() if es.status == "sent")
    with live_server(settings, at) as (base, app), chromium() as browser:
        live = app.extensions["nudger.settings"]
        mails = capture_all(session, engine, live, at)
        assert {"step", "digest"} <= set(mails)

        def token(purpose: str, subject: int) -> str:
            return tokens.make_token(live, purpose, subject, at)

        page = browser.new_page(viewport=DESKTOP)
        failures = missing(page)
        pages = [
            "/",
            "/no-such-page",
            "/outbox",
            f"/outbox/{mails['step']}",
            f"/outbox/{mails['digest']}",
            f"/done/{token('done', open_step.id)}",
            "/done/not-a-token",
            f"/me/{token('me', ada.id)}",
            f"/team/{token('team', cohort['boss'].id)}",
            f"/prefs/{token('prefs', cohort['boss'].id)}",
            f"/mute/{token('mute', bob.id)}",
            "/admin/login",
        ]
        for path in pages:
            page.goto(base + path)
            assert_accessible(page)
        # The pages after a button: done, muted.
        page.goto(f"{base}/done/{token('done', open_step.id)}")
        page.get_by_role("button", name="Mark as done").click()
        page.wait_for_load_state()
        assert "Done:" in page.inner_text("h1")
        assert_accessible(page)
        page.goto(f"{base}/mute/{token('mute', bob.id)}")
        page.get_by_role("button", name="Mute reminders").click()
        page.wait_for_load_state()
        assert_accessible(page)

        sign_in(page, base)
        console = [
            "/admin/",
            "/admin/enrolments",
            f"/admin/people/{cohort['people']['bob'].id}",
            "/admin/upload",
            "/admin/journeys",
            "/admin/journeys/giving-feedback",
            f"/admin/journeys/{long.slug}",
            "/admin/journeys/giving-feedback/emails/step:read",
            "/admin/journeys/giving-feedback/emails/digest:manager",
            "/admin/mail",
            "/admin/audit",
            "/admin/account",
            "/admin/tokens",
            "/api/docs",
        ]
        for path in console:
            page.goto(base + path)
            assert_accessible(page)
            if path == "/admin/":
                # The completion chart spans the days since the first start, not sixty.
                daily = page.locator("svg.chart", has=page.locator("#daily-t"))
                ticks = daily.locator('text[font-size="12"]').all_text_contents()
                assert ticks[0] == "1 Mar" and ticks[-1] == "9 Mar", ticks
                for axis in ("Steps done per day", "Running total", "Date (UTC)"):
                    assert daily.get_by_text(axis, exact=True).count() == 1
        page.set_viewport_size(PHONE)
        for path in ("/", f"/done/{token('done', open_step.id)}", "/admin/"):
            page.goto(base + path)
            assert_accessible(page)
        expected = {f"{base}/no-such-page", f"{base}/done/not-a-token"}
        assert [f for f in failures if f.split(" ", 1)[1] not in expected] == []


def frame_shows_all_of(page, text: str) -> None:
    """Assert the email frame is as tall as its content, and `text` lies inside it."""
    frame_el = page.locator("iframe.mail")
    frame_el.scroll_into_view_if_needed()
    page.wait_for_function(
        "f => f.contentDocument && f.contentDocument.readyState === 'complete' "
        "&& f.clientHeight >= f.contentDocument.documentElement.scrollHeight",
        arg=frame_el.element_handle(),
        timeout=5000,
    )
    box = frame_el.bounding_box()
    target = page.frame_locator("iframe.mail").get_by_text(text).last
    inner = target.bounding_box()  # in the page's coordinates
    assert inner is not None and inner["height"] > 0
    assert box["y"] <= inner["y"] and inner["y"] + inner["height"] <= box["y"] + box["height"]
    scrolled = frame_el.evaluate("f => f.contentWindow.scrollY")
    assert scrolled == 0  # seen without scrolling inside the frame


def test_email_previews_show_the_whole_email_without_scrolling_the_frame(
    settings, session, engine, now, redis
):
    cohort = build_cohort(session, settings, now)
    make_admin(session, now)
    with live_server(settings, cohort["later"]) as (base, app), chromium() as browser:
        mails = capture_all(session, engine, app.extensions["nudger.settings"], cohort["later"])
        page = browser.new_page(viewport={"width": 1100, "height": 700})
        page.goto(f"{base}/outbox/{mails['step']}")
        frame_shows_all_of(page, "You're getting this because")
        page.get_by_role("link", name="Phone width").click()
        page.wait_for_load_state()
        frame_shows_all_of(page, "You're getting this because")
        page.goto(f"{base}/outbox/{mails['digest']}")
        frame_shows_all_of(page, "You're getting this because")

        sign_in(page, base)
        page.goto(f"{base}/admin/journeys/giving-feedback/emails/step:reflect")
        frame_shows_all_of(page, "You're getting this because")
        page.goto(f"{base}/admin/journeys/giving-feedback/emails/digest:manager")
        frame_shows_all_of(page, "You're getting this because")
        # A narrower window makes the email taller: the frame follows.
        before = page.locator("iframe.mail").bounding_box()["height"]
        page.set_viewport_size({"width": 420, "height": 700})
        page.wait_for_timeout(400)
        assert page.locator("iframe.mail").bounding_box()["height"] > before
        frame_shows_all_of(page, "You're getting this because")


def test_the_journey_timeline_shows_every_label_of_twelve_steps(settings, session, now, redis):
    long = make_journey(session, "long-journey", steps=LONG_STEPS)
    make_admin(session, now)
    with live_server(settings, now) as (base, _app), chromium() as browser:
        page = browser.new_page(viewport=DESKTOP)
        sign_in(page, base)
        page.goto(f"{base}/admin/journeys/{long.slug}")
        labels = page.evaluate(
            """() => [...document.querySelectorAll('svg.chart g > text')].map(t => {
                const b = t.getBBox();
                return {text: t.textContent, left: b.x, right: b.x + b.width,
                        full: t.parentNode.querySelector('title').textContent};
            })"""
        )
        assert len(labels) == 12
        width = page.evaluate("document.querySelector('svg.chart').viewBox.baseVal.width")
        for label in labels:
            assert label["left"] >= 0 and label["right"] <= width, label
            # Whole, or cut at its end with the whole label as the row's tooltip.
            shown = label["text"].removesuffix("…")
            assert label["full"].startswith(shown), label
        assert labels[9]["text"].startswith("10. Write down")
        assert labels[11]["text"] == "12. Celebrate"


def tab_to(page, check: str, limit: int = 40) -> None:
    """Press Tab until the focused element passes `check` (a JS predicate on it)."""
    for _ in range(limit):
        page.keyboard.press("Tab")
        if page.evaluate(f"(el => {check})(document.activeElement)"):
            outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
            assert outline != "none", "the keyboard focus must be visible"
            return
    raise AssertionError(f"Tab never reached {check}")


def test_an_admin_signs_in_and_enrols_a_csv_with_the_keyboard_alone(
    settings, session, now, tmp_path, redis
):
    make_journey(session)
    make_admin(session, now)
    csv = tmp_path / "new-starters.csv"
    csv.write_bytes(FIXED)
    with live_server(settings, now - timedelta(days=1)) as (base, _app), chromium() as browser:
        page = browser.new_page(viewport=DESKTOP)
        page.goto(f"{base}/admin/")
        # The email field has the focus on arrival.
        assert page.evaluate("document.activeElement.id") == "email"
        page.keyboard.type("admin@example.com")
        page.keyboard.press("Tab")
        page.keyboard.type(PASSWORD)
        page.keyboard.press("Enter")
        page.wait_for_url(f"{base}/admin/")

        tab_to(page, "el.textContent === 'Upload learners'")
        page.keyboard.press("Enter")
        page.wait_for_url(f"{base}/admin/upload")
        tab_to(page, "el.id === 'file'")
        with page.expect_file_chooser() as chooser:
            page.keyboard.press("Space")
        chooser.value.set_files(str(csv))
        tab_to(page, "el.textContent === 'Check the file'")
        page.keyboard.press("Enter")
        page.wait_for_load_state()
        assert "Ready: nothing has been written yet" in page.inner_text("main")
        tab_to(page, "el.textContent.startsWith('Enrol 4 learners')")
        page.keyboard.press("Enter")
        page.get_by_role("heading", name="Enrolled 4 learners").wait_for()
