"""Claim outbox rows, render them, send them over one connection, mark them.

Delivery is at-least-once: a row is claimed with a conditional update and a
lease; a worker killed mid-batch leaves rows in `sending` that the tick
returns to `pending` when the lease runs out. The Message-ID is derived from
the row, so a duplicate is identifiable as one. Outcomes are committed in
small groups, so a crash re-sends at most one group (never more than a batch).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Iterable
from datetime import datetime, timedelta
from email.message import EmailMessage

from sqlalchemy import update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session, select

from nudger.config import Settings
from nudger.db import utcnow
from nudger.messages import COMPOSERS, compose
from nudger.models import CapturedMail, Enrolment, EnrolmentStep, Journey, Outbox, Person, Step
from nudger.transport import PermanentSendError, TransientSendError, Transport, open_transport

log = logging.getLogger(__name__)

# Transient failures wait 1, 5, 15, 60, 180 minutes; then the row fails for good.
BACKOFF_MINUTES = (1, 5, 15, 60, 180)
# Outcomes are committed every this many messages or seconds, whichever comes first.
COMMIT_EVERY = 25
COMMIT_SECONDS = 2.0
IN_CHUNK = 1000  # ids per IN (...) list


def claim(
    session: Session,
    ids: list[int],
    now: datetime,
    lease: timedelta,
    due_by: datetime | None = None,
) -> list[int]:
    """Move pending rows to `sending`; return the ids this process won.

    `due_by` is the time the job was enqueued for: a row that went back into
    backoff after that (a duplicate job of an earlier attempt) is left alone.
    It is not the worker's clock, because `tick --now` may decide in its future.
    """
    if not ids:
        return []
    conditions = [Outbox.id.in_(ids), Outbox.state == "pending"]
    if due_by is not None:
        conditions.append(Outbox.next_attempt_at <= due_by)
    result = session.execute(
        update(Outbox)
        .where(*conditions)
        .values(state="sending", lease_until=now + lease, attempts=Outbox.attempts + 1)
        .returning(Outbox.id)
    )
    won = sorted(r[0] for r in result)
    session.commit()
    return won


def renew(session: Session, ids: list[int], held: datetime, until: datetime) -> set[int]:
    """Extend this worker's lease on rows it still holds; return those ids.

    A row whose lease ran out may have been returned to pending by the tick
    and claimed by another worker: its `lease_until` is no longer ours.
    """
    kept: set[int] = set()
    for start in range(0, len(ids), IN_CHUNK):
        result = session.execute(
            update(Outbox)
            .where(
                Outbox.id.in_(ids[start : start + IN_CHUNK]),
                Outbox.state == "sending",
                Outbox.lease_until == held,
            )
            .values(lease_until=until)
            .returning(Outbox.id)
        )
        kept.update(r[0] for r in result)
    session.commit()
    return kept


def release(session: Session, ids: list[int], held: datetime, retry_at: datetime) -> int:
    """Return claimed rows that were never attempted to pending, for a later job."""
    released = 0
    for start in range(0, len(ids), IN_CHUNK):
        result = session.execute(
            update(Outbox)
            .where(
                Outbox.id.in_(ids[start : start + IN_CHUNK]),
                Outbox.state == "sending",
                Outbox.lease_until == held,
            )
            # The claim counted an attempt that did not happen.
            .values(
                state="pending",
                attempts=Outbox.attempts - 1,
                lease_until=None,
                enqueued_at=None,
                next_attempt_at=retry_at,
            )
        )
        released += result.rowcount or 0
    session.commit()
    return released


def send_batch(
    engine: Engine,
    settings: Settings,
    ids: list[int],
    now: datetime | None = None,
    due_by: datetime | None = None,
) -> dict[str, int]:
    """Send the given outbox rows over one connection; return counts per outcome."""
    now = now or utcnow()
    lease = timedelta(seconds=settings.send_lease_seconds)
    counts: Counter = Counter()
    with Session(engine, expire_on_commit=False) as session:
        won = claim(session, ids, now, lease, due_by)
        counts["skipped"] = len(ids) - len(won)
        if not won:
            return dict(counts)
        rows = _load(session, won)
        preload(session, rows)

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
            _send_rows(session, settings, transport, rows, now, now + lease, counts)
    return {k: v for k, v in counts.items() if v or k == "skipped"}


def _send_rows(
    session: Session,
    settings: Settings,
    transport: Transport,
    rows: list[Outbox],
    now: datetime,
    held: datetime,
    counts: Counter,
) -> None:
    """Deliver claimed rows in order, renewing the lease and committing in groups."""
    lease = timedelta(seconds=settings.send_lease_seconds)
    started = last_commit = time.monotonic()
    mine = {row.id for row in rows}
    uncommitted = 0
    for index, row in enumerate(rows):
        clock = time.monotonic()
        at = now + timedelta(seconds=clock - started)
        due = uncommitted >= COMMIT_EVERY or clock - last_commit > COMMIT_SECONDS
        if due or clock - last_commit > lease.total_seconds() / 3:
            # Commit what went out, and renew the lease on the rest: a slow
            # server or a long batch keeps its rows, and a row whose lease ran
            # out and went to another worker is found here and never sent.
            session.commit()
            until = at + lease
            mine = renew(session, [r.id for r in rows[index:]], held, until)
            held, last_commit, uncommitted = until, clock, 0
        if row.id not in mine:
            counts["lost"] += 1
            continue
        outcome = deliver(session, settings, transport, row, at)
        counts[outcome if outcome != "unreachable" else "retrying"] += 1
        uncommitted += 1
        if outcome == "unreachable":
            # No answer at all (refused, dropped, timed out): the rest of the batch
            # would only wait for the same timeout. Hand it back, unattempted.
            session.commit()
            rest = [r.id for r in rows[index + 1 :] if r.id in mine]
            retry_at = at + timedelta(minutes=BACKOFF_MINUTES[0])
            counts["deferred"] += release(session, rest, held, retry_at)
            return
    session.commit()


def deliver(
    session: Session, settings: Settings, transport: Transport, row: Outbox, now: datetime
) -> str:
    """Render and send one claimed row; record the outcome on it and return it.

    Outcomes: sent, failed, cancelled (nothing left to say), retrying (a 4xx
    answer), unreachable (no answer: the server is down or dropped us).
    """
    if row.kind not in COMPOSERS:
        return _fail(row, f"no email is defined for messages of kind {row.kind!r}")
    try:
        msg = compose(session, settings, row, now)
    except SQLAlchemyError:
        raise  # the database, not the message: the lease brings the row back
    except Exception as exc:
        # A message that cannot be built will not build on retry either.
        log.exception("could not render outbox row %s", row.id)
        return _fail(row, f"could not render: {type(exc).__name__}: {exc}")
    if msg is None:
        row.state, row.last_error, row.lease_until = "cancelled", "nothing left to send", None
        return "cancelled"
    row.message_id = _header(msg, "Message-ID")
    row.subject = _header(msg, "Subject")[:500]
    try:
        transport.send(msg)
    except PermanentSendError as exc:
        return _fail(row, f"{exc.code or ''} {exc.detail}".strip())
    except TransientSendError as exc:
        error = f"{exc.code or ''} {exc.detail}".strip()
        if row.attempts >= min(settings.max_attempts, len(BACKOFF_MINUTES) + 1):
            return _fail(row, f"gave up after {row.attempts} attempts: {error}")
        row.state, row.last_error, row.lease_until = "pending", error[:4000], None
        row.next_attempt_at = now + timedelta(minutes=BACKOFF_MINUTES[row.attempts - 1])
        row.enqueued_at = None  # the tick enqueues it again when it is due
        return "unreachable" if exc.code is None else "retrying"
    row.state, row.sent_at, row.lease_until, row.last_error = "sent", now, None, None
    return "sent"


def _header(msg: EmailMessage, name: str) -> str:
    """Return a header as text; stored ASCII values are read without parsing them."""
    for key, value in msg.raw_items():
        if key.lower() == name.lower():
            if isinstance(value, str) and value.isascii() and "=?" not in value:
                return " ".join(value.split())
            return str(msg[name])
    return ""


def _fail(row: Outbox, error: str) -> str:
    row.state, row.last_error, row.lease_until = "failed", error[:4000], None
    return "failed"


def _load(session: Session, ids: list[int]) -> list[Outbox]:
    """Return the claimed rows, oldest first."""
    rows: list[Outbox] = []
    for start in range(0, len(ids), IN_CHUNK):
        chunk = ids[start : start + IN_CHUNK]
        rows.extend(session.exec(select(Outbox).where(Outbox.id.in_(chunk))))
    return sorted(rows, key=lambda r: r.id)


def preload(session: Session, rows: Iterable[Outbox]) -> None:
    """Load what a batch's messages name in a few queries, so composing issues none.

    Composers look objects up with `session.get`, which then finds them in the
    session's identity map. That map holds objects weakly, so the session keeps
    a strong reference for as long as it lives (one batch).
    """
    rows = list(rows)
    step_row_ids = {i for r in rows for i in _step_row_ids(r.payload)}
    enrolment_ids = {r.enrolment_id for r in rows if r.enrolment_id}
    kept: list = session.info.setdefault("nudger.preloaded", [])
    kept += _fetch(session, EnrolmentStep, EnrolmentStep.id, step_row_ids)
    enrolments = _fetch(session, Enrolment, Enrolment.id, enrolment_ids)
    kept += enrolments
    person_ids = {r.person_id for r in rows if r.person_id} | {e.person_id for e in enrolments}
    journey_ids = {e.journey_id for e in enrolments}
    kept += _fetch(session, Person, Person.id, person_ids)
    kept += _fetch(session, Journey, Journey.id, journey_ids)
    steps = _fetch(session, Step, Step.journey_id, journey_ids)
    kept += steps
    counts: dict[int, int] = session.info.setdefault("nudger.live_steps", {})
    for journey_id in journey_ids:
        counts[journey_id] = sum(1 for s in steps if s.journey_id == journey_id and not s.removed)


def _step_row_ids(payload: object) -> list[int]:
    """Return the enrolment-step ids a payload names; a malformed one names none here
    (its composer fails it, alone, with the reason)."""
    ids = payload.get("enrolment_step_ids") if isinstance(payload, dict) else None
    return [i for i in ids if isinstance(i, int)] if isinstance(ids, list) else []


def _fetch(session: Session, model, column, values: set[int]) -> list:
    found: list = []
    values_list = sorted(values)
    for start in range(0, len(values_list), IN_CHUNK):
        chunk = values_list[start : start + IN_CHUNK]
        found.extend(session.exec(select(model).where(column.in_(chunk))))
    return found
