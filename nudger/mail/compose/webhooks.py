"""Build the notice to admins that a webhook endpoint was disabled (row: `nudger.webhooks`)."""

from __future__ import annotations

from datetime import datetime
from email.message import EmailMessage

from sqlmodel import Session

from nudger.config import Settings
from nudger.mail.context import sender_domain
from nudger.mail.mime import build_message, make_message_id
from nudger.mail.render import render
from nudger.models import Outbox, WebhookEndpoint

KIND = "webhook-disabled"


def compose_webhook_disabled(
    session: Session, settings: Settings, row: Outbox, now: datetime
) -> EmailMessage | None:
    """Tell an admin which endpoint stopped getting events, why, and where to turn it back on."""
    endpoint = session.get(WebhookEndpoint, row.payload["endpoint_id"])
    if endpoint is None or endpoint.enabled:
        return None  # removed or turned back on since: nothing left to say
    ctx = {
        "endpoint": {
            "id": endpoint.id,
            "url": endpoint.url,
            "reason": endpoint.disabled_reason,
            "failing_since": endpoint.failing_since.strftime("%Y-%m-%d %H:%M UTC")
            if endpoint.failing_since
            else "",
        },
        "console_url": f"{settings.base_url}/admin/webhooks",
        "base_url": settings.base_url,
    }
    return build_message(
        kind=KIND,
        to=row.to_email,
        from_addr=settings.from_addr,
        message_id=make_message_id(row.id, row.dedupe_key, sender_domain(settings)),
        date=now,
        rendered=render(KIND, ctx),
    )
