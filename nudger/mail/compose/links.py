"""Build the email of fresh links a person asked for (the row is written by `nudger.links`)."""

from __future__ import annotations

from datetime import datetime
from email.message import EmailMessage

from sqlmodel import Session, select

from nudger import tokens
from nudger.config import Settings
from nudger.mail.context import person_ctx, sender_domain
from nudger.mail.mime import build_message, make_message_id
from nudger.mail.render import render
from nudger.models import Enrolment, EnrolmentStep, Journey, Outbox, Person, Step

KIND = "links"


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
