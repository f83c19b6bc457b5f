"""Build reminder and digest emails from their outbox rows, at send time.

Both are rendered from the database as it is when the row is sent, not as
it was when the tick decided: a step completed in between is left out, and
a message with nothing left to say is not sent at all.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from functools import cache

from sqlalchemy import and_, bindparam, case
from sqlalchemy.orm import aliased
from sqlmodel import Session, func, select

from nudger import tokens
from nudger.calendar import local_date
from nudger.config import Settings
from nudger.journeys.spec import CONFIRM, LEVELS
from nudger.mail.compose.checkins import checkin_blocks
from nudger.mail.context import (
    journey_ctx,
    live_step_count,
    person_ctx,
    sender_domain,
    step_ctx,
)
from nudger.mail.mime import build_message, make_message_id, unsubscribe_headers
from nudger.mail.render import render
from nudger.models import (
    NO_DIGEST,
    Enrolment,
    EnrolmentStep,
    EscalationEvent,
    Journey,
    Outbox,
    Person,
    Step,
)
from nudger.schedule import JourneyPlan

# A digest mentions an automatic out-of-office answer this long after it came.
OUT_OF_OFFICE_SHOWN = timedelta(days=14)


def compose_reminder(
    session: Session, settings: Settings, row: Outbox, now: datetime
) -> EmailMessage | None:
    """Build a reminder naming the steps that crossed a threshold and every other overdue one."""
    as_of = _as_of(row, now)
    enrolment = session.get(Enrolment, row.enrolment_id)
    if enrolment is None or enrolment.status != "active" or enrolment.reminders_muted:
        return None
    crossed = set(row.payload.get("enrolment_step_ids", []))
    overdue = session.exec(
        select(EnrolmentStep).where(
            EnrolmentStep.enrolment_id == enrolment.id,
            EnrolmentStep.status == "sent",
            EnrolmentStep.awaiting_confirmation.is_(False),
            EnrolmentStep.due_at <= as_of,
        )
    ).all()
    # A snoozed step is named only when its own (delayed) reminder is the reason.
    shown = [
        es
        for es in overdue
        if es.id in crossed or es.snoozed_until is None or es.snoozed_until <= as_of
    ]
    if not crossed.intersection(es.id for es in shown):
        return None  # done, cancelled or confirmed since the tick decided
    person = session.get(Person, enrolment.person_id)
    journey = session.get(Journey, enrolment.journey_id)
    steps = {s.id: s for s in session.exec(select(Step).where(Step.journey_id == journey.id))}
    shown = [es for es in shown if es.step_id in steps]
    shown.sort(key=lambda es: steps[es.step_id].position)
    plan = JourneyPlan.build(journey, [])
    cal = plan.calendar(person, settings.default_country)
    tz = person.timezone
    total = live_step_count(session, journey.id)
    mute_url = tokens.link(settings, "mute", "mute", enrolment.id)
    ctx = {
        "person": person_ctx(person),
        "journey": journey_ctx(journey),
        "base_url": settings.base_url,
        "me_url": tokens.link(settings, "me", "me", enrolment.id),
        "mute_url": mute_url,
        "tz": tz,
        "steps": [
            {
                **step_ctx(settings, es, steps[es.step_id], total, tz),
                "days_overdue": plan.overdue_days(cal, tz, es.due_at, as_of),
            }
            for es in shown
        ],
    }
    return build_message(
        kind="reminder",
        to=person.email,
        from_addr=settings.from_addr,
        message_id=make_message_id(row.id, row.dedupe_key, sender_domain(settings)),
        date=now,
        rendered=render("reminder", ctx),
        headers=unsubscribe_headers(mute_url),
    )


def compose_digest(
    session: Session, settings: Settings, row: Outbox, now: datetime
) -> EmailMessage | None:
    """Build one recipient's digest: every open event, grouped by learner and journey."""
    recipient = _recipient(session, row)
    team_url = tokens.link(settings, "team", "team", recipient.id) if recipient else None
    as_of = _as_of(row, now)
    groups, levels = _groups(session, settings, row.to_email, team_url, as_of)
    # The manager's check-ins still unanswered when the tick decided, as they are now.
    asks = checkin_blocks(
        session, settings, row.payload.get("checkin_ids", []), recipient, now, reminder=True
    )
    if not groups and not asks:
        return None  # everyone caught up (and answered) since the tick decided
    if recipient is not None:
        prefs_url = tokens.link(settings, "prefs", "prefs", recipient.id)
        who = person_ctx(recipient)
        headers = unsubscribe_headers(prefs_url)
    else:
        # A journey owner or admin who is not a person in Nudger: the console is their page.
        team_url, prefs_url, headers = f"{settings.base_url}/admin/", None, {}
        who = {"name": "", "first_name": "", "email": row.to_email}
    named = {g["person_id"] for g in groups}
    ctx = {
        "recipient": who,
        "base_url": settings.base_url,
        "level": next((level for level in LEVELS if level in levels), "manager"),
        "groups": groups,
        "checkins": asks,
        "on_track": _on_track(session, recipient, named, as_of) if recipient else 0,
        "unreachable": _unreachable_reports(session, recipient, named) if recipient else [],
        "team_url": team_url,
        "preferences_url": prefs_url,
    }
    return build_message(
        kind="digest",
        to=row.to_email,
        from_addr=settings.from_addr,
        message_id=make_message_id(row.id, row.dedupe_key, sender_domain(settings)),
        date=now,
        rendered=render("digest", ctx),
        headers=headers,
    )


