"""Console sessions live on the server: signing out, a new password or TOTP, or
"sign out everywhere" ends them, and a copied cookie then opens nothing."""

from __future__ import annotations

import hashlib
from datetime import timedelta

from sqlmodel import select

from nudger.models import AdminSession, AuditLog, Enrolment
from tests.adminkit import PASSWORD, admin_app, enable_totp, make_admin, post, redis, sign_in, token
from tests.factories import make_enrolment, make_journey, make_person

__all__ = ["redis"]  # the fixture, used by name


def copy_of(client, app):
    """Return a second client holding a copy of `client`'s session cookie."""
    thief = app.test_client()
    thief.set_cookie("session", client.get_cookie("session").value)
    return thief


def test_a_copied_cookie_stops_working_when_its_owner_signs_out(settings, session, now, redis):
    make_admin(session, now)
    enrolment = make_enrolment(session, make_person(session), make_journey(session), now.date())
    app = admin_app(settings, now)
    client = app.test_client()
    sign_in(client)
    thief = copy_of(client, app)
    assert thief.get("/admin/").status_code == 200  # the copy works while the owner is in
    csrf = token(thief, "/admin/account")  # a page the copy read before the owner left
    assert post(client, "/admin/logout").status_code == 302
    replay = thief.get("/admin/")
    assert replay.status_code == 302
    assert replay.headers["Location"].startswith("/admin/login")
    pause = thief.post(f"/admin/enrolments/{enrolment.id}/pause", data={"csrf_token": csrf})
    assert pause.status_code == 401
    session.expire_all()
    assert session.get(Enrolment, enrolment.id).status == "active"


def cookie_token(app, client) -> str:
    """Return the session token the client's signed cookie carries."""
    serializer = app.session_interface.get_signing_serializer(app)
    return serializer.loads(client.get_cookie("session").value)["admin_sid"]


def test_the_database_keeps_only_a_hash_of_the_session_token(settings, session, now, redis):
    admin = make_admin(session, now)
    app = admin_app(settings, now)
    client = app.test_client()
    sign_in(client)
    raw = cookie_token(app, client)
    row = session.exec(select(AdminSession)).one()
    assert row.admin_id == admin.id
    assert raw not in row.token_hash
    assert row.token_hash == hashlib.sha256(raw.encode()).hexdigest()
    assert row.expires_at == now + timedelta(hours=12)


def test_a_new_password_ends_every_session_but_keeps_this_browser_signed_in(
    settings, session, now, redis
):
    make_admin(session, now)
    app = admin_app(settings, now)
    mine, laptop = app.test_client(), app.test_client()
    sign_in(mine)
    sign_in(laptop)
    copy = copy_of(mine, app)
    new = "a much longer new password"
    post(mine, "/admin/account/password",
         {"current_password": PASSWORD, "new_password": new, "confirm_password": new})  # fmt: skip
    assert mine.get("/admin/").status_code == 200  # with a new session
    assert laptop.get("/admin/").status_code == 302
    assert copy.get("/admin/").status_code == 302  # a copy of this browser's old cookie too


def test_turning_two_step_sign_in_on_or_off_ends_the_other_sessions(settings, session, now, redis):
    make_admin(session, now)
    app = admin_app(settings, now)
    mine = app.test_client()
    sign_in(mine)
    copy = copy_of(mine, app)
    secret = enable_totp(mine, now)
    assert mine.get("/admin/").status_code == 200
    assert copy.get("/admin/").status_code == 302
    copy = copy_of(mine, app)
    post(mine, "/admin/account/totp/disable", {"password": PASSWORD})
    assert mine.get("/admin/").status_code == 200
    assert copy.get("/admin/").status_code == 302
    assert secret


def test_a_new_password_from_the_command_line_ends_every_session(settings, session, now, redis):
    make_admin(session, now)
    app = admin_app(settings, now)
    client = app.test_client()
    sign_in(client)
    make_admin(session, now, password="reset by the operator")  # `nudger create-admin` again
    assert client.get("/admin/").status_code == 302


def test_sign_out_everywhere_ends_every_session_and_is_audited(settings, session, now, redis):
    make_admin(session, now)
    make_admin(session, now, email="colleague@example.com")
    app = admin_app(settings, now)
    mine, laptop, colleague = app.test_client(), app.test_client(), app.test_client()
    sign_in(mine)
    sign_in(laptop)
    sign_in(colleague, email="colleague@example.com")
    page = mine.get("/admin/account").get_data(as_text=True)
    assert page.count("<tr><td><time") == 2
    assert "(this browser)" in page
    assert mine.get("/admin/logout/everywhere").status_code == 405
    assert mine.post("/admin/logout/everywhere").status_code == 400  # no CSRF token
    assert laptop.get("/admin/").status_code == 200
    response = post(mine, "/admin/logout/everywhere")
    assert response.headers["Location"] == "/admin/login"
    assert mine.get("/admin/").status_code == 302
    assert laptop.get("/admin/").status_code == 302
    assert colleague.get("/admin/").status_code == 200  # another admin's sessions go on
    audit = session.exec(select(AuditLog).where(AuditLog.action == "admin.logout_all")).one()
    assert audit.actor == "admin@example.com"
    assert audit.detail == {"sessions": 2}


def test_last_seen_moves_on_at_most_every_five_minutes(settings, session, now, redis):
    make_admin(session, now)
    app = admin_app(settings, now)
    client = app.test_client()
    sign_in(client)
    for minutes, seen in ((4, 0), (6, 6), (10, 6), (12, 12)):
        app.config["NUDGER_CLOCK"] = lambda m=minutes: now + timedelta(minutes=m)
        assert client.get("/admin/").status_code == 200
        session.expire_all()
        row = session.exec(select(AdminSession)).one()
        assert row.last_seen_at == now + timedelta(minutes=seen), minutes
