"""Blueprints and what every request shares: settings, a database session, headers."""

from __future__ import annotations

import re

from flask import Flask, abort, current_app, g, render_template, request
from flask_babel import Babel
from flask_wtf.csrf import CSRFError, CSRFProtect
from sqlmodel import Session
from werkzeug.exceptions import BadRequest
from werkzeug.routing import IntegerConverter

from nudger import wording
from nudger.config import Settings

csrf = CSRFProtect()

# Every page: nothing from other sites, no inline script or style, never framed
# by another site (clickjacking a "Mark as done" or admin button). The pages
# that are framed on purpose (the emails shown in /outbox and the console's
# previews) set their own, stricter policy with frame-ancestors 'self'.
CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "frame-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'; "
    "object-src 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    # Tokens are in our URLs: never send them to other sites. Same-origin
    # requests keep the Referer, which Flask-WTF checks on HTTPS POSTs.
    "Referrer-Policy": "same-origin",
}
# Ids are INTEGER columns: 32-bit on PostgreSQL (a larger number is a DataError
# there), 64-bit on SQLite (whose driver raises OverflowError past that). The
# smaller bound serves both, so no larger number reaches a query.
MAX_ID = 2**31 - 1
_DIGITS = re.compile(r"[0-9]{1,19}")


class DatabaseId(IntegerConverter):
    """`<int:...>` in a URL: a non-negative integer no larger than a database id.

    Registered as the app's `int` converter, so every integer route is bounded,
    including ones added later: a larger number matches no route (404).
    """

    def __init__(self, map, *args, max: int = MAX_ID, **kwargs) -> None:
        super().__init__(map, *args, max=min(max, MAX_ID), **kwargs)


def id_arg(name: str) -> int | None:
    """Return query argument `name` as a database id, None when absent; 400 when it is not one."""
    value = request.args.get(name, "")
    if not value:
        return None
    if not _DIGITS.fullmatch(value) or int(value) > MAX_ID:
        abort(400, f"The address has a bad value for {name!r}: it must be a number.")
    return int(value)


def settings() -> Settings:
    """Return the settings of the current app."""
    return current_app.extensions["nudger.settings"]


def db() -> Session:
    """Return this request's database session, opened on first use."""
    if "db" not in g:
        g.db = Session(current_app.extensions["nudger.engine"], expire_on_commit=False)
    return g.db


def _close_db(_exc: BaseException | None) -> None:
    session = g.pop("db", None)
    if session is not None:
        session.close()


def error_page(status: int, title: str, message: str, **extra):
    """Render a clear page for a person, never a stack trace."""
    page = render_template("error.html", status=status, title=title, message=message, **extra)
    return page, status


def init_app(app: Flask) -> None:
    """Register blueprints, the CSRF guard and the error pages."""
    from nudger.mail.render import markdown_filter
    from nudger.web import (
        admin,
        api,
        checkins,
        dev,
        health,
        home,
        inbound,
        learner,
        links,
        manager,
        metrics,
        prefs,
    )

    @app.after_request
    def security_headers(response):
        # setdefault: a view that sets its own policy (a framed email) keeps it.
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        return response

    # Before any blueprint: converters are bound when a route is added.
    app.url_map.converters["int"] = DatabaseId
    csrf.init_app(app)
    Babel(app)
    wording.install(app.jinja_env)
    app.jinja_env.filters["markdown"] = markdown_filter
    app.teardown_appcontext(_close_db)
    app.register_blueprint(home.bp)
    app.register_blueprint(learner.bp)
    app.register_blueprint(checkins.bp)
    app.register_blueprint(links.bp)
    app.register_blueprint(manager.bp)
    app.register_blueprint(prefs.bp)
    app.register_blueprint(health.bp)
    app.register_blueprint(inbound.bp)
    admin.init_app(app)
    api.init_app(app)
    app.register_blueprint(metrics.bp)
    if app.extensions["nudger.settings"].captures_mail:
        app.register_blueprint(dev.bp)

    @app.errorhandler(CSRFError)
    def csrf_error(exc: CSRFError):
        if api.is_api_request():
            return api.http_problem(exc)
        return error_page(
            400,
            "This form has expired",
            "Nothing was changed. Go back, reload the page and press the button again.",
        )

    @app.errorhandler(BadRequest)
    def bad_request(exc: BadRequest):
        if api.is_api_request():
            return api.http_problem(exc)
        return error_page(400, "Bad request", exc.description or "This address is not valid.")

    @app.errorhandler(404)
    def not_found(exc):
        if api.is_api_request():
            return api.http_problem(exc)
        return error_page(404, "Page not found", "There is nothing at this address.")

    @app.errorhandler(405)
    def not_allowed(exc):
        if api.is_api_request():
            return api.http_problem(exc)
        return error_page(405, "Not allowed", "This page cannot be used that way.")

    @app.errorhandler(500)
    def server_error(exc):
        if api.is_api_request():
            return api.http_problem(exc)
        return error_page(
            500, "Something went wrong", "Nothing was changed. Please try again in a minute."
        )
