"""The check-in page: an answer link opens it with that answer chosen; Save records them.

A GET or HEAD (a person, or a mail scanner) records only the link hit; the
answers are saved by the Save button's POST, with the form's CSRF token.
"""

from __future__ import annotations

from flask import Blueprint, render_template, request

from nudger.journeys.spec import SCALE
from nudger.measure.answers import (
    BadAnswers,
    CheckinClosed,
    CheckinPage,
    load_checkin,
    parse_answer,
    save_answers,
)
from nudger.web import db
from nudger.web.links import link_error, now, read, record_hit

bp = Blueprint("checkins", __name__)


def _gone():
    return link_error(
        404,
        "This check-in no longer exists",
        "Your newest email from Nudger has current links.",
    )


def _render(token: str, page: CheckinPage, chosen: dict[str, int], **extra):
    return render_template(
        "checkin.html",
        page=page,
        chosen=chosen,
        scale=list(enumerate(SCALE, start=1)),
        token=token,
        closed=page.closed(now()),
        tz=page.rater.timezone,
        **extra,
    )


@bp.route("/checkin/<token>", methods=["GET", "HEAD"])
def checkin_page(token: str):
    checkin_id = read("checkin", token)
    record_hit("checkin", checkin_id, commit=False)
    page = load_checkin(db(), checkin_id)
    db().commit()  # the hit
    if page is None:
        return _gone()
    chosen = dict(page.answers)
    # The answer clicked in the email, chosen but not saved; a bad one is ignored.
    key = request.args.get("b")
    try:
        value = parse_answer(request.args.get("v"))
    except BadAnswers:
        value = None
    if key in {b.key for b in page.behaviours} and value is not None:
        chosen[key] = value
    return _render(token, page, chosen, unsaved=chosen != page.answers)


@bp.post("/checkin/<token>")
def checkin_submit(token: str):
    checkin_id = read("checkin", token)
    record_hit("checkin", checkin_id, commit=False)
    session = db()
    page = load_checkin(session, checkin_id)
    if page is None:
        session.commit()
        return _gone()
    try:
        answers = {
            b.key: value
            for b in page.behaviours
            if (value := parse_answer(request.form.get(f"answer-{b.key}"))) is not None
        }
        page = save_answers(session, checkin_id, answers, now())
    except BadAnswers:
        session.rollback()
        return link_error(
            400, "That answer isn't one we know", "Nothing was saved. Go back and choose again."
        )
    except CheckinClosed:
        session.commit()
        return _render(token, page, dict(page.answers)), 409
    session.commit()
    return _render(token, page, dict(page.answers), saved=bool(answers))
