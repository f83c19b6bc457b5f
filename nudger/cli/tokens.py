"""`nudger api-token`: create, list and revoke the REST API's bearer tokens."""

from __future__ import annotations

import click

from nudger.cli.common import Context, Rejected, emit, json_option, pass_ctx
from nudger.db import utcnow


def _iso(value) -> str | None:
    return value.isoformat() if value else None


@click.group("api-token")
def api_token() -> None:
    """Bearer tokens for the REST API (/api/v1)."""


@api_token.command("create")
@click.argument("name")
@click.option("--scope", type=click.Choice(["read", "write"]), default="read", show_default=True,
              help="read: GET only; write: GET and POST.")  # fmt: skip
@json_option
@pass_ctx
def create(ctx: Context, name: str, scope: str, as_json: bool) -> None:
    """Create a token and print it, once: only its hash is kept."""
    from nudger.api.access import TokenRejected, create_token

    with ctx.session() as session:
        try:
            row, token = create_token(session, name, scope, utcnow())
        except TokenRejected as exc:
            raise Rejected(str(exc)) from None
    human = (
        f"Token {row.id} ({row.name}, {row.scope}):\n{token}\n"
        "Keep it now: it is not shown again. Send it as `Authorization: Bearer <token>`."
    )
    emit(as_json, {"id": row.id, "name": row.name, "scope": row.scope, "token": token}, human)


@api_token.command("list")
@json_option
@pass_ctx
def list_(ctx: Context, as_json: bool) -> None:
    """List tokens: name, scope, when created, last used and revoked."""
    from nudger.api.access import list_tokens

    with ctx.session() as session:
        rows = list_tokens(session)
    data = [
        {"id": t.id, "name": t.name, "scope": t.scope, "prefix": t.prefix,
         "created_at": _iso(t.created_at), "last_used_at": _iso(t.last_used_at),
         "revoked_at": _iso(t.revoked_at)}
        for t in rows
    ]  # fmt: skip
    lines = [
        f"{t['id']:>4}  {t['name']:<24} {t['scope']:<5}  {t['prefix']}…  "
        f"last used {t['last_used_at'] or 'never'}"
        + (f"  REVOKED {t['revoked_at']}" if t["revoked_at"] else "")
        for t in data
    ]
    emit(as_json, {"tokens": data}, "\n".join(lines) or "No API tokens yet.")


@api_token.command("revoke")
@click.argument("token", metavar="ID|NAME")
@json_option
@pass_ctx
def revoke(ctx: Context, token: str, as_json: bool) -> None:
    """Revoke a token at once (by its id, or its name if one live token has it)."""
    from nudger.api.access import TokenRejected, find_token, revoke_token

    with ctx.session() as session:
        try:
            row = find_token(session, token)
        except TokenRejected as exc:
            raise Rejected(str(exc)) from None
        if row is None:
            raise Rejected(f"no API token {token!r} (see `nudger api-token list`)")
        token_id, name = row.id, row.name
        changed = revoke_token(session, token_id, utcnow())
    human = f"Token {token_id} ({name}) " + ("revoked." if changed else "was already revoked.")
    emit(as_json, {"id": token_id, "name": name, "revoked": changed}, human)
