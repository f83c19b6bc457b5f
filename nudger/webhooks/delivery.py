"""Sending deliveries: claim, sign, POST, record the outcome, back off, give up, disable.

At-least-once: a delivery is claimed (state `sending`, a lease) with a
conditional update whose row count says who got it, then sent outside any
transaction, then its outcome is written. A worker that dies mid-send leaves
a lease that runs out, and the row is sent again with the same `webhook-id`.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta

from sqlalchemy import and_, or_, update
from sqlalchemy.engine import Engine
from sqlmodel import Session, select
from standardwebhooks.webhooks import Webhook

from nudger import outbox
from nudger.audit import record
from nudger.config import Settings
from nudger.db import utcnow
from nudger.models import AdminUser, Event, WebhookAttempt, WebhookDelivery, WebhookEndpoint
from nudger.webhooks import dispatch, xapi
from nudger.webhooks.safety import Answer, post

# After the n-th failed attempt, wait SCHEDULE[n - 1] (the Standard Webhooks schedule):
# 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h, about 27.5 hours from the first try to the last.
SCHEDULE = (
    timedelta(seconds=5),
    timedelta(minutes=5),
    timedelta(minutes=30),
    timedelta(hours=2),
    timedelta(hours=5),
    timedelta(hours=10),
    timedelta(hours=10),
)
MAX_ATTEMPTS = len(SCHEDULE) + 1
# An endpoint whose every attempt failed for this long is disabled, and admins are told.
DISABLE_AFTER = timedelta(hours=24)
LEASE = timedelta(minutes=2)
RUN_LIMIT = 200  # deliveries per run: a run is one RQ job, bounded in time

DISABLED_KIND = "webhook-disabled"

log = logging.getLogger(__name__)


def due(session: Session, now: datetime, limit: int = RUN_LIMIT) -> list[int]:
    """Return deliveries to send now: pending and due, or claimed by a run that died."""
    query = (
        select(WebhookDelivery.id)
        .outerjoin(WebhookEndpoint, WebhookEndpoint.id == WebhookDelivery.endpoint_id)
        .where(
            _sendable(now),
            # The LRS's rows have no endpoint; an endpoint's only while it is enabled.
            or_(WebhookDelivery.endpoint_id.is_(None), WebhookEndpoint.enabled),
        )
        .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id)
        .limit(limit)
    )
    return list(session.exec(query))


def _sendable(now: datetime):
    d = WebhookDelivery
    return or_(
        and_(d.state == "pending", d.next_attempt_at <= now),
        and_(d.state == "sending", d.lease_until < now),
    )


def claim(session: Session, delivery_id: int, now: datetime) -> bool:
    """Take one delivery for this run, or learn that another run has it (SQLite too)."""
    result = session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.id == delivery_id, _sendable(now))
        .values(
            state="sending",
            lease_until=now + LEASE,
            attempts=WebhookDelivery.attempts + 1,
        )
    )
    session.commit()
    return result.rowcount == 1


def run(engine: Engine, settings: Settings, now: datetime) -> dict[str, int]:
    """Dispatch new events, then send what is due; return counts by outcome."""
    counts = {"dispatched": 0, "delivered": 0, "retrying": 0, "failed": 0}
    with Session(engine) as session:
        counts["dispatched"] = dispatch(session, settings, now)
        for delivery_id in due(session, now):
            if claim(session, delivery_id, now):
                counts[send_one(session, settings, delivery_id, now)] += 1
    return counts


def webhook_request(
    endpoint: WebhookEndpoint, delivery: WebhookDelivery, event: Event, signed_at: datetime
) -> tuple[bytes, dict[str, str]]:
    """Return the body and headers of a webhook: {type, timestamp, data}, signed at `signed_at`."""
    payload = {"type": event.type, "timestamp": event.occurred_at.isoformat(), "data": event.data}
    body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
    signature = Webhook(endpoint.secret).sign(delivery.message_id, signed_at, body)
    headers = {
        "content-type": "application/json",
        "user-agent": "Nudger-Webhooks/1",
        "webhook-id": delivery.message_id,
        "webhook-timestamp": str(int(signed_at.timestamp())),
        "webhook-signature": signature,
    }
    return body.encode(), headers


def send_one(session: Session, settings: Settings, delivery_id: int, now: datetime) -> str:
    """Send one claimed delivery and record what came of it; return the outcome's name."""
    delivery = session.get(WebhookDelivery, delivery_id)
    event = session.get(Event, delivery.event_id)
    endpoint = session.get(WebhookEndpoint, delivery.endpoint_id) if delivery.endpoint_id else None
    session.commit()  # no transaction stays open across the request
    try:
        if delivery.target == "xapi":
            answer = xapi.send(session, settings, delivery, event)
        elif endpoint is None:
            answer = Answer(None, "the endpoint was removed", 0)
        else:
            # Signed at the real time of sending: receivers reject a timestamp far off theirs.
            body, headers = webhook_request(endpoint, delivery, event, utcnow())
            allow = settings.webhook_allow_private
            answer = post(endpoint.url, body, headers, allow_private=allow)
    except Exception as e:
        # Recorded as a failed attempt, so it backs off and gives up like any other
        # instead of coming back at every lease forever.
        log.exception("could not build delivery %s", delivery.id)
        session.rollback()
        answer = Answer(None, f"could not build the request: {type(e).__name__}", 0)
    return record_outcome(session, settings, delivery, endpoint, answer, now)


