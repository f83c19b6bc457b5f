"""API tokens in the console: list them with when each was last used, create, revoke."""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for

from nudger.api import access
from nudger.models import ApiToken
from nudger.web import db
from nudger.web.admin.console import actor, clock

bp = Blueprint("tokens", __name__)


def _page(new_token: str | None = None, status: int = 200):
    page = render_template(
        "admin/tokens.html", tokens=access.list_tokens(db()), new_token=new_token,
        scopes=access.SCOPES,
    )  # fmt: skip
    return page, status


@bp.get("/tokens")
def index():
    return _page()


@bp.post("/tokens")
def create():
    name = request.form.get("name", "")
    scope = request.form.get("scope", "read")
    try:
        row, token = access.create_token(db(), name, scope, clock(), actor())
    except access.TokenRejected as exc:
        flash(f"No token made: {exc}.")
        return redirect(url_for("admin.tokens.index"))
    flash(f"Token {row.name} ({row.scope}) made. Copy it now: it is not shown again.")
    # Shown on this answer only, never stored or put in an address.
    return _page(new_token=token)


@bp.post("/tokens/<int:token_id>/revoke")
def revoke(token_id: int):
    row = db().get(ApiToken, token_id) or abort(404)
    name = row.name
    if access.revoke_token(db(), token_id, clock(), actor()):
        flash(f"Token {name} revoked: it opens nothing from now on.")
    else:
        flash(f"Nothing changed: token {name} was already revoked.")
    return redirect(url_for("admin.tokens.index"))
