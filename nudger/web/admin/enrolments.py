"""Enrolments: search and filter, pause, resume, withdraw, move the start; a person's history
and the erasure of their personal data."""

from __future__ import annotations

from datetime import date

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from sqlmodel import select

from nudger.enrolments import changes as domain
from nudger.inbound import listing
from nudger.insights import ledger
from nudger.insights import search as lookup
from nudger.models import Enrolment, EnrolmentStep, Journey, Person
from nudger.privacy import erasure
from nudger.progress import NoSharedNote, set_note_hidden
from nudger.web import db, id_arg, settings
from nudger.web.admin.console import actor, clock, safe_next
from nudger.web.admin.csv import csv_download

bp = Blueprint("enrolments", __name__)

# An erased person's enrolments stay only for the counts: nothing about them changes again.
ERASED_UNCHANGED = "Nothing changed: this person's personal data was erased."
ACTIONS = {
    "pause": ("paused", "was not active"),
    "resume": ("resumed", "was not paused"),
    "withdraw": ("withdrawn", "was already withdrawn"),
}


@bp.get("/enrolments")
def index():
    now = clock()
    f = lookup.EnrolmentFilter.from_args(request.args)
    before = id_arg("before")
    rows, next_before = lookup.search(db(), f, now, before)
    journeys = db().exec(select(Journey.slug, Journey.title).order_by(Journey.title)).all()
    return render_template(
        "admin/enrolments.html",
        f=f,
        rows=rows,
        total=lookup.count(db(), f, now, cap=lookup.COUNT_CAP),
        cap=lookup.COUNT_CAP,
        before=before,
        next_before=next_before,
        journeys=journeys,
        statuses=("active", "paused", "completed", "withdrawn"),
    )


@bp.get("/enrolments.csv")
def export():
    now = clock()
    f = lookup.EnrolmentFilter.from_args(request.args)

    def rows(session):
        for r in lookup.iter_all(session, f, now):
            yield (r.email, r.name, r.journey_slug, r.status, r.start_date, r.manager_email,
                   r.done, r.total, r.late, "yes" if r.escalated else "")  # fmt: skip

    header = ["email", "name", "journey", "status", "start_date", "manager_email", "steps_done",
              "steps_total", "steps_past_due", "escalated"]  # fmt: skip
    return csv_download("nudger-enrolments.csv", header, rows)


def _back(enrolment: Enrolment) -> str:
    default = url_for("admin.enrolments.person", person_id=enrolment.person_id)
    return safe_next(request.form.get("next"), default)


@bp.post("/enrolments/<int:enrolment_id>/<any(pause, resume, withdraw):action>")
def change(enrolment_id: int, action: str):
    session = db()
    enrolment = session.get(Enrolment, enrolment_id) or abort(404)
    person = session.get(Person, enrolment.person_id)
    journey = session.get(Journey, enrolment.journey_id)
    if person.erased_at is not None:
        flash(ERASED_UNCHANGED)
        return redirect(_back(enrolment))
    change_fn = getattr(domain, action)
    changed = change_fn(
        session, enrolment, clock(), actor(), default_country=settings().default_country
    )
    session.commit()
    done, not_done = ACTIONS[action]
    if changed:
        flash(f"{person.email} on {journey.title}: {done}.")
    else:
        flash(f"Nothing changed: {person.email} on {journey.title} {not_done}.")
    return redirect(_back(enrolment))


@bp.post("/enrolments/<int:enrolment_id>/move")
def move(enrolment_id: int):
    session = db()
    enrolment = session.get(Enrolment, enrolment_id) or abort(404)
    person = session.get(Person, enrolment.person_id)
    if person.erased_at is not None:
        flash(ERASED_UNCHANGED)
        return redirect(_back(enrolment))
    text = request.form.get("start_date", "").strip()
    try:
        new_date = date.fromisoformat(text)
    except ValueError:
        flash(f"Not moved: {text!r} is not a date (YYYY-MM-DD).")
        return redirect(_back(enrolment))
    try:
        moved = domain.move_start(session, enrolment, new_date, clock(), actor())
    except domain.StartNotMoved as exc:
        session.rollback()
        flash(f"Not moved: {exc}.")
        return redirect(_back(enrolment))
    session.commit()
    if moved:
        flash(f"{person.email} now starts on {new_date.isoformat()}; steps not yet sent follow.")
    else:
        flash(f"{person.email} already starts on {new_date.isoformat()}.")
    return redirect(_back(enrolment))


@bp.post("/notes/<int:es_id>/<any(hide, show):action>")
def note_visibility(es_id: int, action: str):
    session = db()
    es = session.get(EnrolmentStep, es_id) or abort(404)
    enrolment = session.get(Enrolment, es.enrolment_id)
    try:
        changed = set_note_hidden(session, es_id, action == "hide", clock(), actor())
    except NoSharedNote:
        abort(404)
    if action == "hide":
        flash(
            "The note is hidden from later learners."
            if changed
            else "Nothing changed: the note was already hidden."
        )
    else:
        flash(
            "The note is shown to later learners again."
            if changed
            else "Nothing changed: the note was already shown."
        )
    return redirect(_back(enrolment))


@bp.get("/people/<int:person_id>")
def person(person_id: int):
    history = lookup.person_history(db(), person_id, clock()) or abort(404)
    now = clock()
    mail = [(m, ledger.display_state(m, now)) for m in history.mail]
    return render_template(
        "admin/person.html",
        h=history,
        mail=mail,
        labels=ledger.LABELS,
        inbound=listing.of_person(db(), person_id),
    )


@bp.get("/people/<int:person_id>/erase")
def erase_confirm(person_id: int):
    try:
        plan = erasure.describe_erasure(db(), person_id)
    except erasure.PersonNotFound:
        abort(404)
    return render_template("admin/erase.html", plan=plan)


@bp.post("/people/<int:person_id>/erase")
def erase(person_id: int):
    try:
        done = erasure.erase_person(db(), person_id, actor=actor(), now=clock())
    except erasure.PersonNotFound:
        abort(404)
    if done.already_erased:
        flash(f"Nothing changed: person {person_id}'s personal data was already erased.")
    else:
        flash(f"Person {person_id}'s personal data was erased.")
    return redirect(url_for("admin.enrolments.person", person_id=person_id))
