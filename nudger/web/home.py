"""The front door: what Nudger is and where to go; the site icon."""

from __future__ import annotations

from flask import Blueprint, current_app, render_template, send_from_directory

from nudger.web import settings

bp = Blueprint("home", __name__)


@bp.get("/")
def index():
    return render_template("home.html", captures_mail=settings().captures_mail)


@bp.get("/favicon.ico")
def favicon():
    # Browsers ask for /favicon.ico whatever the page links; answer with the SVG icon.
    return send_from_directory(
        current_app.static_folder, "favicon.svg", mimetype="image/svg+xml", max_age=86400
    )
