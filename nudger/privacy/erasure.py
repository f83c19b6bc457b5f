"""Personal data has an end: erase a person on request, prune stored mail after a while.

Erasing keeps the person's row, enrolments and step states, so every count
(dashboards, reports, funnels) still adds up; what identifies them goes. Their
address becomes a placeholder under the reserved `.invalid` domain (RFC 6761),
which no mail is ever sent to, so unique keys hold and nothing reaches anyone.

Where a person's data lives, and what erasing does there:

- person: name emptied, address replaced, `erased_at` set. People they manage
  keep `manager_id`, now pointing at the anonymised record.
- enrolment steps: the notes they wrote are removed; states and times stay.
- outbox (the sent-mail ledger): their rows are readdressed (address, dedupe
  key, SMTP answer) and pending ones cancelled; the subjects of their mail and
  of digests that may name them lose their name. Payloads hold only ids: a
  message is rendered when it is sent and never stored in the ledger.
- captured mail (the development outbox's stored messages): deleted for mail
  to them and for digests that may name them (a digest lists every open
  escalation of its recipient, so: any digest to someone who heard about them,
  from the first escalation about them until the last was resolved).
- escalation events: open ones about them are resolved (no digest talks about
  them again); ones addressed to them are readdressed.
- link hits: the IP address and user agent are removed; the hit stays.
- audit log: their address is replaced in every entry's detail, and the
  erasure itself is recorded with counts only.
- enrolments: never looked at by the tick again (and the tick skips anyone
  erased, whatever later edits do).

Stored mail also ends without a request: see nudger.privacy.retention.
"""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import String, cast, delete, func, or_, update
from sqlmodel import Session, select

from nudger.audit import record
from nudger.models import (
    PLACEHOLDER_DOMAIN,
    AuditLog,
    CapturedMail,
    Checkin,
    DigestQueue,
    Enrolment,
    EnrolmentStep,
    EscalationEvent,
    InboundMessage,
    Journey,
    LinkHit,
    Outbox,
    Person,
)

ERASED = "[erased]"
CANCELLED_REASON = "cancelled: the recipient's personal data was erased"
CHUNK = 500  # ids per IN list


class PersonNotFound(LookupError):
    """No person has that address (or id)."""


@dataclass
class Erasure:
    """What erasing a person removes (or removed): counts only, except in `describe`."""

    person_id: int
    email: str
    name: str
    already_erased: bool = False
    erased_at: datetime | None = None
    placeholder: str = ""
    enrolments: int = 0
    notes: int = 0
    mail_rows: int = 0
    mail_cancelled: int = 0
    stored_copies: int = 0
    digests_about_them: int = 0
    escalations_resolved: int = 0
    link_hits: int = 0
    audit_entries: int = 0
    reports: int = 0
    journeys_owned: list[str] = field(default_factory=list)

    def describe(self) -> list[str]:
        """Return what will go (or went), one line each, for a person to read.

        Once erased, the lines name no one: the output may end up in a log.
        """
        if self.erased_at is not None:
            lines = [f"name and address: removed; the record is now {self.placeholder}"]
        else:
            lines = [
                f"name: {self.name!r}" if self.name else "name: (none on file)",
                f"address: {self.email} (replaced by a placeholder that receives no mail)",
            ]
        lines += [
            f"notes they wrote on steps: {self.notes}",
            f"emails in the ledger readdressed: {self.mail_rows}, "
            f"of which still waiting to go and cancelled: {self.mail_cancelled}",
            f"stored copies of mail to or about them deleted: {self.stored_copies}",
            f"digests to others while they were behind: {self.digests_about_them} "
            "(their name leaves the subject)",
            f"open escalations about them resolved: {self.escalations_resolved}",
            f"link hits: {self.link_hits} (IP address and browser removed, the hit stays)",
            f"audit entries naming their address: {self.audit_entries}",
            f"enrolments kept, anonymous, so counts still add up: {self.enrolments}",
        ]
        if self.reports:
            lines.append(
                f"they manage {self.reports} "
                + ("person" if self.reports == 1 else "people")
                + ": their manager link now points at the anonymised record"
            )
        for slug in self.journeys_owned:
            lines.append(
                f"warning: this address is the owner of journey {slug!r}: change `owner:` in its "
                "file and sync, or that journey's admin escalations still go to the address"
            )
        return lines

    def counts(self) -> dict[str, int]:
        """Return the counts alone: what the audit entry of the erasure may hold."""
        skip = {"person_id", "email", "name", "already_erased", "erased_at", "placeholder",
                "journeys_owned"}  # fmt: skip
        return {k: v for k, v in asdict(self).items() if k not in skip}

    def to_json(self) -> dict[str, Any]:
        """Return the result for --json: counts, with no personal data."""
        return {
            "person_id": self.person_id,
            "already_erased": self.already_erased,
            "erased_at": self.erased_at.isoformat() if self.erased_at else None,
            "placeholder": self.placeholder,
            "journeys_owned": self.journeys_owned,
            **self.counts(),
        }


