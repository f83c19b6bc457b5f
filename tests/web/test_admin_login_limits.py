"""Sign-in limits: five failures per fifteen minutes per account and per network,
counted before the password is checked, so that concurrent guesses cannot race past,
and counted in the database when Redis is down."""

from __future__ import annotations

import dataclasses
import socket
import threading
from datetime import timedelta

import pytest
from argon2 import PasswordHasher
from sqlmodel import select

from nudger import admins
from nudger.admins.login_limits import LOGIN_LIMIT
from nudger.models import LoginCount
from tests.adminkit import PASSWORD, admin_app, enable_totp, make_admin, redis, sign_in, token

__all__ = ["redis"]  # the fixture, used by name


@pytest.fixture
def password_checks(monkeypatch):
    """Count the argon2 verifications the sign-in makes (each one a guess tested)."""
    calls, lock = [], threading.Lock()

    class CountingHasher(PasswordHasher):
        def verify(self, hash_, password):
            with lock:
                calls.append(password)
            return super().verify(hash_, password)

    monkeypatch.setattr(admins, "_hasher", CountingHasher())
    return calls


@pytest.fixture
def redis_down(settings):
    """Return the settings with Redis at an address where nothing listens."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return dataclasses.replace(settings, redis_url=f"redis://127.0.0.1:{port}/0")


def attempt(client, password: str, email: str = "admin@example.com", ip: str = "10.0.0.1"):
    """Post the sign-in form from `ip`; return the status code."""
    data = {"email": email, "password": password, "csrf_token": token(client)}
    return client.post("/admin/login", data=data, environ_base={"REMOTE_ADDR": ip}).status_code


def guess_concurrently(app, n: int) -> list[int]:
    """Send `n` wrong passwords for one account at the same moment; return the status codes."""
    clients = [app.test_client() for _ in range(n)]
    forms = [{"email": "admin@example.com", "password": f"guess {i}", "csrf_token": token(c)}
             for i, c in enumerate(clients)]  # fmt: skip
    start, codes = threading.Barrier(n), [0] * n

    def send(i: int) -> None:
        start.wait()
        codes[i] = clients[i].post("/admin/login", data=forms[i]).status_code

    threads = [threading.Thread(target=send, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return codes


def test_thirty_concurrent_guesses_test_at_most_five_passwords(
    settings, session, now, redis, password_checks
):
    make_admin(session, now)
    codes = guess_concurrently(admin_app(settings, now), 30)
    assert 0 < len(password_checks) <= LOGIN_LIMIT
    assert codes.count(401) == len(password_checks)
    assert codes.count(429) == 30 - len(password_checks)


def test_thirty_concurrent_guesses_test_at_most_five_passwords_when_redis_is_down(
    redis_down, session, now, password_checks
):
    make_admin(session, now)
    codes = guess_concurrently(admin_app(redis_down, now), 30)
    assert 0 < len(password_checks) <= LOGIN_LIMIT
    assert codes.count(429) == 30 - len(password_checks)
    counted = {row.key: row.attempts for row in session.exec(select(LoginCount))}
    assert counted == {"ip:127.0.0.1": LOGIN_LIMIT, "email:admin@example.com": LOGIN_LIMIT}


def test_sign_in_locks_after_five_failures_even_with_the_right_password(
    settings, session, now, redis, password_checks
):
    make_admin(session, now)
    client = admin_app(settings, now).test_client()
    for _ in range(LOGIN_LIMIT):
        assert sign_in(client, password="guess").status_code == 401
    locked = sign_in(client)
    assert locked.status_code == 429
    assert "Try again in 15 minutes" in locked.get_data(as_text=True)
    assert len(password_checks) == LOGIN_LIMIT  # the right password was not even tried


def test_with_redis_down_the_database_locks_for_fifteen_minutes(redis_down, session, now):
    make_admin(session, now)
    app = admin_app(redis_down, now)
    client = app.test_client()
    for _ in range(LOGIN_LIMIT):
        assert attempt(client, "guess") == 401
    locked = client.post("/admin/login", data={"email": "admin@example.com", "password": PASSWORD,
                                               "csrf_token": token(client)},
                         environ_base={"REMOTE_ADDR": "10.0.0.1"})  # fmt: skip
    assert locked.status_code == 429
    assert "Try again in 15 minutes" in locked.get_data(as_text=True)
    app.config["NUDGER_CLOCK"] = lambda: now + timedelta(minutes=15)
    assert attempt(client, PASSWORD) == 302


def test_failures_from_one_network_lock_it_out_for_every_account(settings, session, now, redis):
    make_admin(session, now)
    client = admin_app(settings, now).test_client()
    for n in range(LOGIN_LIMIT):
        assert attempt(client, "guess", email=f"guess{n}@example.com") == 401
    assert attempt(client, PASSWORD) == 429


def test_a_sign_in_clears_the_accounts_failures_but_not_the_networks(settings, session, now, redis):
    make_admin(session, now)
    client = admin_app(settings, now).test_client()
    for _ in range(LOGIN_LIMIT - 1):
        assert attempt(client, "guess", ip="10.0.0.1") == 401
    assert attempt(client, PASSWORD, ip="10.0.0.1") == 302
    other = admin_app(settings, now).test_client()
    for _ in range(LOGIN_LIMIT):  # the account starts again from nothing ...
        assert attempt(other, "guess", ip="10.0.0.2") == 401
    assert attempt(other, "guess", ip="10.0.0.2") == 429
    assert attempt(admin_app(settings, now).test_client(), "guess", "b@example.com") == 401
    # ... the first network keeps its four failures and the one above
    assert attempt(admin_app(settings, now).test_client(), "guess", "c@example.com") == 429


def test_right_passwords_do_not_use_up_the_networks_attempts(settings, session, now, redis):
    emails = [f"admin{n}@example.com" for n in range(LOGIN_LIMIT + 2)]
    for email in emails:
        make_admin(session, now, email=email)
    app = admin_app(settings, now)
    for email in emails:  # an office behind one address, everyone signing in at nine
        assert attempt(app.test_client(), PASSWORD, email=email) == 302


def test_a_locked_account_does_not_lock_its_owners_network(settings, session, now, redis):
    make_admin(session, now)
    make_admin(session, now, email="colleague@example.com")
    app = admin_app(settings, now)
    attacker, owner = app.test_client(), app.test_client()
    for _ in range(LOGIN_LIMIT):
        attempt(attacker, "guess", ip="203.0.113.9")
    for _ in range(LOGIN_LIMIT + 1):  # the owner, refused each time, from the office
        assert attempt(owner, PASSWORD, ip="10.0.0.1") == 429
    assert attempt(app.test_client(), "guess", "colleague@example.com", ip="10.0.0.1") == 401


def test_wrong_authenticator_codes_count_as_failures(settings, session, now, redis):
    make_admin(session, now)
    app = admin_app(settings, now)
    client = app.test_client()
    sign_in(client)
    enable_totp(client, now)
    other = app.test_client()
    codes = []
    for _ in range(LOGIN_LIMIT + 1):
        assert sign_in(other).status_code in (302, 429)
        form = {"code": "000000", "csrf_token": token(other, "/admin/login/code")}
        codes.append(other.post("/admin/login/code", data=form).status_code)
    assert codes == [401] * LOGIN_LIMIT + [429]
