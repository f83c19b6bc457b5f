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

import re
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import text, tuple_
from sqlmodel import Session, select

from nudger.bulk import copy_rows, insert_all, insert_ignoring
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
    heard: bool = True,
) -> None:
    """Write (type, enrolment id, data, key) events in bulk: one statement per thousand.

    Events with a key already written are skipped; the others keep their order.
    `heard=False`: nothing receives events, so they are written as dispatched (see copy_many).
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
                "dispatched": not heard,
            }
        )
    if not rows:
        return
    keyed = [row for row in rows if row["key"] is not None]
    plain = [row for row in rows if row["key"] is None]
    insert_all(session, Event.__table__, plain)
    insert_ignoring(session, Event.__table__, keyed, ("key",), ("id",))


def copy_many(
    session: Session,
    events: Iterable[tuple[str, int | None, str]],
    *,
    now: datetime,
    heard: bool = True,
) -> int:
    """Write (type, enrolment id, data as JSON text) events without keys by one COPY
    (PostgreSQL): a large import's events stream to the server as they are made.

    The same rows as `record_many` writes; the id and txid come from the server's defaults.
    `heard=False` (nothing receives events: no webhook endpoint, no LRS) writes them as
    dispatched already, so no one rewrites a million rows later to say so.
    """

    def rows():
        for type_, enrolment_id, data in events:
            _check(type_)
            yield type_, now, enrolment_id, data, None, not heard

    columns = ("type", "occurred_at", "enrolment_id", "data", "key", "dispatched")
    return copy_rows(session, Event.__table__, columns, rows())


#: a feed cursor: "" or "0" (the start), "ID" (SQLite) or "TXID.ID" (PostgreSQL)
CURSOR_PATTERN = r"^(0|[1-9][0-9]{0,18}(\.[1-9][0-9]{0,9})?)?$"
_CURSOR = re.compile(CURSOR_PATTERN)


class BadCursor(ValueError):
    """A cursor this feed did not hand out."""


# The oldest transaction still running on this database, or else the next one to start:
# no event below it can still appear. Transactions running in other databases of the
# server (known from pg_stat_activity, read after the statement's snapshot) are left
# out; one that ended meanwhile, or whose database cannot be seen, counts, to be safe.
# Running transaction ids are within 2**31 of each other, so their low 32 bits (all
# pg_stat_activity gives) identify them.
_HORIZON = text(
    """
    WITH snap AS (SELECT pg_current_snapshot() AS s),
    elsewhere AS (
        SELECT (backend_xid::text)::bigint AS xid FROM pg_stat_activity
        WHERE backend_xid IS NOT NULL AND datname IS DISTINCT FROM current_database()
    )
    SELECT coalesce(
        (SELECT min((x::text)::bigint) FROM snap, pg_snapshot_xip(snap.s) AS x
         WHERE ((x::text)::bigint % 4294967296) NOT IN (SELECT xid FROM elsewhere)),
        (SELECT (pg_snapshot_xmax(s)::text)::bigint FROM snap)
    )
    """
)


def cursor_of(event: Event) -> str:
    """The cursor that reads on from `event`."""
    return f"{event.txid}.{event.id}" if event.txid is not None else str(event.id)


def after(
    session: Session, cursor: str = "", limit: int = 100, types: Sequence[str] | None = None
) -> tuple[list[Event], str]:
    """Return up to `limit` events after `cursor`, and the cursor to read on from.

    Every event is listed exactly once, in an order no later commit can change.
    SQLite has one writer at a time, so ids are handed out in commit order. On
    PostgreSQL an id is handed out when a transaction writes, not when it
    commits, so a long transaction (a large import) could commit ids below events
    already read: there events are read in (transaction id, id) order, and only
    those of transactions older than the oldest one still running, whose rows can
    no longer change. A writing transaction left open on the same database holds
    the feed back until it ends (late, never skipped); other databases' do not.
    """
    if not _CURSOR.match(cursor):
        raise BadCursor(cursor)
    txid, _, last = cursor.rpartition(".") if "." in cursor else ("", "", cursor or "0")
    query = select(Event).limit(limit)
    if types:
        query = query.where(Event.type.in_(list(types)))
    if session.get_bind().dialect.name == "postgresql":
        horizon = session.scalar(_HORIZON)
        query = query.where(
            Event.txid < horizon,
            tuple_(Event.txid, Event.id) > tuple_(int(txid or 0), int(last)),
        ).order_by(Event.txid, Event.id)
    else:
        query = query.where(Event.id > int(last)).order_by(Event.id)
    rows = list(session.exec(query))
    return rows, cursor_of(rows[-1]) if rows else (cursor or "0")