def find_person(session: Session, email: str) -> Person:
    """Return the person with this address (case-insensitive) or raise PersonNotFound."""
    person = session.exec(select(Person).where(Person.email == email.strip().lower())).first()
    if person is None:
        raise PersonNotFound(email)
    return person


@dataclass
class _Found:
    """The rows that hold a person's data, by id."""

    person: Person
    enrolment_ids: list[int]
    step_ids: list[int]
    own_mail: list[int]
    digests_about: list[int]
    message_ids: list[str]


def _find(session: Session, person: Person) -> _Found:
    enrolment_ids = list(session.exec(select(Enrolment.id).where(Enrolment.person_id == person.id)))
    step_ids = _ids(session, EnrolmentStep.id, EnrolmentStep.enrolment_id, enrolment_ids)
    own_mail = list(
        session.exec(
            select(Outbox.id).where(
                or_(Outbox.person_id == person.id, Outbox.to_email == person.email)
            )
        )
    )
    about = _digests_about(session, enrolment_ids)
    digests_about = sorted(about - set(own_mail))
    message_ids = []
    for chunk in _chunks(sorted({*own_mail, *digests_about})):
        message_ids += session.exec(
            select(Outbox.message_id).where(Outbox.id.in_(chunk), Outbox.message_id.is_not(None))
        )
    return _Found(person, enrolment_ids, step_ids, own_mail, digests_about, message_ids)


def _digests_about(session: Session, enrolment_ids: list[int]) -> set[int]:
    """Return the digests that may name the person: to whoever heard about them, while it lasted.

    A digest lists every open escalation of its recipient, not only the ones it
    carried first, so any digest to that recipient from the first escalation
    about the person until the last was resolved may name them.
    """
    spans: dict[str, tuple[datetime, datetime | None]] = {}
    for chunk in _chunks(enrolment_ids):
        rows = session.exec(
            select(
                EscalationEvent.recipient_email,
                EscalationEvent.created_at,
                EscalationEvent.resolved_at,
            ).where(EscalationEvent.enrolment_id.in_(chunk))
        )
        for email, created, resolved in rows:
            first, last = spans.get(email, (created, resolved))
            open_ = last is None or resolved is None
            spans[email] = (min(first, created), None if open_ else max(last, resolved))
    found: set[int] = set()
    for email, (first, last) in spans.items():
        query = select(Outbox.id).where(
            Outbox.kind == "digest", Outbox.to_email == email, Outbox.created_at >= first
        )
        if last is not None:
            query = query.where(Outbox.created_at <= last)
        found.update(session.exec(query))
    return found


def describe_erasure(session: Session, person_id: int) -> Erasure:
    """Return what erasing the person would remove; change nothing."""
    person = session.get(Person, person_id)
    if person is None:
        raise PersonNotFound(person_id)
    erasure = Erasure(person.id, person.email, person.name, erased_at=person.erased_at)
    if person.erased_at is not None:
        erasure.already_erased = True
        erasure.placeholder = person.email
        return erasure
    found = _find(session, person)
    _count(session, found, erasure)
    return erasure


