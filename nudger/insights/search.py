"""Find enrolments (search, filters, keyset pages) and tell one person's whole story."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import astuple, dataclass, field
from datetime import date, datetime

from sqlalchemy import case, func, or_
from sqlalchemy.orm import aliased
from sqlmodel import Session, select

from nudger.bulk import among
from nudger.insights.dashboard import late, open_past_due
from nudger.insights.reports import step_status
from nudger.mail.compose.invites import CANCEL, UPDATE, invite_subject
from nudger.models import (
    AuditLog,
    Enrolment,
    EnrolmentStep,
    EscalationEvent,
    Journey,
    LinkHit,
    Outbox,
    Person,
    Step,
)

PAGE = 50
COUNT_CAP = 10_000  # the enrolments page counts matches up to here, then says "more than"
# A text search matching at most this many people lists their enrolments from the people
# found (about 60 ms at 25,000 people on PostgreSQL); more, and the newest matches are near.
TEXT_PEOPLE_CAP = 25_000
BEHIND_CHOICES = ("", "yes", "escalated", "no")
# Mail scanners that fetch every link (Defender Safe Links, Mimecast, Proofpoint, ...).
_SCANNER = re.compile(
    r"bot|crawl|scan|spider|preview|safelinks|mimecast|proofpoint|barracuda|python|curl|"
    r"wget|java/|go-http|headless|phantom",
    re.IGNORECASE,
)


@dataclass
class EnrolmentFilter:
    """What the admin asked for on the enrolments page."""

    q: str = ""
    journey: str = ""
    status: str = ""
    manager: str = ""
    behind: str = ""  # "" any, "yes" past due, "escalated", "no" on track

    @classmethod
    def from_args(cls, args) -> EnrolmentFilter:
        behind = args.get("behind", "")
        return cls(
            q=args.get("q", "").strip()[:200],
            journey=args.get("journey", "").strip(),
            status=args.get("status", "").strip(),
            manager=args.get("manager", "").strip().lower()[:320],
            behind=behind if behind in BEHIND_CHOICES else "",
        )

    def args(self) -> dict[str, str]:
        """Return the non-empty filters, for links that keep them."""
        return {k: v for k, v in self.__dict__.items() if v}


@dataclass
class EnrolmentRow:
    """One line of the enrolments list."""

    id: int
    person_id: int
    email: str
    name: str
    journey_slug: str
    journey_title: str
    status: str
    start_date: date
    manager_email: str = ""
    done: int = 0
    sent: int = 0
    late: int = 0
    escalated: bool = False
    total: int = 0


def _past_due(now: datetime):
    return open_past_due(now)


def _text_match(q: str):
    needle = q.lower()
    return or_(
        Person.email.contains(needle, autoescape=True),
        # ILIKE on PostgreSQL, which the trigram index of names serves.
        Person.name.icontains(needle, autoescape=True),
    )


def _filtered(session: Session, query, f: EnrolmentFilter, now: datetime, people=None):
    """Apply the filters to a query over Enrolment, with subqueries rather than joins.

    A count of 100,000 enrolments then reads the enrolment table alone unless
    a filter needs a person or a journey. `people`, when given, are the ids of
    the people the text search matches, found already.
    """
    if people is not None:
        query = query.where(among(session, Enrolment.person_id, people))
    elif f.q:
        query = query.where(Enrolment.person_id.in_(select(Person.id).where(_text_match(f.q))))
    if f.journey:
        journey = select(Journey.id).where(Journey.slug == f.journey).scalar_subquery()
        query = query.where(Enrolment.journey_id == journey)
    if f.status:
        query = query.where(Enrolment.status == f.status)
    if f.manager:
        boss, report = aliased(Person), aliased(Person)
        reports = (
            select(report.id)
            .join(boss, boss.id == report.manager_id)
            .where(boss.email == f.manager)
        )
        query = query.where(Enrolment.person_id.in_(reports))
    if f.behind == "yes":
        query = query.where(late(now))
    elif f.behind == "escalated":
        query = query.where(late(now, escalated=True))
    elif f.behind == "no":
        query = query.where(~late(now))
    return query


def _base(*columns):
    return (
        select(*columns)
        .select_from(Enrolment)
        .join(Person, Person.id == Enrolment.person_id)
        .join(Journey, Journey.id == Enrolment.journey_id)
    )


def _found_by_text(session: Session, f: EnrolmentFilter, now: datetime) -> list[int] | None:
    """Return every match's id when a text search matches at most TEXT_PEOPLE_CAP people.

    The trigram indexes find a few thousand people at once. Listing their
    enrolments newest first by walking the enrolments backwards instead (the
    plan PostgreSQL picks for a LIMIT) reads every newer enrolment on the way:
    hundreds of thousands when the matches are early ones. When more than
    that match (2.5% of a million people), their newest enrolments are near
    the top of the walk. None: no text search, or that many people match.
    """
    if not f.q:
        return None
    # A page counts and lists the same matches: found once per session (one request).
    key = ("insights.search.found", astuple(f), now)
    if key not in session.info:
        query = select(Person.id).where(_text_match(f.q)).limit(TEXT_PEOPLE_CAP + 1)
        people = session.execute(query).scalars().all()
        found = None
        if len(people) <= TEXT_PEOPLE_CAP:
            query = _filtered(session, select(Enrolment.id), f, now, people)
            found = list(session.execute(query).scalars().all())
        session.info[key] = found
    return session.info[key]


def count(session: Session, f: EnrolmentFilter, now: datetime, cap: int | None = None) -> int:
    """Return how many enrolments match, or cap + 1 when more than `cap` do.

    The page counts up to COUNT_CAP: reading a million enrolments (and their open
    steps, for "behind") on every page view would cost more than the page.
    """
    found = _found_by_text(session, f, now)
    if found is not None:
        return len(found) if cap is None else min(len(found), cap + 1)
    if cap is None:
        counted = select(func.count()).select_from(Enrolment)
        return session.exec(_filtered(session, counted, f, now)).one()
    first = _filtered(session, select(Enrolment.id), f, now).limit(cap + 1).subquery()
    return session.exec(select(func.count()).select_from(first)).one()


def search(
    session: Session,
    f: EnrolmentFilter,
    now: datetime,
    before_id: int | None = None,
    limit: int = PAGE,
) -> tuple[list[EnrolmentRow], int | None]:
    """Return one page of matches, newest first, and the id to continue before (or None)."""
    found = _found_by_text(session, f, now)
    query = _base(
        Enrolment.id,
        Person.id,
        Person.email,
        Person.name,
        Person.manager_id,
        Journey.slug,
        Journey.title,
        Journey.id,
        Enrolment.status,
        Enrolment.start_date,
    )
    if found is not None:
        newest = sorted((i for i in found if before_id is None or i < before_id), reverse=True)
        query = query.where(among(session, Enrolment.id, newest[: limit + 1]))
    else:
        query = _filtered(session, query, f, now)
        if before_id is not None:
            query = query.where(Enrolment.id < before_id)
    found_rows = session.exec(query.order_by(Enrolment.id.desc()).limit(limit + 1)).all()
    more = len(found_rows) > limit
    page = found_rows[:limit]
    rows = [EnrolmentRow(r[0], r[1], r[2], r[3], r[5], r[6], r[8], r[9]) for r in page]
    _fill(session, rows, [r[4] for r in page], [r[7] for r in page], now)
    return rows, (rows[-1].id if more else None)


def _fill(session: Session, rows: list[EnrolmentRow], managers, journeys, now: datetime) -> None:
    """Add managers, progress and lateness to one page of rows (three small queries)."""
    if not rows:
        return
    ids = set(managers) - {None}
    emails = dict(session.exec(select(Person.id, Person.email).where(Person.id.in_(ids))).all())
    totals = dict(
        session.exec(
            select(Step.journey_id, func.count())
            .where(Step.journey_id.in_(set(journeys)), Step.removed.is_(False))
            .group_by(Step.journey_id)
        ).all()
    )
    progress = session.exec(
        select(
            EnrolmentStep.enrolment_id,
            func.count(),
            func.sum(case((EnrolmentStep.status == "done", 1), else_=0)),
            func.sum(case((_past_due(now), 1), else_=0)),
            func.max(case((_past_due(now), EnrolmentStep.escalation_level), else_=0)),
        )
        .where(EnrolmentStep.enrolment_id.in_([r.id for r in rows]))
        .group_by(EnrolmentStep.enrolment_id)
    )
    by_id = {p[0]: p for p in progress}
    for row, manager_id, journey_id in zip(rows, managers, journeys, strict=True):
        row.manager_email = emails.get(manager_id, "")
        row.total = totals.get(journey_id, 0)
        if row.id in by_id:
            _, sent, done, late, level = by_id[row.id]
            row.sent, row.done, row.late = sent, int(done or 0), int(late or 0)
            row.escalated = bool(level)


def iter_all(session: Session, f: EnrolmentFilter, now: datetime) -> Iterator[EnrolmentRow]:
    """Yield every match, a page at a time (for exports)."""
    before = None
    while True:
        rows, before = search(session, f, now, before, limit=1000)
        yield from rows
        if before is None:
            return


# --- one person's history -----------------------------------------------------------


@dataclass
class StepLine:
    """A step of an enrolment as the history page shows it."""

    step: Step
    sent: EnrolmentStep | None
    status: str


@dataclass
class EnrolmentHistory:
    enrolment: Enrolment
    journey: Journey
    steps: list[StepLine]


@dataclass
class History:
    """Everything Nudger did with and for one person."""

    person: Person
    manager: Person | None
    reports: list[Person]
    enrolments: list[EnrolmentHistory] = field(default_factory=list)
    mail: list[Outbox] = field(default_factory=list)
    escalations: list[tuple[EscalationEvent, str, str]] = field(default_factory=list)
    hits: list[tuple[LinkHit, str, bool]] = field(default_factory=list)
    audit: list[AuditLog] = field(default_factory=list)
    # Subjects of calendar emails that were never sent (outbox id -> subject).
    unsent_subjects: dict[int, str] = field(default_factory=dict)

    def subject(self, row: Outbox) -> str:
        """Return the subject a row went out with, or the one it would have had."""
        return row.subject or self.unsent_subjects.get(row.id, "")


def looks_like_scanner(hit: LinkHit) -> bool:
    """Guess whether a link hit came from a mail scanner rather than a person."""
    if hit.method == "HEAD" or not hit.user_agent:
        return True
    return bool(_SCANNER.search(hit.user_agent))


def person_history(session: Session, person_id: int, now: datetime, limit: int = 500):
    """Return the person's enrolments, emails, completions, escalations, link hits and audit."""
    person = session.get(Person, person_id)
    if person is None:
        return None
    manager = session.get(Person, person.manager_id) if person.manager_id else None
    reports = session.exec(
        select(Person).where(Person.manager_id == person.id).order_by(Person.email).limit(limit)
    ).all()
    history = History(person, manager, list(reports))
    pairs = session.exec(
        select(Enrolment, Journey)
        .join(Journey, Journey.id == Enrolment.journey_id)
        .where(Enrolment.person_id == person.id)
        .order_by(Enrolment.id)
    ).all()
    enrolment_ids = [e.id for e, _ in pairs]
    sent_rows = session.exec(
        select(EnrolmentStep).where(EnrolmentStep.enrolment_id.in_(enrolment_ids))
    ).all()
    sent = {(es.enrolment_id, es.step_id): es for es in sent_rows}
    steps = session.exec(
        select(Step)
        .where(Step.journey_id.in_({j.id for _, j in pairs}))
        .order_by(Step.journey_id, Step.position)
    ).all()
    titles = {s.id: s.title for s in steps}
    for enrolment, journey in pairs:
        lines = []
        for step in steps:
            if step.journey_id != journey.id:
                continue
            es = sent.get((enrolment.id, step.id))
            if step.removed and es is None:
                continue
            lines.append(StepLine(step, es, step_status(es, enrolment.status, now)))
        history.enrolments.append(EnrolmentHistory(enrolment, journey, lines))
    history.mail = list(
        session.exec(
            select(Outbox)
            .where(or_(Outbox.person_id == person.id, Outbox.to_email == person.email))
            .order_by(Outbox.id.desc())
            .limit(limit)
        )
    )
    history.unsent_subjects = {
        row.id: invite_subject(session, row)
        for row in history.mail
        if not row.subject and row.kind in (UPDATE, CANCEL)
    }
    es_ids = [es.id for es in sent_rows]
    step_of = {es.id: es.step_id for es in sent_rows}
    events = session.exec(
        select(EscalationEvent)
        .where(
            or_(
                EscalationEvent.enrolment_id.in_(enrolment_ids),
                EscalationEvent.recipient_email == person.email,
            )
        )
        .order_by(EscalationEvent.id.desc())
        .limit(limit)
    ).all()
    others = [e for e in events if e.enrolment_id not in enrolment_ids]
    about = _escalation_subjects(session, others)
    for event in events:
        if event.enrolment_id in enrolment_ids:
            title = titles.get(step_of.get(event.enrolment_step_id), "")
            history.escalations.append((event, "about them", title))
        else:
            history.escalations.append((event, "sent to them", about.get(event.id, "")))
    hits = session.exec(
        select(LinkHit)
        .where(
            or_(
                (LinkHit.purpose == "done") & LinkHit.subject_id.in_(es_ids),
                LinkHit.purpose.in_(["me", "mute"]) & LinkHit.subject_id.in_(enrolment_ids),
                LinkHit.purpose.in_(["team", "prefs"]) & (LinkHit.subject_id == person.id),
            )
        )
        .order_by(LinkHit.id.desc())
        .limit(limit)
    ).all()
    for hit in hits:
        label = titles.get(step_of.get(hit.subject_id), "") if hit.purpose == "done" else ""
        history.hits.append((hit, label, looks_like_scanner(hit)))
    history.audit = list(
        session.exec(
            select(AuditLog)
            .where(
                or_(
                    (AuditLog.subject_type == "enrolment") & AuditLog.subject_id.in_(enrolment_ids),
                    (AuditLog.subject_type == "enrolment_step") & AuditLog.subject_id.in_(es_ids),
                    (AuditLog.subject_type == "person") & (AuditLog.subject_id == person.id),
                    (AuditLog.subject_type == "outbox")
                    & AuditLog.subject_id.in_([m.id for m in history.mail]),
                )
            )
            .order_by(AuditLog.id.desc())
            .limit(limit)
        )
    )
    return history


def _escalation_subjects(session: Session, events: list[EscalationEvent]) -> dict[int, str]:
    """Name the learner each escalation sent to this person was about."""
    if not events:
        return {}
    rows = session.exec(
        select(Enrolment.id, Person.email)
        .join(Person, Person.id == Enrolment.person_id)
        .where(Enrolment.id.in_({e.enrolment_id for e in events}))
    )
    emails = dict(rows.all())
    return {e.id: emails.get(e.enrolment_id, "") for e in events}
