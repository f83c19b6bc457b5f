"""Take in a message: store it first (nothing is lost if a worker dies), then queue its job."""

from __future__ import annotations

import hashlib
from datetime import datetime
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default as default_policy
from email.utils import getaddresses

from sqlmodel import Session, select

from nudger.config import Settings
from nudger.db import upsert_ignore
from nudger.inbound.reading import sender
from nudger.models import InboundMessage
from nudger.queue import DEFAULT_QUEUE, queue
from nudger.tokens import read_mailbox


class NotForUs(ValueError):
    """The address is not one Nudger gave out (another domain, or a bad signature)."""


def accepts(settings: Settings, address: str) -> bool:
    """Say whether mail to `address` is taken: a signed address at the inbound domain."""
    return read_mailbox(settings, address) is not None


def parse(raw: bytes) -> EmailMessage:
    """Parse raw RFC 5322 bytes (the email package never raises on malformed mail)."""
    return message_from_bytes(raw, policy=default_policy)  # type: ignore[return-value]


def store(
    session: Session,
    raw: bytes,
    *,
    recipient: str,
    envelope_from: str,
    via: str,
    now: datetime,
) -> tuple[int, bool]:
    """Write a received message and commit; return (its id, whether it is new).

    The same message delivered again (same Message-ID, or the same bytes when
    it has none) is the row stored the first time.
    """
    msg = parse(raw)
    message_id = " ".join(str(msg.get("Message-ID", "")).split())
    key = message_id[:300] if message_id else "sha256:" + hashlib.sha256(raw).hexdigest()
    row = {
        "message_key": key,
        "received_at": now,
        "via": via,
        "envelope_from": envelope_from[:320],
        "recipient": recipient.lower()[:320],
        "from_email": sender(msg)[:320],
        "subject": " ".join(str(msg.get("Subject", "")).split())[:500],
        "raw": raw,
        "state": "received",
        "kind": "",
        "trusted": False,
        "status": "",
    }
    stmt = (
        upsert_ignore(session, InboundMessage.__table__, ["message_key"])
        .values(**row)
        .returning(InboundMessage.__table__.c.id)
    )
    new = session.execute(stmt).scalar()
    session.commit()
    if new is not None:
        return new, True
    existing = session.scalar(select(InboundMessage.id).where(InboundMessage.message_key == key))
    return existing, False


def enqueue(settings: Settings, inbound_id: int) -> None:
    """Queue the job that acts on a stored message; if Redis is down, the tick does it later."""
    queue(settings, DEFAULT_QUEUE).enqueue(
        "workers.jobs.process_inbound",
        inbound_id,
        job_id=f"inbound-{inbound_id}",
        result_ttl=600,
        failure_ttl=7 * 86400,
        description=f"read inbound message {inbound_id}",
    )


# Headers that may hold the address a forwarded message was delivered to, most telling first.
_DELIVERY_HEADERS = ("X-Original-To", "Delivered-To", "Envelope-To", "To", "Cc")


def recipient_of(settings: Settings, msg: EmailMessage, given: str = "") -> str | None:
    """Return the signed address a message came to: `given` (a provider's field) or a header."""
    candidates = [a.strip() for a in given.split(",") if a.strip()]
    for name in _DELIVERY_HEADERS:
        candidates += [a for _, a in getaddresses([str(v) for v in msg.get_all(name, [])])]
    return next((a for a in candidates if accepts(settings, a)), None)
