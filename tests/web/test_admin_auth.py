"""The console's door: anonymous refusal, sign-in, TOTP, cookies, CSRF, audit."""

from __future__ import annotations

import dataclasses
import re
from datetime import timedelta

import pyotp
from sqlmodel import select

from nudger.admins import find_admin
from nudger.models import AuditLog, Enrolment
from tests.adminkit import (
    PASSWORD,
    admin_app,
    enable_totp,
    make_admin,
    post,
    redis,
    sign_in,
    token,
)
from tests.factories import make_enrolment, make_journey, make_person

__all__ = ["redis"]  # the fixture, used by name

SAMPLE_ARGS = {
    "slug": "giving-feedback",
    "key": "step:read",
    "upload_id": "A" * 24,
    "enrolment_id": "1",
    "person_id": "1",
    "outbox_id": "1",
    "token_id": "1",
    "es_id": "1",
    "endpoint_id": "1",
    "delivery_id": "1",
    "action": "pause",
}


def _sample(m: re.Match) -> str:
    converter, name = m.group(1) or "", m.group(2)
    if converter.startswith("any("):  # a route that takes only these words: the first
        return converter[4:].split(",")[0].strip(" '\")")
    return SAMPLE_ARGS[name]


def admin_urls(app) -> list[tuple[str, str]]:
    """Every console URL with sample arguments, and each method it answers."""
    found = []
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/admin"):
            continue
        path = re.sub(r"<(?:([^:<>]+):)?([^<>]+)>", _sample, rule.rule)
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            found.append((method, path))
    return found


def test_every_admin_page_refuses_an_anonymous_request(settings, session, now, redis):
    app = admin_app(settings, now)
    app.config["WTF_CSRF_ENABLED"] = False  # so a POST reaches the guard, not the CSRF check
    journey = make_journey(session)
    make_enrolment(session, make_person(session), journey, now.date())
    client = app.test_client()
    urls = admin_urls(app)
    assert len(urls) > 25
    public = {("GET", "/admin/login"), ("POST", "/admin/login"), ("GET", "/admin/login/code"),
              ("POST", "/admin/login/code")}  # fmt: skip
    for method, path in urls:
        if (method, path) in public:
            continue
        response = client.open(path, method=method)
        if method == "GET" and not path.endswith(".json"):
            assert response.status_code == 302, path
            assert response.headers["Location"].startswith("/admin/login?next="), path
        else:
            assert response.status_code == 401, (method, path)
    assert session.exec(select(Enrolment)).one().status == "active"  # the POSTs did nothing


def test_sign_in_with_the_right_password_opens_the_console(settings, session, now, redis):
    make_admin(session, now)
    client = admin_app(settings, now).test_client()
    response = sign_in(client)
    assert response.status_code == 302
    assert response.headers["Location"] == "/admin/"
    page = client.get("/admin/")
    assert page.status_code == 200
    assert "admin@example.com" in page.get_data(as_text=True)
    session.expire_all()
    assert find_admin(session, "admin@example.com").last_login_at == now
    login = session.exec(select(AuditLog).where(AuditLog.action == "admin.login")).one()
    assert login.actor == "admin@example.com"


def test_sign_in_returns_to_the_page_asked_for_but_never_off_site(settings, session, now, redis):
    make_admin(session, now)
    client = admin_app(settings, now).test_client()
    page = client.get("/admin/mail")
    assert page.headers["Location"] == "/admin/login?next=/admin/mail"
    form = client.get(page.headers["Location"]).get_data(as_text=True)
    assert '<input type="hidden" name="next" value="/admin/mail">' in form
    data = {"email": "admin@example.com", "password": PASSWORD, "csrf_token": token(client)}
    assert (
        client.post("/admin/login", data={**data, "next": "/admin/mail"}).headers["Location"]
        == "/admin/mail"
    )
    other = admin_app(settings, now).test_client()
    data["csrf_token"] = token(other)
    evil = other.post("/admin/login", data={**data, "next": "https://evil.example/admin"})
    assert evil.headers["Location"] == "/admin/"


def test_a_wrong_password_is_refused_without_saying_which_part_was_wrong(
    settings, session, now, redis
):
    make_admin(session, now)
    client = admin_app(settings, now).test_client()
    wrong = sign_in(client, password="not the password")
    unknown = sign_in(client, email="nobody@example.com")
    assert wrong.status_code == unknown.status_code == 401
    message = "That email and password don&#39;t match an admin account."
    assert message in wrong.get_data(as_text=True)
    assert message in unknown.get_data(as_text=True)
    assert client.get("/admin/").status_code == 302


