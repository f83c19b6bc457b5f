"""What admins see of inbound mail: the latest messages, a person's, the undeliverable count."""

from __future__ import annotations

from sqlalchemy import func
from sqlmodel import Session, select

from nudger.models import InboundMessage, Person

PAGE = 100


def latest(session: Session, limit: int = PAGE) -> list[tuple[InboundMessage, Person | None]]:
    """Return the newest inbound messages with the person each is about, if known."""
    return list(
        session.exec(
            select(InboundMessage, Person)
            .join(Person, Person.id == InboundMessage.person_id, isouter=True)
            .order_by(InboundMessage.id.desc())
            .limit(limit)
        ).all()
    )


def of_person(session: Session, person_id: int, limit: int = PAGE) -> list[InboundMessage]:
    """Return a person's inbound messages, newest first."""
    return list(
        session.exec(
            select(InboundMessage)
            .where(InboundMessage.person_id == person_id)
            .order_by(InboundMessage.id.desc())
            .limit(limit)
        ).all()
    )


def undeliverable_count(session: Session) -> int:
    """Count the people whose address bounced for good: nothing is sent to them."""
    return (
        session.scalar(select(func.count(Person.id)).where(Person.undeliverable_at.is_not(None)))
        or 0
    )
