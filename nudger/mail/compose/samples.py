"""Build a "send me a test" email: a journey's sample message, to the admin who asked."""

from __future__ import annotations

from datetime import datetime
from email.message import EmailMessage

from sqlmodel import Session

from nudger.config import Settings
from nudger.mail.context import sender_domain
from nudger.mail.mime import make_message_id
from nudger.mail.previews import PreviewNotFound, build_preview
from nudger.models import Journey, Outbox


def compose_test(
    session: Session, settings: Settings, row: Outbox, now: datetime
) -> EmailMessage | None:
    """Build a "send me a test" message: a journey's sample email, to the admin."""
    journey = session.get(Journey, row.payload["journey_id"])
    if journey is None:
        return None
    try:
        return build_preview(
            session,
            settings,
            journey,
            row.payload["preview"],
            now,
            to=row.to_email,
            test=True,
            message_id=make_message_id(row.id, row.dedupe_key, sender_domain(settings)),
        )
    except PreviewNotFound:
        return None  # the journey changed since the button was pressed