def test_the_session_cookie_is_http_only_and_same_site_lax(settings, session, now, redis):
    make_admin(session, now)
    client = admin_app(settings, now).test_client()
    cookie = sign_in(client).headers["Set-Cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie
    assert "Secure" not in cookie  # the base URL is http here


def test_the_session_cookie_is_secure_when_the_base_url_is_https(settings, session, now, redis):
    make_admin(session, now)
    secure = dataclasses.replace(settings, base_url="https://nudger.example.org")
    client = admin_app(secure, now).test_client()
    base = "https://nudger.example.org"
    form = client.get("/admin/login", base_url=base).get_data(as_text=True)
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', form).group(1)
    data = {"email": "admin@example.com", "password": PASSWORD, "csrf_token": csrf}
    # Over HTTPS, Flask-WTF also wants a same-origin Referer, as a browser sends.
    response = client.post(
        "/admin/login", base_url=base, data=data, headers={"Referer": f"{base}/admin/login"}
    )
    assert response.status_code == 302
    assert "Secure" in response.headers["Set-Cookie"]


def test_a_form_without_its_csrf_token_changes_nothing(settings, session, now, redis):
    make_admin(session, now)
    journey = make_journey(session)
    enrolment = make_enrolment(session, make_person(session), journey, now.date())
    client = admin_app(settings, now).test_client()
    sign_in(client)
    response = client.post(f"/admin/enrolments/{enrolment.id}/pause")
    assert response.status_code == 400
    assert "This form has expired" in response.get_data(as_text=True)
    session.expire_all()
    assert session.get(Enrolment, enrolment.id).status == "active"
    assert post(client, f"/admin/enrolments/{enrolment.id}/pause").status_code == 302
    session.expire_all()
    assert session.get(Enrolment, enrolment.id).status == "paused"


def test_sign_in_itself_needs_the_csrf_token(settings, session, now, redis):
    make_admin(session, now)
    client = admin_app(settings, now).test_client()
    data = {"email": "admin@example.com", "password": PASSWORD}
    response = client.post("/admin/login", data=data)
    assert response.status_code == 400


def test_sign_out_is_a_post_and_ends_the_session(settings, session, now, redis):
    make_admin(session, now)
    client = admin_app(settings, now).test_client()
    sign_in(client)
    assert client.get("/admin/logout").status_code == 405
    assert post(client, "/admin/logout").status_code == 302
    assert client.get("/admin/").status_code == 302
    logout = session.exec(select(AuditLog).where(AuditLog.action == "admin.logout")).one()
    assert logout.actor == "admin@example.com"


def test_a_session_ends_after_twelve_hours(settings, session, now, redis):
    make_admin(session, now)
    app = admin_app(settings, now)
    client = app.test_client()
    sign_in(client)
    app.config["NUDGER_CLOCK"] = lambda: now + timedelta(hours=12, minutes=1)
    assert client.get("/admin/").status_code == 302


def test_totp_set_up_from_the_console_is_then_required_to_sign_in(settings, session, now, redis):
    make_admin(session, now)
    client = admin_app(settings, now).test_client()
    sign_in(client)
    secret = enable_totp(client, now)
    assert client.get("/admin/").status_code == 200  # this session goes on
    other = admin_app(settings, now).test_client()
    response = sign_in(other)
    assert response.headers["Location"] == "/admin/login/code"
    assert other.get("/admin/").status_code == 302  # a password alone is not enough
    wrong = other.post(
        "/admin/login/code",
        data={"code": "000000", "csrf_token": token(other, "/admin/login/code")},
    )
    assert wrong.status_code == 401
    code = pyotp.TOTP(secret).at(now)
    right = other.post(
        "/admin/login/code", data={"code": code, "csrf_token": token(other, "/admin/login/code")}
    )
    assert right.headers["Location"] == "/admin/"
    assert other.get("/admin/").status_code == 200
    actions = [a.action for a in session.exec(select(AuditLog).order_by(AuditLog.id))]
    assert "admin.totp_enable" in actions


def test_a_totp_code_works_only_once(settings, session, now, redis):
    make_admin(session, now)
    client = admin_app(settings, now).test_client()
    sign_in(client)
    secret = enable_totp(client, now)
    code = pyotp.TOTP(secret).at(now + timedelta(seconds=30))
    first, second = admin_app(settings, now).test_client(), admin_app(settings, now).test_client()
    for c in (first, second):
        sign_in(c)
    data = {"code": code}
    assert (
        first.post(
            "/admin/login/code", data={**data, "csrf_token": token(first, "/admin/login/code")}
        ).status_code
        == 302
    )
    assert (
        second.post(
            "/admin/login/code", data={**data, "csrf_token": token(second, "/admin/login/code")}
        ).status_code
        == 401
    )


def test_changing_the_password_ends_other_sessions(settings, session, now, redis):
    make_admin(session, now)
    app = admin_app(settings, now)
    mine, other = app.test_client(), app.test_client()
    sign_in(mine)
    sign_in(other)
    new = "a much longer new password"
    post(
        mine,
        "/admin/account/password",
        {"current_password": PASSWORD, "new_password": new, "confirm_password": new},
    )
    assert mine.get("/admin/").status_code == 200
    assert other.get("/admin/").status_code == 302
    changed = session.exec(select(AuditLog).where(AuditLog.action == "admin.password")).all()
    assert changed[-1].actor == "admin@example.com"


def test_console_pages_are_not_cached_or_framed(settings, session, now, redis):
    make_admin(session, now)
    client = admin_app(settings, now).test_client()
    sign_in(client)
    response = client.get("/admin/")
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert "script-src 'self'" in response.headers["Content-Security-Policy"]
