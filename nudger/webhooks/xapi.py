"""xAPI statements for a learning record store, built from the event log.

`registered` when a person is enrolled, and a verb by the step's kind when a
step is completed: `experienced` for reading and videos, `attended` for
workshops, `completed` for the rest. The actor is an account (home page =
NUDGER_BASE_URL, name = the person's id, never their address), the context's
registration is the enrolment's UUID, and each statement's id is derived from
its event, so sending one again is recognised by the LRS instead of stored twice.
"""

from __future__ import annotations

import json
import uuid

from sqlmodel import Session, select

from nudger import events
from nudger.config import Settings
from nudger.models import Event, Journey, Step, WebhookDelivery
from nudger.webhooks.safety import Answer, post

TYPES = (events.ENROLMENT_CREATED, events.STEP_COMPLETED)
VERSION = "1.0.3"
ADL = "http://adlnet.gov/expapi/verbs/"
VERBS_BY_KIND = {"read": "experienced", "video": "experienced", "workshop": "attended"}
ACTIVITY_TYPES = {
    "video": "https://w3id.org/xapi/video/activity-type/video",
    "workshop": "http://adlnet.gov/expapi/activities/meeting",
    "elearning": "http://adlnet.gov/expapi/activities/module",
    "quiz": "http://adlnet.gov/expapi/activities/assessment",
}


def verb_for(kind: str) -> str:
    """Return the xAPI verb (its last word) for a step of this kind."""
    return VERBS_BY_KIND.get(kind, "completed")


def _namespace(settings: Settings) -> uuid.UUID:
    return uuid.uuid5(uuid.NAMESPACE_URL, settings.base_url + "/")


def registration(settings: Settings, enrolment_id: int) -> str:
    """Return the enrolment's UUID: derived from this installation's URL and its id, so stable."""
    return str(uuid.uuid5(_namespace(settings), f"enrolment/{enrolment_id}"))


def statement_id(settings: Settings, event_id: int) -> str:
    """Return the id of the statement an event makes: the same every time it is sent."""
    return str(uuid.uuid5(_namespace(settings), f"event/{event_id}/xapi"))


def _verb(name: str) -> dict:
    return {"id": ADL + name, "display": {"en-US": name}}


def _journey_activity(settings: Settings, journey: Journey) -> dict:
    return {
        "objectType": "Activity",
        "id": f"{settings.base_url}/journeys/{journey.slug}",
        "definition": {
            "name": {"en": journey.title},
            "type": "http://adlnet.gov/expapi/activities/course",
        },
    }


def statement(session: Session, settings: Settings, event: Event) -> dict:
    """Return the statement of an `enrolment.created` or `step.completed` event."""
    data = event.data
    journey = session.exec(select(Journey).where(Journey.slug == data["journey"])).one()
    course = _journey_activity(settings, journey)
    context: dict = {
        "registration": registration(settings, data["enrolment_id"]),
        "platform": "Nudger",
    }
    if event.type == events.ENROLMENT_CREATED:
        verb, target = _verb("registered"), course
    else:
        step = session.exec(
            select(Step).where(Step.journey_id == journey.id, Step.key == data["step"])
        ).first()
        kind = data.get("kind") or (step.kind if step else "other")
        verb = _verb(verb_for(kind))
        definition = {
            "type": ACTIVITY_TYPES.get(kind, "http://adlnet.gov/expapi/activities/lesson")
        }
        if step is not None:
            definition["name"] = {"en": step.title}
        target = {
            "objectType": "Activity",
            "id": f"{course['id']}/steps/{data['step']}",
            "definition": definition,
        }
        context["contextActivities"] = {"parent": [course]}
    return {
        "id": statement_id(settings, event.id),
        "actor": {
            "objectType": "Agent",
            "account": {"homePage": settings.base_url, "name": f"person-{data['person_id']}"},
        },
        "verb": verb,
        "object": target,
        "context": context,
        "timestamp": event.occurred_at.isoformat(),
    }


def send(session: Session, settings: Settings, delivery: WebhookDelivery, event: Event) -> Answer:
    """POST one statement to NUDGER_XAPI_URL/statements; a 409 (already stored) counts as sent.

    The LRS is configured by whoever runs Nudger, not typed into the console,
    so it may be on the private network.
    """
    if not settings.xapi_url:
        return Answer(None, "NUDGER_XAPI_URL is not set", 0)
    body = json.dumps(statement(session, settings, event)).encode()
    session.commit()
    headers = {"content-type": "application/json", "X-Experience-API-Version": VERSION}
    auth = (settings.xapi_key, settings.xapi_secret) if settings.xapi_key else None
    answer = post(f"{settings.xapi_url}/statements", body, headers, allow_private=True, auth=auth)
    if answer.status == 409:
        return Answer(200, "", answer.duration_ms)
    return answer
