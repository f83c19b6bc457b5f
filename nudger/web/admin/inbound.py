"""Inbound mail: every reply and bounce received and what was done; lifting a suppression."""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, url_for

from nudger.inbound import bounces, listing
from nudger.models import Person
from nudger.web import db, settings
from nudger.web.admin.console import actor, clock

bp = Blueprint("inbound", __name__)


@bp.get("/inbound")
def index():
    session = db()
    return render_template(
        "admin/inbound.html",
        rows=listing.latest(session),
        undeliverable=listing.undeliverable_count(session),
        inbound_domain=settings().inbound_domain,
    )


@bp.post("/people/<int:person_id>/deliverable")
def lift(person_id: int):
    session = db()
    person = session.get(Person, person_id) or abort(404)
    if bounces.lift(session, person_id, actor(), clock()):
        session.commit()
        flash(f"Mail to {person.email} goes out again.")
    else:
        flash(f"Nothing changed: mail to {person.email} was not stopped.")
    return redirect(url_for("admin.enrolments.person", person_id=person_id))
