"""Turn an outbox row into an email: one composer per kind of message.

`COMPOSERS` is the one table of the kinds Nudger sends. A composer loads what
the row names as the database is at send time, builds the template context,
renders it and returns the message, or None when nothing is left to say (the
step was completed or the change undone since the row was written).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from email.message import EmailMessage

from sqlmodel import Session

from nudger.config import Settings
from nudger.mail.compose import checkins, followups, invites, links, samples, steps, webhooks
from nudger.models import Outbox

Composer = Callable[[Session, Settings, Outbox, datetime], EmailMessage | None]

COMPOSERS: dict[str, Composer] = {
    "step": steps.compose_step,
    "reminder": followups.compose_reminder,
    "digest": followups.compose_digest,
    "invite-update": invites.compose_invite_update,
    "invite-cancel": invites.compose_invite_cancel,
    "links": links.compose_links,
    "checkin": checkins.compose_checkin,
    "webhook-disabled": webhooks.compose_webhook_disabled,
    "test": samples.compose_test,  # a journey's sample email, so it has no template of its own
}


def compose(
    session: Session, settings: Settings, row: Outbox, now: datetime
) -> EmailMessage | None:
    """Build the email for an outbox row, or None when nothing is left to send."""
    return COMPOSERS[row.kind](session, settings, row, now)
