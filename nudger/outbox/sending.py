"""Claim outbox rows, render them, send them over one connection, mark them.

Delivery is at-least-once: a row is claimed with a conditional update and a
lease; a worker killed mid-batch leaves rows in `sending` that the tick
returns to `pending` when the lease runs out. The Message-ID is derived from
the row, so a duplicate is identifiable as one. Outcomes are committed in
groups of at most COMMIT_EVERY rows and COMMIT_SECONDS, so a crash re-sends at
most one group (never more than a batch).
"""

from __future__ import annotations

import logging
import time
from collections import Counter, deque
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import parsedate_to_datetime
from typing import NamedTuple

from sqlalchemy import update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session, select

from nudger import tokens
from nudger.bulk import among, update_rows
from nudger.config import Settings
from nudger.db import utcnow
from nudger.mail import render
from nudger.mail.compose import COMPOSERS, compose
from nudger.mail.context import preload
from nudger.mail.mime import add_inbound_headers
from nudger.models import CapturedMail, Outbox, Person, is_placeholder_address
from nudger.outbox.transport import open_transport
from nudger.outbox.transport.base import (
    PermanentSendError,
    SendError,
    Sending,
    TransientSendError,
    Transport,
)

log = logging.getLogger(__name__)

# Transient failures wait 1, 5, 15, 60, 180 minutes; then the row fails for good.
BACKOFF_MINUTES = (1, 5, 15, 60, 180)
# Outcomes are committed every this many messages or seconds, whichever comes first.
# A crash re-sends what was not committed: at most one default batch. Each commit
# waits for the database's log to reach the disk (~1-2 ms on PostgreSQL), so
# groups much smaller than this cost more in commits than in sending.
COMMIT_EVERY = 100
COMMIT_SECONDS = 2.0
# Messages written whose answers are not read yet: the SMTP transport keeps
# one waiting for its content and one waiting for its final answer.
IN_FLIGHT = 2
ERASED_ADDRESS = "not sent: the address is a placeholder (the recipient's data was erased)"
UNDELIVERABLE = "not sent: mail to this address bounced ({reason}); an admin can lift this"
# Kinds whose answers Nudger reads (nudger.inbound): they carry a signed Reply-To.
ANSWERABLE_KINDS = frozenset({"step", "checkin", "digest"})


def warm_up() -> None:
    """Compile every email template once, so forked send jobs start with them built."""
    render.warm_up()


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
    return [row.id for row in claim_rows(session, ids, now, lease, due_by)]


def claim_rows(
    session: Session,
    ids: list[int],
    now: datetime,
    lease: timedelta,
    due_by: datetime | None = None,
) -> list[Outbox]:
    """Claim as `claim` does, and return the rows won, oldest first (one statement)."""
    if not ids:
        return []
    conditions = [among(session, Outbox.id, ids), Outbox.state == "pending"]
    if due_by is not None:
        conditions.append(Outbox.next_attempt_at <= due_by)
    won = session.scalars(
        update(Outbox)
        .where(*conditions)
        .values(state="sending", lease_until=now + lease, attempts=Outbox.attempts + 1)
        .returning(Outbox),
        execution_options={"synchronize_session": False},
    ).all()
    session.commit()
    return sorted(won, key=lambda row: row.id)


def renew(session: Session, ids: list[int], held: datetime, until: datetime) -> set[int]:
    """Extend this worker's lease on rows it still holds; return those ids.

    A row whose lease ran out may have been returned to pending by the tick
    and claimed by another worker: its `lease_until` is no longer ours.
    """
    return set(_update_held(session, ids, held, lease_until=until))


def release(session: Session, ids: list[int], held: datetime, retry_at: datetime) -> int:
    """Return claimed rows that were never attempted to pending, for a later job."""
    released = _update_held(
        session,
        ids,
        held,
        state="pending",
        attempts=Outbox.attempts - 1,  # the claim counted an attempt that did not happen
        lease_until=None,
        enqueued_at=None,
        next_attempt_at=retry_at,
    )
    return len(released)


def _update_held(session: Session, ids: list[int], held: datetime, **values) -> list[int]:
    """Update the rows among `ids` this worker still holds (lease `held`); return their ids."""
    result = session.execute(
        update(Outbox)
        .where(
            among(session, Outbox.id, ids),
            Outbox.state == "sending",
            Outbox.lease_until == held,
        )
        .values(**values)
        .returning(Outbox.id)
    )
    changed = [r[0] for r in result]
    session.commit()
    return changed


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
        rows = claim_rows(session, ids, now, lease, due_by)
        counts["skipped"] = len(ids) - len(rows)
        if not rows:
            return dict(counts)
        preload(session, rows)
        unreachable = _undeliverable(session, rows)

        def capture(msg: EmailMessage) -> None:
            session.add(
                CapturedMail(
                    at=_sent_at(msg, now),
                    to_email=str(msg["To"]),
                    subject=str(msg["Subject"]),
                    kind=str(msg["X-Nudger-Kind"] or ""),
                    message_id=str(msg["Message-ID"]),
                    raw=msg.as_bytes(),
                )
            )

        with open_transport(settings.smtp_url, capture=capture) as transport:
            _send_rows(session, settings, transport, rows, now, now + lease, counts, unreachable)
    return {k: v for k, v in counts.items() if v or k == "skipped"}


