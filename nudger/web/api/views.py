"""The API's operations: each parses its input, calls one function of `nudger.api`, answers."""

from __future__ import annotations

from flask import request, url_for

from nudger.api import reading, writing
from nudger.api.schemas import (
    Changed,
    Completed,
    EnrolmentDetail,
    EnrolmentPage,
    EnrolmentQuery,
    EnrolRequest,
    EnrolResult,
    EventPage,
    EventQuery,
    JourneyDetail,
    JourneyList,
)
from nudger.web import db, settings
from nudger.web.api import bp, caller, clock
from nudger.web.api.spec import ApiProblem, api_spec, responses
from nudger.wording import ngettext

ID = "int(min=1, max=2147483647)"


@bp.get("/journeys")
@api_spec.validate(resp=responses(200, JourneyList), tags=["journeys"])
def journeys():
    """List the journeys."""
    return JourneyList(items=reading.journeys(db()))


@bp.get("/journeys/<string(maxlength=100):slug>")
@api_spec.validate(resp=responses(200, JourneyDetail, 404), tags=["journeys"])
def journey(slug: str):
    """One journey with its steps and its goal's behaviours."""
    found = reading.journey(db(), slug)
    if found is None:
        raise ApiProblem(404, "Not Found", f"no journey {slug!r}")
    return found


@bp.get("/enrolments")
@api_spec.validate(query=EnrolmentQuery, resp=responses(200, EnrolmentPage), tags=["enrolments"])
def enrolments():
    """List enrolments, newest first, a page at a time.

    Filter by journey, status, manager (email) and behind; follow `next_cursor` (also in the
    `Link` header, rel="next") for the next page.
    """
    q: EnrolmentQuery = request.context.query
    page = reading.enrolments(db(), q, clock())
    headers = {}
    if page.next_cursor:
        args = {k: v for k, v in q.model_dump().items() if v is not None}
        args["cursor"] = page.next_cursor
        headers["Link"] = f'<{url_for("api.enrolments", **args)}>; rel="next"'
    return page, 200, headers


@bp.get(f"/enrolments/<{ID}:enrolment_id>")
@api_spec.validate(resp=responses(200, EnrolmentDetail, 404), tags=["enrolments"])
def enrolment(enrolment_id: int):
    """One enrolment with its steps, ratings and most recent emails."""
    found = reading.enrolment(db(), enrolment_id, clock())
    if found is None:
        raise ApiProblem(404, "Not Found", f"no enrolment {enrolment_id}")
    return found


@bp.post("/enrolments")
@api_spec.validate(json=EnrolRequest, resp=responses(200, EnrolResult, 415), tags=["enrolments"])
def enrol():
    """Create or update people and enrol them, all or nothing.

    Each item is checked like a row of the learner CSV (`nudger import`): if any item has an
    error, nothing is written and the answer (422) lists every error with its item's index.
    Enrolling someone already enrolled changes nothing (a warning says so).
    """
    body = request.context.json
    if body is None:  # a form or another type: spectree reads only JSON bodies
        raise ApiProblem(415, "Unsupported media type", "send the body as application/json")
    try:
        return writing.enrol(db(), settings(), body, caller(), clock())
    except writing.Rejected as exc:
        detail = ngettext(
            "%(num)d error: nothing was written",
            "%(num)d errors: nothing was written",
            len(exc.errors),
        )
        raise ApiProblem(422, "Invalid items", detail, exc.errors) from None


def _complete(enrolment_id: int, key: str) -> Completed:
    try:
        return writing.complete(db(), enrolment_id, key, caller(), clock())
    except writing.NotFound as exc:
        raise ApiProblem(404, "Not Found", str(exc)) from None
    except writing.Conflict as exc:
        raise ApiProblem(409, "Conflict", str(exc)) from None


@bp.post(f"/enrolments/<{ID}:enrolment_id>/steps/<string(maxlength=100):key>/complete")
@api_spec.validate(resp=responses(200, Completed, 404, 409), tags=["enrolments"])
def complete(enrolment_id: int, key: str):
    """Complete a sent step, as the learner's "Mark as done" does; harmless twice.

    A step their manager confirms becomes `awaiting_confirmation`.
    """
    return _complete(enrolment_id, key)


def _change(enrolment_id: int, action: str) -> Changed:
    try:
        return writing.change(db(), settings(), enrolment_id, action, caller(), clock())
    except writing.NotFound as exc:
        raise ApiProblem(404, "Not Found", str(exc)) from None
    except writing.Conflict as exc:
        raise ApiProblem(409, "Conflict", str(exc)) from None


@bp.post(f"/enrolments/<{ID}:enrolment_id>/pause")
@api_spec.validate(resp=responses(200, Changed, 404, 409), tags=["enrolments"])
def pause(enrolment_id: int):
    """Pause an active enrolment: nothing is sent, invites still ahead are cancelled."""
    return _change(enrolment_id, "pause")


@bp.post(f"/enrolments/<{ID}:enrolment_id>/resume")
@api_spec.validate(resp=responses(200, Changed, 404, 409), tags=["enrolments"])
def resume(enrolment_id: int):
    """Resume a paused enrolment; steps not yet sent move by the working days paused."""
    return _change(enrolment_id, "resume")


@bp.post(f"/enrolments/<{ID}:enrolment_id>/withdraw")
@api_spec.validate(resp=responses(200, Changed, 404, 409), tags=["enrolments"])
def withdraw(enrolment_id: int):
    """Withdraw an enrolment: open steps and invites still ahead are cancelled."""
    return _change(enrolment_id, "withdraw")


@bp.get("/events")
@api_spec.validate(query=EventQuery, resp=responses(200, EventPage), tags=["events"])
def events():
    """The event feed: what happened to enrolments, oldest first, after a cursor.

    Poll with `after` set to the last `next_cursor`. Event types: enrolment.created, step.sent,
    step.completed, step.overdue, escalation.raised, enrolment.completed, rating.recorded,
    email.bounced. Every event is listed exactly once, in an order no later commit changes: an
    event is listed once every change that began before it has committed, so a cursor never
    passes an event still being written. The cursor is opaque: keep the last `next_cursor`.
    """
    return reading.events(db(), request.context.query)
