"""The admin console under /admin: one parent blueprint that guards every page.

Every admin page needs a signed-in admin; the parent's before_request refuses
anyone else (a redirect to the sign-in page for a GET, 401 otherwise), so a
page added to any child blueprint is guarded without remembering to.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

from flask import Blueprint, Flask, current_app, g, jsonify, redirect, request, session, url_for

from nudger.admins import session_version
from nudger.db import utcnow
from nudger.models import AdminUser
from nudger.web import db, error_page

bp = Blueprint("admin", __name__, url_prefix="/admin")

PUBLIC = {"admin.auth.login", "admin.auth.login_code"}
SESSION_HOURS = 12  # a signed-in console lasts a working day


def clock() -> datetime:
    """Return the time; tests set app.config["NUDGER_CLOCK"] to pass one in."""
    return current_app.config.get("NUDGER_CLOCK", utcnow)()


def current_admin() -> AdminUser:
    """Return the signed-in admin (guaranteed on every page but sign-in)."""
    return g.admin


def actor() -> str:
    """Return who the audit log names for changes made in this request."""
    return g.admin.email


def sign_in(admin: AdminUser, now: datetime) -> None:
    """Start a fresh console session for `admin`."""
    session.clear()
    session["admin_id"] = admin.id
    session["admin_v"] = session_version(admin)
    session["admin_at"] = now.timestamp()


def safe_next(target: str | None, default: str) -> str:
    """Return `target` if it is a path inside the console, else `default` (no open redirects)."""
    if not target:
        return default
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not parts.path.startswith("/admin") or "\\" in target:
        return default
    return target


def _load_admin() -> AdminUser | None:
    admin_id = session.get("admin_id")
    if not admin_id:
        return None
    started = datetime.fromtimestamp(session.get("admin_at", 0), UTC)
    if clock() - started > timedelta(hours=SESSION_HOURS):
        return None
    admin = db().get(AdminUser, admin_id)
    # A new password or TOTP ends every other session of that admin.
    if admin is None or session.get("admin_v") != session_version(admin):
        return None
    return admin


@bp.before_request
def guard():
    g.admin = _load_admin()
    if g.admin is not None or request.endpoint in PUBLIC:
        return None
    for key in ("admin_id", "admin_v", "admin_at"):
        session.pop(key, None)
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


def init_app(app: Flask) -> None:
    """Register the console under /admin."""
    app.register_blueprint(bp)


# The pages, nested under the guard; imported last because they use the helpers above.
from nudger.web.admin import auth, dashboard, enrolments, journeys, mail, upload  # noqa: E402

for _child in (auth, dashboard, enrolments, journeys, mail, upload):
    bp.register_blueprint(_child.bp)
