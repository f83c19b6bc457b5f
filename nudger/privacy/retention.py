"""Stored mail has an end: copies and subjects of sent mail go after NUDGER_RETAIN_MAIL_DAYS.

What a message said is kept for a while (the development outbox's captured
copy, the ledger row's subject, which for a digest names the people in it,
the raw copy of a reply or bounce received),
then pruned; the ledger row stays with its state, kind, recipient, times and
SMTP answer. The ledger never stores a message's body: it is rendered when it
is sent. The tick prunes at most once an hour, in short batches; `nudger
prune` does it at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, update
from sqlmodel import Session, select

from nudger.models import CapturedMail, EscalationEvent, InboundMessage, LinkHit, Outbox, TickRun

PRUNE_BATCH = 500  # rows per pruning statement: each one locks only these, briefly
PRUNE_BATCHES_PER_TICK = 20  # a backlog is worked off over several hours, never in one tick


@dataclass
class Pruned:
    """What one pruning run removed."""

    stored_copies: int = 0
    subjects: int = 0

    @property
    def total(self) -> int:
        return self.stored_copies + self.subjects


def prune_mail(
    session: Session, now: datetime, days: int, *, max_batches: int | None = None
) -> Pruned:
    """Delete stored copies of mail and ledger subjects older than `days`; keep the rows.

    Works in batches of PRUNE_BATCH rows, each its own short transaction, so no
    table is locked for long; `max_batches` (per kind) bounds one run, and a
    backlog is left for the next. `days` below 1 keeps everything.
    """
    pruned = Pruned()
    if days < 1:
        return pruned
    cutoff = now - timedelta(days=days)
    batches = 0
    while max_batches is None or batches < max_batches:
        ids = list(
            session.exec(
                select(CapturedMail.id)
                .where(CapturedMail.at < cutoff)
                .order_by(CapturedMail.id)
                .limit(PRUNE_BATCH)
            )
        )
        if not ids:
            break
        session.execute(delete(CapturedMail).where(CapturedMail.id.in_(ids)))
        session.commit()
        pruned.stored_copies += len(ids)
        batches += 1
    batches = 0
    while max_batches is None or batches < max_batches:
        # Only rows that will not change again: a message still on its way keeps its subject.
        ids = list(
            session.exec(
                select(Outbox.id)
                .where(
                    Outbox.subject.is_not(None),
                    Outbox.created_at < cutoff,
                    Outbox.state.in_(["sent", "failed", "cancelled", "bounced", "suppressed"]),
                )
                .order_by(Outbox.created_at)
                .limit(PRUNE_BATCH)
            )
        )
        if not ids:
            break
        session.execute(update(Outbox).where(Outbox.id.in_(ids)).values(subject=None))
        session.commit()
        pruned.subjects += len(ids)
        batches += 1
    batches = 0
    while max_batches is None or batches < max_batches:
        # Mail received (nudger.inbound), once acted on: the row and what was done stay.
        ids = list(
            session.exec(
                select(InboundMessage.id)
                .where(
                    InboundMessage.state == "done",
                    InboundMessage.received_at < cutoff,
                    func.length(InboundMessage.raw) > 0,
                )
                .order_by(InboundMessage.id)
                .limit(PRUNE_BATCH)
            )
        )
        if not ids:
            break
        session.execute(
            update(InboundMessage).where(InboundMessage.id.in_(ids)).values(raw=b"", subject="")
        )
        session.commit()
        pruned.stored_copies += len(ids)
        batches += 1
    return pruned


@dataclass
class PrunedHistory:
    """What one run of pruning history removed."""

    ledger_rows: int = 0
    link_hits: int = 0

    @property
    def total(self) -> int:
        return self.ledger_rows + self.link_hits


def prune_history(
    session: Session, now: datetime, days: int, *, max_batches: int | None = None
) -> PrunedHistory:
    """Delete ledger rows and link hits older than `days`, so neither grows without end.

    Only ledger rows that will not change again (sent, failed, cancelled) go, and
    never a digest an escalation event still names (the event would look
    undigested and be told again). Like prune_mail: batches of PRUNE_BATCH rows
    read oldest first from an index, each its own short transaction;
    `max_batches` (per table) bounds one run. `days` below 1 keeps everything.
    """
    pruned = PrunedHistory()
    if days < 1:
        return pruned
    cutoff = now - timedelta(days=days)
    named = select(EscalationEvent.id).where(EscalationEvent.digest_outbox_id == Outbox.id)
    batches = 0
    while max_batches is None or batches < max_batches:
        ids = list(
            session.exec(
                select(Outbox.id)
                .where(
                    Outbox.created_at < cutoff,
                    Outbox.state.in_(["sent", "failed", "cancelled"]),
                    ~named.exists(),
                )
                .order_by(Outbox.created_at)
                .limit(PRUNE_BATCH)
            )
        )
        if not ids:
            break
        # A reply or bounce received for the email keeps its row (what was done), without
        # the link: otherwise the foreign key refuses the delete, and the tick with it.
        session.execute(
            update(InboundMessage).where(InboundMessage.outbox_id.in_(ids)).values(outbox_id=None)
        )
        session.execute(delete(Outbox).where(Outbox.id.in_(ids)))
        session.commit()
        pruned.ledger_rows += len(ids)
        batches += 1
    batches = 0
    while max_batches is None or batches < max_batches:
        ids = list(
            session.exec(
                select(LinkHit.id)
                .where(LinkHit.at < cutoff)
                .order_by(LinkHit.at)
                .limit(PRUNE_BATCH)
            )
        )
        if not ids:
            break
        session.execute(delete(LinkHit).where(LinkHit.id.in_(ids)))
        session.commit()
        pruned.link_hits += len(ids)
        batches += 1
    return pruned


def prune_due(session: Session, now: datetime) -> bool:
    """True when no tick has run yet in `now`'s hour: the tick prunes at most once an hour."""
    last = session.exec(select(TickRun.now).order_by(TickRun.id.desc()).limit(1)).first()
    hour = now.replace(minute=0, second=0, microsecond=0)
    return last is None or last.replace(minute=0, second=0, microsecond=0) != hour
