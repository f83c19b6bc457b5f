"""Helpers for the admin console's tests: an admin, a signed-in client, CSRF tokens."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pyotp
import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlmodel import Session

from nudger.admins import create_or_update_admin, find_admin
from nudger.config import Settings
from nudger.enrolments.changes import pause, withdraw
from nudger.models import AdminUser
from nudger.progress import complete_step
from nudger.queue import redis_connection
from nudger.tick.run import tick
from tests.factories import make_enrolment, make_journey, make_person
from tests.pagekit import app_for, sent_steps

PASSWORD = "correct horse battery"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture
def redis(settings):
    """Return the test Redis, emptied (login counters and queues start from nothing)."""
    conn = redis_connection(settings)
    conn.flushdb()
    return conn


def make_admin(
    session: Session, now: datetime, email: str = "admin@example.com", password: str = PASSWORD
) -> AdminUser:
    """Add an admin the way `nudger create-admin` does."""
    create_or_update_admin(session, email, password, now)
    session.commit()
    return find_admin(session, email)


def admin_app(settings: Settings, now: datetime) -> Flask:
    """Return the real app with its clock at `now` and CSRF checks on (as in production)."""
    app = app_for(settings, now)
    assert app.config.get("WTF_CSRF_ENABLED", True)
    return app


def token(client: FlaskClient, path: str = "/admin/login") -> str:
    """Return a CSRF token of the client's session, read from a page's form."""
    html = client.get(path).get_data(as_text=True)
    match = CSRF.search(html)
    assert match, f"no form with a CSRF token on {path}"
    return match.group(1)


def sign_in(client: FlaskClient, email: str = "admin@example.com", password: str = PASSWORD):
    """Sign in through the login form; return the response to the POST."""
    return client.post(
        "/admin/login",
        data={"email": email, "password": password, "csrf_token": token(client)},
    )


def post(client: FlaskClient, path: str, data: dict | None = None, **kw):
    """POST a console form with the session's CSRF token, as the browser does."""
    return client.post(path, data={**(data or {}), "csrf_token": token(client, "/admin/account")},
                       **kw)  # fmt: skip


def enable_totp(client, now) -> str:
    """Turn on two-step sign-in from the account page; return the secret."""
    post(client, "/admin/account/totp/start")
    page = client.get("/admin/account").get_data(as_text=True)
    secret = re.search(r'<code class="secret">([A-Z2-7]+)</code>', page).group(1)
    assert "<svg" in page  # the QR code, drawn on the server
    response = post(client, "/admin/account/totp/confirm", {"code": pyotp.TOTP(secret).at(now)})
    assert response.status_code == 302
    return secret


def daily_ticks(session: Session, settings: Settings, start: datetime, days: int, after=None):
    """Tick at 09:05 London on each of `days` days from `start`; call after(at) after each."""
    for day in range(days):
        at = start.replace(hour=9, minute=5) + timedelta(days=day)
        tick(session, settings, at, enqueue=False)
        if after is not None:
            after(at)


def build_cohort(session: Session, settings: Settings, now: datetime) -> dict:
    """Five learners of one manager, run through eight days of ticks to Tuesday 9 March.

    Then: ada has done steps 1-2 (on track), eve step 1 (behind on step 2, not
    escalated), bob nothing (behind and escalated to the manager), cy paused
    before anything was sent, di withdrawn.
    """
    journey = make_journey(session)
    boss = make_person(session, "boss@example.com", "Bea Boss")
    people = {
        key: make_person(session, f"{key}@example.com", name, manager=boss)
        for key, name in (("ada", "Ada Lovelace"), ("bob", "Bob Stone"), ("eve", "Eve Moss"),
                          ("cy", "Cy Twombly"), ("di", "Di Jones"))
    }  # fmt: skip
    enrolments = {k: make_enrolment(session, p, journey, now.date()) for k, p in people.items()}
    pause(session, enrolments["cy"], now)
    withdraw(session, enrolments["di"], now)
    session.commit()
    wanted = {"ada": ("read", "discuss"), "eve": ("read",)}

    def learners_act(at: datetime) -> None:
        for key, keys in wanted.items():
            for step_key, es in sent_steps(session, enrolments[key]).items():
                if step_key in keys and es.status == "sent":
                    complete_step(session, es.id, at + timedelta(hours=1), actor="test")

    daily_ticks(session, settings, now, 8, learners_act)
    later = datetime(2027, 3, 9, 10, 0, tzinfo=UTC)
    return {"journey": journey, "boss": boss, "people": people, "enrolments": enrolments,
            "later": later}  # fmt: skip
