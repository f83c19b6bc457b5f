"""What every page behind an emailed link shares: reading its token, recording the hit,
the clear page for a bad or expired link, and "ask for a fresh link"."""

from __future__ import annotations

from datetime import datetime

from flask import Blueprint, current_app, render_template, request
from sqlalchemy import insert

from nudger import tokens
from nudger.calendar import zone
from nudger.db import utcnow
from nudger.links import request_links
from nudger.mail.render import format_day, format_when
from nudger.models import LinkHit
from nudger.progress import link_alive
from nudger.web import db, settings

bp = Blueprint("links", __name__)

# Built once: every request on an emailed link runs it.
_INSERT_HIT = insert(LinkHit.__table__)


def now() -> datetime:
    """Return the time; tests and previews set app.config["NUDGER_CLOCK"] to pass one in."""
    return current_app.config.get("NUDGER_CLOCK", utcnow)()


class BadLink(Exception):
    """The request's token cannot be used; `response` is the page to show instead."""

    def __init__(self, response) -> None:
        super().__init__("bad link")
        self.response = response


def read(purpose: str, token: str) -> int:
    """Return the token's subject id, or raise BadLink with the clear page to show."""
    at = now()
    try:
        return tokens.read_token(settings(), purpose, token, at)
    except tokens.TokenExpired as exc:
        if link_alive(db(), purpose, exc.subject_id, at):
            return exc.subject_id
        raise BadLink(expired_page(purpose, token)) from None
    except tokens.TokenInvalid:
        raise BadLink(invalid_page()) from None


def invalid_page():
    """Return the page for a tampered, truncated or mistyped link (404)."""
    return link_error(
        404,
        "This link doesn't work",
        "Part of it may have been lost when it was copied, or it was changed. "
        "Open it again from the email, or use the newest email from Nudger: "
        "every email carries working links.",
    )


def expired_page(purpose: str, token: str):
    """Return the page for a genuine but expired link (410), with a way to get a fresh one."""
    return link_error(
        410,
        "This link has expired",
        "Links in Nudger emails stop working a while after the journey ends. "
        "We can email you fresh links, to the address we have on file for you.",
        fresh_purpose=purpose,
        fresh_token=token,
    )


def link_error(status: int, title: str, message: str, **extra):
    """Render a clear page about a link, never a stack trace."""
    page = render_template("link_error.html", status=status, title=title, message=message, **extra)
    return page, status


def record_hit(purpose: str, subject_id: int, commit: bool = True) -> None:
    """Keep every request on an emailed link; scanners show up here, never as engagement."""
    session = db()
    session.execute(
        _INSERT_HIT,
        {
            "at": now(),
            "purpose": purpose,
            "subject_id": subject_id,
            "method": request.method,
            "user_agent": (request.user_agent.string or "")[:500],
            "ip": (request.remote_addr or "")[:64],
        },
    )
    if commit:
        session.commit()


@bp.post("/fresh/<purpose>/<token>")
def fresh(purpose: str, token: str):
    """Email fresh links to the address on file of the person an expired link names."""
    if purpose not in tokens.PURPOSES:
        return invalid_page()
    at = now()
    try:
        subject_id = tokens.read_token(settings(), purpose, token, at)
    except tokens.TokenExpired as exc:
        subject_id = exc.subject_id
    except tokens.TokenInvalid:
        return invalid_page()
    result = request_links(db(), settings(), purpose, subject_id, at)
    if result is None:
        return link_error(
            404,
            "We can't find who this link was for",
            "The person or journey it was about has been removed. "
            "Ask the person who runs your learning programme to add you again.",
        )
    status = 200 if result.queued else 429
    return render_template("fresh_sent.html", result=result), status


@bp.app_errorhandler(BadLink)
def bad_link(exc: BadLink):
    return exc.response


@bp.app_template_filter("local_day")
def local_day(value: datetime | None, tz: str) -> str:
    """Format an instant as the person's local day, e.g. "Tuesday 2 March"."""
    return format_day(value.astimezone(zone(tz))) if value else ""


@bp.app_template_filter("local_when")
def local_when(value: datetime | None, tz: str) -> str:
    """Format an instant in the person's zone, e.g. "Tuesday 2 March at 09:00"."""
    return format_when(value, tz) if value else ""
