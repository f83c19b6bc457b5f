"""Nudger: email-driven learning workflows."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from flask import Flask

    from nudger.config import Settings


def create_app(config: dict | Settings | None = None) -> Flask:
    """Build the web app; `config` overrides settings from the environment."""
    # Imported here, not at the top: every `nudger` command imports this package,
    # and only the web app needs Flask (the tick and the workers start faster without).
    from flask import Flask

    from nudger.config import ROOT, Settings, load_settings
    from nudger.db import get_engine

    settings = config if isinstance(config, Settings) else load_settings(config)
    app = Flask(
        __name__,
        template_folder=str(ROOT / "templates" / "web"),
        static_folder=str(ROOT / "nudger" / "web" / "static"),
        instance_path=str(settings.instance_path),
    )
    app.config.update(
        SECRET_KEY=settings.secret_key,
        SECRET_KEY_FALLBACKS=settings.secret_key_fallbacks,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.secure_cookies,
        # A learner may leave a done page open for days before pressing the button.
        WTF_CSRF_TIME_LIMIT=None,
        # A roster of a million learners is about 120 MB; the upload is spooled to disk
        # as it arrives (werkzeug), so the limit bounds the disk, not this process's memory.
        MAX_CONTENT_LENGTH=256 * 1024 * 1024,
        TESTING=settings.testing,
    )
    app.extensions["nudger.settings"] = settings
    app.extensions["nudger.engine"] = get_engine(settings.database_url)

    from nudger.web import init_app

    init_app(app)
    return app
