"""The console's parent blueprint, its guard, and what each console request knows.

Every admin page needs a signed-in admin; the parent's before_request refuses
anyone else (a redirect to the sign-in page for a GET, 401 otherwise), so a
page added to any child blueprint is guarded without remembering to. The
pages use `current_admin`, `actor`, `clock` and `safe_next` from here.
"""

from __future__ import annotations

from datetime import datetime
from urllib.parse import urlsplit

from flask import Blueprint, current_app, g, jsonify, redirect, request, session, url_for

from nudger.admins import sessions
from nudger.db import utcnow
from nudger.models import AdminUser
from nudger.web import db, error_page

bp = Blueprint("admin", __name__, url_prefix="/admin")

PUBLIC = {"admin.auth.login", "admin.auth.login_code"}


def clock() -> datetime:
    """Return the time; tests set app.config["NUDGER_CLOCK"] to pass one in."""
    return current_app.config.get("NUDGER_CLOCK", utcnow)()


def current_admin() -> AdminUser:
    """Return the signed-in admin (guaranteed on every page but sign-in)."""
    return g.admin


def actor() -> str:
    """Return who the audit log names for changes made in this request."""
    return g.admin.email


def client_ip() -> str:
    """Return the address the request came from, for limits and the audit log."""
    return (request.remote_addr or "unknown")[:64]


def sign_in(admin: AdminUser, now: datetime) -> None:
    """Start a fresh console session for `admin` (the caller commits).

    The cookie holds only the token of a server-side session, so signing out
    (or a new password) ends it for every copy of the cookie.
    """
    session.clear()
    session["admin_sid"] = sessions.start(db(), admin, now, client_ip())


def safe_next(target: str | None, default: str) -> str:
    """Return `target` if it is a path inside the console, else `default` (no open redirects)."""
    if not target:
        return default
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not parts.path.startswith("/admin") or "\\" in target:
        return default
    return target


def _load_admin() -> AdminUser | None:
    live = sessions.find(db(), session.get("admin_sid"), clock())
    if live is None:
        return None
    g.admin_session = live
    if db().dirty:  # last_seen_at moved on
        db().commit()
    return db().get(AdminUser, live.admin_id)


@bp.before_request
def guard():
    g.admin = _load_admin()
    if g.admin is not None or request.endpoint in PUBLIC:
        return None
    session.pop("admin_sid", None)
    if request.path.endswith(".json"):
        return jsonify(error="sign in to the admin console"), 401
    if request.method in ("GET", "HEAD"):
        return redirect(url_for("admin.auth.login", next=request.full_path.rstrip("?")))
    return error_page(401, "Please sign in", "Your session has ended. Sign in and try again.")


@bp.after_request
def not_cached(response):
    # The app sets the security headers of every page (nudger.web); console
    # pages also stay out of caches: they show people's data to one admin.
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.app_context_processor
def admin_context():
    return {"admin": g.get("admin")}
