"""Helpers for the tests of the learner's and manager's pages."""

from __future__ import annotations

import dataclasses
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path

from flask import Flask
from sqlmodel import Session, select
from werkzeug.serving import make_server

from nudger import create_app
from nudger.config import Settings
from nudger.models import Enrolment, EnrolmentStep, Journey, Person, Step
from nudger.tick.run import tick
from tests.factories import make_enrolment, make_journey, make_person

# The fixture `now` is Monday 07:00 UTC; London is on GMT then, so day-0 steps
# (send time 09:00 learner-local) go out two hours later.
SEND = timedelta(hours=2)

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def app_for(settings: Settings, clock: datetime) -> Flask:
    """Return the real app on the test database, its clock set to `clock`."""
    app = create_app(settings)
    app.config["NUDGER_CLOCK"] = lambda: clock
    return app


def csrf_token(html: str) -> str:
    """Return the first CSRF token in a page."""
    match = CSRF.search(html)
    assert match, "the page has no form with a CSRF token"
    return match.group(1)


def sent_steps(session: Session, enrolment: Enrolment) -> dict[str, EnrolmentStep]:
    """Return the enrolment's sent steps by step key."""
    rows = session.exec(
        select(EnrolmentStep, Step)
        .join(Step, Step.id == EnrolmentStep.step_id)
        .where(EnrolmentStep.enrolment_id == enrolment.id)
    ).all()
    return {step.key: es for es, step in rows}


def learner_with_first_step(
    session: Session,
    settings: Settings,
    now: datetime,
    *,
    journey: Journey | None = None,
    email: str = "ada@example.com",
    name: str = "Ada Lovelace",
    manager: Person | None = None,
) -> tuple[Person, Enrolment, EnrolmentStep]:
    """Enrol a learner starting today and run the tick at the send time; return the sent step."""
    journey = journey or make_journey(session)
    person = make_person(session, email=email, name=name, manager=manager)
    enrolment = make_enrolment(session, person, journey, now.date())
    tick(session, settings, now + SEND, enqueue=False)
    first = min(sent_steps(session, enrolment).values(), key=lambda es: es.id)
    return person, enrolment, first


def fresh(session: Session, row):
    """Return the row as the database now has it (another session may have changed it)."""
    session.expire_all()
    return session.get(type(row), row.id)


CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]


@contextmanager
def live_server(settings: Settings, clock: datetime) -> Iterator[tuple[str, Flask]]:
    """Serve the real app on a free loopback port; yield its base URL and the app.

    The app's base URL is the server's, so the links in emails it sends lead back to it.
    """
    holder: dict[str, Flask] = {}
    server = make_server("127.0.0.1", 0, lambda env, resp: holder["app"](env, resp), threaded=True)
    base = f"http://127.0.0.1:{server.server_port}"
    holder["app"] = app_for(dataclasses.replace(settings, base_url=base), clock)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield base, holder["app"]
    finally:
        server.shutdown()
        thread.join(5)
        server.server_close()


@contextmanager
def chromium() -> Iterator:
    """Yield headless Debian Chromium driven by Playwright."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


# axe-core 4.14.1 (MPL-2.0, Deque Systems), vendored from `npm pack axe-core` so
# that the accessibility checks run without a network; see vendor/axe-core-LICENSE.txt.
AXE = Path(__file__).resolve().parent / "web" / "vendor" / "axe.min.js"
# WCAG 2.1 A and AA; a finding of these impacts fails the test.
AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]
AXE_FAILS = ("serious", "critical")


def axe_problems(page) -> list[str]:
    """Run axe-core on the page; return its serious and critical WCAG 2.1 A/AA findings."""
    if not page.evaluate("typeof window.axe === 'object'"):
        # Evaluated through the DevTools protocol, so the console's CSP (no inline
        # scripts) does not stop it, as it would a <script> tag.
        page.evaluate(AXE.read_text(encoding="utf-8"))
    result = page.evaluate(
        "tags => axe.run(document, {runOnly: {type: 'tag', values: tags}})", AXE_TAGS
    )
    return [
        f"{v['id']} ({v['impact']}): {v['help']} at "
        + "; ".join(" ".join(n["target"]) for n in v["nodes"][:5])
        for v in result["violations"]
        if v["impact"] in AXE_FAILS
    ]


def assert_accessible(page) -> None:
    """Fail with axe-core's serious and critical WCAG 2.1 A/AA findings on the page, if any."""
    problems = axe_problems(page)
    assert not problems, f"{page.url}:\n" + "\n".join(problems)
