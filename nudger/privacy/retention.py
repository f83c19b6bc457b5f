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

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, true, update
from sqlmodel import Session, select

from nudger.models import (
    CapturedMail,
    EscalationEvent,
    Event,
    InboundMessage,
    LinkHit,
    Outbox,
    TickRun,
    WebhookAttempt,
    WebhookDelivery,
)

PRUNE_BATCH = 500  # rows per pruning statement: each one locks only these, briefly
PRUNE_BATCHES_PER_TICK = 20  # a backlog is worked off over several hours, never in one tick


# Outbox states a row never leaves: its subject and, later, the row itself may go.
SETTLED = ("sent", "failed", "bounced", "suppressed", "cancelled")


def _in_batches(
    session: Session,
    model: type,
    order_by: Any,
    where: list,
    max_batches: int | None,
    change: Callable[[list[int]], Any] | None = None,
) -> int:
    """Apply `change` (by default: delete) to `model` rows matching `where`; return how many.

    PRUNE_BATCH rows at a time, oldest by `order_by` first, each batch its own
    short transaction, so no table is locked for long; `max_batches` bounds one run.
    """
    done = batches = 0
    while max_batches is None or batches < max_batches:
        ids = list(
            session.exec(select(model.id).where(*where).order_by(order_by).limit(PRUNE_BATCH))
        )
        if not ids:
            break
        session.execute(change(ids) if change else delete(model).where(model.id.in_(ids)))
        session.commit()
        done += len(ids)
        batches += 1
    return done


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
    pruned.stored_copies = _in_batches(
        session, CapturedMail, CapturedMail.id, [CapturedMail.at < cutoff], max_batches,
        lambda ids: delete(CapturedMail).where(CapturedMail.id.in_(ids)),
    )  # fmt: skip
    # Only rows that will not change again: a message still on its way keeps its subject.
    pruned.subjects = _in_batches(
        session, Outbox, Outbox.created_at,
        [Outbox.subject.is_not(None), Outbox.created_at < cutoff, Outbox.state.in_(SETTLED)],
        max_batches,
        lambda ids: update(Outbox).where(Outbox.id.in_(ids)).values(subject=None),
    )  # fmt: skip
    # Mail received (nudger.inbound), once acted on: the row and what was done stay.
    pruned.stored_copies += _in_batches(
        session, InboundMessage, InboundMessage.id,
        [InboundMessage.state == "done", InboundMessage.received_at < cutoff,
         func.length(InboundMessage.raw) > 0],
        max_batches,
        lambda ids: update(InboundMessage).where(InboundMessage.id.in_(ids))
        .values(raw=b"", subject=""),
    )  # fmt: skip
    return pruned


@dataclass
class PrunedHistory:
    """What one run of pruning history removed."""

    ledger_rows: int = 0
    link_hits: int = 0
    inbound_messages: int = 0
    webhook_deliveries: int = 0  # deliveries and their attempts' log
    events: int = 0

    @property
    def total(self) -> int:
        return (self.ledger_rows + self.link_hits + self.inbound_messages
                + self.webhook_deliveries + self.events)  # fmt: skip


def prune_history(
    session: Session, now: datetime, days: int, *, max_batches: int | None = None
) -> PrunedHistory:
    """Delete history older than `days`, so that no table grows without end.

    What goes: ledger rows that will not change again (sent, failed, bounced,
    suppressed, cancelled), link hits, inbound messages already acted on,
    finished webhook and xAPI deliveries with their attempts, and events already
    fanned out. Never a row something kept still points to: a digest an
    escalation event names (the event would look undigested and be told again),
    an email an inbound message answers, a delivery with attempts, an event with
    deliveries; those go in a later run, after what points to them. Like
    prune_mail: batches of PRUNE_BATCH rows read oldest first from an index, each
    its own short transaction; `max_batches` (per table) bounds one run. `days`
    below 1 keeps everything.
    """
    pruned = PrunedHistory()
    if days < 1:
        return pruned
    cutoff = now - timedelta(days=days)
    # What points at a row goes first, so each later delete finds fewer rows held.
    pruned.inbound_messages = _in_batches(
        session, InboundMessage, InboundMessage.received_at,
        [InboundMessage.received_at < cutoff, InboundMessage.state == "done"], max_batches,
    )  # fmt: skip
    named = select(EscalationEvent.id).where(EscalationEvent.digest_outbox_id == Outbox.id)
    answered = select(InboundMessage.id).where(InboundMessage.outbox_id == Outbox.id)
    pruned.ledger_rows = _in_batches(
        session, Outbox, Outbox.created_at,
        [Outbox.created_at < cutoff,
         Outbox.state.in_(SETTLED),
         ~named.exists(), ~answered.exists()],
        max_batches,
    )  # fmt: skip
    pruned.link_hits = _in_batches(session, LinkHit, LinkHit.at, [LinkHit.at < cutoff], max_batches)
    pruned.webhook_deliveries = _in_batches(
        session, WebhookAttempt, WebhookAttempt.id, [WebhookAttempt.at < cutoff], max_batches
    )
    attempted = select(WebhookAttempt.id).where(WebhookAttempt.delivery_id == WebhookDelivery.id)
    pruned.webhook_deliveries += _in_batches(
        session, WebhookDelivery, WebhookDelivery.id,
        [WebhookDelivery.created_at < cutoff, WebhookDelivery.state.in_(["delivered", "failed"]),
         ~attempted.exists()],
        max_batches,
    )  # fmt: skip
    delivered = select(WebhookDelivery.id).where(WebhookDelivery.event_id == Event.id)
    pruned.events = _in_batches(
        session, Event, Event.id,
        [Event.occurred_at < cutoff, Event.dispatched == true(), ~delivered.exists()],
        max_batches,
    )  # fmt: skip
    return pruned


def prune_due(session: Session, now: datetime) -> bool:
    """True when no tick has run yet in `now`'s hour: the tick prunes at most once an hour."""
    last = session.exec(select(TickRun.now).order_by(TickRun.id.desc()).limit(1)).first()
    hour = now.replace(minute=0, second=0, microsecond=0)
    return last is None or last.replace(minute=0, second=0, microsecond=0) != hour
