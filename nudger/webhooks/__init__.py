"""Webhooks and xAPI statements, delivered from a database outbox like email.

`add_endpoint`, `remove_endpoint` and `redeliver` change endpoints and
deliveries (audited). `dispatch` fans new rows of the event log
(`nudger.events`) out into `webhookdelivery` rows: one per event and
subscribed endpoint, and one per statement for the learning record store when
NUDGER_XAPI_URL is set. `delivery` claims due rows with a conditional update,
sends them (`safety`: no private addresses; `xapi`: statements), retries with
backoff for about a day and disables an endpoint that keeps failing.

Jobs: after a commit that wrote events a caller may `kick` (enqueue one
delivery run); the tick dispatches and kicks every minute, so nothing waits
on Redis being up.
"""

from __future__ import annotations

import base64
import logging
import secrets
from datetime import datetime

from sqlalchemy import delete, false, update
from sqlmodel import Session, select

from nudger import events
from nudger.audit import record
from nudger.bulk import among, insert_ignoring
from nudger.config import Settings
from nudger.models import Event, WebhookAttempt, WebhookDelivery, WebhookEndpoint
from nudger.queue import DEFAULT_QUEUE, queue
from nudger.webhooks import xapi
from nudger.webhooks.safety import check_url, public

log = logging.getLogger(__name__)

DISPATCH_BATCH = 1000
SECRET_PREFIX = "whsec_"


class BadEndpoint(ValueError):
    """The URL or the event list of a new endpoint is not acceptable; nothing was written."""


class NotFound(LookupError):
    """No such endpoint or delivery."""


def new_secret() -> str:
    """Return a signing secret as Standard Webhooks writes them: whsec_ + base64 of 32 bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def parse_types(text: str) -> list[str]:
    """Read "step.completed,escalation.raised" (or "*": every type); raise BadEndpoint."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    if names == ["*"]:
        return list(events.TYPES)
    if not names:
        raise BadEndpoint("--events: name at least one event type, or * for all")
    unknown = [n for n in names if n not in events.TYPES]
    if unknown:
        raise BadEndpoint(
            f"--events: unknown event type {unknown[0]!r}; known: {', '.join(events.TYPES)}"
        )
    return list(dict.fromkeys(names))


def add_endpoint(
    session: Session,
    url: str,
    types: list[str],
    now: datetime,
    *,
    description: str = "",
    actor: str = "cli",
    allow_private: bool = False,
) -> tuple[WebhookEndpoint, str]:
    """Add an endpoint and commit; return it and its secret (shown once, to whoever added it).

    A host written as a private, loopback or link-local address (or localhost) is
    refused here, unless `allow_private`; a name is checked when it is resolved, on
    every delivery, since what it resolves to may change.
    """
    try:
        parsed = check_url(url)
    except ValueError as e:
        raise BadEndpoint(f"URL {e}") from None
    if not allow_private and not _public_host(parsed.host):
        raise BadEndpoint(
            f"URL host {parsed.host} is a private, loopback or link-local address "
            "(set NUDGER_WEBHOOK_ALLOW_PRIVATE=1 to allow it)"
        )
    if len(url) > 2000:
        raise BadEndpoint("URL is longer than 2000 characters")
    unknown = [t for t in types if t not in events.TYPES]
    if unknown or not types:
        raise BadEndpoint(f"unknown event type {unknown[0]!r}" if unknown else "no event types")
    secret = new_secret()
    endpoint = WebhookEndpoint(
        url=url, secret=secret, events=list(types), description=description[:200], created_at=now
    )
    session.add(endpoint)
    session.flush()
    record(session, actor, "webhook.add", now, "webhook", endpoint.id, url=url, events=types)
    session.commit()
    return endpoint, secret


def _public_host(host: str) -> bool:
    """Say whether a URL's host may be public: a name (checked later), or a public address."""
    if host.lower().rstrip(".") == "localhost" or host.lower().endswith(".localhost"):
        return False
    try:
        return public(host)
    except ValueError:
        return True  # a name: checked when it is resolved


def list_endpoints(session: Session) -> list[WebhookEndpoint]:
    """Return every endpoint, oldest first."""
    return list(session.exec(select(WebhookEndpoint).order_by(WebhookEndpoint.id)))


def disabled_endpoints(session: Session) -> list[WebhookEndpoint]:
    """Return the endpoints turned off after failing, for the console's banner."""
    query = select(WebhookEndpoint).where(WebhookEndpoint.enabled == false())
    return list(session.exec(query.order_by(WebhookEndpoint.id)))


def endpoint_json(endpoint: WebhookEndpoint) -> dict:
    """What `nudger webhooks list --json` and the console say of an endpoint (never the secret)."""
    return {
        "id": endpoint.id,
        "url": endpoint.url,
        "events": endpoint.events,
        "description": endpoint.description,
        "enabled": endpoint.enabled,
        "created_at": endpoint.created_at.isoformat(),
        "failing_since": endpoint.failing_since.isoformat() if endpoint.failing_since else None,
        "disabled_at": endpoint.disabled_at.isoformat() if endpoint.disabled_at else None,
        "disabled_reason": endpoint.disabled_reason,
    }


def remove_endpoint(session: Session, endpoint_id: int, now: datetime, actor: str = "cli") -> str:
    """Delete an endpoint with its deliveries and their log, and commit; return its URL."""
    endpoint = session.get(WebhookEndpoint, endpoint_id)
    if endpoint is None:
        raise NotFound(endpoint_id)
    url = endpoint.url
    session.execute(delete(WebhookAttempt).where(WebhookAttempt.endpoint_id == endpoint_id))
    session.execute(delete(WebhookDelivery).where(WebhookDelivery.endpoint_id == endpoint_id))
    session.delete(endpoint)
    record(session, actor, "webhook.remove", now, "webhook", endpoint_id, url=url)
    session.commit()
    return url