def record_outcome(
    session: Session,
    settings: Settings,
    delivery: WebhookDelivery,
    endpoint: WebhookEndpoint | None,
    answer: Answer,
    now: datetime,
) -> str:
    """Write the attempt and the delivery's new state; disable a long-failing endpoint."""
    session.add(
        WebhookAttempt(
            delivery_id=delivery.id,
            endpoint_id=delivery.endpoint_id,
            attempt=delivery.attempts,
            at=now,
            status=answer.status,
            error=answer.error[:500],
            duration_ms=answer.duration_ms,
        )
    )
    delivery.lease_until, delivery.last_status = None, answer.status
    delivery.last_error = answer.error[:500] or None
    if answer.ok:
        delivery.state, delivery.delivered_at = "delivered", now
        outcome = "delivered"
        if endpoint is not None and endpoint.failing_since is not None:
            endpoint.failing_since = None
            session.add(endpoint)
    else:
        if delivery.attempts < MAX_ATTEMPTS:
            delivery.state = "pending"
            delivery.next_attempt_at = now + SCHEDULE[delivery.attempts - 1]
            outcome = "retrying"
        else:
            delivery.state, outcome = "failed", "failed"
    notices = _note_failure(session, endpoint, now) if endpoint and not answer.ok else []
    session.add(delivery)
    session.commit()
    outbox.enqueue_committed(session, settings, notices, now)
    return outcome


def _note_failure(session: Session, endpoint: WebhookEndpoint, now: datetime) -> list[int]:
    """Count a failure against the endpoint; after DISABLE_AFTER of nothing but, disable it.

    Returns the outbox ids of the notices to admins, to enqueue after the commit.
    """
    notices: list[int] = []
    if endpoint.failing_since is None:
        endpoint.failing_since = now
    elif endpoint.enabled and now - endpoint.failing_since >= DISABLE_AFTER:
        hours = int(DISABLE_AFTER.total_seconds() // 3600)
        endpoint.enabled, endpoint.disabled_at = False, now
        endpoint.disabled_reason = f"every delivery failed for {hours} hours"
        record(
            session,
            "webhooks",
            "webhook.disabled",
            now,
            "webhook",
            endpoint.id,
            url=endpoint.url,
            failing_since=endpoint.failing_since.isoformat(),
        )
        admins = session.exec(select(AdminUser.email).order_by(AdminUser.id)).all()
        stamp = int(now.timestamp())
        notices = [
            row.id
            for row in outbox.add(
                session,
                [
                    {
                        "kind": DISABLED_KIND,
                        "dedupe_key": f"{DISABLED_KIND}:{endpoint.id}:{stamp}:{email.lower()}",
                        "to_email": email,
                        "payload": {"endpoint_id": endpoint.id},
                    }
                    for email in admins
                ],
                now,
            )
        ]
    session.add(endpoint)
    return notices
