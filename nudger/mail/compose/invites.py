"""Build invite-update (METHOD:REQUEST) and invite-cancel (METHOD:CANCEL) emails.

The rows are written by `nudger.enrolments.invite_changes` with the steps' SEQUENCE
already raised. They are rendered from the database as it is at send time,
with the same UID as the step's first invite and its current SEQUENCE. A
change that no longer holds by then is not sent: a cancel for a pause that
has been resumed since would, with the same SEQUENCE and a later DTSTAMP,
win over the update that restored the event.
"""

from __future__ import annotations

from datetime import datetime
from email.message import EmailMessage

from sqlmodel import Session

from nudger import tokens
from nudger.config import Settings
from nudger.mail.context import (
    journey_ctx,
    live_step_count,
    person_ctx,
    sender_domain,
    step_ctx,
)
from nudger.mail.invites import InviteEvent, Method, build_invites, make_uid
from nudger.mail.mime import build_message, make_message_id
from nudger.mail.render import render, render_subject
from nudger.models import Enrolment, EnrolmentStep, Journey, Outbox, Person, Step

# The outbox kinds of a calendar update (METHOD:REQUEST) and a cancel (METHOD:CANCEL).
UPDATE = "invite-update"
CANCEL = "invite-cancel"

# Why an invite is cancelled, most telling first: one email gives one reason.
REASONS = ("withdrawn", "paused", "removed", "moved")
# The calendar finds the event by UID; the length of one that lost its
# `minutes` is no longer known, and clients do not need it to cancel it.
CANCELLED_LENGTH = 15


def compose_invite_update(
    session: Session, settings: Settings, row: Outbox, now: datetime
) -> EmailMessage | None:
    """Build the email that moves the invites of sent steps to their new times."""
    loaded = _load(session, row)
    if loaded is None:
        return None
    enrolment, person, journey, pairs = loaded
    if enrolment.status != "active":
        return None  # paused or withdrawn since: their invites are cancelled
    pairs = [
        (es, step)
        for es, step in pairs
        if es.status == "sent" and es.invite_start and step.minutes and not step.removed
    ]
    if not pairs:
        return None  # done, cancelled, removed or unscheduled since the change
    total = live_step_count(session, journey.id)
    steps = [step_ctx(settings, es, step, total, person.timezone) for es, step in pairs]
    ctx = _ctx(settings, enrolment, person, journey, steps, me=True)
    return _message(settings, row, now, "invite-update", "REQUEST", ctx, person, journey, pairs)


def compose_invite_cancel(
    session: Session, settings: Settings, row: Outbox, now: datetime
) -> EmailMessage | None:
    """Build the email that takes sent steps' invites out of the learner's calendar."""
    loaded = _load(session, row)
    if loaded is None:
        return None
    enrolment, person, journey, pairs = loaded
    reasons = {}
    for es, step in pairs:
        reason = cancel_reason(enrolment, es, step)
        if reason is not None and es.invite_start is not None:
            reasons[es.id] = reason
    if not reasons:
        return None  # resumed, or the step got its time back: an update follows
    pairs = [(es, step) for es, step in pairs if es.id in reasons]
    asked = (row.payload or {}).get("reason")
    reason = asked if asked in reasons.values() else min(reasons.values(), key=REASONS.index)
    steps = [{"title": step.title, "key": step.key} for _, step in pairs]
    ctx = _ctx(settings, enrolment, person, journey, steps, me=reason != "withdrawn")
    ctx["reason"] = reason
    return _message(settings, row, now, "invite-cancel", "CANCEL", ctx, person, journey, pairs)


def invite_subject(session: Session, row: Outbox) -> str:
    """Return the subject an invite row's email has, or would have had had it gone out.

    A row never sent has no subject recorded (a cancel called off by a resume,
    one still queued); the console still names what it is about.
    """
    loaded = _load(session, row)
    if loaded is None or not loaded[3]:
        return ""
    _, person, journey, pairs = loaded
    steps = [{"title": s.title, "key": s.key, "position": s.position + 1} for _, s in pairs]
    ctx = {"person": person_ctx(person), "journey": journey_ctx(journey), "steps": steps}
    return render_subject(row.kind, ctx)


def cancel_reason(enrolment: Enrolment, es: EnrolmentStep, step: Step) -> str | None:
    """Return why this step's invite must be cancelled now, or None if it must not."""
    if enrolment.status == "withdrawn":
        return "withdrawn"
    if enrolment.status == "paused":
        return "paused"
    if step.removed:
        return "removed"
    if not step.minutes:
        return "moved"  # still a step, but it no longer blocks time
    return None


def _load(
    session: Session, row: Outbox
) -> tuple[Enrolment, Person, Journey, list[tuple[EnrolmentStep, Step]]] | None:
    """Load the row's enrolment and steps (from the batch's preload when there is one)."""
    enrolment = session.get(Enrolment, row.enrolment_id) if row.enrolment_id else None
    if enrolment is None:
        return None
    pairs = []
    for es_id in (row.payload or {}).get("enrolment_step_ids", []):
        es = session.get(EnrolmentStep, es_id)
        if es is not None and es.enrolment_id == enrolment.id:
            pairs.append((es, session.get(Step, es.step_id)))
    pairs.sort(key=lambda pair: (pair[1].position, pair[0].id))
    person = session.get(Person, enrolment.person_id)
    journey = session.get(Journey, enrolment.journey_id)
    return enrolment, person, journey, pairs


def _ctx(settings, enrolment, person, journey, steps: list[dict], *, me: bool) -> dict:
    return {
        "person": person_ctx(person),
        "journey": journey_ctx(journey),
        "base_url": settings.base_url,
        "me_url": tokens.link(settings, "me", "me", enrolment.id) if me else None,
        "tz": person.timezone,
        "steps": steps,
    }


def _message(
    settings: Settings,
    row: Outbox,
    now: datetime,
    kind: str,
    method: Method,
    ctx: dict,
    person: Person,
    journey: Journey,
    pairs: list[tuple[EnrolmentStep, Step]],
) -> EmailMessage:
    """Render the email with one invite per step, the same UIDs the steps went out with."""
    domain = sender_domain(settings)
    events = []
    for es, step in pairs:
        done_url = tokens.link(settings, "done", "done", es.id)
        events.append(
            InviteEvent(
                uid=make_uid(es.enrolment_id, step.key, domain),
                sequence=es.invite_sequence,
                start=es.invite_start,
                minutes=step.minutes or CANCELLED_LENGTH,
                tz=person.timezone,
                summary=step.title,
                description=f"{journey.title}\n\nMark it done: {done_url}",
                url=done_url,
            )
        )
    invites = build_invites(
        method,
        events,
        organizer=settings.from_addr,
        attendee=person.email,
        attendee_name=person.name or None,
        now=now,
    )
    return build_message(
        kind=kind,
        to=person.email,
        from_addr=settings.from_addr,
        message_id=make_message_id(row.id, row.dedupe_key, domain),
        date=now,
        rendered=render(kind, ctx),
        invite=invites,
    )
