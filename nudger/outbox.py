"""Claim outbox rows, render them, send them over one connection, mark them.

Delivery is at-least-once: a row is claimed with a conditional update and a
lease; a worker killed mid-batch leaves rows in `sending` that the tick
returns to `pending` when the lease runs out. The Message-ID is derived from
the row, so a duplicate is identifiable as one.
"""

from __future__ import annotations

import logging
from collections import Counter
from datetime import datetime, timedelta
from email.message import EmailMessage

from sqlalchemy import update
from sqlalchemy.engine import Engine
from sqlmodel import Session

from nudger.config import Settings
from nudger.db import utcnow
from nudger.messages import compose
from nudger.models import CapturedMail, Outbox
from nudger.transport import PermanentSendError, TransientSendError, open_transport

log = logging.getLogger(__name__)

# Transient failures wait 1, 5, 15, 60, 180 minutes; then the row fails for good.
BACKOFF_MINUTES = (1, 5, 15, 60, 180)


def claim(session: Session, ids: list[int], now: datetime, lease: timedelta) -> list[int]:
    """Move pending rows to `sending`; return the ids this process won."""
    if not ids:
        return []
    result = session.execute(
        update(Outbox)
        # No check of next_attempt_at: a job exists only for rows the tick found due,
        # and `tick --now` may decide in the future of the worker's clock.
        .where(Outbox.id.in_(ids), Outbox.state == "pending")
        .values(state="sending", lease_until=now + lease, attempts=Outbox.attempts + 1)
        .returning(Outbox.id)
    )
    won = sorted(r[0] for r in result)
    session.commit()
    return won


def send_batch(
    engine: Engine, settings: Settings, ids: list[int], now: datetime | None = None
) -> dict[str, int]:
    """Send the given outbox rows; return counts of sent, retrying and failed."""
    now = now or utcnow()
    counts: Counter = Counter()
    with Session(engine, expire_on_commit=False) as session:
        won = claim(session, ids, now, timedelta(seconds=settings.send_lease_seconds))
        counts["skipped"] = len(ids) - len(won)
        if not won:
            return dict(counts)

        def capture(msg: EmailMessage) -> None:
            session.add(
                CapturedMail(
                    at=utcnow(),
                    to_email=str(msg["To"]),
                    subject=str(msg["Subject"]),
                    kind=str(msg["X-Nudger-Kind"] or ""),
                    message_id=str(msg["Message-ID"]),
                    raw=msg.as_bytes(),
                )
            )

        with open_transport(settings.smtp_url, capture=capture) as transport:
            for outbox_id in won:
                row = session.get(Outbox, outbox_id)
                counts[deliver(session, settings, transport, row, now)] += 1
                session.commit()
    return dict(counts)


def deliver(session: Session, settings: Settings, transport, row: Outbox, now: datetime) -> str:
    """Render and send one claimed row; record the outcome on it."""
    try:
        msg = compose(session, settings, row, now)
    except Exception as exc:
        # A message that cannot be built will not build on retry either.
        log.exception("could not render outbox row %s", row.id)
        return _fail(row, f"could not render: {exc}")
    if msg is None:
        row.state, row.last_error = "cancelled", "nothing left to send"
        return "cancelled"
    row.message_id = str(msg["Message-ID"])
    row.subject = str(msg["Subject"])[:500]
    try:
        transport.send(msg)
    except PermanentSendError as exc:
        return _fail(row, f"{exc.code} {exc.detail}".strip())
    except TransientSendError as exc:
        error = f"{exc.code or ''} {exc.detail}".strip()
        if row.attempts >= min(settings.max_attempts, len(BACKOFF_MINUTES) + 1):
            return _fail(row, f"gave up after {row.attempts} attempts: {error}")
        row.state, row.last_error, row.lease_until = "pending", error, None
        row.next_attempt_at = now + timedelta(minutes=BACKOFF_MINUTES[row.attempts - 1])
        row.enqueued_at = None  # the tick enqueues it again when it is due
        return "retrying"
    row.state, row.sent_at, row.lease_until, row.last_error = "sent", utcnow(), None, None
    return "sent"


def _fail(row: Outbox, error: str) -> str:
    row.state, row.last_error, row.lease_until = "failed", error[:4000], None
    return "failed"
