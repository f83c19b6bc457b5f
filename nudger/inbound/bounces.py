"""Delivery failures: read a bounce, mark its row, keep the addresses that cannot be reached.

Standard reports (RFC 3464 `multipart/report; report-type=delivery-status`)
are read field by field; the non-standard bounces real servers still send
are recognised by flufl.bounce, Mailman's detectors.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage, Message

from flufl.bounce import all_failures
from sqlalchemy import func, update
from sqlmodel import Session, select

from nudger import events
from nudger.audit import record
from nudger.models import InboundMessage, Outbox, Person

# Three temporary failures within this window make an address undeliverable too.
TEMPORARY_LIMIT = 3
TEMPORARY_WINDOW = timedelta(days=7)
_STATUS = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")


@dataclass(frozen=True)
class Bounce:
    """One failed delivery: its enhanced status code (RFC 3463) and the server's words."""

    status: str
    diagnostic: str
    recipient: str = ""

    @property
    def permanent(self) -> bool:
        return self.status.startswith("5")


def looks_like_bounce(msg: EmailMessage) -> bool:
    """Say whether a message is a delivery status notification of any kind."""
    if msg.get_content_type() == "multipart/report":
        return True
    temporary, permanent = all_failures(msg)
    return bool(temporary or permanent)


def read_bounce(msg: EmailMessage) -> Bounce | None:
    """Return the failure a bounce reports, or None if it reports none (e.g. a delivery)."""
    report = _delivery_status(msg)
    if report is not None:
        return report or None
    temporary, permanent = all_failures(msg)
    if not (temporary or permanent):
        return None
    text = _all_text(msg)
    found = _STATUS.search(text)
    status = found.group(0) if found else ("5.0.0" if permanent else "4.0.0")
    if found and (found.group(1) == "5") != bool(permanent):
        status = found.group(0)  # the server's own code says more than the detector's guess
    recipient = next(iter(permanent or temporary)).decode("utf-8", "replace")
    return Bounce(status, _diagnostic(text, found), recipient)


def _delivery_status(msg: Message) -> Bounce | bool | None:
    """Read an RFC 3464 report: its first failed recipient, or False when none failed.

    Returns None when the message holds no message/delivery-status part.
    """
    for part in msg.walk():
        if part.get_content_type() != "message/delivery-status":
            continue
        blocks = part.get_payload()
        if not isinstance(blocks, list):
            return None
        for block in blocks[1:] or blocks:  # the first block is about the reporting server
            action = str(block.get("Action", "")).strip().lower()
            status = str(block.get("Status", "")).strip()
            if action not in ("failed", "delayed") and not status.startswith(("4", "5")):
                continue
            found = _STATUS.search(status) or _STATUS.search(str(block.get("Diagnostic-Code", "")))
            code = found.group(0) if found else ("4.0.0" if action == "delayed" else "5.0.0")
            diagnostic = " ".join(str(block.get("Diagnostic-Code", "")).split())
            diagnostic = diagnostic.removeprefix("smtp;").removeprefix("SMTP;").strip()
            recipient = str(block.get("Final-Recipient") or block.get("Original-Recipient") or "")
            return Bounce(code, diagnostic[:500], recipient.partition(";")[2].strip())
        return False
    return None


def _all_text(msg: Message) -> str:
    texts = []
    for part in msg.walk():
        if part.get_content_maintype() == "text":
            payload = part.get_payload(decode=True) or b""
            texts.append(payload.decode(part.get_content_charset() or "utf-8", "replace"))
    return "\n".join(texts)


def _diagnostic(text: str, found: re.Match | None) -> str:
    """Return the server's line around the status code, or the report's first words."""
    if found:
        start = text.rfind("\n", 0, found.start()) + 1
        end = text.find("\n", found.end())
        return " ".join(text[start : end if end != -1 else None].split())[:500]
    return " ".join(text.split())[:200]


def record_bounce(
    session: Session, inbound: InboundMessage, row: Outbox, bounce: Bounce, now: datetime
) -> str:
    """Mark the row bounced, and the address undeliverable when it must be; say what was done."""
    row.state = "bounced"
    row.last_error = f"{bounce.status} {bounce.diagnostic}".strip()[:4000]
    session.add(row)
    events.record(
        session,
        events.EMAIL_BOUNCED,
        {"outbox_id": row.id, "kind": row.kind, "person_id": row.person_id,
         "status": bounce.status, "permanent": bounce.permanent},
        now=now,
        enrolment_id=row.enrolment_id,
        key=f"email.bounced:{row.id}",
    )  # fmt: skip
    inbound.status = bounce.status
    person = session.get(Person, row.person_id) if row.person_id else None
    if person is None:
        person = session.exec(select(Person).where(Person.email == row.to_email.lower())).first()
    if person is None:
        return f"marked email {row.id} bounced ({bounce.status})"
    inbound.person_id = person.id
    done = f"marked email {row.id} bounced ({bounce.status})"
    if bounce.permanent:
        reason = f"{bounce.status} {bounce.diagnostic}".strip()
        return done + mark_undeliverable(session, person, reason, now)
    session.flush()
    recent = session.scalar(
        select(func.count(InboundMessage.id)).where(
            InboundMessage.person_id == person.id,
            InboundMessage.kind == "bounce",
            InboundMessage.status.like("4.%"),
            InboundMessage.received_at >= now - TEMPORARY_WINDOW,
        )
    )
    if recent >= TEMPORARY_LIMIT:
        reason = f"{recent} temporary failures within 7 days, the last {bounce.status}"
        return done + mark_undeliverable(session, person, reason, now)
    return done


def mark_undeliverable(session: Session, person: Person, reason: str, now: datetime) -> str:
    """Stop all mail to a person's address; return the words for the inbound record."""
    if person.undeliverable_at is not None:
        return ""
    person.undeliverable_at = now
    person.undeliverable_reason = reason[:500]
    session.add(person)
    record(session, "inbound", "person.undeliverable", now, "person", person.id, reason=reason)
    return f"; {person.email} is undeliverable: nothing more is sent to it"


def lift(session: Session, person_id: int, actor: str, now: datetime) -> bool:
    """Send to a person's address again (it was fixed); False if it was not suppressed."""
    if session.get(Person, person_id) is None:
        raise LookupError(person_id)
    return lift_many(session, [person_id], actor, now) == 1


def lift_many(
    session: Session, person_ids: list[int], actor: str, now: datetime, why: str = ""
) -> int:
    """Send to these people's addresses again, each lifting audited; return how many were lifted.

    The console's "The address works again" and an import that enrols them again
    (the admin vouches for the address) both come here.
    """
    suppressed = session.exec(
        select(Person.id, Person.undeliverable_reason).where(
            Person.id.in_(person_ids), Person.undeliverable_at.is_not(None)
        )
    ).all()
    if not suppressed:
        return 0
    session.execute(
        update(Person)
        .where(Person.id.in_([pid for pid, _ in suppressed]))
        .values(undeliverable_at=None, undeliverable_reason=None, updated_at=now)
        .execution_options(synchronize_session="fetch")
    )
    for pid, reason in suppressed:
        detail = {"was": reason or ""} | ({"why": why} if why else {})
        record(session, actor, "person.deliverable", now, "person", pid, **detail)
    return len(suppressed)