def _as_of(row: Outbox, now: datetime) -> datetime:
    """Return the moment the email describes: now, or the decision's time if that is later.

    `nudger tick --now` may decide in the future of the worker's clock (previews,
    tests); the email then says what was true when it was decided.
    """
    return max(now, row.created_at) if row.created_at else now


def _recipient(session: Session, row: Outbox) -> Person | None:
    if row.person_id is not None:
        return session.get(Person, row.person_id)
    return session.exec(select(Person).where(Person.email == row.to_email)).first()


def _groups(
    session: Session, settings: Settings, email: str, team_url: str | None, now: datetime
) -> tuple[list[dict], set[str]]:
    """Return the digest's groups (one per learner and journey) and the levels they came by."""
    rows = session.exec(_groups_query(), params={"email": email}).all()
    by_step: dict[int, set[str]] = defaultdict(set)
    found: dict[int, tuple] = {}
    journeys: dict[int, Journey] = {}
    last: dict[int, datetime | None] = {}
    for level, es, enrolment, learner, step, journey, last_done_at in rows:
        by_step[es.id].add(level)
        found[es.id] = (es, enrolment, learner, step)
        journeys[journey.id] = journey
        # SQL aggregates bypass the column type: SQLite hands back text, naive.
        last[enrolment.id] = _aware(last_done_at)
    plans: dict[int, JourneyPlan] = {}
    items: dict[int, list[dict]] = defaultdict(list)
    whose: dict[int, tuple[Enrolment, Person]] = {}
    levels: set[str] = set()
    for es_id, (es, enrolment, learner, step) in found.items():
        confirms = CONFIRM in by_step[es_id] and team_url is not None
        if es.awaiting_confirmation:
            # The learner has done their part: only whoever must confirm hears of it.
            if not confirms:
                continue
            late = 0
        else:
            plan = plans.get(enrolment.journey_id)
            if plan is None:
                plan = plans[enrolment.journey_id] = JourneyPlan.build(
                    journeys[enrolment.journey_id], []
                )
            cal = plan.calendar(learner, settings.default_country)
            late = plan.overdue_days(cal, learner.timezone, es.due_at, now)
        # The team page shows the learner with a confirm button (a POST).
        confirm_url = f"{team_url}#person-{learner.id}" if confirms else None
        levels |= {"manager" if level == CONFIRM else level for level in by_step[es_id]}
        item = {"title": step.title, "days_overdue": late, "confirm_url": confirm_url}
        items[enrolment.id].append({**item, "position": step.position})
        whose[enrolment.id] = (enrolment, learner)
    # Whose manager stopped the digest: they were passed up to this recipient.
    managers = {learner.manager_id for _, learner in whose.values() if learner.manager_id}
    stopped = set(
        session.exec(
            select(Person.id).where(Person.id.in_(managers), Person.digest_every == NO_DIGEST)
        )
    )
    groups = []
    for enrolment_id, entries in items.items():
        enrolment, learner = whose[enrolment_id]
        entries.sort(key=lambda item: item["position"])
        activity = last.get(enrolment_id)
        groups.append(
            {
                "person_id": learner.id,
                "person": {"name": person_ctx(learner)["name"], "email": learner.email},
                "journey_title": journeys[enrolment.journey_id].title,
                "days_behind": max(item["days_overdue"] for item in entries),
                "last_activity": _local_day(activity, learner.timezone),
                "manager_stopped_digest": learner.manager_id in stopped,
                # nudger.inbound: their address bounced for good, or they are away.
                "unreachable": learner.undeliverable_at is not None,
                "out_of_office": _local_day(learner.out_of_office_at, learner.timezone)
                if learner.out_of_office_at and now - learner.out_of_office_at < OUT_OF_OFFICE_SHOWN
                else None,
                "steps": entries,
            }
        )
    # Most behind first; people waiting only for a confirmation last.
    groups.sort(key=lambda g: (-g["days_behind"], g["person"]["name"].lower(), g["journey_title"]))
    return groups, levels


