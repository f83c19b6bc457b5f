"""The admin console under /admin: the pages, each a child of the guarded `console.bp`."""

from __future__ import annotations

from flask import Flask

from nudger.web.admin import (
    auth,
    console,
    dashboard,
    enrolments,
    inbound,
    journeys,
    mail,
    tokens,
    upload,
    webhooks,
)

# Nested once, when the console is first imported: a blueprint cannot change
# after an app has registered it, and every test builds its own app.
for _page in (auth, dashboard, enrolments, inbound, journeys, mail, tokens, upload, webhooks):
    console.bp.register_blueprint(_page.bp)


def init_app(app: Flask) -> None:
    """Register the console under /admin, every page behind its guard."""
    app.register_blueprint(console.bp)