def _count(session: Session, found: _Found, erasure: Erasure) -> None:
    person = found.person
    erasure.enrolments = len(found.enrolment_ids)
    erasure.notes = _count_where(
        session, EnrolmentStep.id, EnrolmentStep.id, found.step_ids, EnrolmentStep.note.is_not(None)
    )
    erasure.mail_rows = len(found.own_mail)
    erasure.mail_cancelled = _count_where(
        session, Outbox.id, Outbox.id, found.own_mail, Outbox.state == "pending"
    )
    erasure.digests_about_them = len(found.digests_about)
    erasure.stored_copies = session.exec(
        select(func.count()).select_from(CapturedMail).where(_captured(found))
    ).one()
    erasure.escalations_resolved = _count_where(
        session,
        EscalationEvent.id,
        EscalationEvent.enrolment_id,
        found.enrolment_ids,
        EscalationEvent.resolved_at.is_(None),
    )
    erasure.link_hits = session.exec(
        select(func.count()).select_from(LinkHit).where(_hits(found))
    ).one()
    erasure.audit_entries = len(_audit_rows(session, person.email))
    erasure.reports = session.exec(
        select(func.count()).select_from(Person).where(Person.manager_id == person.id)
    ).one()
    erasure.journeys_owned = list(
        session.exec(
            select(Journey.slug).where(Journey.owner == person.email).order_by(Journey.slug)
        )
    )


def erase_person(session: Session, person_id: int, *, actor: str, now: datetime) -> Erasure:
    """Remove a person's personal data, keep the anonymous counts; commit.

    Erasing someone already erased changes nothing and says so.
    """
    erasure = describe_erasure(session, person_id)
    if erasure.already_erased:
        return erasure
    person = session.get(Person, person_id)
    found = _find(session, person)
    placeholder = f"erased-{secrets.token_hex(8)}@{PLACEHOLDER_DOMAIN}"
    try:
        _erase(session, found, placeholder, now)
        person.email, person.name = placeholder, ""
        person.erased_at = person.updated_at = now
        session.add(person)
        # Counts and ids only: the entry that records an erasure names no one.
        record(session, actor, "person.erase", now, "person", person.id, **erasure.counts())
        session.commit()
    except BaseException:
        session.rollback()
        raise
    erasure.placeholder, erasure.erased_at = placeholder, now
    return erasure


def _erase(session: Session, found: _Found, placeholder: str, now: datetime) -> None:
    email, name = found.person.email, found.person.name
    for chunk in _chunks(found.step_ids):
        session.execute(
            update(EnrolmentStep)
            .where(EnrolmentStep.id.in_(chunk), EnrolmentStep.note.is_not(None))
            .values(note=None)
        )
    for chunk in _chunks(found.enrolment_ids):
        session.execute(
            update(Enrolment).where(Enrolment.id.in_(chunk)).values(next_action_at=None)
        )
        # Nobody is asked about her any more: neither she nor her manager.
        session.execute(
            update(Checkin)
            .where(Checkin.enrolment_id.in_(chunk), Checkin.state == "planned")
            .values(state="skipped")
        )
        session.execute(
            update(EscalationEvent)
            .where(EscalationEvent.enrolment_id.in_(chunk), EscalationEvent.resolved_at.is_(None))
            .values(resolved_at=now)
        )
        _unqueue(session, EscalationEvent.enrolment_id.in_(chunk))
    session.execute(
        update(Checkin)
        .where(Checkin.rater_id == found.person.id, Checkin.state == "planned")
        .values(state="skipped")
    )
    # Nothing more is said to her about her team: what waited for her next digest goes.
    _unqueue(session, EscalationEvent.recipient_email == email)
    session.execute(
        update(EscalationEvent)
        .where(EscalationEvent.recipient_email == email)
        .values(recipient_email=placeholder)
    )
    session.execute(delete(CapturedMail).where(_captured(found)))
    for chunk in _chunks(found.own_mail):
        session.execute(
            update(Outbox)
            .where(Outbox.id.in_(chunk), Outbox.state == "pending")
            .values(state="cancelled", last_error=CANCELLED_REASON, enqueued_at=None)
        )
        session.execute(
            update(Outbox)
            .where(Outbox.id.in_(chunk))
            .values(
                to_email=placeholder,
                dedupe_key=func.replace(Outbox.dedupe_key, email, placeholder),
                last_error=func.replace(Outbox.last_error, email, placeholder),
            )
        )
    if name:
        _scrub_subjects(session, [*found.own_mail, *found.digests_about], name)
    session.execute(update(LinkHit).where(_hits(found)).values(ip="", user_agent=""))
    # Mail they sent back (nudger.inbound): the row stays, so a redelivery is still a no-op.
    session.execute(
        update(InboundMessage)
        .where(InboundMessage.person_id == found.person.id)
        .values(raw=b"", from_email="", envelope_from="", subject="", outcome="erased")
    )
    session.execute(
        update(Person)
        .where(Person.id == found.person.id)
        .values(undeliverable_reason=None, out_of_office_at=None)
    )
    for row in _audit_rows(session, email):
        row.detail = _scrub(row.detail, email, placeholder, name)
        session.add(row)
    session.flush()