def _unreachable_reports(session: Session, manager: Person, named: set[int]) -> list[dict]:
    """Return the manager's direct reports whose address bounced for good, not named above."""
    found = session.exec(
        select(Person)
        .where(Person.manager_id == manager.id, Person.undeliverable_at.is_not(None))
        .order_by(Person.email)
    ).all()
    return [{"name": person_ctx(p)["name"], "email": p.email} for p in found if p.id not in named]


def _on_track(session: Session, manager: Person, named: set[int], now: datetime) -> int:
    """Count the manager's direct reports on a journey with nothing overdue and not named."""
    rows = session.exec(_on_track_query(), params={"manager_id": manager.id, "now": now}).all()
    return sum(1 for person_id, behind in rows if not behind and person_id not in named)


# The two queries are built once: digests go out at the rate of step emails, and
# building a statement with a subquery costs as much as running it on SQLite.
@cache
def _groups_query():
    """Return the query for a recipient's open events and everything they name."""
    done = aliased(EnrolmentStep)
    last_done = (
        select(func.max(done.done_at)).where(done.enrolment_id == Enrolment.id).scalar_subquery()
    )
    return (
        select(EscalationEvent.level, EnrolmentStep, Enrolment, Person, Step, Journey, last_done)
        .join(EnrolmentStep, EnrolmentStep.id == EscalationEvent.enrolment_step_id)
        .join(Enrolment, Enrolment.id == EnrolmentStep.enrolment_id)
        .join(Person, Person.id == Enrolment.person_id)
        .join(Step, Step.id == EnrolmentStep.step_id)
        .join(Journey, Journey.id == Enrolment.journey_id)
        .where(
            EscalationEvent.recipient_email == bindparam("email"),
            EscalationEvent.resolved_at.is_(None),
            EnrolmentStep.status == "sent",
            Enrolment.status == "active",
            Step.removed.is_(False),
        )
    )


@cache
def _on_track_query():
    """Return, for a manager's reports on a journey, whether each has anything overdue."""
    overdue = and_(
        Enrolment.status == "active",
        EnrolmentStep.status == "sent",
        EnrolmentStep.awaiting_confirmation.is_(False),
        EnrolmentStep.due_at <= bindparam("now"),
    )
    return (
        select(Person.id, func.max(case((overdue, 1), else_=0)))
        .join(Enrolment, Enrolment.person_id == Person.id)
        .outerjoin(EnrolmentStep, EnrolmentStep.enrolment_id == Enrolment.id)
        .where(
            Person.manager_id == bindparam("manager_id"),
            Enrolment.status.in_(["active", "completed"]),
        )
        .group_by(Person.id)
    )


def _local_day(instant: datetime | None, tz: str):
    return local_date(instant, tz) if instant else None


def _aware(value: datetime | str | None) -> datetime | None:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)
