"""API tokens in the console: the list with last use, making one, revoking (POST, CSRF, audit)."""

from __future__ import annotations

import re
from datetime import timedelta

from sqlmodel import select

from nudger.api.access import authenticate
from nudger.models import AuditLog
from tests.adminkit import admin_app, make_admin, post, redis, sign_in
from tests.api.apikit import make_token

__all__ = ["redis"]


def test_the_console_lists_tokens_with_last_use_and_revokes_one(settings, engine, session, now,
                                                                 redis):  # fmt: skip
    make_admin(session, now)
    token = make_token(session, now - timedelta(days=2), name="hr-sync")
    authenticate(session, token, now - timedelta(hours=1))
    client = admin_app(settings, now).test_client()
    sign_in(client)
    page = client.get("/admin/tokens").get_data(as_text=True)
    assert "hr-sync" in page and "2027-03-01 06:00" in page and token not in page

    # Revoking without the form's CSRF token changes nothing.
    refused = client.post("/admin/tokens/1/revoke")
    assert refused.status_code == 400
    session.expire_all()
    assert authenticate(session, token, now) is not None
    session.commit()

    answer = post(client, "/admin/tokens/1/revoke")
    assert answer.status_code == 302
    assert authenticate(session, token, now) is None
    session.rollback()
    audit = session.exec(select(AuditLog).where(AuditLog.action == "api_token.revoke")).one()
    assert audit.actor == "admin@example.com" and audit.subject_id == 1
    assert "revoked" in client.get("/admin/tokens").get_data(as_text=True)


def test_a_token_made_in_the_console_is_shown_once_and_works(settings, engine, session, now,
                                                             redis):  # fmt: skip
    make_admin(session, now)
    client = admin_app(settings, now).test_client()
    sign_in(client)
    page = post(client, "/admin/tokens", {"name": "lms", "scope": "write"}).get_data(as_text=True)
    shown = re.search(r'id="new-token" readonly value="(ndg_[^"]+)"', page).group(1)
    caller = authenticate(session, shown, now)
    assert caller is not None and caller.scope == "write" and caller.name == "lms"
    session.commit()
    assert shown not in client.get("/admin/tokens").get_data(as_text=True)
