"""The whole path through real processes: sync, import, tick, worker, SMTP, link, report."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlmodel import SQLModel

from nudger import create_app
from nudger.calendar import WorkCalendar
from nudger.db import get_engine
from tests.smtpd import SmtpSink

ROOT = Path(__file__).resolve().parent.parent


def _shared_start() -> date:
    """A working day in both learners' countries, a week or more ahead of real time.

    The import runs at the real time, and without a start date each learner starts on
    their own next working day: from 15:00 UTC it is already tomorrow in Tokyo, and
    Alan would start a day after Ada.
    """
    day = datetime.now(UTC).date() + timedelta(days=7)
    calendars = [WorkCalendar(country="GB"), WorkCalendar(country="JP")]
    while not all(cal.is_working_day(day) for cal in calendars):
        day += timedelta(days=1)
    return day


START = _shared_start().isoformat()
CSV = (
    "\ufeffEmail;First Name;Last Name;Manager Email;Journey;Timezone;Country;Start Date\r\n"
    f"ada@example.com;Ada;Lovelace;grace@example.com;giving-feedback;Europe/London;GB;{START}\r\n"
    f"alan@example.com;Alan;Turing;grace@example.com;giving-feedback;Asia/Tokyo;JP;{START}\r\n"
)


@pytest.fixture
def empty_database(settings):
    """Drop every table so `nudger init` builds the schema from the migrations."""
    engine = get_engine(settings.database_url)
    SQLModel.metadata.drop_all(engine)
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE IF EXISTS alembic_version"))
    yield settings
    SQLModel.metadata.drop_all(engine)
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE IF EXISTS alembic_version"))


def nudger(env: dict, *args: str) -> subprocess.CompletedProcess:
    """Run the nudger command as a user would, in its own process."""
    return subprocess.run(
        [sys.executable, "-m", "nudger.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )


def test_a_learner_gets_a_step_by_smtp_completes_it_and_the_report_says_so(
    empty_database, tmp_path
):
    settings = empty_database
    (tmp_path / "learners.csv").write_text(CSV, encoding="utf-8")
    with SmtpSink() as sink:
        env = {
            **os.environ,
            "NUDGER_INSTANCE_PATH": str(tmp_path),
            "NUDGER_DATABASE_URL": settings.database_url,
            "NUDGER_REDIS_URL": settings.redis_url,
            "NUDGER_SMTP_URL": sink.url(),
            "NUDGER_BASE_URL": "http://nudger.test",
            "NUDGER_SECRET_KEY": settings.secret_key,
            "NUDGER_FROM": "Nudger <nudger@example.org>",
        }
        if not settings.redis_url:
            env.pop("NUDGER_REDIS_URL")
        else:
            from nudger.queue import queue

            for name in ("nudger-send", "nudger-default"):
                queue(settings, name).empty()

        def ok(*args: str) -> str:
            result = nudger(env, *args)
            assert result.returncode == 0, result.stderr + result.stdout
            return result.stdout

        ok("init")
        ok("journeys", "sync", str(ROOT / "journeys"))
        imported = json.loads(ok("import", str(tmp_path / "learners.csv"), "--json"))
        assert imported["enrolments_created"] == 2
        assert imported["people_created"] == 3  # the manager is a person too

        # Importing "now" happens in real time, so every tick's --now is relative to the
        # start the file gave both learners, as the report shows it.
        report = json.loads(ok("report", "--format", "json"))
        start = report["enrolments"][0]["start_date"]
        assert [e["start_date"] for e in report["enrolments"]] == [START, START]
        counts = json.loads(ok("tick", "--now", f"{start}T23:59:00+00:00", "--json"))
        assert counts["step"] == 2
        again = json.loads(ok("tick", "--now", f"{start}T23:59:00+00:00", "--json"))
        assert again.get("step", 0) == 0

        ok("worker", "--burst")
        # Each learner's first step, and the example journey's status-quo check-in.
        kinds = sorted(str(m.message["X-Nudger-Kind"]) for m in sink.messages)
        assert kinds == ["checkin", "checkin", "step", "step"]
        mail = next(
            m
            for m in sink.messages
            if m.rcpt_tos == ["ada@example.com"] and m.message["X-Nudger-Kind"] == "step"
        )
        assert mail.message["X-Nudger-Kind"] == "step"
        assert mail.message["Message-ID"].endswith("@example.org>")
        text_part = mail.message.get_body(("plain",)).get_content()
        link = re.search(r"http://nudger\.test(/done/\S+)", text_part).group(1)

    app = create_app(settings)
    client = app.test_client()
    page = client.get(link, headers={"User-Agent": "Mozilla/5.0 (Safe Links scanner)"})
    assert page.status_code == 200
    assert b"Mark as done" in page.data
    report = json.loads(ok("report", "--format", "json"))
    ada = next(e for e in report["enrolments"] if e["email"] == "ada@example.com")
    assert ada["steps"][0]["status"] == "sent"  # a GET never completes

    csrf = re.search(rb'name="csrf_token" value="([^"]+)"', page.data).group(1).decode()
    done = client.post(link, data={"csrf_token": csrf, "note": "Read it twice."})
    assert done.status_code == 200
    assert b"Done" in done.data
    twice = client.post(link, data={"csrf_token": csrf})
    assert twice.status_code == 200
    assert b"already done" in twice.data

    report = json.loads(ok("report", "--format", "json"))
    ada = next(e for e in report["enrolments"] if e["email"] == "ada@example.com")
    assert ada["steps"][0]["status"] == "done"
    assert ada["steps"][0]["done_at"]
    assert ada["steps"][1]["status"] == "scheduled"
    table = ok("report", "--journey", "giving-feedback")
    assert "ada@example.com" in table and "1/11" in table
