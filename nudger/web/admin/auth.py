"""Sign in (password, then an authenticator code if set up), sign out, and the account page."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from io import BytesIO

import segno
from flask import (
    Blueprint,
    current_app,
    flash,
    g,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from markupsafe import Markup

from nudger import admins
from nudger.admins import sessions
from nudger.admins.login_limits import LOGIN_LIMIT, LoginLimiter
from nudger.audit import record
from nudger.models import AdminUser
from nudger.queue import redis_connection
from nudger.web import db, error_page, settings
from nudger.web.admin.console import client_ip, clock, current_admin, safe_next, sign_in
from nudger.wording import ngettext

bp = Blueprint("auth", __name__)
log = logging.getLogger(__name__)

CODE_MINUTES = 5  # time allowed between the password and the authenticator code


def _limiter() -> LoginLimiter:
    limiter = current_app.extensions.get("nudger.login_limiter")
    if limiter is None:
        engine = current_app.extensions["nudger.engine"]
        limiter = LoginLimiter(redis_connection(settings()), engine)
        current_app.extensions["nudger.login_limiter"] = limiter
    return limiter


def _too_many(wait: int):
    minutes = max(1, -(-wait // 60))
    return error_page(
        429,
        "Too many attempts",
        f"Sign-in is locked for this account or network after {LOGIN_LIMIT} failed "
        "attempts. "
        + ngettext("Try again in %(num)d minute.", "Try again in %(num)d minutes.", minutes),
    )


def _finish(admin: AdminUser, now: datetime):
    _limiter().forget(admin.email, now)
    admins.record_login(db(), admin, now, client_ip())
    target = safe_next(session.get("login_next"), url_for("admin.dashboard.index"))
    sign_in(admin, now)
    db().commit()
    return redirect(target)


@bp.route("/login", methods=["GET", "POST"])
def login():
    if request.method == "GET":
        next_page = safe_next(request.args.get("next"), "")
        return render_template("admin/login.html", email="", error=None, next_page=next_page)
    email = request.form.get("email", "").strip().lower()[:320]
    password = request.form.get("password", "")
    next_page = safe_next(request.form.get("next"), "")
    if not (email and password):
        error = "Enter your email and your password."
        page = render_template("admin/login.html", email=email, error=error, next_page=next_page)
        return page, 400
    now, limiter = clock(), _limiter()
    # Counted before the password is checked: concurrent guesses cannot all get through.
    wait = limiter.attempt(client_ip(), email, now)
    if wait:
        return _too_many(wait)
    admin = admins.verify_login(db(), email, password)
    if admin is None:
        log.warning("failed admin sign-in for %r from %s", email, client_ip())
        error = "That email and password don't match an admin account."
        page = render_template("admin/login.html", email=email, error=error, next_page=next_page)
        return page, 401
    limiter.passed(client_ip(), email, now)
    session["login_next"] = safe_next(request.form.get("next"), "")
    if admin.totp_secret:
        session["pending_admin"] = admin.id
        session["pending_at"] = now.timestamp()
        return redirect(url_for("admin.auth.login_code"))
    return _finish(admin, now)


@bp.route("/login/code", methods=["GET", "POST"])
def login_code():
    now = clock()
    started = datetime.fromtimestamp(session.get("pending_at", 0), UTC)
    admin = db().get(AdminUser, session.get("pending_admin") or 0)
    if admin is None or not admin.totp_secret or now - started > timedelta(minutes=CODE_MINUTES):
        session.pop("pending_admin", None)
        flash("Please sign in again.")
        return redirect(url_for("admin.auth.login"))
    if request.method == "GET":
        return render_template("admin/login_code.html", error=None)
    limiter = _limiter()
    wait = limiter.attempt(client_ip(), admin.email, now)
    if wait:
        return _too_many(wait)
    code = request.form.get("code", "")
    redis = redis_connection(settings())
    if not (
        admins.totp_ok(admin.totp_secret, code, now)
        and admins.claim_totp_code(redis, admin.id, code)
    ):
        error = "That code isn't right. Codes change every 30 seconds: use the current one."
        return render_template("admin/login_code.html", error=error), 401
    limiter.passed(client_ip(), admin.email, now)
    return _finish(admin, now)


@bp.post("/logout")
def logout():
    admin, now = current_admin(), clock()
    sessions.end(db(), session.get("admin_sid"), now)
    record(db(), admin.email, "admin.logout", now, "admin", admin.id)
    db().commit()
    session.clear()
    flash("You are signed out.")
    return redirect(url_for("admin.auth.login"))


@bp.post("/logout/everywhere")
def logout_everywhere():
    admin, now = current_admin(), clock()
    ended = sessions.end_all(db(), admin.id, now)
    record(db(), admin.email, "admin.logout_all", now, "admin", admin.id, sessions=ended)
    db().commit()
    session.clear()
    flash("You are signed out on every browser and device, this one included.")
    return redirect(url_for("admin.auth.login"))


@bp.get("/account")
def account():
    secret = session.get("totp_setup")
    live = sessions.live(db(), current_admin().id, clock())
    qr = uri = None
    if secret and not current_admin().totp_secret:
        uri = admins.totp_uri(secret, current_admin().email)
        out = BytesIO()
        segno.make(uri, error="m").save(
            out, kind="svg", scale=5, border=2, xmldecl=False, svgns=True, title="QR code"
        )
        qr = Markup(out.getvalue().decode())
    return render_template(
        "admin/account.html",
        secret=secret,
        uri=uri,
        qr=qr,
        sessions=live,
        current=g.admin_session.id,
    )


@bp.post("/account/totp/start")
def totp_start():
    session["totp_setup"] = admins.new_totp_secret()
    return redirect(url_for("admin.auth.account") + "#totp")


@bp.post("/account/totp/confirm")
def totp_confirm():
    admin, secret = current_admin(), session.get("totp_setup")
    if not secret:
        return redirect(url_for("admin.auth.account"))
    now = clock()
    if not admins.enable_totp(db(), admin, secret, request.form.get("code", ""), now):
        flash("That code isn't right: check the app shows Nudger and type the current code.")
        return redirect(url_for("admin.auth.account") + "#totp")
    sign_in(admin, now)  # enable_totp ended every session; this browser gets a new one
    db().commit()
    flash("Two-step sign-in is on. You'll be asked for a code each time you sign in.")
    return redirect(url_for("admin.auth.account"))


@bp.post("/account/totp/disable")
def totp_disable():
    admin, now = current_admin(), clock()
    if not admins.check_password(admin, request.form.get("password", "")):
        flash("That password isn't right; two-step sign-in is still on.")
        return redirect(url_for("admin.auth.account"))
    admins.disable_totp(db(), admin, now)
    sign_in(admin, now)
    db().commit()
    flash("Two-step sign-in is off.")
    return redirect(url_for("admin.auth.account"))


@bp.post("/account/password")
def password():
    admin, now = current_admin(), clock()
    new = request.form.get("new_password", "")
    if not admins.check_password(admin, request.form.get("current_password", "")):
        flash("Your current password isn't right; nothing changed.")
    elif new != request.form.get("confirm_password", ""):
        flash("The two new passwords differ; nothing changed.")
    else:
        try:
            admins.change_password(db(), admin, new, now)
        except admins.AdminError as exc:
            flash(f"Not changed: {exc}.")
        else:
            # change_password ended every session, copies of this cookie too; this
            # browser stays signed in with a new one.
            sign_in(admin, now)
            db().commit()
            flash("Password changed. You are signed out everywhere else.")
    return redirect(url_for("admin.auth.account"))
