"""Blueprints and what every request shares: settings, a database session."""

from __future__ import annotations

from flask import Flask, current_app, g, render_template
from flask_babel import Babel
from flask_wtf.csrf import CSRFError, CSRFProtect
from sqlmodel import Session

from nudger import wording
from nudger.config import Settings

csrf = CSRFProtect()


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
    from nudger.web import admin, checkins, dev, health, home, learner, links, manager, prefs

    @app.after_request
    def referrer_policy(response):
        # Tokens are in our URLs: never send them to other sites. Same-origin
        # requests keep the Referer, which Flask-WTF checks on HTTPS POSTs.
        response.headers.setdefault("Referrer-Policy", "same-origin")
        return response

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
    admin.init_app(app)
    if app.extensions["nudger.settings"].captures_mail:
        app.register_blueprint(dev.bp)

    @app.errorhandler(CSRFError)
    def csrf_error(exc: CSRFError):
        return error_page(
            400,
            "This form has expired",
            "Nothing was changed. Go back, reload the page and press the button again.",
        )

    @app.errorhandler(404)
    def not_found(_exc):
        return error_page(404, "Page not found", "There is nothing at this address.")

    @app.errorhandler(405)
    def not_allowed(_exc):
        return error_page(405, "Not allowed", "This page cannot be used that way.")

    @app.errorhandler(500)
    def server_error(_exc):
        return error_page(
            500, "Something went wrong", "Nothing was changed. Please try again in a minute."
        )
