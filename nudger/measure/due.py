"""Decide, at a tick, which check-ins go out and which get their one reminder.

Both read a partial index (`ix_checkin_due`, `ix_checkin_remind`), so the cost
grows with the check-ins due, not with the number of enrolments. A learner's
check-in is one email; a manager gets one email a day for all reports due, and
the ones left unanswered wait for the manager's next digest.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlmodel import Session, select

from nudger.calendar import WorkCalendar, local_date, local_instant
from nudger.measure.checkpoints import (
    Measure,
    checkpoint_at,
    checkpoint_date,
    closes_at,
    remind_at,
)
from nudger.models import NO_DIGEST, Checkin, Enrolment, Journey, Person
from nudger.schedule import JourneyPlan

AddMessages = Callable[[list[dict]], list]


@dataclass
class _Due:
    """A due check-in with what deciding it needs."""

    checkin: Checkin
    enrolment: Enrolment
    learner: Person
    rater: Person | None = None
    day: date | None = None


class _Journeys:
    """Plans and measures per journey, each read once per tick."""

    def __init__(self, session: Session, plan_of: Callable[[int], JourneyPlan]) -> None:
        self.session, self.plan_of = session, plan_of
        self.measures: dict[int, Measure | None] = {}

    def measure(self, journey_id: int) -> Measure | None:
        if journey_id not in self.measures:
            self.measures[journey_id] = Measure.of(self.session.get(Journey, journey_id))
        return self.measures[journey_id]


def send_due_checkins(
    session: Session,
    now: datetime,
    plan_of: Callable[[int], JourneyPlan],
    add: AddMessages,
    default_country: str = "",
) -> Counter:
    """Send every check-in whose time has come; re-time or skip those that must not go."""
    counts: Counter = Counter()
    due = session.exec(
        select(Checkin, Enrolment, Person)
        .join(Enrolment, Enrolment.id == Checkin.enrolment_id)
        .join(Person, Person.id == Enrolment.person_id)
        .where(Checkin.state == "planned", Checkin.send_at <= now)
        .order_by(Checkin.id)
    ).all()
    journeys = _Journeys(session, plan_of)
    raters = _managers_of(session, [(c, p) for c, _, p in due])
    learners: list[_Due] = []
    managers: dict[int, list[_Due]] = defaultdict(list)
    for checkin, enrolment, learner in due:
        item = _Due(checkin, enrolment, learner)
        measure = journeys.measure(enrolment.journey_id)
        if (
            measure is None
            or enrolment.status == "withdrawn"
            or checkin.rater not in measure.raters
            or checkin.checkpoint not in measure.checkpoints
        ):
            checkin.state = "skipped"
            counts["checkins_skipped"] += 1
            continue
        if enrolment.status == "paused":
            # Looked at again daily: resuming moves the checkpoint by the pause's length.
            checkin.send_at = now + timedelta(days=1)
            continue
        plan = plan_of(enrolment.journey_id)
        cal = plan.country_calendar(learner.country or default_country)
        item.rater = learner
        if checkin.rater == "manager":
            item.rater = raters.get(learner.manager_id) if learner.manager_id else None
            if item.rater is None:
                checkin.state = "no-manager"
                counts["checkins_no_manager"] += 1
                continue
        day = checkpoint_date(
            plan, cal, enrolment.start_date, enrolment.shift_days, checkin.checkpoint
        )
        at = checkpoint_at(plan, day, item.rater.timezone)
        if at > now:  # a pause or an edit moved it
            checkin.send_at = at
            continue
        if closes_at(plan, cal, day, item.rater.timezone) <= now:
            checkin.state = "skipped"  # it would close before anyone could answer
            counts["checkins_skipped"] += 1
            continue
        item.day = day
        _mark_sent(checkin, plan, cal, day, item.rater, measure, now)
        if checkin.rater == "manager":
            managers[item.rater.id].append(item)
        else:
            learners.append(item)
    messages = [
        {
            "dedupe_key": f"checkin:learner:{i.enrolment.id}:{i.checkin.checkpoint}:{i.day}",
            "kind": "checkin",
            "to_email": i.learner.email,
            "person_id": i.learner.id,
            "enrolment_id": i.enrolment.id,
            "payload": {"checkin_ids": [i.checkin.id]},
        }
        for i in learners
    ]
    added = {row.dedupe_key for row in add(messages)} if messages else set()
    for item, message in zip(learners, messages, strict=True):
        if message["dedupe_key"] not in added:  # a tick beside this one sent it
            session.expunge(item.checkin)
    _send_to_managers(session, managers, now, add, plan_of, default_country)
    session.flush()
    return counts


# Ids per IN (...) list: well under every database's limit on bound parameters.
_CHUNK = 1000


def _managers_of(session: Session, due: list[tuple[Checkin, Person]]) -> dict[int, Person]:
    """Load the managers of the learners whose manager check-ins are due, in one query."""
    ids = sorted({p.manager_id for c, p in due if c.rater == "manager" and p.manager_id})
    found: dict[int, Person] = {}
    for start in range(0, len(ids), _CHUNK):
        chunk = ids[start : start + _CHUNK]
        found.update((p.id, p) for p in session.exec(select(Person).where(Person.id.in_(chunk))))
    return found


def _mark_sent(
    checkin: Checkin,
    plan: JourneyPlan,
    cal: WorkCalendar,
    day: date,
    rater: Person,
    measure: Measure,
    now: datetime,
) -> None:
    checkin.state, checkin.sent_at, checkin.rater_id = "sent", now, rater.id
    checkin.closes_at = closes_at(plan, cal, day, rater.timezone)
    checkin.remind_at = remind_at(plan, cal, day, rater.timezone, measure.due_after)


def _send_to_managers(
    session: Session,
    managers: dict[int, list[_Due]],
    now: datetime,
    add: AddMessages,
    plan_of: Callable[[int], JourneyPlan],
    default_country: str,
) -> int:
    """Write one email per manager for today's check-ins; one already sent today defers them."""
    sent = 0
    for manager_id, items in sorted(managers.items()):
        manager = items[0].rater
        today = local_date(now, manager.timezone)
        message = {
            "dedupe_key": f"checkin:manager:{manager_id}:{today}",
            "kind": "checkin",
            "to_email": manager.email,
            "person_id": manager_id,
            "payload": {"checkin_ids": [i.checkin.id for i in items]},
        }
        if add([message]):
            sent += 1
            continue
        # This manager had their check-in email today (another journey's send time):
        # these wait for tomorrow's, so a manager never gets two in a day.
        for item in items:
            plan = plan_of(item.enrolment.journey_id)
            cal = plan.country_calendar(item.learner.country or default_country)
            tomorrow = cal.next_working_day(today + timedelta(days=1))
            checkin = item.checkin
            checkin.state, checkin.sent_at, checkin.rater_id = "planned", None, None
            checkin.closes_at = checkin.remind_at = None
            checkin.send_at = local_instant(tomorrow, plan.send_time, manager.timezone)
    return sent


