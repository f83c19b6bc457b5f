"""Build check-in emails: a learner's, or a manager's with a block per report.

The row names check-ins; each is read as it is at send time, and one that has
closed (or, for a reminder, been answered) is left out. Every answer is a
link that opens the check-in page with that answer chosen; nothing is saved
until the person presses Save there, so mail scanners change nothing.
"""

from __future__ import annotations

from datetime import datetime
from email.message import EmailMessage
from urllib.parse import urlencode

from sqlmodel import Session, select

from nudger import tokens
from nudger.bulk import among
from nudger.calendar import local_date
from nudger.config import Settings
from nudger.journeys.spec import SCALE, JourneySpec
from nudger.mail.context import journey_ctx, person_ctx, sender_domain
from nudger.mail.mime import build_message, make_message_id
from nudger.mail.render import render
from nudger.models import Checkin, Enrolment, Journey, Outbox, Person

KIND = "checkin"


def checkpoint_label(checkpoint: str) -> str:
    """Say when a checkpoint is, as a person would."""
    if checkpoint == "start":
        return "before you start"
    if checkpoint == "end":
        return "at the end of the journey"
    return f"{checkpoint} working days after the journey"


def answer_url(base: str, behaviour: str, value: int) -> str:
    """Return the link that opens the check-in page with one answer chosen (0: no chance)."""
    return f"{base}?{urlencode({'b': behaviour, 'v': value})}"


def checkin_blocks(
    session: Session,
    settings: Settings,
    ids: list[int],
    recipient: Person | None,
    now: datetime,
    reminder: bool,
) -> list[dict]:
    """Return a block per open check-in named, for its rater (`recipient`): whom it is
    about, its page and one link per answer; a reminder leaves out those answered."""
    if recipient is None or not ids:
        return []
    found = session.exec(
        select(Checkin, Enrolment, Person, Journey)
        .join(Enrolment, Enrolment.id == Checkin.enrolment_id)
        .join(Person, Person.id == Enrolment.person_id)
        .join(Journey, Journey.id == Checkin.journey_id)
        .where(among(session, Checkin.id, ids))
        .order_by(Person.name, Person.email, Checkin.id)
    ).all()
    blocks = []
    for checkin, _enrolment, learner, journey in found:
        if checkin.state != "sent" or checkin.rater_id != recipient.id:
            continue
        if (checkin.closes_at and checkin.closes_at <= now) or (reminder and checkin.answered_at):
            continue
        url = tokens.url(settings, KIND, checkin.id, now)
        behaviours = JourneySpec.model_validate(journey.spec).behaviours()
        blocks.append(
            {
                "learner": person_ctx(learner),
                "journey": journey_ctx(journey),
                "checkpoint": checkpoint_label(checkin.checkpoint),
                "manager": checkin.rater == "manager",
                "url": url,
                "closes_on": local_date(checkin.closes_at, recipient.timezone)
                if checkin.closes_at
                else None,
                "behaviours": [
                    {
                        "text": b.text,
                        "answers": [
                            {"label": label, "url": answer_url(url, b.key, value)}
                            for value, label in enumerate(SCALE, start=1)
                        ],
                        "none_url": answer_url(url, b.key, 0),
                    }
                    for b in behaviours
                ],
            }
        )
    return blocks


def compose_checkin(
    session: Session, settings: Settings, row: Outbox, now: datetime
) -> EmailMessage | None:
    """Build a check-in (or its reminder) for the open check-ins the row names."""
    reminder = bool(row.payload.get("reminder"))
    recipient = session.get(Person, row.person_id)
    ids = row.payload.get("checkin_ids", [])
    blocks = checkin_blocks(session, settings, ids, recipient, now, reminder)
    if recipient is None or not blocks:
        return None
    ctx = {
        "person": person_ctx(recipient),
        "manager": any(b["manager"] for b in blocks),
        "reminder": reminder,
        "blocks": blocks,
        "journey": blocks[0]["journey"] if len(blocks) == 1 else None,
        "base_url": settings.base_url,
    }
    return build_message(
        kind=KIND,
        to=recipient.email,
        from_addr=settings.from_addr,
        message_id=make_message_id(row.id, row.dedupe_key, sender_domain(settings)),
        date=now,
        rendered=render(KIND, ctx),
    )