def _scrub_subjects(session: Session, outbox_ids: list[int], name: str) -> None:
    """Take the name out of stored subjects ("Ada Lovelace is 3 days behind on ...")."""
    pattern = _word(name)
    for chunk in _chunks(sorted(set(outbox_ids))):
        rows = session.exec(
            select(Outbox.id, Outbox.subject).where(
                Outbox.id.in_(chunk), Outbox.subject.is_not(None)
            )
        )
        for outbox_id, subject in rows.all():
            scrubbed = pattern.sub(ERASED, subject)
            if scrubbed != subject:
                session.execute(
                    update(Outbox).where(Outbox.id == outbox_id).values(subject=scrubbed)
                )


def _word(text: str) -> re.Pattern:
    return re.compile(rf"(?<!\w){re.escape(text)}(?!\w)", re.IGNORECASE)


def _scrub(value: Any, email: str, placeholder: str, name: str) -> Any:
    """Replace the address anywhere in a JSON value, and values that are exactly the name."""
    if isinstance(value, str):
        if name and value.strip().lower() == name.strip().lower():
            return ERASED
        return re.sub(re.escape(email), placeholder, value, flags=re.IGNORECASE)
    if isinstance(value, list):
        return [_scrub(v, email, placeholder, name) for v in value]
    if isinstance(value, dict):
        return {k: _scrub(v, email, placeholder, name) for k, v in value.items()}
    return value


def _audit_rows(session: Session, email: str) -> list[AuditLog]:
    """Return audit entries whose detail names the address (as stored, or JSON-escaped)."""
    text = func.lower(cast(AuditLog.detail, String))
    needles = {email.lower(), json.dumps(email.lower())[1:-1]}
    return list(
        session.exec(
            select(AuditLog).where(or_(*(text.contains(n, autoescape=True) for n in needles)))
        )
    )


def _captured(found: _Found):
    """Captured messages to the person or about them (by the Message-ID of their row)."""
    to_them = func.lower(CapturedMail.to_email).contains(found.person.email, autoescape=True)
    if not found.message_ids:
        return to_them
    return or_(to_them, CapturedMail.message_id.in_(found.message_ids))


def _hits(found: _Found):
    """Requests on the person's links: what each purpose's subject id names."""
    return or_(
        (LinkHit.purpose == "done") & LinkHit.subject_id.in_(found.step_ids),
        LinkHit.purpose.in_(["me", "mute"]) & LinkHit.subject_id.in_(found.enrolment_ids),
        LinkHit.purpose.in_(["team", "prefs"]) & (LinkHit.subject_id == found.person.id),
    ) & ((LinkHit.ip != "") | (LinkHit.user_agent != ""))


def _unqueue(session: Session, which) -> None:
    """Take the escalation events `which` selects off the digests' queue."""
    events = select(EscalationEvent.id).where(which)
    session.execute(delete(DigestQueue).where(DigestQueue.event_id.in_(events)))


def _chunks(ids: list) -> list[list]:
    return [ids[i : i + CHUNK] for i in range(0, len(ids), CHUNK)]


def _ids(session: Session, column, by, values: list[int]) -> list[int]:
    found: list[int] = []
    for chunk in _chunks(values):
        found += session.exec(select(column).where(by.in_(chunk)))
    return found


def _count_where(session: Session, column, by, values: list[int], *where) -> int:
    total = 0
    for chunk in _chunks(values):
        total += session.exec(select(func.count(column)).where(by.in_(chunk), *where)).one()
    return total
