"""Mute reminders for a journey; choose how often team digests come.

These URLs are the emails' List-Unsubscribe targets. A GET shows a page with
a button (scanners open links). A POST from that page carries a CSRF token;
a mail client's RFC 8058 one-click POST carries none, only the body
`List-Unsubscribe=One-Click`, so these views are exempt from the global CSRF
check and check for one or the other themselves.
"""

from __future__ import annotations

from flask import Blueprint, abort, render_template, request

from nudger import tokens
from nudger.enrolments.preferences import DIGEST_CHOICES, set_digest_every, set_reminders_muted
from nudger.models import NO_DIGEST, Enrolment, Journey, Person
from nudger.web import csrf, db, settings
from nudger.web.links import link_error, now, read, record_hit

bp = Blueprint("prefs", __name__)

# RFC 8058: what a mail client's one-click unsubscribe does for a digest: stop it.
ONE_CLICK_DIGEST = NO_DIGEST


def _one_click() -> bool:
    """Say whether this POST is an RFC 8058 one-click unsubscribe."""
    return request.form.get("List-Unsubscribe") == "One-Click"


def _enrolment(token: str) -> tuple[Enrolment, Journey, Person]:
    session = db()
    enrolment = session.get(Enrolment, read("mute", token)) or abort(404)
    return (
        enrolment,
        session.get(Journey, enrolment.journey_id),
        session.get(Person, enrolment.person_id),
    )


@bp.route("/mute/<token>", methods=["GET", "HEAD"])
def mute_page(token: str):
    enrolment, journey, person = _enrolment(token)
    record_hit("mute", enrolment.id)
    return render_template(
        "mute.html",
        enrolment=enrolment,
        journey=journey,
        person=person,
        token=token,
        me_url=tokens.url(settings(), "me", enrolment.id),
    )


@csrf.exempt
@bp.post("/mute/<token>")
def mute_submit(token: str):
    enrolment, journey, person = _enrolment(token)
    record_hit("mute", enrolment.id, commit=False)
    actor = f"learner:{person.id}"
    if _one_click():
        set_reminders_muted(db(), enrolment, True, now(), actor + " (one-click)")
        db().commit()
        return render_template("mute_done.html", journey=journey, muted=True, one_click=True)
    csrf.protect()
    muted = request.form.get("action", "mute") != "unmute"
    set_reminders_muted(db(), enrolment, muted, now(), actor)
    db().commit()
    return render_template(
        "mute_done.html",
        journey=journey,
        muted=muted,
        token=token,
        me_url=tokens.url(settings(), "me", enrolment.id),
    )


def _person(token: str) -> Person:
    return db().get(Person, read("prefs", token)) or abort(404)


@bp.route("/prefs/<token>", methods=["GET", "HEAD"])
def prefs_page(token: str):
    person = _person(token)
    record_hit("prefs", person.id)
    return render_template("prefs.html", person=person, token=token, choices=DIGEST_CHOICES)


@csrf.exempt
@bp.post("/prefs/<token>")
def prefs_submit(token: str):
    person = _person(token)
    record_hit("prefs", person.id, commit=False)
    actor = f"manager:{person.id}"
    if _one_click():
        set_digest_every(db(), person, ONE_CLICK_DIGEST, now(), actor + " (one-click)")
        db().commit()
        return render_template("prefs.html", person=person, choices=DIGEST_CHOICES, saved=True)
    csrf.protect()
    every = request.form.get("every", "")
    if every not in DIGEST_CHOICES:
        return link_error(400, "Choose how often", "Pick one of the options and press Save.")
    set_digest_every(db(), person, every, now(), actor)
    db().commit()
    return render_template(
        "prefs.html", person=person, token=token, choices=DIGEST_CHOICES, saved=True
    )
