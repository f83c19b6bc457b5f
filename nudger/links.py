"""'Ask for a fresh link': email a person new links, to the address on file only.

An expired token still names its subject (its signature is good), so the
person is known; the address is never typed in, so nobody can use this to
send mail elsewhere. One email per person per clock hour: the dedupe key
carries the hour.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage

from sqlmodel import Session, select

from nudger import tokens
from nudger.config import Settings
from nudger.mail.compose.steps import COMPOSERS, person_ctx, sender_domain
from nudger.mail.render import build_message, make_message_id, render
from nudger.models import Enrolment, EnrolmentStep, Journey, Outbox, Person, Step
from nudger.tick.state import TickContext

log = logging.getLogger(__name__)

KIND = "links"


@dataclass(frozen=True)
class Request:
    """The outcome of asking: who it goes to, and whether it was sent or held back."""

    masked_email: str
    queued: bool  # False: one already went out this hour


def person_for(session: Session, purpose: str, subject_id: int) -> Person | None:
    """Return the person a token is about, whatever its purpose."""
    if purpose in ("team", "prefs"):
        return session.get(Person, subject_id)
    if purpose == "done":
        es = session.get(EnrolmentStep, subject_id)
        subject_id = es.enrolment_id if es else 0
    enrolment = session.get(Enrolment, subject_id)
    return session.get(Person, enrolment.person_id) if enrolment else None


def mask(email: str) -> str:
    """Show enough of an address to recognise it, not enough to harvest it."""
    local, _, domain = email.partition("@")
    return f"{local[:1]}{'•' * max(2, min(len(local) - 1, 6))}@{domain}"


def request_links(
    session: Session, settings: Settings, purpose: str, subject_id: int, now: datetime
) -> Request | None:
    """Queue an email with fresh links to the person's address on file; None if unknown."""
    person = person_for(session, purpose, subject_id)
    if person is None:
        return None
    ctx = TickContext(session=session, settings=settings, now=now)
    new_id = ctx.add_outbox(
        kind=KIND,
        dedupe_key=f"links:{person.id}:{now:%Y%m%d%H}",
        to_email=person.email,
        person_id=person.id,
        payload={"purpose": purpose, "subject_id": subject_id},
    )
    session.commit()
    if new_id is not None:
        try:
            from nudger.queue import enqueue_send

            enqueue_send(settings, [new_id], now)
        except Exception:  # the row is committed: the tick enqueues it again within minutes
            log.warning(
                "could not enqueue fresh-links email %s; the tick will", new_id, exc_info=True
            )
    return Request(mask(person.email), new_id is not None)


def compose_links(
    session: Session, settings: Settings, row: Outbox, now: datetime
) -> EmailMessage | None:
    """Build the email of fresh links: each journey's page, the open step, the team page."""
    person = session.get(Person, row.person_id)
    if person is None:
        return None
    links = []
    if row.payload.get("purpose") == "done":
        es = session.get(EnrolmentStep, row.payload["subject_id"])
        if es is not None and es.status == "sent" and not es.awaiting_confirmation:
            step = session.get(Step, es.step_id)
            links.append(
                {
                    "label": f"Mark “{step.title}” as done",
                    "url": tokens.url(settings, "done", es.id, now),
                }
            )
    enrolments = session.exec(
        select(Enrolment, Journey)
        .join(Journey, Journey.id == Enrolment.journey_id)
        .where(Enrolment.person_id == person.id, Enrolment.status != "withdrawn")
        .order_by(Enrolment.id)
    ).all()
    for enrolment, journey in enrolments:
        links.append(
            {
                "label": f"Your journey: {journey.title}",
                "url": tokens.url(settings, "me", enrolment.id, now),
            }
        )
    has_reports = session.exec(
        select(Person.id).where(Person.manager_id == person.id).limit(1)
    ).first()
    if has_reports is not None:
        links.append(
            {"label": "Your team's progress", "url": tokens.url(settings, "team", person.id, now)}
        )
        links.append(
            {
                "label": "How often you get team digests",
                "url": tokens.url(settings, "prefs", person.id, now),
            }
        )
    ctx = {"person": person_ctx(person), "links": links, "base_url": settings.base_url}
    return build_message(
        kind=KIND,
        to=person.email,
        from_addr=settings.from_addr,
        message_id=make_message_id(row.id, row.dedupe_key, sender_domain(settings)),
        date=now,
        rendered=render(KIND, ctx),
    )


# nudger.mail.compose.steps imports this module at its end, so the worker knows the kind.
COMPOSERS[KIND] = compose_links
