"""Headless Chromium drives the admin console as an L&D admin would.

Sign in, upload a messy CSV (BOM, semicolons, bad rows) and read its errors,
download the error CSV, fix the file and enrol, see the new learners on the
dashboard, preview an email, pause and withdraw someone. axe-core checks each
page it screenshots (WCAG 2.1 A/AA). A real server runs in
a thread; files up to imports_job.INLINE_MAX_ROWS rows (5,000) are checked in
the request, and the second upload lowers that threshold so that the
job-backed path runs too: its RQ jobs run in this test's thread (a SimpleWorker
burst) while the page polls for progress. Screenshots go to docs/screenshots/.
"""

from __future__ import annotations

import csv
import io
import os
import re
from pathlib import Path

import pytest
from playwright.sync_api import expect
from rq import SimpleWorker
from sqlmodel import select

from nudger.models import Enrolment, Person
from nudger.queue import DEFAULT_QUEUE, queue
from nudger.roster import uploads as imports_job
from tests.adminkit import PASSWORD, build_cohort, make_admin, redis
from tests.pagekit import CHROMIUM, assert_accessible, chromium, live_server
from tests.web.test_admin_upload import FIXED, MESSY, big_file

__all__ = ["redis"]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"{CHROMIUM} is not installed"),
]

SHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
DESKTOP = {"width": 1280, "height": 900}


def shot(page, name: str) -> None:
    """Check the page with axe-core, then save its screenshot."""
    assert_accessible(page)
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"admin-{name}.png"), full_page=True)


def watch(page, base: str) -> tuple[list[str], list[str]]:
    """Collect problems (CSP refusals, failed requests) and requests off the server."""
    problems: list[str] = []
    outside: list[str] = []

    def console(message) -> None:
        # A missing resource is reported below with its URL; anything else is a problem.
        if message.type == "error" and not message.text.startswith("Failed to load resource"):
            problems.append(message.text)

    def response(r) -> None:
        if r.status >= 400:
            problems.append(f"{r.status} {r.url}")

    page.on("console", console)
    page.on("response", response)
    page.on("request", lambda r: None if r.url.startswith(base) else outside.append(r.url))
    return problems, outside


def nav(page, name: str):
    return page.get_by_role("navigation", name="Admin").get_by_role("link", name=name)


def flash(page) -> str:
    return page.locator(".flash").inner_text()


@pytest.fixture
def worker(settings, monkeypatch):
    """Run queued import jobs in this thread, configured as a worker process would be."""
    from workers import jobs

    for name, value in (("NUDGER_INSTANCE_PATH", str(settings.instance_path)),
                        ("NUDGER_DATABASE_URL", settings.database_url),
                        ("NUDGER_SECRET_KEY", settings.secret_key),
                        ("NUDGER_REDIS_URL", settings.redis_url)):  # fmt: skip
        monkeypatch.setenv(name, value)
    jobs.runtime.cache_clear()

    def burst() -> None:
        q = queue(settings, DEFAULT_QUEUE)
        SimpleWorker([q], connection=q.connection).work(burst=True)

    yield burst
    jobs.runtime.cache_clear()


