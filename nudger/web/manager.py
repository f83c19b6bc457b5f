"""The manager's page: their team's progress, and one-click confirmation of feedback steps.

A team link names one manager. Every id in a URL or form is checked against
that manager's own tree; anything outside it is a 404, the same answer as an
id that does not exist, so a link leaks nothing about other teams.
"""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, url_for

from nudger.insights.team import team
from nudger.measure.progress import team_progress
from nudger.models import Person
from nudger.progress import NotConfirmable, StepClosed, confirm_step
from nudger.web import db, settings
from nudger.web.links import link_error, now, read, record_hit

bp = Blueprint("manager", __name__)


def _manager(token: str) -> Person:
    person = db().get(Person, read("team", token))
    if person is None:
        abort(404)
    return person


@bp.route("/team/<token>", methods=["GET", "HEAD"])
def team_page(token: str):
    manager = _manager(token)
    record_hit("team", manager.id)
    view = team(db(), settings(), manager, now())
    behaviours = team_progress(db(), manager.id)
    return render_template("team.html", team=view, token=token, behaviours=behaviours)


@bp.post("/team/<token>/confirm/<int:es_id>")
def confirm(token: str, es_id: int):
    manager = _manager(token)
    record_hit("team", manager.id, commit=False)
    try:
        result = confirm_step(db(), es_id, manager.id, now())
    except NotConfirmable:
        abort(404)
    except StepClosed:
        return link_error(
            409,
            "This step is closed",
            "Its learner is no longer on the journey. Nothing was changed.",
        )
    db().commit()  # the hit, when it was already confirmed
    learner = db().get(Person, result.enrolment.person_id)
    who = learner.name or learner.email
    if result.already_done:
        flash(f"“{result.step.title}” was already confirmed for {who}.")
    else:
        flash(f"Confirmed: {who} has done “{result.step.title}”.")
    return redirect(url_for("manager.team_page", token=token, _anchor=f"person-{learner.id}"), 303)