def send_reminders(session: Session, now: datetime, add: AddMessages) -> int:
    """Remind each unanswered check-in once: a learner's by email, a manager's in their digest.

    A manager who stopped the digest gets the reminders by email instead, together, once a day.
    """
    rows = session.exec(
        select(Checkin, Enrolment, Person)
        .join(Enrolment, Enrolment.id == Checkin.enrolment_id)
        .join(Person, Person.id == Checkin.rater_id)
        .where(Checkin.remind_at.is_not(None), Checkin.remind_at <= now)
        .order_by(Checkin.id)
    ).all()
    learners: list[tuple[Checkin, Enrolment, Person]] = []
    managers: dict[int, list[Checkin]] = defaultdict(list)
    people: dict[int, Person] = {}
    for checkin, enrolment, rater in rows:
        checkin.remind_at = None  # one reminder at most, whatever happens below
        if (
            checkin.answered_at is not None
            or checkin.state != "sent"
            or (checkin.closes_at is not None and checkin.closes_at <= now)
            or enrolment.status in ("paused", "withdrawn")
        ):
            continue
        if checkin.rater == "manager" and rater.digest_every != NO_DIGEST:
            # A manager's one follow-up is their next digest, beside the rest of their
            # team's news, rather than one more email (see nudger.tick.digests).
            checkin.digest_at = now
            continue
        checkin.reminded_at = now
        if checkin.rater == "manager":
            managers[rater.id].append(checkin)
            people[rater.id] = rater
        else:
            learners.append((checkin, enrolment, rater))
    messages = [
        {
            "dedupe_key": f"checkin-reminder:{checkin.id}",
            "kind": "checkin",
            "to_email": rater.email,
            "person_id": rater.id,
            "enrolment_id": enrolment.id,
            "payload": {"checkin_ids": [checkin.id], "reminder": True},
        }
        for checkin, enrolment, rater in learners
    ]
    messages += [
        {
            "dedupe_key": f"checkin-reminder:manager:{mid}:{local_date(now, people[mid].timezone)}",
            "kind": "checkin",
            "to_email": people[mid].email,
            "person_id": mid,
            "payload": {"checkin_ids": [c.id for c in checkins], "reminder": True},
        }
        for mid, checkins in sorted(managers.items())
    ]
    added = add(messages) if messages else []
    session.flush()
    return len(added)
