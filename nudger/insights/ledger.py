"""The sent-mail ledger: every outbox row, its SMTP answer, retries, and worker health.

"Bounced" means the receiving server refused the message with a permanent
(5xx) answer while we sent it; bounces that arrive later as mail (DSNs) go
to the From address and are not seen here.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import and_, literal_column, or_, update
from sqlmodel import Session, func, select

from nudger import outbox
from nudger.audit import record as audit
from nudger.config import Settings
from nudger.mail.compose import COMPOSERS
from nudger.models import Outbox, TickRun

log = logging.getLogger(__name__)

PAGE = 50
STATES = ("queued", "sending", "sent", "failed", "bounced", "suppressed", "cancelled")
LABELS = {
    "queued": "Queued",
    "retrying": "Waiting to retry",
    "sending": "Sending",
    "sent": "Sent",
    "failed": "Failed",
    "bounced": "Bounced",
    "suppressed": "Suppressed",  # not sent: the address is undeliverable (nudger.inbound)
    "cancelled": "Cancelled",
}
CLOCK_LATE = timedelta(minutes=3)  # the clock ticks every minute; three missed is a problem

_PERMANENT = re.compile(r"5\d\d ")
_WHOLE_ADDRESS = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
# Each state's tab counts up to here and then says "10,000+": an exact count of a
# ten-million-row ledger on every page view would cost more than the page.
COUNT_CAP = 10_000


def _literal(value: str):
    # A literal, not a parameter, so that the databases can use the partial
    # indexes of failed and bounced rows (ix_outbox_bounced, ix_outbox_failed).
    return literal_column(f"'{value}'")


def bounced():
    # Permanent failures are stored as "<code> <text>" by nudger.outbox.sending; a bounce
    # that came back later as mail marks the row "bounced" (nudger.inbound). Literals, so
    # that PostgreSQL matches the partial indexes.
    return or_(
        and_(Outbox.state == _literal("failed"), Outbox.last_error.like(_literal("5__ %"))),
        Outbox.state == _literal("bounced"),
    )


def display_state(row: Outbox, now: datetime) -> str:
    """Return the word the ledger shows for a row."""
    if row.state == "pending":
        return "retrying" if row.attempts and row.next_attempt_at > now else "queued"
    if row.state == "failed" and _PERMANENT.match(row.last_error or ""):
        return "bounced"
    return row.state


def _where(state: str):
    if state == "queued":
        return Outbox.state == _literal("pending")
    if state == "bounced":
        return bounced()
    if state == "failed":
        # A failure without a stored answer is neither: as NOT (bounced) would have it.
        return and_(
            Outbox.state == _literal("failed"), Outbox.last_error.not_like(_literal("5__ %"))
        )
    return Outbox.state == _literal(state if state in STATES else "")


def counts(session: Session) -> dict[str, int]:
    """Return how many rows are in each ledger state, up to COUNT_CAP + 1 each.

    Each count reads at most that many index entries, whatever the ledger's size.
    """
    found = {}
    for state in STATES:
        first = select(Outbox.id).where(_where(state)).limit(COUNT_CAP + 1).subquery()
        found[state] = session.exec(select(func.count()).select_from(first)).one()
    return found


def kinds() -> list[str]:
    """Return the kinds of message Nudger can send (every composer's)."""
    return sorted(COMPOSERS)


@dataclass
class MailFilter:
    """What the admin asked for on the ledger page."""

    state: str = ""
    kind: str = ""
    q: str = ""

    @classmethod
    def from_args(cls, args) -> MailFilter:
        state = args.get("state", "")
        return cls(
            state=state if state in STATES else "",
            kind=args.get("kind", "").strip()[:20],
            q=args.get("q", "").strip().lower()[:320],
        )

    def args(self) -> dict[str, str]:
        return {k: v for k, v in self.__dict__.items() if v}


def page(
    session: Session, f: MailFilter, before_id: int | None = None, limit: int = PAGE
) -> tuple[list[Outbox], int | None]:
    """Return one page of rows, newest first, and the id to continue before (or None)."""
    query = select(Outbox)
    if f.state:
        query = query.where(_where(f.state))
    if f.kind:
        query = query.where(Outbox.kind == f.kind)
    if f.q and _WHOLE_ADDRESS.fullmatch(f.q):
        # A whole address means that recipient: the address index finds their rows
        # among ten million at once, where a part of one needs the trigram index.
        query = query.where(Outbox.to_email == f.q)
    elif f.q:
        query = query.where(Outbox.to_email.contains(f.q, autoescape=True))
    if before_id is not None:
        query = query.where(Outbox.id < before_id)
    rows = list(session.exec(query.order_by(Outbox.id.desc()).limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (rows[-1].id if more else None)


def iter_all(session: Session, f: MailFilter) -> Iterator[Outbox]:
    """Yield every matching row, a page at a time (for exports)."""
    before = None
    while True:
        rows, before = page(session, f, before, limit=1000)
        yield from rows
        if before is None:
            return


def retry(session: Session, settings: Settings, outbox_id: int, now: datetime, actor: str) -> bool:
    """Send a failed row again; return False if it was not failed.

    The row gets a full new set of attempts (attempts is reset to 0): an admin
    retries after fixing the cause, and the old count says nothing about the
    new try. The row is committed as pending before it is enqueued, so a lost
    job is re-enqueued by the tick like any other.
    """
    row = session.get(Outbox, outbox_id)
    if row is None or row.state != "failed":
        return False
    result = session.execute(
        update(Outbox)
        .where(Outbox.id == outbox_id, Outbox.state == "failed")
        .values(
            state="pending", attempts=0, next_attempt_at=now, enqueued_at=None, lease_until=None
        )
    )
    if not result.rowcount:
        return False
    audit(
        session,
        actor,
        "outbox.retry",
        now,
        "outbox",
        outbox_id,
        to=row.to_email,
        kind=row.kind,
        last_error=row.last_error,
    )
    session.commit()
    outbox.enqueue_committed(session, settings, [outbox_id], now)
    return True


def ago(age: timedelta) -> str:
    """Say how long ago, in the unit a person would use: "3 min ago", "2 days ago"."""
    minutes = int(age.total_seconds() // 60)
    if minutes < 120:
        return f"{minutes} min ago"
    if minutes < 48 * 60:
        return f"{minutes // 60} hours ago"
    return f"{minutes // (24 * 60)} days ago"


def last_tick(session: Session) -> TickRun | None:
    """Return the clock's most recent tick, if it ever ticked."""
    return session.exec(select(TickRun).order_by(TickRun.id.desc()).limit(1)).first()


def clock_late(tick: TickRun | None, now: datetime) -> bool:
    """Say whether the clock has missed ticks (or never ticked) at `now`."""
    return tick is None or now - tick.started_at > CLOCK_LATE


@dataclass
class Health:
    """Is the clock ticking, are workers working, is anything piling up?"""

    last_tick: TickRun | None = None
    tick_age: timedelta | None = None
    queues: dict[str, int] = field(default_factory=dict)
    failed_jobs: int = 0
    workers: int = 0
    redis_error: str | None = None
    overdue_mail: int = 0  # pending rows due more than a few minutes ago
    late: bool = True

    @property
    def clock_ok(self) -> bool:
        return self.tick_age is not None and not self.late


def health(session: Session, settings: Settings, now: datetime) -> Health:
    """Return the clock's last tick, queue depths, failed jobs and the number of workers."""
    h = Health()
    h.last_tick = last_tick(session)
    h.late = clock_late(h.last_tick, now)
    if h.last_tick is not None:
        h.tick_age = max(now - h.last_tick.started_at, timedelta(0))
    h.overdue_mail = session.exec(
        select(func.count()).where(
            Outbox.state == "pending", Outbox.next_attempt_at <= now - CLOCK_LATE
        )
    ).one()
    try:
        from rq import Worker
        from rq.registry import FailedJobRegistry

        from nudger.queue import QUEUES, queue, redis_connection

        conn = redis_connection(settings)
        for name in QUEUES:
            q = queue(settings, name)
            h.queues[name] = q.count
            h.failed_jobs += FailedJobRegistry(queue=q).count
        h.workers = Worker.count(connection=conn)
    except Exception as exc:  # the page exists to say what is down, so say it
        h.redis_error = f"{type(exc).__name__}: {exc}"
    return h
