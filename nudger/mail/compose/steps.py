"""Build the email that carries one or more steps, with their calendar invites."""

from __future__ import annotations

from datetime import datetime
from email.message import EmailMessage

from sqlmodel import Session

from nudger import tokens
from nudger.config import Settings
from nudger.mail.context import (
    journey_ctx,
    live_step_count,
    loaded,
    person_ctx,
    sender_domain,
    step_ctx,
)
from nudger.mail.invites import InviteEvent, build_invites, make_uid
from nudger.mail.mime import build_message, make_message_id
from nudger.mail.render_once import Personal, render_personal
from nudger.models import Enrolment, EnrolmentStep, Journey, Outbox, Person, Step


def compose_step(
    session: Session, settings: Settings, row: Outbox, now: datetime
) -> EmailMessage | None:
    """Build the email carrying one or more steps, with their invites."""
    # A send batch has preloaded these (nudger.outbox.sending.preload).
    sent = [loaded(session, EnrolmentStep, i) for i in row.payload["enrolment_step_ids"]]
    sent = [es for es in sent if es is not None and es.status != "cancelled"]
    if not sent:
        return None
    enrolment = loaded(session, Enrolment, row.enrolment_id)
    person = loaded(session, Person, enrolment.person_id)
    journey = loaded(session, Journey, enrolment.journey_id)
    steps = {es.step_id: loaded(session, Step, es.step_id) for es in sent}
    sent.sort(key=lambda es: steps[es.step_id].position)
    total = live_step_count(session, journey.id)
    # Everyone on the same steps, dates and zone gets the same email but for
    # these strings: it is rendered once and filled in for each of them.
    personal = Personal()
    ctx = {
        "person": person_ctx(person, personal),
        "journey": journey_ctx(journey),
        "base_url": settings.base_url,
        "me_url": personal(tokens.link(settings, "me", "me", enrolment.id)),
        # Replies are read (nudger.inbound): say so.
        "answers_by_reply": bool(settings.inbound_domain),
        "steps": [
            step_ctx(settings, es, steps[es.step_id], total, person.timezone, personal)
            for es in sent
        ],
    }
    done_urls = personal.filled([c["done_url"] for c in ctx["steps"]])
    domain = sender_domain(settings)
    events = [
        InviteEvent(
            uid=make_uid(enrolment.id, steps[es.step_id].key, domain),
            sequence=es.invite_sequence,
            start=es.invite_start,
            minutes=steps[es.step_id].minutes,
            tz=person.timezone,
            summary=steps[es.step_id].title,
            description=f"{journey.title}\n\nMark it done: {done_url}",
            url=done_url,
        )
        for es, done_url in zip(sent, done_urls, strict=True)
        if es.invite_start and steps[es.step_id].minutes
    ]
    # One invite per step (one UID per iTIP message); build_message puts the
    # first inline and attaches every one.
    invites = build_invites(
        "REQUEST",
        events,
        organizer=settings.from_addr,
        attendee=person.email,
        attendee_name=person.name or None,
        now=now,
    )
    return build_message(
        kind="step",
        to=person.email,
        from_addr=settings.from_addr,
        message_id=make_message_id(row.id, row.dedupe_key, domain),
        date=now,
        rendered=render_personal("step", ctx, personal),
        invite=invites or None,
    )
