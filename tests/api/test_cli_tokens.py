"""`nudger api-token create | list | revoke`."""

from __future__ import annotations

import json

from sqlmodel import select

from nudger.api.access import authenticate, hash_token
from nudger.models import ApiToken, AuditLog
from tests.test_cli import run  # noqa: F401  (the fixture)


def test_create_prints_the_token_once_and_keeps_its_hash(run, session, now):  # noqa: F811
    result = run("api-token", "create", "hr-sync", "--scope", "write", "--json")
    assert result.exit_code == 0, result.output
    made = json.loads(result.output)
    assert made["name"] == "hr-sync" and made["scope"] == "write"
    row = session.exec(select(ApiToken)).one()
    assert row.token_hash == hash_token(made["token"]) and row.prefix == made["token"][:8]
    caller = authenticate(session, made["token"], now)
    assert caller is not None and caller.scope == "write"
    session.commit()
    listed = json.loads(run("api-token", "list", "--json").output)["tokens"]
    assert [t["name"] for t in listed] == ["hr-sync"] and "token" not in listed[0]
    assert made["token"] not in run("api-token", "list").output


def test_revoke_by_name_stops_the_token_and_is_audited(run, session, now):  # noqa: F811
    token = json.loads(run("api-token", "create", "lms", "--json").output)["token"]
    result = run("api-token", "revoke", "lms", "--json")
    assert json.loads(result.output)["revoked"] is True
    assert authenticate(session, token, now) is None
    session.rollback()  # end the read, so the command may write (SQLite)
    again = run("api-token", "revoke", "1", "--json")
    assert json.loads(again.output)["revoked"] is False
    actions = session.exec(select(AuditLog.action).order_by(AuditLog.id)).all()
    assert actions == ["api_token.create", "api_token.revoke"]


def test_a_bad_scope_or_an_unknown_token_is_refused(run):  # noqa: F811
    assert run("api-token", "create", "x", "--scope", "admin").exit_code == 2
    unknown = run("api-token", "revoke", "nobody")
    assert unknown.exit_code == 1 and "no API token" in unknown.output


def test_revoking_a_name_that_two_live_tokens_share_asks_for_an_id(run, session):  # noqa: F811
    for _ in range(2):
        assert run("api-token", "create", "ops").exit_code == 0
    shared = run("api-token", "revoke", "ops")
    assert shared.exit_code == 1
    assert "2 live tokens are named 'ops' (ids 1, 2)" in shared.output
    assert session.exec(select(ApiToken).where(ApiToken.revoked_at.is_not(None))).all() == []
