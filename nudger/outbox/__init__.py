"""The outbox: every email is a row here before it is a job, and a job sends rows.

`add` is the one writer of outbox rows; `enqueue_committed` hands committed
rows to the send queue. The database is the source of truth: a row whose job
is lost (Redis down or flushed) is enqueued again by the tick. `sending` claims
and sends rows; `transport` speaks SMTP (or captures mail in development).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime
from typing import NamedTuple

from sqlalchemy import update
from sqlmodel import Session

from nudger.bulk import among, insert_ignoring
from nudger.config import Settings
from nudger.models import Outbox
from nudger.queue import enqueue_send

log = logging.getLogger(__name__)


class Added(NamedTuple):
    """An outbox row `add` wrote (rows whose dedupe key existed are not returned)."""

    id: int
    dedupe_key: str
    kind: str


def add(
    session: Session,
    messages: Iterable[dict],
    now: datetime,
    *,
    enqueued_at: datetime | None = None,
) -> list[Added]:
    """Write a pending outbox row per message unless its dedupe key exists; return those written.

    Each message has `kind`, `dedupe_key`, `to_email` and `payload`, and may
    have `person_id` and `enrolment_id`. Nothing is enqueued here: commit, then
    enqueue. `enqueued_at` is for a caller that enqueues right after its commit
    (the tick), so the next tick does not enqueue the rows a second time.
    """
    fixed = {
        "state": "pending",
        "attempts": 0,
        "next_attempt_at": now,
        "enqueued_at": enqueued_at,
        "created_at": now,
    }
    rows = [{"person_id": None, "enrolment_id": None, **m, **fixed} for m in messages]
    returning = ("id", "dedupe_key", "kind")
    found = insert_ignoring(session, Outbox.__table__, rows, ("dedupe_key",), returning)
    return [Added(*row) for row in found]


def enqueue_committed(session: Session, settings: Settings, ids: list[int], now: datetime) -> bool:
    """Enqueue send jobs for committed pending rows; if Redis is down, leave them to the tick.

    Returns whether they were enqueued. The rows must be committed first, so a
    worker never runs ahead of the data it needs.
    """
    if not ids:
        return True
    try:
        enqueue_send(settings, ids, now)
    except Exception:  # Redis down: the tick's stale-pending sweep enqueues them later
        log.warning("could not enqueue outbox rows %s; the tick will", ids, exc_info=True)
        return False
    # Rows written with enqueued_at = now (the tick's) need no second write.
    fresh = (Outbox.enqueued_at.is_(None)) | (Outbox.enqueued_at != now)
    session.execute(
        update(Outbox).where(among(session, Outbox.id, ids), fresh).values(enqueued_at=now)
    )
    session.commit()
    return True