def _send_rows(
    session: Session,
    settings: Settings,
    transport: Transport,
    rows: list[Outbox],
    now: datetime,
    held: datetime,
    counts: Counter,
    unreachable: dict[str, str] | None = None,
) -> None:
    """Deliver claimed rows in order, renewing the lease and committing in groups.

    Each message is built while the server stores the ones before: the
    transport returns once a message is written, and its answer is read when
    later ones start. A row's outcome is recorded once its answer is in (and
    at the end, waiting for the last ones); outcomes go to the database in
    groups, as one statement each.
    """
    lease = timedelta(seconds=settings.send_lease_seconds)
    started = last_commit = last_renew = time.monotonic()
    mine = {row.id for row in rows}
    outcomes = _Outcomes(session)
    in_flight: deque[_InFlight] = deque()
    for index, row in enumerate(rows):
        clock = time.monotonic()
        at = now + timedelta(seconds=clock - started)
        if len(outcomes) >= COMMIT_EVERY or clock - last_commit > COMMIT_SECONDS:
            outcomes.commit()
            last_commit = clock
        if clock - last_renew > lease.total_seconds() / 3:
            # A slow server or a long batch keeps its rows; a row whose lease
            # ran out and went to another worker is found here and never sent.
            outcomes.commit()
            until = at + lease
            mine = renew(session, [r.id for r in rows[index:]], held, until)
            mine.update(entry.row.id for entry in in_flight)
            held, last_renew = until, clock
        if row.id not in mine:
            counts["lost"] += 1
            continue
        prepared = _prepare(session, settings, row, at, unreachable or {})
        if isinstance(prepared, tuple):  # failed or cancelled before sending
            label, values = prepared
            outcomes.add(row, values)
            counts[label] += 1
            continue
        sending = transport.start(prepared)
        message_id, subject = _header(prepared, "Message-ID"), _header(prepared, "Subject")
        in_flight.append(_InFlight(row, sending, at, message_id, subject))
        # Record what has been answered; never wait here for a recent answer,
        # but keep no more than the transport keeps on its way (two).
        while in_flight and (in_flight[0].sending.settled or len(in_flight) > IN_FLIGHT):
            counts[_record(outcomes, settings, in_flight.popleft())] += 1
        if sending.settled and _unreachable(sending.error):
            # No answer at all (refused, dropped, timed out): the rest of the batch
            # would only wait for the same timeout. Hand it back, unattempted.
            while in_flight:
                counts[_record(outcomes, settings, in_flight.popleft())] += 1
            outcomes.commit()
            rest = [r.id for r in rows[index + 1 :] if r.id in mine]
            retry_at = at + timedelta(minutes=BACKOFF_MINUTES[0])
            counts["deferred"] += release(session, rest, held, retry_at)
            return
    while in_flight:
        counts[_record(outcomes, settings, in_flight.popleft())] += 1
    outcomes.commit()


class _InFlight(NamedTuple):
    """A message handed to the transport whose outcome is not recorded yet."""

    row: Outbox
    sending: Sending
    at: datetime
    message_id: str
    subject: str


class _Outcomes:
    """Outcomes of sent rows, written together: one UPDATE per group, not one per row."""

    COLUMNS = (
        "state",
        "last_error",
        "sent_at",
        "message_id",
        "subject",
        "next_attempt_at",
        "enqueued_at",
        "lease_until",
    )

    def __init__(self, session: Session) -> None:
        self.session = session
        self.rows: list[tuple] = []

    def __len__(self) -> int:
        return len(self.rows)

    def add(self, row: Outbox, values: dict) -> None:
        """Queue the new column values of one row (the rest stay as they are)."""
        self.rows.append(
            (
                row.id,
                values["state"],
                values.get("last_error"),
                values.get("sent_at", row.sent_at),
                values.get("message_id", row.message_id),
                values.get("subject", row.subject),
                values.get("next_attempt_at", row.next_attempt_at),
                values.get("enqueued_at", row.enqueued_at),
                None,  # the lease ends with the outcome
            )
        )

    def commit(self) -> None:
        """Write the queued outcomes and commit (with anything else the session holds)."""
        if self.rows:
            # In id order, as every bulk update: two writers lock rows in one order.
            self.rows.sort(key=lambda r: r[0])
            update_rows(self.session, Outbox.__table__, self.COLUMNS, self.rows)
            self.rows = []
        self.session.commit()