def enable_endpoint(session: Session, endpoint_id: int, now: datetime, actor: str = "cli") -> None:
    """Turn a disabled endpoint back on; its deliveries still pending go out again."""
    endpoint = session.get(WebhookEndpoint, endpoint_id)
    if endpoint is None:
        raise NotFound(endpoint_id)
    endpoint.enabled, endpoint.disabled_at, endpoint.disabled_reason = True, None, ""
    endpoint.failing_since = None
    session.add(endpoint)
    record(session, actor, "webhook.enable", now, "webhook", endpoint_id, url=endpoint.url)
    session.commit()


def redeliver(session: Session, delivery_id: int, now: datetime, actor: str) -> WebhookDelivery:
    """Send a delivery again (same webhook-id, so a receiver can tell), and commit."""
    delivery = session.get(WebhookDelivery, delivery_id)
    if delivery is None:
        raise NotFound(delivery_id)
    delivery.state, delivery.next_attempt_at, delivery.lease_until = "pending", now, None
    session.add(delivery)
    record(
        session,
        actor,
        "webhook.redeliver",
        now,
        "webhook_delivery",
        delivery_id,
        endpoint_id=delivery.endpoint_id,
        message_id=delivery.message_id,
    )
    session.commit()
    return delivery


def delivery_log(session: Session, limit: int = 50) -> list[tuple]:
    """Return the latest attempts, newest first: (attempt, delivery, event type, endpoint URL)."""
    query = (
        select(WebhookAttempt, WebhookDelivery, Event.type, WebhookEndpoint.url)
        .join(WebhookDelivery, WebhookDelivery.id == WebhookAttempt.delivery_id)
        .join(Event, Event.id == WebhookDelivery.event_id)
        .outerjoin(WebhookEndpoint, WebhookEndpoint.id == WebhookDelivery.endpoint_id)
        .order_by(WebhookAttempt.id.desc())
        .limit(limit)
    )
    return list(session.exec(query))


def message_id(event_id: int, endpoint_id: int) -> str:
    """The `webhook-id` of an event for an endpoint: stable, so retries are recognisable."""
    return f"msg_{event_id}_{endpoint_id}"


def dispatch(session: Session, settings: Settings, now: datetime) -> int:
    """Fan events not dispatched yet out into deliveries, and commit; return how many were made.

    Each batch of events is claimed with a conditional update, so two
    dispatchers at once fan each event out once; the unique `message_id` of a
    delivery makes even a repeat harmless.
    """
    made = 0
    if not subscribed(session, settings):
        # Nobody listens: the events are done with in one statement, not read back in
        # batches (a million from an import would hold the tick up for a minute).
        session.execute(update(Event).where(Event.dispatched == false()).values(dispatched=True))
        session.commit()
        return 0
    while True:
        pending = session.exec(
            select(Event.id)
            .where(Event.dispatched == false())
            .order_by(Event.id)
            .limit(DISPATCH_BATCH)
        ).all()
        if not pending:
            return made
        claimed = session.exec(
            update(Event)
            .where(among(session, Event.id, pending), Event.dispatched == false())
            .values(dispatched=True)
            .returning(Event.id, Event.type, Event.enrolment_id, Event.data)
        ).all()
        endpoints = session.exec(
            select(WebhookEndpoint.id, WebhookEndpoint.events).where(WebhookEndpoint.enabled)
        ).all()
        rows = []
        for event_id, type_, _enrolment_id, data in claimed:
            for endpoint_id, types in endpoints:
                if type_ in types:
                    rows.append(_delivery(message_id(event_id, endpoint_id), event_id, endpoint_id))
            if settings.xapi_url and type_ in xapi.TYPES and data.get("person_id"):
                rows.append(_delivery(xapi.statement_id(settings, event_id), event_id, None))
        made += len(
            insert_ignoring(
                session,
                WebhookDelivery.__table__,
                [{**row, "next_attempt_at": now, "created_at": now} for row in rows],
                ("message_id",),
                ("id",),
            )
        )
        session.commit()


def _delivery(message: str, event_id: int, endpoint_id: int | None) -> dict:
    return {
        "message_id": message,
        "event_id": event_id,
        "endpoint_id": endpoint_id,
        "target": "webhook" if endpoint_id is not None else "xapi",
        "state": "pending",
        "attempts": 0,
    }


def subscribed(session: Session, settings: Settings) -> bool:
    """Say whether anything receives events: an enabled endpoint, or the LRS."""
    if settings.xapi_url:
        return True
    found = session.exec(select(WebhookEndpoint.id).where(WebhookEndpoint.enabled).limit(1))
    return found.first() is not None


def kick_if_subscribed(session: Session, settings: Settings) -> bool:
    """After a commit that wrote events: start a delivery run now rather than at the next tick."""
    return subscribed(session, settings) and kick(settings)


def kick(settings: Settings) -> bool:
    """Enqueue one delivery run (after a commit that wrote events); False if Redis is down.

    Nothing is lost when it fails: the tick dispatches and enqueues every minute.
    """
    try:
        queue(settings, DEFAULT_QUEUE).enqueue(
            "workers.jobs.deliver_webhooks", result_ttl=60, failure_ttl=86400, job_timeout=600
        )
    except Exception:
        log.warning("could not enqueue webhook deliveries; the tick will", exc_info=True)
        return False
    return True
