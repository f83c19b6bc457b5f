"""The learner's pages: a done link shows the step; only the button's POST completes it."""

from __future__ import annotations

from flask import Blueprint, render_template, request
from sqlmodel import select

from nudger import tokens
from nudger.db import utcnow
from nudger.models import Enrolment, EnrolmentStep, Journey, LinkHit, Person, Step
from nudger.progress import StepClosed, cohort_done, complete_step
from nudger.web import db, error_page, settings

bp = Blueprint("learner", __name__)


def _read(purpose: str, token: str) -> int | tuple:
    """Return the token's subject id, or the error page to show instead."""
    try:
        return tokens.read_token(settings(), purpose, token)
    except tokens.TokenExpired:
        return error_page(
            410,
            "This link has expired",
            "Links in Nudger emails last a year. Your latest email has a fresh one.",
        )
    except tokens.TokenInvalid:
        return error_page(
            404,
            "This link doesn't work",
            "It may have been cut short when it was copied. "
            "Open it again from the email, or use the latest email from Nudger.",
        )


def _record_hit(purpose: str, subject_id: int) -> None:
    """Keep every request on an emailed link; scanners show up here, not as engagement."""
    session = db()
    session.add(
        LinkHit(
            at=utcnow(),
            purpose=purpose,
            subject_id=subject_id,
            method=request.method,
            user_agent=(request.user_agent.string or "")[:500],
            ip=(request.remote_addr or "")[:64],
        )
    )
    session.commit()


def _load(es_id: int):
    session = db()
    es = session.get(EnrolmentStep, es_id)
    if es is None:
        return None
    step = session.get(Step, es.step_id)
    enrolment = session.get(Enrolment, es.enrolment_id)
    journey = session.get(Journey, enrolment.journey_id)
    person = session.get(Person, enrolment.person_id)
    return es, step, enrolment, journey, person


@bp.route("/done/<token>", methods=["GET", "HEAD"])
def done_page(token: str):
    es_id = _read("done", token)
    if not isinstance(es_id, int):
        return es_id
    _record_hit("done", es_id)
    loaded = _load(es_id)
    if loaded is None:
        return error_page(404, "This step no longer exists", "Your latest email has current links.")
    es, step, enrolment, journey, person = loaded
    return render_template(
        "done.html", es=es, step=step, enrolment=enrolment, journey=journey, person=person,
        token=token,
    )


@bp.post("/done/<token>")
def done_submit(token: str):
    es_id = _read("done", token)
    if not isinstance(es_id, int):
        return es_id
    _record_hit("done", es_id)
    session = db()
    try:
        result = complete_step(
            session, es_id, utcnow(), note=request.form.get("note"), actor=f"learner:{es_id}"
        )
    except LookupError:
        return error_page(404, "This step no longer exists", "Your latest email has current links.")
    except StepClosed:
        return error_page(
            409, "This step is closed", "You are no longer enrolled on this journey, or the step was removed."
        )
    steps = list(
        session.exec(
            select(Step)
            .where(Step.journey_id == result.enrolment.journey_id, Step.removed.is_(False))
            .order_by(Step.position)
        )
    )
    sent = {
        row.step_id: row
        for row in session.exec(
            select(EnrolmentStep).where(EnrolmentStep.enrolment_id == result.enrolment.id)
        )
    }
    done_count = sum(1 for s in steps if s.id in sent and sent[s.id].status == "done")
    upcoming = next((s for s in steps if s.id not in sent), None)
    cohort, cohort_total = cohort_done(session, result.step.id, result.enrolment.journey_id)
    return render_template(
        "done_complete.html",
        result=result,
        journey=session.get(Journey, result.enrolment.journey_id),
        steps=steps,
        done_count=done_count,
        upcoming=upcoming,
        cohort=cohort,
        cohort_total=cohort_total,
    )
