"""The learner's pages: a done link shows the step; only the button's POST completes it.

Mail scanners open every link, run its JavaScript and submit auto-submitting
forms, so a GET (or HEAD) never changes anything and no form here submits
itself: a change needs a person pressing a button, with the form's CSRF token.
"""

from __future__ import annotations

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)

from nudger import tokens, webhooks
from nudger.insights.timeline import timeline
from nudger.mail.render import format_when
from nudger.measure.progress import learner_progress
from nudger.models import Enrolment, EnrolmentStep, Person, Step
from nudger.progress import (
    CohortCounts,
    NotSnoozable,
    StepClosed,
    complete_step,
    load_step,
    shared_notes,
    snooze,
    snooze_until,
)
from nudger.web import db, settings
from nudger.web.links import link_error, now, read, record_hit

bp = Blueprint("learner", __name__)


def _gone():
    return link_error(
        404,
        "This step no longer exists",
        "It was removed from the journey. Your newest email has current links.",
    )


def _closed():
    return link_error(
        409,
        "This step is closed",
        "You are no longer enrolled on this journey, or the step was removed. Nothing was changed.",
    )


def _cohort() -> CohortCounts:
    """Return this app's cohort counts (one per app, so tests never share one)."""
    return current_app.extensions.setdefault("nudger.cohort", CohortCounts())


def _note() -> tuple[str | None, bool, bool]:
    """Return the note from the form, whether the learner's manager may read it, and
    whether it is offered to the people who do the step later."""
    # The form sends a hidden "no" before the checkbox, so an unticked box is told apart
    # from a form that has none (shared, as before the choice existed).
    choices = request.form.getlist("share_note")
    # Offering a note to others is opt-in: only a ticked box offers it.
    for_others = request.form.get("share_later") == "yes"
    return request.form.get("note"), ("yes" in choices) if choices else True, for_others


@bp.route("/done/<token>", methods=["GET", "HEAD"])
def done_page(token: str):
    es_id = read("done", token)
    record_hit("done", es_id, commit=False)
    loaded = load_step(db(), es_id)
    db().commit()  # the hit; one transaction with the read
    if loaded is None:
        return _gone()
    es, step, enrolment, journey, person = loaded
    others = shared_notes(db(), step.id, person.id)
    return render_template(
        "done.html",
        others=others,
        es=es,
        step=step,
        enrolment=enrolment,
        journey=journey,
        person=person,
        tz=person.timezone,
        token=token,
        me_url=tokens.url(settings(), "me", enrolment.id),
    )


@bp.post("/done/<token>")
def done_submit(token: str):
    es_id = read("done", token)
    record_hit("done", es_id, commit=False)
    session = db()
    at = now()
    note, share, for_others = _note()
    try:
        result = complete_step(
            session,
            es_id,
            at,
            note=note,
            actor=f"learner:{es_id}",
            share_note=share,
            commit=False,
            for_others=for_others,
        )
    except LookupError:
        return _gone()
    except StepClosed:
        session.commit()
        return _closed()
    # Read what the page shows in the same transaction, then commit before rendering.
    line = timeline(session, settings(), result.enrolment, at)
    cohort, cohort_total = _cohort().get(
        session, result.step.id, result.enrolment.journey_id, at, not result.already_done
    )
    others = shared_notes(session, result.step.id, result.enrolment.person_id)
    session.commit()
    if not result.already_done:
        webhooks.kick_if_subscribed(session, settings())
    still_open = [e for e in line.entries if e.open and e.es.id != es_id]
    return render_template(
        "done_complete.html",
        result=result,
        line=line,
        tz=line.tz,
        still_open=still_open,
        cohort=cohort,
        cohort_total=cohort_total,
        others=others,
        me_url=tokens.url(settings(), "me", result.enrolment.id),
    )


@bp.route("/me/<token>", methods=["GET", "HEAD"])
def me_page(token: str):
    enrolment_id = read("me", token)
    record_hit("me", enrolment_id)
    session = db()
    enrolment = session.get(Enrolment, enrolment_id)
    if enrolment is None:
        return link_error(404, "This journey no longer exists", "Nothing is linked to it any more.")
    at = now()
    line = timeline(session, settings(), enrolment, at)
    until = snooze_until(session, settings(), enrolment, at)
    behaviours = learner_progress(session, enrolment)
    return render_template(
        "me.html", line=line, tz=line.tz, token=token, snooze_until=until, behaviours=behaviours
    )


def _own_step(enrolment_id: int, es_id: int) -> EnrolmentStep:
    """Return a step of this enrolment; any other id is a 404."""
    es = db().get(EnrolmentStep, es_id)
    if es is None or es.enrolment_id != enrolment_id:
        abort(404)
    return es


@bp.post("/me/<token>/done/<int:es_id>")
def me_done(token: str, es_id: int):
    enrolment_id = read("me", token)
    es = _own_step(enrolment_id, es_id)
    record_hit("me", enrolment_id, commit=False)
    note, share, for_others = _note()
    try:
        result = complete_step(
            db(),
            es.id,
            now(),
            note=note,
            actor=f"learner:{es.id}",
            share_note=share,
            for_others=for_others,
        )
    except StepClosed:
        db().commit()  # the hit
        return _closed()
    db().commit()  # the hit, when the step was already done
    if not result.already_done:
        webhooks.kick_if_subscribed(db(), settings())
    if result.awaiting_manager:
        flash(f"Thanks: your manager will confirm “{result.step.title}”.")
    else:
        flash(f"Done: “{result.step.title}”.")
    return redirect(url_for("learner.me_page", token=token, _anchor=f"step-{result.step.key}"), 303)


@bp.post("/me/<token>/snooze/<int:es_id>")
def me_snooze(token: str, es_id: int):
    enrolment_id = read("me", token)
    es = _own_step(enrolment_id, es_id)
    record_hit("me", enrolment_id, commit=False)
    try:
        until = snooze(db(), settings(), es, now(), actor=f"learner:{es.id}")
    except NotSnoozable:
        db().commit()  # the hit
        flash("That step is not open, so there is nothing to snooze.")
    else:
        person = db().get(Person, db().get(Enrolment, enrolment_id).person_id)
        step = db().get(Step, es.step_id)
        flash(
            f"Snoozed “{step.title}”: no reminders before {format_when(until, person.timezone)}. "
            "Its due date stays the same."
        )
    return redirect(url_for("learner.me_page", token=token), 303)