def _undeliverable(session: Session, rows: list[Outbox]) -> dict[str, str]:
    """Return the addresses among the rows' that bounced for good, with the reason."""
    emails = sorted({row.to_email.lower() for row in rows})
    found = session.exec(
        select(Person.email, Person.undeliverable_reason).where(
            among(session, Person.email, emails), Person.undeliverable_at.is_not(None)
        )
    ).all()
    return {email: reason or "undeliverable" for email, reason in found}


def _prepare(
    session: Session,
    settings: Settings,
    row: Outbox,
    now: datetime,
    unreachable: dict[str, str] | None = None,
) -> EmailMessage | tuple[str, dict]:
    """Build one claimed row's message, or say why there is none: (outcome, values)."""
    if is_placeholder_address(row.to_email):
        return "cancelled", {"state": "cancelled", "last_error": ERASED_ADDRESS}
    reason = (unreachable or {}).get(row.to_email.lower())
    if reason is not None:
        # Kept in the ledger as suppressed, not lost: an admin sees what did not go.
        return "suppressed", {
            "state": "suppressed",
            "last_error": UNDELIVERABLE.format(reason=reason)[:4000],
        }
    if row.kind not in COMPOSERS:
        return _failed(f"no email is defined for messages of kind {row.kind!r}")
    try:
        msg = compose(session, settings, row, now)
    except SQLAlchemyError:
        raise  # the database, not the message: the lease brings the row back
    except Exception as exc:
        # A message that cannot be built will not build on retry either.
        log.exception("could not render outbox row %s", row.id)
        return _failed(f"could not render: {type(exc).__name__}: {exc}")
    if msg is None:
        return "cancelled", {"state": "cancelled", "last_error": "nothing left to send"}
    if settings.inbound_domain:
        reply_to = (
            tokens.mailbox(settings, "reply", row.id) if row.kind in ANSWERABLE_KINDS else None
        )
        add_inbound_headers(msg, tokens.mailbox(settings, "bounce", row.id), reply_to)
    return msg


def _record(outcomes: _Outcomes, settings: Settings, entry: _InFlight) -> str:
    """Wait for one message's answer, queue its row's outcome, and return the outcome.

    Outcomes: sent, failed, retrying (a 4xx or no answer: tried again later).
    """
    row, sending, now = entry.row, entry.sending, entry.at
    ids = {"message_id": entry.message_id, "subject": entry.subject[:500]}
    try:
        sending.result()
    except SendError as exc:
        if exc.connecting and isinstance(exc, PermanentSendError):
            # A wrong password or missing TLS says nothing about this message:
            # retried with backoff like any failure to connect (the ledger
            # shows the server's answer) until the setting is mended.
            exc = TransientSendError(exc.detail, exc.code, connecting=True)
        return _record_failure(outcomes, settings, row, now, ids, exc)
    outcomes.add(row, {"state": "sent", "sent_at": now, **ids})
    return "sent"


def _record_failure(
    outcomes: _Outcomes, settings: Settings, row: Outbox, now: datetime, ids: dict, exc: SendError
) -> str:
    """Queue a failed send's outcome: failed for good, or pending again after a backoff."""
    error = f"{exc.code or ''} {exc.detail}".strip()
    if not isinstance(exc, TransientSendError):
        label, values = _failed(error)
    elif row.attempts >= min(settings.max_attempts, len(BACKOFF_MINUTES) + 1):
        label, values = _failed(f"gave up after {row.attempts} attempts: {error}")
    else:
        label, values = (
            "retrying",
            {
                "state": "pending",
                "last_error": error[:4000],
                "next_attempt_at": now + timedelta(minutes=BACKOFF_MINUTES[row.attempts - 1]),
                "enqueued_at": None,  # the tick enqueues it again when it is due
            },
        )
    outcomes.add(row, {**values, **ids})
    return label


def _unreachable(error: SendError | None) -> bool:
    """True when no message can go now: no answer at all (refused, dropped, timed
    out), or the connection itself failed (TLS, a wrong password)."""
    if error is None:
        return False
    return error.connecting or (isinstance(error, TransientSendError) and error.code is None)


def _sent_at(msg: EmailMessage, now: datetime) -> datetime:
    """Return when a captured message was sent: its Date, the send's `now` (not the clock),
    so mail sent as of another time (the demo's replay, `tick --now`) shows that time."""
    try:
        return parsedate_to_datetime(msg["Date"]).astimezone(UTC)
    except (TypeError, ValueError):
        return now


def _header(msg: EmailMessage, name: str) -> str:
    """Return a header as text; stored ASCII values are read without parsing them."""
    for key, value in msg.raw_items():
        if key.lower() == name.lower():
            if isinstance(value, str) and value.isascii() and "=?" not in value:
                return " ".join(value.split())
            return str(msg[name])
    return ""


def _failed(error: str) -> tuple[str, dict]:
    return "failed", {"state": "failed", "last_error": error[:4000]}