def test_an_admin_uploads_fixes_enrols_watches_previews_pauses_and_withdraws(
    settings, session, now, tmp_path, redis, worker, monkeypatch
):
    cohort = build_cohort(session, settings, now)
    make_admin(session, now)
    messy, fixed = tmp_path / "new-starters.csv", tmp_path / "new-starters-fixed.csv"
    # New starters from another company: nobody in the file is enrolled yet.
    messy.write_bytes(MESSY.replace(b"@example.com", b"@newco.example"))
    fixed.write_bytes(FIXED.replace(b"@example.com", b"@newco.example"))
    with live_server(settings, cohort["later"]) as (base, _app), chromium() as browser:
        page = browser.new_page(viewport=DESKTOP, accept_downloads=True)
        errors, outside = watch(page, base)

        # Sign in.
        page.goto(f"{base}/admin/")
        assert page.url.startswith(f"{base}/admin/login")
        page.get_by_label("Email").fill("admin@example.com")
        page.get_by_label("Password").fill(PASSWORD)
        shot(page, "login")
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(f"{base}/admin/")
        assert page.get_by_role("heading", name="Dashboard").is_visible()

        # Upload a messy file: the preview lists its errors, row by row.
        nav(page, "Upload learners").click()
        page.get_by_label("CSV file").set_input_files(str(messy))
        page.get_by_role("button", name="Check the file").click()
        page.wait_for_load_state()
        body = page.inner_text("main")
        # Five rows read, four of them wrong: the summary counts the rows with errors.
        assert "7 errors in 4 rows: nothing can be enrolled" in body
        errors_table = page.locator("table.problems").first.inner_text()
        assert "unknown time zone" in errors_table and "Mars/Olympus" in errors_table
        assert "not a valid email address" in errors_table
        assert re.search(r"^3\s+email\s+not-an-email", errors_table, re.M)
        assert page.get_by_role("button", name=re.compile("^Enrol")).count() == 0
        shot(page, "upload-errors")

        # Download the rows with errors.
        with page.expect_download() as download:
            page.get_by_role("link", name="Download the rows with errors (CSV)").click()
        assert download.value.suggested_filename == "new-starters-errors.csv"
        text = Path(download.value.path()).read_bytes().decode("utf-8-sig")
        rows = list(csv.reader(io.StringIO(text), delimiter=";"))
        assert rows[0][-1] == "error" and len(rows) == 5
        assert rows[4][0].startswith("'=HYPERLINK")  # defused for the spreadsheet

        # Upload the fixed file and enrol.
        page.get_by_role("link", name="Upload a corrected file").click()
        page.get_by_label("CSV file").set_input_files(str(fixed))
        page.get_by_role("button", name="Check the file").click()
        page.wait_for_load_state()
        assert "Ready: nothing has been written yet" in page.inner_text("main")
        shot(page, "upload-preview")
        page.get_by_role("button", name="Enrol 4 learners").click()
        page.wait_for_load_state()
        assert page.get_by_role("heading", name="Enrolled 4 learners").is_visible()
        shot(page, "upload-done")

        # A big file goes through a job; the page shows progress and follows it.
        monkeypatch.setattr(imports_job, "INLINE_MAX_ROWS", 20)
        big = tmp_path / "big.csv"
        big.write_bytes(big_file(40))
        page.goto(f"{base}/admin/upload")
        page.get_by_label("CSV file").set_input_files(str(big))
        page.get_by_role("button", name="Check the file").click()
        page.wait_for_load_state()
        assert page.get_by_role("heading", name="Checking the file").is_visible()
        assert "Waiting for a worker" in page.inner_text("main")
        shot(page, "upload-progress")
        worker()
        page.get_by_role("button", name="Enrol 40 learners").wait_for(timeout=10_000)
        page.get_by_role("button", name="Enrol 40 learners").click()
        page.get_by_role("heading", name="Enrolling learners").wait_for()
        worker()
        page.get_by_role("heading", name="Enrolled 40 learners").wait_for(timeout=10_000)

        # The dashboard counts the new learners.
        nav(page, "Dashboard").click()
        row = page.locator("tr", has=page.get_by_role("link", name="Giving Feedback"))
        assert row.locator("td").first.inner_text() == str(5 + 4 + 40)
        assert page.locator("svg.chart").count() == 4
        shot(page, "dashboard")

        # Preview an email, as it will go out, and send a test.
        nav(page, "Journeys").click()
        page.get_by_role("link", name="Giving Feedback").click()
        assert page.locator("svg.chart title").first.text_content().startswith("Giving Feedback")
        shot(page, "journey")
        page.get_by_role("link", name="Step 1: Read the one-pager").click()
        frame = page.frame_locator("iframe.mail")
        # the framed email loads after the page: wait for it rather than read an empty body
        expect(frame.locator("body")).to_contain_text("Hi Sam,")
        page.get_by_role("button", name="Send me a test").click()
        page.wait_for_load_state()
        assert "Test email queued to admin@example.com" in flash(page)
        shot(page, "email-preview")

        # Find a learner, pause them, then withdraw them.
        nav(page, "Enrolments").click()
        page.get_by_label("Name or email").fill("ada@example.com")
        page.get_by_role("button", name="Search").click()
        page.wait_for_load_state()
        shot(page, "enrolments")
        page.get_by_role("link", name="Ada Lovelace").click()
        page.get_by_role("button", name="Pause").click()
        page.wait_for_load_state()
        assert "ada@example.com on Giving Feedback: paused." in flash(page)
        assert page.get_by_role("button", name="Resume").is_visible()
        page.get_by_role("button", name="Withdraw").click()
        page.wait_for_load_state()
        assert "withdrawn." in flash(page)
        assert page.get_by_role("button", name="Withdraw").count() == 0
        shot(page, "person")

        nav(page, "Sent mail").click()
        assert page.get_by_role("heading", name="Sent mail").is_visible()
        shot(page, "mail")
        assert errors == [] and outside == []

    session.expire_all()
    ada = session.exec(select(Person).where(Person.email == "ada@example.com")).one()
    [enrolment] = session.exec(select(Enrolment).where(Enrolment.person_id == ada.id)).all()
    assert enrolment.status == "withdrawn"
