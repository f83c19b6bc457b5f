"""The event log: what happened to enrolments, one row per event, in the order written.

`record` (one event) and `record_many` (a bulk path's events, set-based) are
the only writers of `event` rows. The caller's transaction commits them with
the change they describe, so an event exists exactly when its change does.
The id only grows: it is the cursor of the API's event feed, and webhooks and
xAPI statements are fanned out from these rows (`nudger.webhooks.dispatch`).

An event's `data` holds ids, keys and times, never a person's name or address,
so erasing a person's personal data leaves nothing to erase here.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlmodel import Session, select

from nudger.bulk import insert_all, insert_ignoring
from nudger.models import Event

ENROLMENT_CREATED = "enrolment.created"
# A step's email was decided and queued by the tick (its enrolment-step row written
# in the same transaction); whether SMTP took it is the outbox's record.
STEP_SENT = "step.sent"
STEP_COMPLETED = "step.completed"
# The tick found a sent step past its due date (once per step).
STEP_OVERDUE = "step.overdue"
ESCALATION_RAISED = "escalation.raised"
ENROLMENT_COMPLETED = "enrolment.completed"
RATING_RECORDED = "rating.recorded"
# A message to the person bounced (inbound mail handling records it).
EMAIL_BOUNCED = "email.bounced"

TYPES: tuple[str, ...] = (
    ENROLMENT_CREATED,
    STEP_SENT,
    STEP_COMPLETED,
    STEP_OVERDUE,
    ESCALATION_RAISED,
    ENROLMENT_COMPLETED,
    RATING_RECORDED,
    EMAIL_BOUNCED,
)


class UnknownEventType(ValueError):
    """An event type not in TYPES: a typo here would silently reach no subscriber."""


def _check(type_: str) -> None:
    if type_ not in TYPES:
        raise UnknownEventType(type_)


def record(
    session: Session,
    type: str,  # the event's own field name, as the feed and the webhooks say it
    data: dict[str, Any],
    *,
    now: datetime,
    enrolment_id: int | None = None,
    key: str | None = None,
) -> None:
    """Write one event in the caller's transaction (it commits it with the change).

    With `key`, an event already written under the same key is not written again.
    """
    record_many(session, [(type, enrolment_id, data, key)], now=now)


def record_many(
    session: Session,
    events: Iterable[tuple[str, int | None, dict[str, Any], str | None]],
    *,
    now: datetime,
) -> None:
    """Write (type, enrolment id, data, key) events in bulk: one statement per thousand.

    Events with a key already written are skipped; the others keep their order.
    """
    rows = []
    for type_, enrolment_id, data, key in events:
        _check(type_)
        rows.append(
            {
                "type": type_,
                "occurred_at": now,
                "enrolment_id": enrolment_id,
                "data": data,
                "key": key,
                "dispatched": False,
            }
        )
    if not rows:
        return
    keyed = [row for row in rows if row["key"] is not None]
    plain = [row for row in rows if row["key"] is None]
    insert_all(session, Event.__table__, plain)
    insert_ignoring(session, Event.__table__, keyed, ("key",), ("id",))


def after(
    session: Session, cursor: int, limit: int = 100, types: Sequence[str] | None = None
) -> list[Event]:
    """Return up to `limit` events written after the event `cursor`, oldest first.

    Ids are handed out when a transaction writes, not when it commits: a long
    transaction (a large import) may commit ids below events already read.
    A reader that must see every event re-reads a short window behind its
    cursor, or takes only events older than its longest transaction.
    """
    query = select(Event).where(Event.id > cursor).order_by(Event.id).limit(limit)
    if types:
        query = query.where(Event.type.in_(list(types)))
    return list(session.exec(query))
